//! Overhead: the supervisor's memory and CPU over an idle job, and the cost
//! of starting a job.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Opts;
use crate::stats::{Row, Value};
use crate::util::{Ctx, cpu_ns, cpu_ticks, note, poll, proc_status_kb, status_of, ticks_per_sec};

const IDLE: &str = "3a. overhead over an idle job";
const START: &str = "3b. start cost";
const DIRECT: &str = "`true` run directly";

/// Idle-job figures, then start costs (ratios against running `true`).
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let mut rows = idle(ctx, opts.idle);
    rows.extend(start_cost(ctx, opts.runs));
    rows
}

fn amount(section: &'static str, label: String, value: f64, unit: &'static str) -> Row {
    Row {
        section,
        label,
        value: Value::Amount { value, unit },
        baseline: None,
    }
}

fn idle(ctx: &Ctx, duration: Duration) -> Vec<Row> {
    let dir = ctx.dir("idle");
    let secs = duration.as_secs_f64();
    let job = format!("{:.3}", secs + 30.0);
    let mut rows = Vec::new();

    note(&format!(
        "overhead: jobwatch wrapper over a {secs:.0} s idle job"
    ));
    let out = ctx
        .jw(&dir, &["run", "idle", "--detach", "--", "sleep", &job])
        .stdout(Stdio::piped())
        .output()
        .expect("run --detach");
    let started: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    let wrapper = started["wrapper_pid"].as_i64().expect("wrapper_pid") as i32;
    let cpu_before = cpu_seconds(&[wrapper], false);
    std::thread::sleep(duration);
    let (hwm, rss) = memory(&[wrapper]);
    let cpu = cpu_seconds(&[wrapper], false) - cpu_before;
    assert!(status_of(ctx.jw(&dir, &["kill", "idle", "--grace", "1s"])).success());
    rows.push(amount(
        IDLE,
        "jobwatch wrapper: peak RSS (VmHWM)".into(),
        hwm,
        "MB",
    ));
    rows.push(amount(
        IDLE,
        "jobwatch wrapper: RSS at the end (VmRSS)".into(),
        rss,
        "MB",
    ));
    rows.push(amount(
        IDLE,
        format!("jobwatch wrapper: CPU over {secs:.0} s idle (after start)"),
        cpu * 1000.0,
        "ms",
    ));

    note(&format!(
        "overhead: plain-pattern wrapper over a {secs:.0} s idle job"
    ));
    let mut plain = Command::new("setsid");
    plain
        .arg(ctx.plain_script("run.sh"))
        .arg(&dir)
        .arg("plain-idle")
        .args(["sleep", &job])
        .stdout(Stdio::null());
    let mut plain = plain.spawn().expect("plain wrapper");
    let bash = plain.id() as i32;
    let loop_pid = poll(Duration::from_secs(5), || heartbeat_loop(bash)).expect("touch loop");
    let cpu_before = cpu_seconds(&[bash, loop_pid], true);
    std::thread::sleep(duration);
    let (hwm, rss) = memory(&[bash, loop_pid]);
    let cpu = cpu_seconds(&[bash, loop_pid], true) - cpu_before;
    // SAFETY: kill(2) on the session/group setsid created for the wrapper.
    unsafe { libc::kill(-bash, libc::SIGKILL) };
    let _ = plain.wait();
    rows.push(amount(
        IDLE,
        "plain wrapper (bash + touch loop): peak RSS".into(),
        hwm,
        "MB",
    ));
    rows.push(amount(
        IDLE,
        "plain wrapper (bash + touch loop): RSS at the end".into(),
        rss,
        "MB",
    ));
    rows.push(amount(
        IDLE,
        format!("plain wrapper (bash + touch loop): CPU over {secs:.0} s idle"),
        cpu * 1000.0,
        "ms",
    ));

    if let Some(p) = &ctx.pueue {
        let (hwm, rss) = memory(&[p.daemon_pid()]);
        rows.push(amount(
            IDLE,
            "pueued daemon (shared by all tasks): peak RSS".into(),
            hwm,
            "MB",
        ));
        rows.push(amount(
            IDLE,
            "pueued daemon (shared by all tasks): RSS now".into(),
            rss,
            "MB",
        ));
    }
    rows
}

/// The plain wrapper's heartbeat subshell: its child that is not the job.
fn heartbeat_loop(bash: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{bash}/task/{bash}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "bash")
        })
}

/// Summed VmHWM and VmRSS of `pids`, in MB.
fn memory(pids: &[i32]) -> (f64, f64) {
    let sum = |field: &str| {
        pids.iter()
            .map(|&p| proc_status_kb(p, field).expect("process alive"))
            .sum::<u64>() as f64
            / 1024.0
    };
    (sum("VmHWM:"), sum("VmRSS:"))
}

/// CPU seconds used by `pids` (ns resolution), plus, when asked, the
/// children they reaped (the touch loop's `touch` and `sleep` processes,
/// known only in 10 ms ticks).
fn cpu_seconds(pids: &[i32], with_reaped: bool) -> f64 {
    let own: u64 = pids
        .iter()
        .map(|&p| cpu_ns(p).expect("process alive"))
        .sum();
    let reaped: u64 = pids
        .iter()
        .filter(|_| with_reaped)
        .map(|&p| {
            let t = cpu_ticks(p).expect("process alive");
            t[2] + t[3]
        })
        .sum();
    own as f64 / 1e9 + reaped as f64 / ticks_per_sec()
}

fn start_cost(ctx: &Ctx, runs: usize) -> Vec<Row> {
    let dir = ctx.dir("start");
    let mut rows = Vec::new();
    let mut add = |label: &str, samples: Vec<Duration>| {
        rows.push(Row {
            section: START,
            label: label.into(),
            value: Value::Times(samples),
            baseline: (label != DIRECT).then(|| DIRECT.to_owned()),
        })
    };
    note("start cost");
    add(DIRECT, timed(runs, |_| Command::new("true")));
    add(
        "`jobwatch run NAME -- true` (whole run, final files written)",
        timed(runs, |i| {
            let mut c = ctx.jw(&dir, &["run", &format!("fg{i}"), "--", "true"]);
            c.stdout(Stdio::null());
            c
        }),
    );
    add(
        "`jobwatch run NAME --detach -- true` (until started)",
        timed(runs, |i| {
            ctx.jw(&dir, &["run", &format!("bg{i}"), "--detach", "--", "true"])
        }),
    );
    add(
        "plain wrapper `run.sh DIR NAME true` (whole run)",
        timed(runs, |i| {
            let mut c = Command::new("bash");
            c.arg(ctx.plain_script("run.sh"))
                .arg(&dir)
                .arg(format!("plain{i}"))
                .arg("true");
            c
        }),
    );
    if let Some(p) = &ctx.pueue {
        add(
            "`pueue add -- true` (queued, not yet run)",
            timed(runs, |_| p.cmd(&["add", "--", "true"])),
        );
    }
    rows
}

fn timed(runs: usize, mut make: impl FnMut(usize) -> Command) -> Vec<Duration> {
    (0..runs)
        .map(|i| {
            let mut c = make(i);
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let t = Instant::now();
            let st = c.status().expect("spawn");
            let d = t.elapsed();
            assert!(st.success(), "{c:?} failed");
            d
        })
        .collect()
}
