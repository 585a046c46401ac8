//! Many jobs at once, daemonless (issue 13): N trivial jobs as one
//! `jobwatch batch` of concurrency 8, and through a slot of 8 (`run
//! --detach --slot bench:8` each, then one `wait`), beside GNU
//! parallel (`parallel -j8 --joblog`) and pueue (`pueue parallel 8`, `add`
//! each, `wait`): wall time and CPU of everything involved, every job's
//! outcome recorded by each tool. Then what N jobs cost while they wait
//! `queued` behind a slot that is taken: processes, memory, disk, the
//! time to queue one, and `status` over them.
//!
//! CPU is the bench's children's (`getrusage(RUSAGE_CHILDREN)`), with the
//! bench made a child subreaper so that detached wrappers, once orphaned,
//! are its children and counted when reaped; pueue's daemon is measured
//! from `/proc` on top of its clients.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Opts;
use crate::stats::{Row, Value};
use crate::util::{Ctx, JOBWATCH, cpu_ns, note, poll, proc_status_kb, status_of};

const SECTION: &str = "6. queued jobs";
/// The slot size of the throughput comparison.
const SLOTS: usize = 8;

/// The throughput comparison, then the cost of waiting jobs.
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let n = opts.queued_jobs;
    if n == 0 {
        return Vec::new();
    }
    become_subreaper();
    let keep = ctx.pueue.as_ref().map(|p| p.daemon_pid());
    let mut rows = Vec::new();
    rows.extend(through_a_batch(ctx, n, keep));
    rows.extend(through_a_slot(ctx, n, keep));
    rows.extend(gnu_parallel(ctx, n, keep));
    rows.extend(pueue(ctx, n, keep));
    rows.extend(queued_cost(ctx, n, keep));
    rows
}

fn baseline(n: usize) -> Option<String> {
    Some(label("GNU parallel -j8 --joblog", n, "wall"))
}

fn label(tool: &str, n: usize, what: &str) -> String {
    format!("{n} × `true` at concurrency {SLOTS}, {tool}: {what}")
}

/// Wall time and CPU (ms) of one tool's run, as two rows.
fn timed(tool: &str, n: usize, wall: Duration, cpu: Duration) -> Vec<Row> {
    vec![
        Row {
            section: SECTION,
            label: label(tool, n, "wall"),
            value: Value::Times(vec![wall]),
            baseline: baseline(n),
        },
        Row {
            section: SECTION,
            label: label(tool, n, "CPU (all processes)"),
            value: Value::Amount {
                value: cpu.as_secs_f64() * 1000.0,
                unit: "ms",
            },
            baseline: Some(label("GNU parallel -j8 --joblog", n, "CPU (all processes)")),
        },
    ]
}

/// `jobwatch batch` of a plan of N `true` jobs at concurrency 8 (the
/// issue's comparison: a supervised batch beside GNU parallel), every
/// outcome recorded as a job's files.
fn through_a_batch(ctx: &Ctx, n: usize, keep: Option<i32>) -> Vec<Row> {
    let dir = ctx.dir("queue-batch");
    let plan = dir.with_extension("yaml");
    let yaml = format!(
        "concurrency: {SLOTS}\nrepeat: {n}\njobs:\n  t:\n    name: \"b{{repeat}}\"\n    run: [\"true\"]\n"
    );
    std::fs::write(&plan, yaml).expect("write the batch plan");
    note(&format!(
        "queue: {n} jobs through jobwatch batch (concurrency {SLOTS})"
    ));
    let cpu0 = children_cpu();
    let t = Instant::now();
    let mut batch = ctx.jw(&dir, &["batch", "--json"]);
    batch.arg(&plan).stdout(Stdio::null());
    assert!(status_of(batch).success(), "a batch job did not succeed");
    let wall = t.elapsed();
    reap_until_only(keep);
    let cpu = children_cpu().saturating_sub(cpu0);
    let recorded = (1..=n)
        .filter(|i| dir.join(format!("b{i}.status")).exists())
        .count();
    assert_eq!(recorded, n, "every job's outcome is recorded");
    timed("jobwatch batch", n, wall, cpu)
}

fn through_a_slot(ctx: &Ctx, n: usize, keep: Option<i32>) -> Vec<Row> {
    let dir = ctx.dir("queue-slot");
    let names: Vec<String> = (0..n).map(|i| format!("q{i:05}")).collect();
    note(&format!("queue: {n} jobs through --slot bench:{SLOTS}"));
    let cpu0 = children_cpu();
    let t = Instant::now();
    let slot = format!("bench:{SLOTS}");
    for name in &names {
        let st = status_of(ctx.jw(
            &dir,
            &["run", name, "--detach", "--slot", &slot, "--", "true"],
        ));
        assert!(st.success(), "run --slot {name} failed");
    }
    let mut wait = ctx.jw(&dir, &["wait"]);
    wait.args(&names);
    assert!(status_of(wait).success(), "a queued job did not succeed");
    let wall = t.elapsed();
    reap_until_only(keep);
    let cpu = children_cpu().saturating_sub(cpu0);
    let recorded = names
        .iter()
        .filter(|n| dir.join(format!("{n}.status")).exists())
        .count();
    assert_eq!(recorded, n, "every job's outcome is recorded");
    timed("jobwatch run --slot + wait", n, wall, cpu)
}

fn gnu_parallel(ctx: &Ctx, n: usize, keep: Option<i32>) -> Vec<Row> {
    let works = Command::new("parallel")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        return vec![Row {
            section: SECTION,
            label: label("GNU parallel -j8 --joblog", n, "wall"),
            value: Value::Note("GNU parallel is not installed (apt-get install parallel)".into()),
            baseline: None,
        }];
    }
    note(&format!("queue: {n} jobs through GNU parallel -j{SLOTS}"));
    let dir = ctx.dir("queue-parallel");
    let joblog = dir.join("joblog");
    let cpu0 = children_cpu();
    let t = Instant::now();
    let mut c = Command::new("parallel");
    c.arg(format!("-j{SLOTS}"))
        .arg("--joblog")
        .arg(&joblog)
        .arg("true")
        .arg(":::")
        .args((0..n).map(|i| i.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    assert!(status_of(c).success(), "GNU parallel failed");
    let wall = t.elapsed();
    reap_until_only(keep);
    let cpu = children_cpu().saturating_sub(cpu0);
    let logged = std::fs::read_to_string(&joblog)
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0);
    assert_eq!(logged, n, "every job's outcome is in the joblog");
    timed("GNU parallel -j8 --joblog", n, wall, cpu)
}

fn pueue(ctx: &Ctx, n: usize, keep: Option<i32>) -> Vec<Row> {
    let Some(p) = &ctx.pueue else {
        return vec![Row {
            section: SECTION,
            label: label("pueue add + wait", n, "wall"),
            value: Value::Note("pueue not installed".into()),
            baseline: None,
        }];
    };
    note(&format!("queue: {n} jobs through pueue (parallel {SLOTS})"));
    let group = "jwbench";
    let _ = status_of(p.cmd(&["group", "add", group]));
    assert!(status_of(p.cmd(&["parallel", "--group", group, &SLOTS.to_string()])).success());
    let daemon0 = cpu_ns(p.daemon_pid()).unwrap_or(0);
    let cpu0 = children_cpu();
    let t = Instant::now();
    for _ in 0..n {
        let st = status_of(p.cmd(&["add", "--group", group, "--", "true"]));
        assert!(st.success(), "pueue add failed");
    }
    assert!(status_of(p.cmd(&["wait", "--group", group])).success());
    let wall = t.elapsed();
    reap_until_only(keep);
    let daemon = cpu_ns(p.daemon_pid()).unwrap_or(0).saturating_sub(daemon0);
    let cpu = children_cpu().saturating_sub(cpu0) + Duration::from_nanos(daemon);
    let _ = status_of(p.cmd(&["clean", "--group", group]));
    timed("pueue add + wait", n, wall, cpu)
}

/// N jobs queued behind a slot of 1 held by a sleeping job: what they cost
/// while they wait.
fn queued_cost(ctx: &Ctx, n: usize, keep: Option<i32>) -> Vec<Row> {
    let dir = ctx.dir("queue-waiting");
    note(&format!("queue: {n} jobs waiting behind a taken slot"));
    assert!(
        status_of(ctx.jw(
            &dir,
            &[
                "run", "head", "--detach", "--slot", "hold:1", "--", "sleep", "3600"
            ]
        ))
        .success()
    );
    let cpu0 = children_cpu();
    let t = Instant::now();
    for i in 0..n {
        let name = format!("w{i:05}");
        let st = status_of(ctx.jw(
            &dir,
            &["run", &name, "--detach", "--slot", "hold", "--", "true"],
        ));
        assert!(st.success(), "queuing {name} failed");
    }
    let submit = t.elapsed();
    let cpu = children_cpu().saturating_sub(cpu0);
    let processes = jobwatch_processes();
    let rss_kb: u64 = processes
        .iter()
        .filter_map(|&p| proc_status_kb(p, "VmRSS:"))
        .sum();
    let disk = dir_bytes(&dir.join("queued")) + dir_bytes(&dir.join("queues"));
    let status_samples: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut c = ctx.jw(&dir, &["status", "--json"]);
            c.stdout(Stdio::null());
            status_of(c);
            t.elapsed()
        })
        .collect();
    // The head's wrapper and command die without a dispatch: nothing queued
    // ever starts, and the scratch directory goes with the bench.
    kill_head(&dir);
    reap_until_only(keep);
    let per = |d: Duration| Value::Amount {
        value: d.as_secs_f64() * 1000.0 / n as f64,
        unit: "ms per job",
    };
    vec![
        Row {
            section: SECTION,
            label: format!("{n} jobs queued behind a taken slot: processes (all jobwatch)"),
            value: Value::Amount {
                value: processes.len() as f64,
                unit: "processes (the slot's holder only)",
            },
            baseline: None,
        },
        Row {
            section: SECTION,
            label: format!("{n} jobs queued: RSS of every jobwatch process"),
            value: Value::Amount {
                value: rss_kb as f64 / 1024.0,
                unit: "MiB",
            },
            baseline: None,
        },
        Row {
            section: SECTION,
            label: format!("{n} jobs queued: state on disk (queued/ + queues/)"),
            value: Value::Amount {
                value: disk as f64 / 1024.0 / n as f64,
                unit: "KiB per job",
            },
            baseline: None,
        },
        Row {
            section: SECTION,
            label: format!("{n} jobs queued: `run --detach --slot`, wall"),
            value: per(submit),
            baseline: None,
        },
        Row {
            section: SECTION,
            label: format!("{n} jobs queued: `run --detach --slot`, CPU"),
            value: per(cpu),
            baseline: None,
        },
        Row {
            section: SECTION,
            label: format!("`status --json` with {n} jobs queued"),
            value: Value::Times(status_samples),
            baseline: None,
        },
    ]
}

fn kill_head(dir: &Path) {
    let record: serde_json::Value = std::fs::read(dir.join("head.job.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for key in ["wrapper_pid", "child_pid"] {
        if let Some(pid) = record[key].as_i64() {
            // SAFETY: kill(2) with a PID read from the head's own record.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Processes running this bench's jobwatch binary.
fn jobwatch_processes() -> Vec<i32> {
    let me = std::fs::canonicalize(JOBWATCH).unwrap_or_else(|_| JOBWATCH.into());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == me))
        .collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Orphaned descendants (detached wrappers) become this process's
/// children, so their CPU is counted once they are reaped.
fn become_subreaper() {
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// User and system CPU of the reaped children.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Reaps children until none is left but `keep` (pueue's daemon).
fn reap_until_only(keep: Option<i32>) {
    let me = std::process::id() as i32;
    let done = poll(Duration::from_secs(120), || {
        loop {
            // SAFETY: waitpid on any child, not blocking.
            let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if Some(pid) == keep {
                note("pueued exited during the bench");
            }
        }
        (children_of(me).iter().all(|&p| Some(p) == keep)).then_some(())
    });
    if done.is_none() {
        note("queue: children still running after 120 s; their CPU is not counted");
    }
}

fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s[s.rfind(')')? + 2..].to_owned();
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
