//! Completion-detection latency: the job's last act (its own timestamp) to
//! the waiter returning to its caller.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::Opts;
use crate::stats::{Row, Value};
use crate::util::{Ctx, note, poll, read_time, since, spread, status_of};

const SECTION: &str = "1. completion detection";
const INOTIFY: &str = "jobwatch wait (inotify)";
/// The waiter starts this long before the earliest job end, so the figure
/// is its wake-up delay, not its start-up.
const SETTLE: Duration = Duration::from_millis(300);

/// Runs every waiter; each row's ratio is against jobwatch's inotify wait.
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let dir = ctx.dir("latency");
    let mut rows = Vec::new();
    let mut add = |label: String, samples: Vec<Duration>| {
        rows.push(Row {
            section: SECTION,
            baseline: (label != INOTIFY && !label.starts_with('…')).then(|| INOTIFY.to_owned()),
            label,
            value: Value::Times(samples),
        })
    };
    note("latency: jobwatch wait (inotify)");
    add(
        INOTIFY.into(),
        jobwatch(ctx, &dir, "ino", opts.inotify_runs, None),
    );
    add(
        "… of which: job exit → wrapper's ended_at (ms resolution)".into(),
        wrapper_share(&dir, "ino", opts.inotify_runs),
    );
    note("latency: jobwatch wait --poll 1s");
    add(
        "jobwatch wait --poll 1s".into(),
        jobwatch(ctx, &dir, "poll", opts.runs, Some(Duration::from_secs(1))),
    );
    note("latency: plain pattern, 1 s poll");
    add(
        "plain pattern, poll every 1 s".into(),
        plain(ctx, &dir, "p1", opts.runs, 1),
    );
    if opts.slow_runs > 0 {
        note("latency: plain pattern, 15 s poll (slow)");
        add(
            "plain pattern, poll every 15 s".into(),
            plain(ctx, &dir, "p15", opts.slow_runs, 15),
        );
    }
    if ctx.pueue.is_some() {
        note("latency: pueue wait");
        add(
            "pueue wait (polls every 2 s)".into(),
            pueue(ctx, &dir, opts.runs),
        );
    }
    rows
}

fn jobwatch(
    ctx: &Ctx,
    dir: &Path,
    tag: &str,
    runs: usize,
    poll: Option<Duration>,
) -> Vec<Duration> {
    let span = poll.unwrap_or(Duration::ZERO);
    (0..runs)
        .map(|i| {
            let name = format!("{tag}{i}");
            let stamp = dir.join(format!("{name}.exit"));
            let job = ctx.exiting_job(spread(i, SETTLE, span), &stamp);
            let started =
                status_of(ctx.jw(dir, &["run", &name, "--detach", "--", "sh", "-c", &job]));
            assert!(started.success(), "run --detach failed");
            let mut wait = ctx.jw(dir, &["wait", &name, "--json"]);
            if let Some(p) = poll {
                wait.arg("--poll").arg(format!("{}ms", p.as_millis()));
            }
            timed_wait(wait, &stamp)
        })
        .collect()
}

/// How long the wrapper took to notice each inotify run's exit and clean
/// up (its `ended_at`); the rest is writing the final files and the
/// waiter's wake-up.
fn wrapper_share(dir: &Path, tag: &str, runs: usize) -> Vec<Duration> {
    (0..runs)
        .map(|i| {
            let name = format!("{tag}{i}");
            let record: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.join(format!("{name}.job.json"))).expect("record"),
            )
            .expect("record JSON");
            let ended = humantime::parse_rfc3339(record["ended_at"].as_str().expect("ended_at"))
                .expect("RFC 3339");
            since(read_time(&dir.join(format!("{name}.exit"))), ended)
        })
        .collect()
}

fn plain(ctx: &Ctx, dir: &Path, tag: &str, runs: usize, interval: u64) -> Vec<Duration> {
    (0..runs)
        .map(|i| {
            let name = format!("{tag}-{i}");
            let stamp = dir.join(format!("{name}.exit"));
            let job = ctx.exiting_job(spread(i, SETTLE, Duration::from_secs(interval)), &stamp);
            let mut wrapper = Command::new("bash");
            wrapper
                .arg(ctx.plain_script("run.sh"))
                .arg(dir)
                .arg(&name)
                .args(["sh", "-c", &job])
                .stdout(std::process::Stdio::null());
            let mut wrapper = wrapper.spawn().expect("plain wrapper");
            // Like `run --detach`, the launcher returns once the job's files
            // exist; only then does the poll loop start.
            let pid = dir.join(format!("{name}.pid"));
            poll(Duration::from_secs(10), || pid.exists().then_some(()))
                .expect("plain wrapper started");
            let mut wait = Command::new("bash");
            wait.arg(ctx.plain_script("wait.sh"))
                .arg(dir)
                .arg(&name)
                .arg(interval.to_string());
            let d = timed_wait(wait, &stamp);
            let _ = wrapper.wait();
            d
        })
        .collect()
}

fn pueue(ctx: &Ctx, dir: &Path, runs: usize) -> Vec<Duration> {
    let p = ctx.pueue.as_ref().expect("pueue");
    (0..runs)
        .map(|i| {
            let stamp = dir.join(format!("pueue-{i}.exit"));
            let job = ctx.exiting_job(spread(i, SETTLE, Duration::from_secs(2)), &stamp);
            let id = p.add(&job);
            timed_wait(p.cmd(&["wait", &id]), &stamp)
        })
        .collect()
}

/// Runs the waiter to its return; the latency is from the job's stamp.
fn timed_wait(wait: Command, stamp: &Path) -> Duration {
    let status = status_of(wait);
    let returned = SystemTime::now();
    assert!(status.success(), "a waiter reported failure ({status})");
    since(read_time(stamp), returned)
}
