//! Hang-detection latency: a job that deadlocks after its last progress →
//! a waiter reports it hung. The figure is the overshoot beyond the stale
//! threshold, measured from the job's own record of its last progress.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::Opts;
use crate::stats::{Row, Value};
use crate::util::{Ctx, JOBWATCH, note, poll, read_time, since};

const SECTION: &str = "2. hang detection (overshoot beyond stale)";

/// jobwatch in output and cpu liveness, then the plain pattern.
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let dir = ctx.dir("hang");
    let stale = opts.stale;
    // The sample interval bounds how late CPU progress is seen; a quarter
    // of the threshold is a typical ratio (the defaults are 10 s / 60 s).
    let heartbeat = stale / 4;
    let mut rows = Vec::new();
    for (mode, helper) in [("output", "--print-then-hang"), ("cpu", "--burn-then-hang")] {
        note(&format!("hang: jobwatch --liveness {mode}"));
        let samples = (0..opts.hang_runs)
            .map(|i| {
                jobwatch(
                    ctx,
                    &dir,
                    &format!("{mode}{i}"),
                    mode,
                    helper,
                    stale,
                    heartbeat,
                )
            })
            .collect();
        rows.push(Row {
            section: SECTION,
            label: format!(
                "jobwatch --liveness {mode} (stale {}, heartbeat {})",
                fmt(stale),
                fmt(heartbeat)
            ),
            value: Value::Times(samples),
            baseline: None,
        });
    }
    note("hang: plain pattern (bounded observation)");
    rows.push(Row {
        section: SECTION,
        label: format!(
            "plain pattern (stale {}, poll 1 s, touch loop 1 s)",
            fmt(stale)
        ),
        value: plain(ctx, &dir, stale),
        baseline: None,
    });
    rows
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn jobwatch(
    ctx: &Ctx,
    dir: &Path,
    name: &str,
    mode: &str,
    helper: &str,
    stale: Duration,
    heartbeat: Duration,
) -> Duration {
    let stamp = dir.join(format!("{name}.progress"));
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut run = ctx.jw(dir, &["run", name, "--detach", "--liveness", mode]);
    run.args([
        "--stale",
        &ms(stale),
        "--heartbeat",
        &ms(heartbeat),
        "--grace",
        "1s",
        "--",
    ])
    .arg(&ctx.me)
    .arg(helper)
    .arg(&stamp);
    assert!(run.status().expect("run").success(), "run --detach failed");
    let out = Command::new(JOBWATCH)
        .arg("--dir")
        .arg(dir)
        .args(["wait", name, "--json"])
        .stderr(Stdio::null())
        .output()
        .expect("wait");
    let returned = SystemTime::now();
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("wait JSON");
    assert_eq!(line["outcome"], "hung", "expected hung: {line}");
    since(read_time(&stamp) + stale, returned)
}

/// The plain pattern's waiter, given a generous window, never reports the
/// deadlocked job: the wrapper's touch loop keeps the heartbeat fresh.
fn plain(ctx: &Ctx, dir: &Path, stale: Duration) -> Value {
    let window = stale * 5;
    let name = "plain-hang";
    let stamp = dir.join(format!("{name}.progress"));
    let stale_secs = stale.as_secs().max(1).to_string();
    let mut wrapper = Command::new("setsid");
    wrapper
        .arg(ctx.plain_script("run.sh"))
        .arg(dir)
        .arg(name)
        .arg(&ctx.me)
        .arg("--print-then-hang")
        .arg(&stamp)
        .env("HEARTBEAT_SECS", "1")
        .stdout(Stdio::null());
    let mut wrapper = wrapper.spawn().expect("plain wrapper");
    poll(Duration::from_secs(10), || stamp.exists().then_some(())).expect("plain job started");
    let mut waiter = Command::new("bash")
        .arg(ctx.plain_script("wait.sh"))
        .arg(dir)
        .arg(name)
        .arg("1")
        .arg(&stale_secs)
        .stderr(Stdio::null())
        .spawn()
        .expect("plain waiter");
    let verdict = poll(window, || waiter.try_wait().ok().flatten());
    let result = match verdict {
        Some(status) if status.code() == Some(3) => {
            let at = SystemTime::now();
            Value::Times(vec![since(read_time(&stamp) + stale, at)])
        }
        Some(status) => Value::Note(format!("waiter ended unexpectedly ({status})")),
        None => Value::Note(format!(
            "never (heartbeat loop keeps it alive; watched {})",
            fmt(window)
        )),
    };
    let _ = waiter.kill();
    let _ = waiter.wait();
    // setsid made the wrapper a session and group leader: end its group.
    // SAFETY: kill(2) on a group we created; a failure only means it is gone.
    unsafe { libc::kill(-(wrapper.id() as i32), libc::SIGKILL) };
    let _ = wrapper.wait();
    result
}
