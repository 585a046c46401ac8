//! Idle jobs at scale: the CPU that the wrappers of many idle, detached
//! jobs use together, with this build's CPU sampler and with the old one (a
//! full `/proc` scan at every sample, which the wrapper still does when
//! `JOBWATCH_CPU_SAMPLER=full-scan` is in its environment).
//!
//! Each job runs `sleep` with the default settings (heartbeat 10 s, `auto`
//! liveness) except `--stale 2h`, so that no job is killed as hung while it
//! is measured. The window starts one heartbeat and a second after the last
//! job started, so every wrapper is past its start; the figure is the sum of
//! the wrappers' CPU clocks (ns, all threads) over the window.
//!
//! Every job is ended at the end, also when the bench fails: the guard
//! below sends SIGTERM to each wrapper, waits for the statuses, then
//! SIGKILLs whatever is left. Should the bench itself be killed, each job
//! times out after an hour ([`LIFETIME`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use jobwatch_core::sys::cpu::{SAMPLER_ENV, process_cpu_clock_ns};
use jobwatch_core::sys::proc::{ProcessId, identify};
use jobwatch_core::sys::signal::{signal_group, signal_process};
use rustix::process::Signal;

use crate::Opts;
use crate::stats::{Row, Value};
use crate::util::{Ctx, note, poll};

const SECTION: &str = "5. idle jobs (`sleep`, defaults but `--stale 2h`)";
/// The default heartbeat: every wrapper has sampled once more after it.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Each job's `--timeout`: its `sleep infinity` outlives any window (a
/// thousand starts on a loaded machine took minutes), and the jobs of a
/// bench that was killed before it could end them still end by themselves.
const LIFETIME: &str = "1h";

/// The sampler a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sampler {
    /// A full `/proc` scan at every sample (`JOBWATCH_CPU_SAMPLER=full-scan`).
    FullScan,
    /// This build's default.
    Default,
}

impl Sampler {
    fn parse(s: &str) -> Self {
        match s {
            "full-scan" => Sampler::FullScan,
            "new" => Sampler::Default,
            other => panic!("--idle-samplers takes full-scan and new, not {other:?}"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sampler::FullScan => "full /proc scan per sample (old sampler)",
            Sampler::Default => "this sampler",
        }
    }
}

/// For each job count, the old sampler's figure then this one's.
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let samplers: Vec<Sampler> = opts
        .idle_samplers
        .iter()
        .map(|s| Sampler::parse(s))
        .collect();
    let mut rows = Vec::new();
    for &n in &opts.idle_jobs {
        for &sampler in &samplers {
            rows.extend(measure(ctx, n, sampler, opts.idle_window, &samplers));
        }
    }
    rows
}

fn measure(
    ctx: &Ctx,
    n: usize,
    sampler: Sampler,
    window: Duration,
    samplers: &[Sampler],
) -> Vec<Row> {
    let dir = ctx.dir(&format!("idle-{n}-{sampler:?}"));
    let secs = window.as_secs_f64();
    note(&format!("idle jobs: starting {n} ({})", sampler.label()));
    let mut jobs = Jobs::new(&dir);
    for i in 0..n {
        let name = format!("idle{i:04}");
        let mut cmd = ctx.jw(
            &dir,
            &[
                "run",
                &name,
                "--detach",
                "--stale",
                "2h",
                "--timeout",
                LIFETIME,
                "--",
                "sleep",
                "infinity",
            ],
        );
        cmd.stdout(Stdio::piped());
        match sampler {
            Sampler::FullScan => cmd.env(SAMPLER_ENV, "full-scan"),
            Sampler::Default => cmd.env_remove(SAMPLER_ENV),
        };
        let out = cmd.output().expect("run --detach");
        assert!(out.status.success(), "run --detach {name} failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run JSON");
        let pid = |key: &str| v[key].as_i64().expect(key) as i32;
        jobs.add(name, pid("wrapper_pid"), pid("pid"));
    }

    note(&format!(
        "idle jobs: {n} started; settling for one heartbeat, then measuring {secs:.0} s"
    ));
    std::thread::sleep(HEARTBEAT + Duration::from_secs(1));
    let load_before = load_average();
    let machine_before = machine_ticks();
    let before = jobs.wrapper_cpu_ns();
    let started = Instant::now();
    std::thread::sleep(window);
    let after = jobs.wrapper_cpu_ns();
    let elapsed = started.elapsed().as_secs_f64();
    let machine = machine_ticks().busy_since(machine_before);
    let load_after = load_average();
    note("idle jobs: ending them");
    jobs.end_all();
    let cpu_s = match (before, after) {
        (Ok(before), Ok(after)) => after.saturating_sub(before) as f64 / 1e9,
        (Err(gone), _) | (_, Err(gone)) => {
            return vec![Row {
                section: SECTION,
                label: format!("{n} idle jobs, {}", sampler.label()),
                value: Value::Note(format!("not measured: {gone} during the window")),
                baseline: None,
            }];
        }
    };

    let label = format!(
        "{n} idle jobs, {}: CPU of all wrappers over {secs:.0} s",
        sampler.label()
    );
    let baseline =
        (sampler == Sampler::Default && samplers.contains(&Sampler::FullScan)).then(|| {
            format!(
                "{n} idle jobs, {}: CPU of all wrappers over {secs:.0} s",
                Sampler::FullScan.label()
            )
        });
    vec![
        Row {
            section: SECTION,
            label,
            value: Value::Amount {
                value: cpu_s * 1000.0,
                unit: "ms",
            },
            baseline,
        },
        Row {
            section: SECTION,
            label: format!("{n} idle jobs, {}: share of one core", sampler.label()),
            value: Value::Amount {
                value: cpu_s / elapsed * 100.0,
                unit: "%",
            },
            baseline: None,
        },
        Row {
            section: SECTION,
            label: format!("{n} idle jobs, {}: the machine meanwhile", sampler.label()),
            value: Value::Note(format!(
                "{machine:.0} % of all cores busy; load average {load_before} at the start, {load_after} at the end"
            )),
            baseline: None,
        },
    ]
}

/// The machine's CPU time so far (all cores), from `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy)]
struct MachineTicks {
    busy: u64,
    total: u64,
}

impl MachineTicks {
    /// The share of all cores busy since `before`, in percent.
    fn busy_since(self, before: MachineTicks) -> f64 {
        let total = self.total.saturating_sub(before.total).max(1);
        self.busy.saturating_sub(before.busy) as f64 / total as f64 * 100.0
    }
}

fn machine_ticks() -> MachineTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    MachineTicks {
        busy: total.saturating_sub(idle),
        total,
    }
}

/// The 1-minute load average, as `/proc/loadavg` gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The jobs a run started; all of them are ended when this is dropped, on
/// success and on panic alike.
pub struct Jobs {
    dir: PathBuf,
    jobs: Vec<Job>,
}

struct Job {
    name: String,
    wrapper: Option<ProcessId>,
    leader: Option<ProcessId>,
}

impl Jobs {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            jobs: Vec::new(),
        }
    }

    pub fn add(&mut self, name: String, wrapper: i32, leader: i32) {
        self.jobs.push(Job {
            name,
            wrapper: identify(wrapper),
            leader: identify(leader),
        });
    }

    /// The summed CPU clocks of the wrappers; every one must still run,
    /// else the error names the first that does not.
    fn wrapper_cpu_ns(&self) -> Result<u64, String> {
        self.jobs
            .iter()
            .map(|j| {
                j.wrapper
                    .and_then(|w| process_cpu_clock_ns(w.pid))
                    .ok_or_else(|| format!("the wrapper of {} ended", j.name))
            })
            .sum()
    }

    fn ended(&self, job: &Job) -> bool {
        self.dir.join(format!("{}.status", job.name)).exists()
    }

    /// SIGTERM to every wrapper (it forwards it and records `killed`), a
    /// wait for the statuses, then SIGKILL to whatever is left; a batch at
    /// a time, because every ending wrapper scans `/proc` to find its job's
    /// processes, and a thousand at once would stall the machine.
    pub fn end_all(&mut self) {
        let jobs = std::mem::take(&mut self.jobs);
        for batch in jobs.chunks(END_BATCH) {
            self.end_batch(batch);
        }
    }

    fn end_batch(&self, batch: &[Job]) {
        for job in batch.iter().filter(|j| !self.ended(j)) {
            if let Some(w) = job.wrapper {
                signal_process(w, Signal::TERM);
            }
        }
        let ended = poll(Duration::from_secs(60), || {
            batch.iter().all(|j| self.ended(j)).then_some(())
        });
        if ended.is_some() {
            return;
        }
        note("idle jobs: some did not end after SIGTERM; killing them");
        for job in batch.iter().filter(|j| !self.ended(j)) {
            if let Some(leader) = job.leader {
                signal_group(leader, Signal::KILL);
            }
            if let Some(w) = job.wrapper {
                signal_process(w, Signal::KILL);
            }
        }
    }
}

/// How many jobs are ended at once.
const END_BATCH: usize = 50;

impl Drop for Jobs {
    fn drop(&mut self) {
        self.end_all();
    }
}
