//! `jobwatch run`: foreground and detached starts, exit codes, timeouts,
//! signals to the wrapper, one-at-a-time per name.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};

use rustix::process::Signal;

use crate::support::*;

#[test]
fn a_successful_command_exits_zero_and_records_success() {
    let env = Env::new();
    let out = env.run("ok", &[], &sh("echo hello from the job"));
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("hello from the job"),
        "{}",
        describe(&out)
    );
    assert!(env.log("ok").contains("hello from the job"));

    assert_eq!(env.await_status("ok"), "SUCCESS");
    let rec = env.record("ok");
    assert_eq!(rec["name"], "ok");
    assert_eq!(rec["outcome"], "success");
    assert_eq!(rec["exit_code"], 0);
    assert!(rec["signal"].is_null(), "{rec:#}");

    let (w, lines) = env.wait(&["ok"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "ok")["outcome"], "success");
}

#[test]
fn foreground_run_passes_the_exit_code_through() {
    let env = Env::new();
    let out = env.run("seven", &[], &sh("exit 7"));
    assert_code(&out, 7);
    assert_eq!(env.await_status("seven"), "FAILED");
    let rec = env.record("seven");
    assert_eq!(rec["outcome"], "failed");
    assert_eq!(rec["exit_code"], 7);
}

#[test]
fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    let env = Env::new();
    let out = env.run("selfkill", &[], &sh("kill -KILL $$"));
    assert_code(&out, 128 + 9);
    assert_eq!(env.await_status("selfkill"), "FAILED");
    let rec = env.record("selfkill");
    assert_eq!(rec["signal"], 9, "{rec:#}");
    assert!(rec["exit_code"].is_null(), "{rec:#}");
    assert_eq!(rec["outcome"], "failed", "{rec:#}");
}

#[test]
fn foreground_run_tees_stdout_and_stderr_into_the_log() {
    let env = Env::new();
    let out = env.run("tee", &[], &sh("echo to-stdout; echo to-stderr >&2"));
    assert_code(&out, 0);
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert!(shown.contains("to-stdout"), "{}", describe(&out));
    let log = env.log("tee");
    assert!(log.contains("to-stdout"), "log: {log:?}");
    assert!(log.contains("to-stderr"), "log: {log:?}");
}

#[test]
fn quiet_run_prints_nothing_of_the_job_but_still_logs_it() {
    let env = Env::new();
    let out = env.run("hush", &["--quiet"], &sh("echo secret-line"));
    assert_code(&out, 0);
    assert!(!stdout(&out).contains("secret-line"), "{}", describe(&out));
    assert!(env.log("hush").contains("secret-line"));
}

#[test]
fn the_job_environment_names_its_files() {
    let env = Env::new();
    let script = "printf 'NAME=%s\\nDIR=%s\\nRESULT=%s\\nHEARTBEAT=%s\\nJOB_ID=%s\\n' \
                  \"$JOBWATCH_NAME\" \"$JOBWATCH_DIR\" \"$JOBWATCH_RESULT\" \
                  \"$JOBWATCH_HEARTBEAT\" \"$JOBWATCH_JOB_ID\"";
    let out = env.run("envjob", &["--quiet"], &sh(script));
    assert_code(&out, 0);
    let log = env.log("envjob");
    let get = |k: &str| -> String {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing from log {log:?}"))
            .to_owned()
    };
    assert_eq!(get("NAME"), "envjob");
    assert!(same_path(get("DIR"), &env.dir), "JOBWATCH_DIR in {log:?}");
    for (key, file) in [
        ("RESULT", "envjob.result"),
        ("HEARTBEAT", "envjob.heartbeat"),
    ] {
        let p = std::path::PathBuf::from(get(key));
        assert!(
            p.file_name().is_some_and(|f| f == file) && same_path(p.parent().unwrap(), &env.dir),
            "JOBWATCH_{key} should be <dir>/{file}; log: {log:?}"
        );
    }
    assert!(!get("JOB_ID").is_empty(), "JOBWATCH_JOB_ID in {log:?}");
}

#[test]
fn detach_returns_while_the_job_still_runs_and_a_later_wait_reports_success() {
    let env = Env::new();
    let d = env.detach("bg", &[], &env.gated("bg", 0));
    // `run --detach` has exited (we have its output); the job keeps running.
    assert!(is_alive(d.pid), "the job must outlive `run --detach`");
    assert!(env.status_file("bg").is_none(), "no status while running");
    assert!(same_path(
        d.json["log"].as_str().unwrap(),
        env.file("bg", ".log")
    ));
    // Its files exist as soon as `run --detach` returns.
    for suffix in [".pid", ".job.json", ".heartbeat"] {
        assert!(env.file("bg", suffix).exists(), "bg{suffix} should exist");
    }
    assert!(env.record("bg")["outcome"].is_null());

    env.release("bg");
    let (w, lines) = env.wait(&["bg"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "bg")["outcome"], "success");
    assert!(env.log("bg").contains("released"));
}

#[test]
fn a_detached_job_survives_its_callers_process_group_being_killed() {
    let env = Env::new();
    env.script(
        "gate.sh",
        "while [ ! -e \"$T/gate.go\" ]; do sleep 0.02; done; echo released\n",
    );
    let mut caller = env.other("sh");
    caller
        .arg("-c")
        .arg("\"$JW\" --dir \"$T/jobs\" run survivor --detach -- sh \"$T/gate.sh\" > \"$T/detach.out\"; kill -KILL 0")
        .process_group(0);
    let out = output_of(caller);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "the caller's group was killed\n{}",
        describe(&out)
    );

    let text = fs::read_to_string(env.scratch("detach.out")).unwrap();
    let json: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("detach output is not one JSON line ({e}): {text:?}"));
    let pid = int(&json, "pid");
    assert!(
        is_alive(pid),
        "the job died with its caller's process group"
    );
    assert!(
        is_alive(int(&json, "wrapper_pid")),
        "the wrapper died with its caller's process group"
    );

    env.release("gate");
    let (w, lines) = env.wait(&["survivor"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "survivor")["outcome"], "success");
}

#[test]
fn two_concurrent_runs_of_one_name_start_exactly_one() {
    let env = Env::new();
    for round in 0..3 {
        let name = format!("race{round}");
        let job = env.gated(&name, 0);
        let contenders: Vec<_> = (0..2)
            .map(|_| env.spawn(&run_args(&name, &[], &job, true)))
            .collect();
        let outs: Vec<_> = contenders.into_iter().map(ChildGuard::finish).collect();
        let winners = outs.iter().filter(|o| o.status.success()).count();
        let all: Vec<_> = outs.iter().map(describe).collect();
        assert_eq!(
            winners,
            1,
            "exactly one run must start:\n{}",
            all.join("\n")
        );
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert_code(o, exit::USAGE);
            assert!(stderr(o).contains("already running"), "{}", describe(o));
        }
        env.release(&name);
        let (w, _) = env.wait(&[&name]);
        assert_code(&w, exit::SUCCESS);
        let hist = env.dir.join("history").join(&name);
        let moved = fs::read_dir(&hist).map(|d| d.count()).unwrap_or(0);
        assert_eq!(
            moved, 0,
            "the loser must not move the winner's files into history"
        );
    }
}

#[test]
fn starting_a_name_that_is_running_fails_with_already_running() {
    let env = Env::new();
    let d = env.detach("busy", &[], &env.gated("busy", 0));
    let again = env.run("busy", &[], &sh("echo should-not-run"));
    assert_code(&again, exit::USAGE);
    assert!(
        stderr(&again).contains("already running"),
        "{}",
        describe(&again)
    );
    assert!(!stdout(&again).contains("should-not-run"));
    assert!(is_alive(d.pid), "the running job is untouched");
    assert!(env.status_file("busy").is_none());
    assert!(!env.log("busy").contains("should-not-run"));

    env.release("busy");
    assert_code(&env.wait(&["busy"]).0, exit::SUCCESS);
}

#[test]
fn run_timeout_kills_the_whole_process_group() {
    let env = Env::new();
    let d = env.detach(
        "slow",
        &["--timeout", "2s", "--grace", "300ms"],
        &env.tree("t"),
    );
    let tree = env.tree_pids("t");
    assert_eq!(
        tree.leader, d.pid,
        "NAME.pid / detach pid is the job's leader"
    );
    assert_eq!(
        pgid_of(tree.grandchild),
        Some(d.pid),
        "precondition: grandchild in the job's group"
    );

    let (w, lines) = env.wait(&["slow"]);
    assert_code(&w, exit::TIMEOUT);
    assert_eq!(line_for(&lines, "slow")["outcome"], "timeout");
    tree.assert_gone();
    assert_eq!(env.await_status("slow"), "FAILED");
    assert_eq!(env.record("slow")["outcome"], "timeout");
}

#[test]
fn foreground_run_timeout_exits_124() {
    let env = Env::new();
    let out = env.run(
        "fgslow",
        &["--timeout", "300ms", "--grace", "300ms"],
        &["sleep", "300"],
    );
    assert_code(&out, 124);
    assert_eq!(env.await_status("fgslow"), "FAILED");
    let rec = env.record("fgslow");
    assert_eq!(rec["outcome"], "timeout");
    assert_all_gone(&[("sleep", int(&rec, "child_pid"))]);
}

#[test]
fn sigterm_to_a_foreground_run_kills_the_job_group_and_records_killed() {
    let env = Env::new();
    let job = env.tree("t");
    let args = run_args(
        "fg",
        &["--heartbeat", "100ms", "--grace", "300ms"],
        &job,
        false,
    );
    let run = env.spawn(&args);
    let tree = env.tree_pids("t");
    signal(run.pid(), Signal::TERM);
    let out = run.finish();
    // The leader shell dies of the forwarded TERM: 128 + 15, as a shell
    // would report it (docs/protocol.md §11).
    assert_code(&out, 128 + 15);

    tree.assert_gone();
    assert_eq!(env.await_status("fg"), "FAILED");
    let rec = env.record("fg");
    assert_eq!(rec["outcome"], "killed", "{rec:#}");
    assert_eq!(rec["signal"], 15, "{rec:#}");
    let (w, _) = env.wait(&["fg"]);
    assert_code(&w, exit::KILLED);
}

#[test]
fn a_foreground_run_whose_command_exits_zero_on_sigterm_exits_5_as_killed() {
    let env = Env::new();
    let ready = env.scratch("trap.ready");
    // The job catches TERM and exits 0: it was still killed, so not 0.
    let job = sh(&format!(
        "trap 'echo caught; exit 0' TERM; touch '{}'; while :; do sleep 0.05; done",
        ready.display()
    ));
    let args = run_args("polite", &["--grace", "20s"], &job, false);
    let run = env.spawn(&args);
    eventually("the job has set its trap", || ready.exists());
    signal(run.pid(), Signal::TERM);
    let out = run.finish();
    assert_code(&out, exit::KILLED);
    let rec = env.record("polite");
    assert_eq!(rec["outcome"], "killed", "{rec:#}");
    assert_eq!(rec["exit_code"], 0, "{rec:#}");
    assert!(env.log("polite").contains("caught"));
}

#[test]
fn the_dir_option_may_follow_the_subcommand() {
    let env = Env::new();
    let mut cmd = env.bare();
    cmd.args(["run", "late"])
        .arg("--dir")
        .arg(&env.dir)
        .args(["--", "true"]);
    let out = output_of(cmd);
    assert_code(&out, 0);
    assert_eq!(env.await_status("late"), "SUCCESS");
}

#[test]
fn the_jobs_dir_can_come_from_the_jobwatch_dir_environment_variable() {
    let env = Env::new();
    let mut cmd = env.bare();
    cmd.env("JOBWATCH_DIR", &env.dir)
        .args(["run", "fromenv", "--", "true"]);
    assert_code(&output_of(cmd), 0);
    assert_eq!(env.await_status("fromenv"), "SUCCESS");

    let mut cmd = env.bare();
    cmd.env("JOBWATCH_DIR", &env.dir).args(["wait", "fromenv"]);
    assert_code(&output_of(cmd), exit::SUCCESS);
}

#[test]
fn a_missing_jobs_dir_is_created_private() {
    let env = Env::new();
    assert!(!env.dir.exists());
    assert_code(&env.run("first", &[], &["true"]), 0);
    let mode = fs::metadata(&env.dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "jobs dir mode is {mode:o}");
}

/// Issue 10: a detached wrapper is handed its run spec on its stdin, once;
/// its argv carries no setting, no name and no store, so `ps` shows nothing
/// of the job.
#[test]
fn a_detached_wrappers_argv_carries_nothing_of_its_job() {
    let env = Env::new();
    let opts = [
        "--stale",
        "2m",
        "--heartbeat",
        "3s",
        "--timeout",
        "1h",
        "--grace",
        "1500ms",
        "--liveness",
        "cpu",
        "--retries",
        "2",
        "--backoff",
        "2s",
        "--breaker",
        "bk",
        "--max-failures",
        "4",
    ];
    let d = env.detach("hidden", &opts, &env.gated("g", 0));
    assert_eq!(argv_after_program(d.wrapper_pid), ["__wrapper"]);
    let shown = ps_args(d.wrapper_pid);
    assert!(shown.ends_with(" __wrapper"), "ps shows {shown:?}");
    for telltale in ["hidden", "2m", "120000", "--stale", "--dir"] {
        assert!(!shown.contains(telltale), "{telltale:?} in {shown:?}");
    }
    // The settings reached the job all the same.
    let settings = env.record("hidden")["settings"].clone();
    assert_eq!(settings["stale_ms"], 120_000, "{settings}");
    assert_eq!(settings["heartbeat_ms"], 3_000, "{settings}");
    assert_eq!(settings["timeout_ms"], 3_600_000, "{settings}");
    assert_eq!(settings["grace_ms"], 1_500, "{settings}");
    assert_eq!(settings["liveness"], "cpu", "{settings}");
    assert_eq!(settings["retries"], 2, "{settings}");
    assert_eq!(settings["backoff_ms"], 2_000, "{settings}");
    assert_eq!(env.record("hidden")["breaker"], "bk");
    env.release("g");
    let (out, lines) = env.wait(&["hidden"]);
    assert_code(&out, 0);
    assert_eq!(line_for(&lines, "hidden")["outcome"], "success");
}
