//! Outcomes under faults: a recorded outcome is never overwritten, an exit
//! that came before a kill request keeps its outcome, a kill request is
//! carried out when its requester dies, `run --detach` tells the truth when
//! its wrapper dies, and a waiter reports the run it waited for.
//!
//! The windows are held open deterministically: strace(1) fault injection
//! (a delayed or SIGKILLed system call), a held `flock`, SIGSTOP.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};
use rustix::process::Signal;
use serde_json::Value;

use crate::support::*;

/// strace(1) with the test's environment, or `None` (saying why) where it
/// is not installed. Under `CI=true`, where .ci/run installs it, a missing
/// strace fails the test instead of letting it pass unrun.
fn strace(env: &Env) -> Option<Command> {
    runnable(crate::support::strace()).map(|()| env.other("strace"))
}

/// Whether a tracer is attached to `pid` (`TracerPid` in its status).
fn is_traced(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .map(|v| v.trim() != "0")
        })
        .unwrap_or(false)
}

/// The job's record as it is now (`None` while it is missing or mid-write).
fn record_now(env: &Env, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(env.file(name, ".job.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits until the job's record holds `outcome` while no status exists:
/// the wrapper is between its two final writes.
#[track_caller]
fn await_recorded_without_status(env: &Env, name: &str, outcome: &str) {
    eventually(
        &format!("{name}'s record says {outcome} and no status exists"),
        || {
            record_now(env, name).is_some_and(|r| r["outcome"] == outcome)
                && env.status_file(name).is_none()
        },
    );
}

/// Waits until `now` is past the point where an observer calls a job with
/// FAST settings hung: the heartbeat's mtime plus stale (1 s), heartbeat
/// (100 ms) and one second, with a margin.
#[track_caller]
fn await_observer_threshold(env: &Env, name: &str) {
    let hb = mtime(&env.file(name, ".heartbeat")).expect("the job has a heartbeat");
    let overdue = hb + Duration::from_millis(2_100 + 300);
    eventually(&format!("{name} is past the observer's threshold"), || {
        SystemTime::now() >= overdue
    });
}

/// `status NAME --json`: the job's state word.
#[track_caller]
fn state_of(env: &Env, name: &str) -> String {
    let out = env.jw(&["status", name, "--json"]);
    json_line(&out)["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no state\n{}", describe(&out)))
        .to_owned()
}

/// An exclusive `flock` on a file, held until dropped (how another process
/// would hold a breaker's lock).
struct HeldLock(#[allow(dead_code)] File);

impl HeldLock {
    fn take(path: &std::path::Path) -> Self {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        flock(file.as_fd(), FlockOperation::LockExclusive).expect("flock");
        Self(file)
    }
}

/// Starts `name` (gated, exit 0), lets it end while strace holds its
/// wrapper in the `renameat2` that creates the status, and SIGKILLs the
/// wrapper there: the record says success, no status exists, no wrapper
/// lives. `None` where strace is missing.
fn wrapper_killed_between_record_and_status(env: &Env, name: &str) -> Option<Detached> {
    let mut tracer = strace(env)?;
    let d = env.detach(name, FAST_TIMER, &env.gated(name, 0));
    tracer
        .args(["-qq", "-f", "-o", "/dev/null", "-p"])
        .arg(d.wrapper_pid.to_string());
    tracer.args([
        "-e",
        "trace=renameat2",
        "-e",
        "inject=renameat2:delay_enter=60000000",
    ]);
    let tracer = ChildGuard::spawn(tracer);
    eventually("strace is attached to the wrapper", || {
        is_traced(d.wrapper_pid)
    });
    env.release(name);
    await_recorded_without_status(env, name, "success");
    signal(d.wrapper_pid, Signal::KILL);
    // A tracee held at a traced stop dies once its tracer lets go.
    drop(tracer);
    eventually("the wrapper is gone", || is_gone(d.wrapper_pid));
    assert_eq!(
        env.status_file(name),
        None,
        "the wrapper died before it created the status"
    );
    Some(d)
}

#[test]
fn a_final_record_whose_wrapper_died_before_the_status_keeps_its_outcome() {
    let env = Env::new();
    let Some(_) = wrapper_killed_between_record_and_status(&env, "rz") else {
        return;
    };
    assert_eq!(
        state_of(&env, "rz"),
        "success",
        "a recorded outcome is the outcome"
    );

    let (out, lines) = env.wait(&["rz", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "rz")["outcome"], "success");
    let status = env
        .status_file("rz")
        .expect("the waiter committed the status");
    assert!(
        status.starts_with("SUCCESS\noutcome=success\n"),
        "status written from the record: {status:?}"
    );
    let record = env.record("rz");
    assert_eq!(record["outcome"], "success", "{record}");
    assert_eq!(
        record["finalized_by"], "wrapper",
        "the record is untouched: {record}"
    );
    assert_eq!(record["exit_code"], 0, "{record}");
}

#[test]
fn reusing_a_name_whose_wrapper_died_before_the_status_archives_the_recorded_outcome() {
    let env = Env::new();
    let Some(_) = wrapper_killed_between_record_and_status(&env, "rr") else {
        return;
    };
    assert_code(&env.run("rr", FAST, &["true"]), 0);
    let history = env.dir.join("history").join("rr");
    let runs: Vec<_> = std::fs::read_dir(&history)
        .expect("history of rr")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let status = std::fs::read_to_string(runs[0].join("rr.status")).expect("archived status");
    assert!(
        status.starts_with("SUCCESS\noutcome=success\n"),
        "the retired run keeps its recorded outcome: {status:?}"
    );
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(runs[0].join("rr.job.json")).unwrap())
            .unwrap();
    assert_eq!(record["outcome"], "success", "{record}");
}

#[test]
fn a_waiter_never_calls_hung_a_job_whose_wrapper_waits_for_its_breaker() {
    let env = Env::new();
    let mut opts = FAST_TIMER.to_vec();
    opts.extend(["--breaker", "bk"]);
    let d = env.detach("bz", &opts, &env.gated("bz", 0));
    // Admission created the breaker's lock file; another process holds it.
    let held = HeldLock::take(&env.dir.join("breakers").join("bk.lock"));
    let mut waiter = env.spawn(&["wait", "bz", "--json"]);
    env.release("bz");
    await_recorded_without_status(&env, "bz", "success");
    await_observer_threshold(&env, "bz");

    assert_eq!(
        state_of(&env, "bz"),
        "running",
        "a live wrapper committing its recorded outcome is not hung"
    );
    assert!(waiter.is_running(), "the waiter waits for the commit");
    assert!(is_alive(d.wrapper_pid), "the wrapper waits for the lock");
    assert!(!env.file("bz", ".kill").exists(), "nobody asked to kill it");

    drop(held);
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(json_line(&out)["outcome"], "success");
    assert_eq!(env.await_status("bz"), "SUCCESS");
    let breaker: Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.join("breakers").join("bk.json")).unwrap(),
    )
    .unwrap();
    let job_id = env.record("bz")["job_id"].clone();
    assert!(
        breaker["counted_runs"]
            .as_array()
            .is_some_and(|runs| runs.contains(&job_id)),
        "the run was counted once the lock was free: {breaker:#}"
    );
}

#[test]
fn a_breaker_lock_held_by_a_stuck_process_does_not_hold_up_the_job_outcome() {
    let env = Env::new();
    let mut opts = FAST_TIMER.to_vec();
    opts.extend(["--breaker", "stuck"]);
    env.detach("sb", &opts, &env.gated("sb", 0));
    let _held = HeldLock::take(&env.dir.join("breakers").join("stuck.lock"));
    env.release("sb");
    // The wrapper's wait for the lock is bounded (10 s).
    let status = {
        let mut s = None;
        wait_until("sb.status exists", Duration::from_secs(40), || {
            s = env.status_file("sb");
            s.is_some()
        });
        s.unwrap()
    };
    assert!(
        status.starts_with("SUCCESS\noutcome=success\n"),
        "{status:?}"
    );
    let (out, lines) = env.wait(&["sb", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "sb")["outcome"], "success");
    // A detached wrapper's stderr is the job's log.
    let log = env.log("sb");
    assert!(
        log.contains("breaker stuck") && log.contains("was held by another process"),
        "the uncounted outcome is reported: {log:?}"
    );
}

#[test]
fn an_exit_before_any_kill_keeps_its_outcome_while_the_wrapper_is_stopped() {
    let env = Env::new();
    let d = env.detach("sz", FAST_TIMER, &env.gated("sz", 0));
    signal(d.wrapper_pid, Signal::STOP);
    env.release("sz");
    eventually(
        "the command has exited (a zombie its wrapper cannot reap)",
        || proc_state(d.pid) == Some('Z'),
    );
    let mut waiter = env.spawn(&["wait", "sz", "--json"]);
    await_observer_threshold(&env, "sz");

    assert_eq!(
        state_of(&env, "sz"),
        "running",
        "a run whose command exited is being finished, not hung"
    );
    assert!(waiter.is_running(), "the waiter waits for the wrapper");
    assert!(!env.file("sz", ".kill").exists(), "nobody asked to kill it");

    signal(d.wrapper_pid, Signal::CONT);
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    let line = json_line(&out);
    assert_eq!(line["outcome"], "success", "{line}");
    let record = env.record("sz");
    assert_eq!(record["outcome"], "success", "{record}");
    assert_eq!(record["exit_code"], 0, "{record}");
}

#[test]
fn a_kill_requested_after_the_command_exited_leaves_the_exit_its_outcome() {
    let env = Env::new();
    let d = env.detach("ez", FAST_TIMER, &env.gated("ez", 0));
    signal(d.wrapper_pid, Signal::STOP);
    env.release("ez");
    eventually("the command has exited", || proc_state(d.pid) == Some('Z'));
    let killer = env.spawn(&["kill", "ez", "--grace", "300ms", "--json"]);
    eventually("the kill request is written", || {
        env.file("ez", ".kill").exists()
    });
    let request: Value =
        serde_json::from_str(&std::fs::read_to_string(env.file("ez", ".kill")).unwrap()).unwrap();
    assert_eq!(request["command_exited"], true, "{request}");
    assert_eq!(request["grace_ms"], 300, "{request}");

    signal(d.wrapper_pid, Signal::CONT);
    let out = killer.finish();
    assert_code(&out, 0);
    assert_eq!(json_line(&out)["outcome"], "success", "{}", describe(&out));
    let record = env.record("ez");
    assert_eq!(
        record["outcome"], "success",
        "the exit came first: {record}"
    );
    assert_eq!(record["exit_code"], 0, "{record}");
    assert_eq!(env.await_status("ez"), "SUCCESS");
}

#[test]
fn a_kill_request_is_carried_out_after_its_requester_is_killed() {
    let env = Env::new();
    let job = sh("trap '' TERM; echo ready; while :; do sleep 0.05; done");
    let d = env.detach("kz", FAST_TIMER, &job);
    eventually("the job ignores TERM and runs", || {
        env.log("kz").contains("ready")
    });
    let killer = env.spawn(&["kill", "kz", "--grace", "2s"]);
    eventually("the kill request is written", || {
        env.file("kz", ".kill").exists()
    });
    signal(killer.pid(), Signal::KILL);
    drop(killer);

    // The wrapper sends SIGKILL itself once the request's grace is over.
    assert_eq!(env.await_status("kz"), "FAILED");
    let record = env.record("kz");
    assert_eq!(record["outcome"], "killed", "{record}");
    assert_eq!(record["reason"], "killed by jobwatch kill", "{record}");
    assert_eq!(record["signal"], 9, "{record}");
    assert_all_gone(&[("job", d.pid), ("wrapper", d.wrapper_pid)]);
    let (out, lines) = env.wait(&["kz", "--json"]);
    assert_code(&out, exit::KILLED);
    assert_eq!(line_for(&lines, "kz")["outcome"], "killed");
}

/// `run NAME --detach -- sleep 300` under strace, which SIGKILLs the
/// detached wrapper as it enters its `nth` rename onto the job file
/// `suffix` (strace counts per process, and `-P` limits it to that file):
/// `.heartbeat` 1 comes before the command is spawned, `.job.json` 2 after
/// it (the record without the child), `.pid` 1 after the record names the
/// child. The `run --detach` that finishes the run never renames onto a
/// `.pid` or `.heartbeat`, and onto the record only once.
fn detach_whose_wrapper_dies_renaming(
    env: &Env,
    name: &str,
    suffix: &str,
    nth: u32,
) -> Option<ChildGuard> {
    let mut tracer = strace(env)?;
    std::fs::create_dir_all(&env.dir).expect("jobs dir");
    std::fs::set_permissions(
        &env.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod jobs dir");
    tracer
        .args(["-qq", "-f", "-o", "/dev/null", "-P"])
        .arg(env.file(name, suffix))
        .args(["-e", "trace=/^rename", "-e"])
        .arg(format!("inject=/^rename:signal=KILL:when={nth}"))
        .arg(bin())
        .arg("--dir")
        .arg(&env.dir)
        .args([
            "run", name, "--detach", "--grace", "300ms", "--", "sleep", "300",
        ]);
    Some(ChildGuard::spawn(tracer))
}

#[test]
fn run_detach_whose_wrapper_dies_after_spawning_reports_a_lost_run_and_kills_it() {
    for (suffix, nth, name) in [(".job.json", 2, "dr"), (".pid", 1, "dp")] {
        let env = Env::new();
        let Some(run) = detach_whose_wrapper_dies_renaming(&env, name, suffix, nth) else {
            return;
        };
        // strace ends only when every process it traces has: the command
        // must have been killed for it to return.
        let out = run.finish();
        assert_code(&out, exit::LOST);
        let err = stderr(&out);
        assert!(
            err.contains("died after starting the command") && err.contains("lost"),
            "{suffix}: {}",
            describe(&out)
        );
        assert!(stdout(&out).is_empty(), "no start line: {}", describe(&out));
        assert_eq!(state_of(&env, name), "lost", "{suffix}");
        let record = env.record(name);
        assert_eq!(record["finalized_by"], "waiter", "{suffix}: {record}");
        assert_eq!(env.await_status(name), "FAILED");
        assert!(
            env.tagged_processes().is_empty(),
            "{suffix}: the command was killed"
        );
    }
}

#[test]
fn run_detach_whose_wrapper_dies_before_spawning_says_the_job_never_started() {
    let env = Env::new();
    let Some(run) = detach_whose_wrapper_dies_renaming(&env, "dh", ".heartbeat", 1) else {
        return;
    };
    let out = run.finish();
    assert_code(&out, exit::USAGE);
    assert!(
        stderr(&out).contains("exited before the job started"),
        "{}",
        describe(&out)
    );
    // Its record is not left looking like a run that may still go: it is
    // finished, as lost, with nothing to kill.
    assert_eq!(state_of(&env, "dh"), "lost");
    assert!(
        env.status_file("dh").is_some_and(|s| s.starts_with(
            "FAILED
outcome=lost
"
        )),
        "the dead start is finished: {:?}",
        env.status_file("dh")
    );
    assert_eq!(env.record("dh")["child_pid"], Value::Null);
}

/// Whether `pid`'s main thread is blocked in ppoll(2) (how the waiter
/// sleeps, on every architecture): a waiter that has taken its first look
/// and sleeps until something changes.
fn is_blocked_in_poll(pid: i32) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let nr: Option<i64> = s.split_whitespace().next().and_then(|n| n.parse().ok());
    #[allow(clippy::useless_conversion)]
    let ppoll = i64::from(libc::SYS_ppoll);
    nr == Some(ppoll)
}

#[test]
fn a_waiter_reports_the_run_it_waited_for_when_the_name_restarts_before_it_looks() {
    let env = Env::new();
    for round in 0..10 {
        let gate = format!("w{round}");
        let first = env.detach("wz", FAST_TIMER, &env.gated(&gate, 3));
        let waiter = env.spawn(&["wait", "wz", "--json"]);
        eventually("the waiter has looked and sleeps", || {
            is_blocked_in_poll(waiter.pid())
        });
        // Hold the waiter still while the first run ends and a second one
        // runs to success under the same name.
        signal(waiter.pid(), Signal::STOP);
        env.release(&gate);
        assert_eq!(env.await_status("wz"), "FAILED");
        assert_code(&env.run("wz", FAST, &["true"]), 0);
        signal(waiter.pid(), Signal::CONT);

        let out = waiter.finish();
        assert_code(&out, exit::FAILED);
        let line = json_line(&out);
        assert_eq!(line["outcome"], "failed", "round {round}: {line}");
        assert_eq!(line["exit_code"], 3, "round {round}: {line}");
        assert!(is_gone(first.pid));
    }
}
