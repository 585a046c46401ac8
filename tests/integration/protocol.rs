//! The on-disk file protocol: what a plain shell script or another tool can
//! rely on.

use std::fs;

use serde_json::Value;

use crate::support::*;

/// Knows only the plain protocol: waits for `NAME.status`, reads `NAME.pid`
/// and the first status line.
const PLAIN_WAITER: &str = r#"
D="$T/jobs"; N="$1"
while [ ! -e "$D/$N.status" ]; do sleep 0.02; done
pid=$(cat "$D/$N.pid")
IFS= read -r first < "$D/$N.status"
echo "$first $pid"
[ "$first" = SUCCESS ]
"#;

fn plain_waiter(env: &Env, name: &str) -> ChildGuard {
    let script = env.script("plain-waiter.sh", PLAIN_WAITER);
    let mut cmd = env.other("sh");
    cmd.arg(script).arg(name);
    ChildGuard::spawn(cmd)
}

#[test]
fn a_plain_shell_script_can_follow_a_job_through_the_files() {
    let env = Env::new();
    let d = env.detach("plain", &[], &env.gated("plain", 0));
    let waiter = plain_waiter(&env, "plain");
    env.release("plain");
    let out = waiter.finish();
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("SUCCESS {}", d.pid));
}

#[test]
fn a_plain_shell_script_sees_failed_as_the_first_status_line() {
    let env = Env::new();
    let d = env.detach("plainbad", &[], &env.gated("plainbad", 4));
    let waiter = plain_waiter(&env, "plainbad");
    env.release("plainbad");
    let out = waiter.finish();
    assert_code(&out, 1);
    assert_eq!(stdout(&out).trim(), format!("FAILED {}", d.pid));
}

#[test]
fn job_files_hold_the_documented_contents_while_running_and_after() {
    let env = Env::new();
    let job = env.gated("rec", 0);
    let d = env.detach("rec", &[], &job);

    let pid_text = fs::read_to_string(env.file("rec", ".pid")).unwrap();
    assert_eq!(pid_text, format!("{}\n", d.pid), ".pid is one decimal line");
    assert_eq!(
        pgid_of(d.pid),
        Some(d.pid),
        "the job leads its own process group"
    );
    for suffix in [".heartbeat", ".log", ".lock"] {
        assert!(
            env.file("rec", suffix).exists(),
            "rec{suffix} exists while running"
        );
    }
    assert!(env.status_file("rec").is_none());

    let rec = env.record("rec");
    assert_eq!(rec["name"], "rec");
    assert_eq!(
        rec["command"],
        Value::from(job.clone()),
        "command is the argv array"
    );
    assert!(same_path(
        rec["cwd"].as_str().expect("cwd is a string"),
        env.root()
    ));
    assert!(
        rec["host"].as_str().is_some_and(|h| !h.is_empty()),
        "host: {rec:#}"
    );
    assert_eq!(int(&rec, "wrapper_pid"), d.wrapper_pid);
    assert_eq!(int(&rec, "child_pid"), d.pid);
    assert_eq!(int(&rec, "pgid"), d.pid);
    assert!(
        !rec["child_start_time"].is_null(),
        "child_start_time: {rec:#}"
    );
    assert!(!rec["started_at"].is_null(), "started_at: {rec:#}");
    assert!(
        rec["outcome"].is_null(),
        "outcome is null while running: {rec:#}"
    );

    env.release("rec");
    assert_eq!(env.await_status("rec"), "SUCCESS");
    let rec = env.record("rec");
    assert!(!rec["ended_at"].is_null(), "ended_at: {rec:#}");
    assert_eq!(rec["exit_code"], 0);
    assert!(rec["signal"].is_null());
    assert_eq!(rec["outcome"], "success");
    assert!(rec["duration_ms"].is_u64(), "duration_ms: {rec:#}");
}

/// The status is created with a no-replace primitive (§5: renameat2 with
/// RENAME_NOREPLACE, else link); strace holds the wrapper at that call for
/// a minute, so the test can look at the files at leisure while it waits
/// there. Had the wrapper created the status before writing the final
/// record, it would be held with the record still unfinished, and the
/// record would never be seen final.
/// Whether `pid` is stopped inside a create-once call (renameat2, link or
/// linkat). Under strace every syscall stops the tracee for a moment
/// (state `t`), so the state alone does not tell the held call from a
/// write just before it.
fn in_create_once_call(pid: i32) -> bool {
    let Ok(line) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let nr = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    #[cfg(target_arch = "x86_64")]
    let calls = [libc::SYS_renameat2, libc::SYS_linkat, libc::SYS_link];
    #[cfg(not(target_arch = "x86_64"))]
    let calls = [libc::SYS_renameat2, libc::SYS_linkat];
    nr.is_some_and(|nr| calls.contains(&nr))
}

#[test]
fn the_status_file_appears_only_after_the_record_is_final() {
    let Some(()) = runnable(strace()) else {
        return;
    };
    let env = Env::new();
    let d = env.detach("order", &[], &env.gated("order", 0));
    let trace = env.scratch("order.strace");
    let create_once = "renameat2,link,linkat";
    let tracer = attach_strace(
        &env,
        d.wrapper_pid,
        &trace,
        &[
            "-e",
            &format!("trace={create_once}"),
            "-e",
            &format!("inject={create_once}:delay_enter=60000000"),
        ],
    );
    env.release("order");
    eventually(
        "the record is final and the wrapper is held at its next create-once call",
        || {
            let final_record = fs::read_to_string(env.file("order", ".job.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|r| !r["outcome"].is_null());
            final_record
                && proc_state(d.wrapper_pid) == Some('t')
                && in_create_once_call(d.wrapper_pid)
        },
    );
    assert_eq!(
        env.status_file("order"),
        None,
        "the status is created only after the record is final"
    );
    let held = env.record("order");
    assert_eq!(held["outcome"], "success", "{held:#}");
    assert!(held["ended_at"].is_string(), "{held:#}");

    let trace = detach_strace(tracer, &trace);
    assert!(
        trace.contains("order.status"),
        "the held call creates the status: {trace}"
    );
    assert_eq!(env.await_status("order"), "SUCCESS");
    assert_eq!(env.record("order"), held, "the record was already final");
}

#[test]
fn a_result_file_written_by_the_job_survives_and_wait_reports_its_path() {
    let env = Env::new();
    let job = sh("printf '{\"answer\": 42}\\n' > \"$JOBWATCH_RESULT\"");
    assert_code(&env.run("answer", &[], &job), 0);
    let result = env.file("answer", ".result");
    let text = fs::read_to_string(&result).expect("the result file survives");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["answer"], 42);

    let (w, lines) = env.wait(&["answer"]);
    assert_code(&w, exit::SUCCESS);
    let line = line_for(&lines, "answer");
    let reported = line["result"]
        .as_str()
        .unwrap_or_else(|| panic!("wait JSON lacks result: {line:#}"));
    assert!(same_path(reported, &result), "result path {reported}");
}

#[test]
fn restarting_a_finished_name_moves_the_old_run_into_history() {
    let env = Env::new();
    let first = sh("echo first-run; echo '{\"run\": 1}' > \"$JOBWATCH_RESULT\"");
    assert_code(&env.run("again", &["--quiet"], &first), 0);
    assert_code(&env.run("again", &["--quiet"], &sh("echo second-run")), 0);

    let log = env.log("again");
    assert!(
        log.contains("second-run") && !log.contains("first-run"),
        "current log: {log:?}"
    );
    assert!(
        !env.file("again", ".result").exists(),
        "the old result moved away"
    );

    let hist = env.dir.join("history").join("again");
    let runs: Vec<_> = fs::read_dir(&hist)
        .unwrap_or_else(|e| panic!("{} should exist: {e}", hist.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "one earlier run in history: {runs:?}");
    let old = &runs[0];
    let old_log = fs::read_to_string(old.join("again.log")).expect("old log readable in history");
    assert!(old_log.contains("first-run"), "old log: {old_log:?}");
    let old_status = fs::read_to_string(old.join("again.status")).expect("old status in history");
    assert!(old_status.starts_with("SUCCESS"));
    assert!(old.join("again.job.json").exists());
    assert!(old.join("again.result").exists(), "no result is lost");

    let out = env.jw(&["logs", "again"]);
    assert!(stdout(&out).contains("second-run"));
}

#[test]
fn no_temporary_files_are_left_in_the_jobs_dir() {
    let env = Env::new();
    assert_code(
        &env.run("tidy", &[], &sh("echo x; echo '{}' > \"$JOBWATCH_RESULT\"")),
        0,
    );
    assert_code(&env.wait(&["tidy"]).0, exit::SUCCESS);
    assert_code(&env.jw(&["status", "tidy"]), 0);
    for entry in fs::read_dir(&env.dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tmp") && !name.contains(".tmp"),
            "temporary file {name:?} left in the jobs dir"
        );
    }
}

#[test]
fn a_kill_request_for_an_earlier_run_does_not_change_the_outcome() {
    let env = Env::new();
    env.detach("stale-kill", &[], &env.gated("stale-kill", 0));
    let request = serde_json::json!({
        "job_id": "an-earlier-run",
        "outcome": "hung",
        "reason": "meant for another run",
        "at": "2026-01-01T00:00:00.000Z",
    });
    fs::write(env.file("stale-kill", ".kill"), request.to_string()).unwrap();
    env.release("stale-kill");
    assert_eq!(env.await_status("stale-kill"), "SUCCESS");
    assert_eq!(env.record("stale-kill")["outcome"], "success");
}
