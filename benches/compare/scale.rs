//! Scale: `status` and `ls` over thousands of finished jobs in one
//! directory, and the CPU one `wait --all` spends watching many running jobs.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use jobwatch_core::model::{
    Finalizer, JobEnd, JobName, JobRecord, LivenessMode, Outcome, Settings,
};
use jobwatch_core::store::file::protocol::status_file::status_content;
use jobwatch_core::supervise::record_held_by;
use jobwatch_core::sys::proc::ProcessId;

use crate::Opts;
use crate::stats::{Row, Value};
use crate::util::{Ctx, note, poll};

const SECTION: &str = "4. scale";

/// Finished-job listings for each size, then the running-jobs waiter.
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in &opts.finished {
        let dir = ctx.dir(&format!("finished-{n}"));
        note(&format!("scale: synthesizing {n} finished jobs"));
        synthesize(&dir, n);
        let runs = if n >= 5000 { 10 } else { 20 };
        for (cmd, args) in [
            ("status", &["status", "--json"][..]),
            ("ls", &["ls", "--json"][..]),
        ] {
            note(&format!("scale: `{cmd}` of {n} jobs"));
            let samples = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    let st = ctx.jw(&dir, args).status().expect("status");
                    assert!(st.success(), "{cmd} failed");
                    t.elapsed()
                })
                .collect();
            rows.push(Row {
                section: SECTION,
                label: format!("`{cmd} --json` of {n} finished jobs"),
                value: Value::Times(samples),
                baseline: None,
            });
        }
    }
    if opts.running > 0 {
        rows.extend(waiting_on_running(ctx, opts.running, opts.scale_wait));
    }
    rows
}

/// Writes `n` finished jobs' files as a wrapper would leave them (without
/// the fsyncs: only the content matters to a reader).
fn synthesize(dir: &Path, n: usize) {
    let now = SystemTime::now();
    for i in 0..n {
        let name = format!("job{i:05}");
        let outcome = if i % 10 == 0 {
            Outcome::Failed
        } else {
            Outcome::Success
        };
        let wrapper = ProcessId {
            pid: 1_000_000 + i as i32,
            start_time: 1,
        };
        let started = now - Duration::from_secs(60);
        let job_id = format!("00000000-0000-0000-0000-{i:012}");
        let job_name = JobName::parse(&name).expect("a valid name");
        let mut record = JobRecord {
            command: vec!["make".into(), "-j8".into()],
            cwd: "/src".into(),
            child_pid: Some(2_000_000 + i as i32),
            child_start_time: Some(2),
            pgid: Some(2_000_000 + i as i32),
            settings: Settings {
                heartbeat_ms: 10_000,
                stale_ms: 60_000,
                timeout_ms: None,
                grace_ms: 5_000,
                liveness: LivenessMode::Auto,
                retries: 0,
                backoff_ms: 0,
                backoff_max_ms: 0,
            },
            attempt: 1,
            max_attempts: 1,
            ..record_held_by(&job_name, job_id, None, wrapper, started)
        };
        let end = JobEnd {
            outcome,
            exit_code: Some(if outcome == Outcome::Success { 0 } else { 2 }),
            signal: None,
            reason: None,
        };
        record.finish(&end, Finalizer::Wrapper, now);
        let file = |suffix: &str| dir.join(format!("{name}{suffix}"));
        let mut json = serde_json::to_vec_pretty(&record).expect("record JSON");
        json.push(b'\n');
        std::fs::write(file(".job.json"), json).expect("record");
        std::fs::write(file(".log"), b"building\ndone\n").expect("log");
        std::fs::write(file(".heartbeat"), b"").expect("heartbeat");
        std::fs::write(file(".pid"), format!("{}\n", 2_000_000 + i)).expect("pid");
        std::fs::write(file(".lock"), b"").expect("lock");
        std::fs::write(file(".status"), status_content(&record, outcome)).expect("status");
    }
}

/// Starts `n` detached sleeping jobs, then measures the CPU one
/// `wait --all` uses over `watch`, and ends the jobs.
fn waiting_on_running(ctx: &Ctx, n: usize, watch: Duration) -> Vec<Row> {
    let dir = ctx.dir("running");
    note(&format!("scale: starting {n} detached sleeping jobs"));
    let names: Vec<String> = (0..n).map(|i| format!("run{i:04}")).collect();
    let started = Instant::now();
    let mut wrappers = Vec::new();
    for name in &names {
        let out = ctx
            .jw(
                &dir,
                &[
                    "run", name, "--detach", "--stale", "1h", "--", "sleep", "100000",
                ],
            )
            .stdout(Stdio::piped())
            .output()
            .expect("run --detach");
        assert!(out.status.success(), "run --detach {name} failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run JSON");
        wrappers.push(v["wrapper_pid"].as_i64().expect("wrapper_pid") as i32);
    }
    let start_all = started.elapsed();

    note(&format!(
        "scale: one `wait --all` over {n} running jobs for {}",
        humantime::format_duration(watch)
    ));
    let before = children_cpu();
    let mut wait = ctx.jw(&dir, &["wait", "--all", "--no-kill", "--json"]);
    wait.arg("--timeout")
        .arg(format!("{}ms", watch.as_millis()))
        .args(&names);
    let st = wait.status().expect("wait");
    assert_eq!(
        st.code(),
        Some(124),
        "wait --all should time out with every job running"
    );
    let cpu = children_cpu() - before;

    note("scale: ending the running jobs");
    for pid in &wrappers {
        // SAFETY: kill(2) on wrappers this bench started; TERM makes each
        // forward the signal to its job and record `killed`.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    let all_done = poll(Duration::from_secs(120), || {
        names
            .iter()
            .all(|name| dir.join(format!("{name}.status")).exists())
            .then_some(())
    });
    assert!(
        all_done.is_some(),
        "some running jobs did not end after SIGTERM"
    );

    let secs = watch.as_secs_f64();
    vec![
        Row {
            section: SECTION,
            label: format!("`run --detach` of {n} sleeping jobs, one after another (total)"),
            value: Value::Amount {
                value: start_all.as_secs_f64(),
                unit: "s",
            },
            baseline: None,
        },
        Row {
            section: SECTION,
            label: format!("CPU of one `wait --all` over {n} running jobs for {secs:.0} s"),
            value: Value::Amount {
                value: cpu * 1000.0,
                unit: "ms",
            },
            baseline: None,
        },
        Row {
            section: SECTION,
            label: "… as a share of one core".to_owned(),
            value: Value::Amount {
                value: cpu / secs * 100.0,
                unit: "%",
            },
            baseline: None,
        },
    ]
}

/// CPU seconds (user + system) of all reaped children of this process.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}
