//! Side-by-side benchmarks of jobwatch against the plain pattern (a bash
//! wrapper with a `touch` heartbeat loop and a poll loop, in
//! `bench/plain-pattern/`) and against pueue: completion-detection latency,
//! hang-detection latency, overhead, scale, idle jobs' CPU, the wrappers'
//! memory, and many queued jobs (beside GNU parallel too). Prints one
//! Markdown table.
//!
//! Run everything with `bash bench/run` (builds release, installs pueue into
//! `target/bench-tools`, then runs this with the given flags); see `--help`.
//!
//! Every timed job records its own last act by re-executing this binary with
//! a helper mode (`--emit-exit-time`, `--print-then-hang`, `--burn-then-hang`),
//! so each latency runs from a time the job itself wrote down, the same way
//! for every tool.

mod hang;
mod idle_jobs;
mod latency;
mod memory;
#[cfg(feature = "etcd-tests")]
mod multihost;
mod overhead;
mod pueue;
mod queue;
mod scale;
mod stats;
mod util;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Benchmarks jobwatch against the plain pattern and pueue.
#[derive(Debug, Parser)]
#[command(name = "compare")]
pub struct Opts {
    /// Runs of each cheap measurement.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Runs of jobwatch's inotify wait (cheap: enough for a real p99).
    #[arg(long, default_value_t = 200)]
    inotify_runs: usize,
    /// Runs of the plain pattern polling every 15 s (each takes ~15 s).
    #[arg(long, default_value_t = 4)]
    slow_runs: usize,
    /// Runs of each hang-detection measurement.
    #[arg(long, default_value_t = 10)]
    hang_runs: usize,
    /// Stale threshold for the hang-detection runs.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    stale: Duration,
    /// How long the idle job runs for the wrapper overhead figures.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// How long one `wait --all` watches the running jobs.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    scale_wait: Duration,
    /// Running (sleeping, detached) jobs for the `wait --all` CPU figure.
    #[arg(long, default_value_t = 1000)]
    running: usize,
    /// Idle detached jobs whose wrappers' total CPU is measured.
    #[arg(long, value_delimiter = ',', default_value = "300,1000")]
    idle_jobs: Vec<usize>,
    /// How long the idle jobs' wrappers are measured.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    /// The CPU samplers measured over the idle jobs: `full-scan` (the old
    /// one, a full /proc scan at every sample) and `new`.
    #[arg(long, value_delimiter = ',', default_value = "full-scan,new")]
    idle_samplers: Vec<String>,
    /// Running jobs whose wrappers' memory is read (0: none), once with
    /// the lean `jobwatch-wrapper` and once with `jobwatch __wrapper`.
    #[arg(long, default_value_t = 100)]
    memory_jobs: usize,
    /// Finished-job counts for the `status`/`ls` figures.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    finished: Vec<usize>,
    /// Trivial jobs for the queue section: through a slot of 8 beside GNU
    /// parallel and pueue, then queued behind a taken slot (0: skip it).
    #[arg(long, default_value_t = 10_000)]
    queued_jobs: usize,
    /// Runs of the cross-host completion detection (etcd section).
    #[arg(long, default_value_t = 30)]
    etcd_runs: usize,
    /// Host crashes timed to `lost` (etcd section; each takes ~10 s).
    #[arg(long, default_value_t = 3)]
    etcd_lost_runs: usize,
    /// How long each job runs while its etcd writes are counted.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    etcd_writes_for: Duration,
    /// Directory holding `pueue` and `pueued`; pueue rows are skipped without it.
    #[arg(long)]
    pueue_bin: Option<PathBuf>,
    /// Only these sections (latency, hang, overhead, scale, idle-jobs,
    /// memory, etcd: built with `--features etcd-tests`, queue).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Helper modes used by the timed jobs themselves.
    #[arg(long, hide = true, num_args = 1)]
    emit_exit_time: Option<PathBuf>,
    #[arg(long, hide = true, num_args = 1)]
    print_then_hang: Option<PathBuf>,
    #[arg(long, hide = true, num_args = 1)]
    burn_then_hang: Option<PathBuf>,
    /// Ignored: cargo passes `--bench` to bench binaries.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let opts = Opts::parse();
    if let Some(p) = &opts.emit_exit_time {
        util::write_now(p);
        return;
    }
    if let Some(p) = &opts.print_then_hang {
        util::print_then_hang(p);
    }
    if let Some(p) = &opts.burn_then_hang {
        util::burn_then_hang(p);
    }
    let wants = |s: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == s);
    let ctx = util::Ctx::new(&opts);
    type Section = fn(&util::Ctx, &Opts) -> Vec<stats::Row>;
    let sections: &[(&str, Section)] = &[
        ("latency", latency::run),
        ("hang", hang::run),
        ("overhead", overhead::run),
        ("scale", scale::run),
        ("idle-jobs", idle_jobs::run),
        ("memory", memory::run),
        #[cfg(feature = "etcd-tests")]
        ("etcd", multihost::run),
        // Last: it makes this process a child subreaper.
        ("queue", queue::run),
    ];
    println!();
    stats::print_header();
    let mut failed = Vec::new();
    for (name, run) in sections.iter().filter(|(name, _)| wants(name)) {
        // A section that panics (a machine too loaded for its set-up, a
        // tool that misbehaves) is reported in its own row; the sections
        // before it are printed already and the ones after it still run.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&ctx, &opts))) {
            Ok(rows) => stats::print_rows(&rows),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                stats::print_rows(&[stats::Row {
                    section: "failed section",
                    label: name.to_string(),
                    value: stats::Value::Note(format!("did not finish: {why}")),
                    baseline: None,
                }]);
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        eprintln!("bench: these sections failed: {}", failed.join(", "));
        std::process::exit(1);
    }
}
