//! `jobwatch wait NAME --until-log REGEX`: a matching line of the current
//! run's log ends the wait (outcome matched, exit 0) while the job goes on;
//! a run that ends first reports its own outcome.

use std::fs;

use rustix::process::Signal;

use crate::support::*;

/// A job script that blocks until the test calls `env.release(gate)`.
fn gate(env: &Env, gate: &str) -> String {
    format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done",
        env.scratch(&format!("{gate}.go")).display()
    )
}

#[test]
fn a_marker_written_in_two_pieces_matches_once_whole_while_the_job_runs() {
    let env = Env::new();
    let script = format!(
        "echo starting; printf listen; {}; printf 'ing on 8080\\n'; {}",
        gate(&env, "half"),
        gate(&env, "end")
    );
    let d = env.detach("srv", &[], &sh(&script));
    eventually("the first half of the marker is in the log", || {
        env.log("srv") == "starting\nlisten"
    });
    let mut waiter = env.spawn(&["wait", "srv", "--until-log", "^listening on [0-9]+$"]);
    // Once the waiter has read "listen", only the rest of the line can
    // complete the match.
    await_read_to_end(waiter.pid(), &env.file("srv", ".log"));
    assert!(waiter.is_running(), "half a marker must not match");

    env.release("half");
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    let v = json_line(&out);
    assert_eq!(v["outcome"], "matched", "{v:#}");
    assert_eq!(v["line"], "listening on 8080", "{v:#}");
    assert_eq!(v["running"], true, "{v:#}");
    assert!(v["exit_code"].is_null(), "{v:#}");
    assert!(is_alive(d.pid), "the job goes on after the match");
    assert!(env.status_file("srv").is_none());

    env.release("end");
    assert_code(&env.wait(&["srv"]).0, exit::SUCCESS);
}

#[test]
fn a_marker_already_in_the_log_matches_at_once() {
    let env = Env::new();
    let script = format!("echo booting; echo ready; {}", gate(&env, "end"));
    env.detach("srv", &[], &sh(&script));
    eventually("the marker is in the log", || {
        env.log("srv").contains("ready")
    });
    let (out, lines) = env.wait(&["srv", "--until-log", "^ready$"]);
    assert_code(&out, exit::SUCCESS);
    let v = line_for(&lines, "srv");
    assert_eq!(v["outcome"], "matched", "{v:#}");
    assert_eq!(v["line"], "ready");
    assert_eq!(v["running"], true);
    env.release("end");
    assert_code(&env.wait(&["srv"]).0, exit::SUCCESS);
}

#[test]
fn a_job_that_ends_without_the_marker_reports_its_own_outcome() {
    let env = Env::new();
    assert_code(
        &env.run("bad", &["--quiet"], &sh("echo working; exit 3")),
        3,
    );
    let (out, lines) = env.wait(&["bad", "--until-log", "ready"]);
    assert_code(&out, exit::FAILED);
    let v = line_for(&lines, "bad");
    assert_eq!(v["outcome"], "failed", "{v:#}");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["tail"], serde_json::json!(["working"]));

    assert_code(&env.run("fine", &["--quiet"], &sh("echo done")), 0);
    let (out, lines) = env.wait(&["fine", "--until-log", "ready"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "fine")["outcome"], "success");
}

#[test]
fn a_run_ending_while_followed_without_the_marker_reports_its_outcome() {
    let env = Env::new();
    let script = format!(
        "echo working; {}; echo still no marker; exit 4",
        gate(&env, "end")
    );
    env.detach("job", &[], &sh(&script));
    let waiter = env.spawn(&["wait", "job", "--until-log", "ready"]);
    await_read_to_end(waiter.pid(), &env.file("job", ".log"));
    env.release("end");
    let out = waiter.finish();
    assert_code(&out, exit::FAILED);
    let v = json_line(&out);
    assert_eq!(v["outcome"], "failed", "{v:#}");
    assert_eq!(v["exit_code"], 4);
}

#[test]
fn the_last_line_without_a_newline_matches_once_the_job_has_ended() {
    let env = Env::new();
    assert_code(&env.run("j", &["--quiet"], &sh("printf 'almost ready'")), 0);
    let (out, lines) = env.wait(&["j", "--until-log", "ready$"]);
    assert_code(&out, exit::SUCCESS);
    let v = line_for(&lines, "j");
    assert_eq!(v["outcome"], "matched", "{v:#}");
    assert_eq!(v["line"], "almost ready");
    assert_eq!(v.get("running"), Some(&serde_json::Value::Bool(false)));
    assert_eq!(v["exit_code"], 0, "the ended run's record: {v:#}");
}

#[test]
fn a_marker_only_in_an_archived_run_never_matches_the_new_run() {
    let env = Env::new();
    assert_code(&env.run("srv", &["--quiet"], &sh("echo ready")), 0);
    let script = format!("echo second run; {}; exit 5", gate(&env, "end"));
    env.detach("srv", &[], &sh(&script));
    let archived: Vec<_> = fs::read_dir(env.dir.join("history/srv"))
        .expect("the first run is in history")
        .flatten()
        .map(|e| fs::read_to_string(e.path().join("srv.log")).unwrap())
        .collect();
    assert_eq!(archived, ["ready\n"], "the marker exists, but in history");

    let waiter = env.spawn(&["wait", "srv", "--until-log", "ready"]);
    await_read_to_end(waiter.pid(), &env.file("srv", ".log"));
    env.release("end");
    let out = waiter.finish();
    assert_code(&out, exit::FAILED);
    let v = json_line(&out);
    assert_eq!(v["outcome"], "failed", "{v:#}");
    assert_eq!(v["exit_code"], 5);
}

#[test]
fn a_wait_is_bound_to_its_run_and_reports_it_when_the_name_restarts() {
    let env = Env::new();
    let first = format!("echo first run; {}; exit 6", gate(&env, "first"));
    env.detach("srv", &[], &sh(&first));
    let waiter = env.spawn(&["wait", "srv", "--until-log", "ready"]);
    await_read_to_end(waiter.pid(), &env.file("srv", ".log"));
    // The waiter sleeps through the end of its run and the start of the
    // next, whose log holds the marker: it must find its own run's outcome
    // in history, not match the new run.
    signal(waiter.pid(), Signal::STOP);
    env.release("first");
    env.await_status("srv");
    let second = format!("echo ready; {}", gate(&env, "second"));
    env.detach("srv", &[], &sh(&second));
    eventually("the second run printed the marker", || {
        env.log("srv").contains("ready")
    });
    signal(waiter.pid(), Signal::CONT);

    let out = waiter.finish();
    assert_code(&out, exit::FAILED);
    let v = json_line(&out);
    assert_eq!(v["outcome"], "failed", "the bound run's outcome: {v:#}");
    assert_eq!(v["exit_code"], 6, "{v:#}");
    assert_eq!(v["tail"], serde_json::json!(["first run"]), "{v:#}");
    let log = fs::read_to_string(v["log"].as_str().unwrap()).unwrap();
    assert_eq!(log, "first run\n", "the report names the bound run's log");

    env.release("second");
    assert_code(&env.wait(&["srv"]).0, exit::SUCCESS);
}

#[test]
fn a_truncated_log_is_followed_from_its_start() {
    let env = Env::new();
    let script = format!(
        "i=0; while [ $i -lt 50 ]; do echo \"old line $i\"; i=$((i+1)); done; {}; \
         echo fresh-marker; {}",
        gate(&env, "more"),
        gate(&env, "end")
    );
    env.detach("t", &[], &sh(&script));
    let log = env.file("t", ".log");
    eventually("the old lines are written", || {
        env.log("t").contains("old line 49")
    });
    // A bounded wait: a follower that missed the truncation would wait on.
    let waiter = env.spawn(&["wait", "t", "--until-log", "^fresh", "--timeout", "20s"]);
    await_read_to_end(waiter.pid(), &log);
    fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    env.release("more");
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    let v = json_line(&out);
    assert_eq!(v["outcome"], "matched", "{v:#}");
    assert_eq!(v["line"], "fresh-marker");
    env.release("end");
    assert_code(&env.wait(&["t"]).0, exit::SUCCESS);
}

#[test]
fn until_log_with_an_invalid_regex_or_several_jobs_is_a_usage_error() {
    let env = Env::new();
    let out = env.jw(&["wait", "x", "--until-log", "listening (on"]);
    assert_usage_error(&out, &["--until-log", "regex", "unclosed group"]);

    assert_code(&env.run("a", &["--quiet"], &["true"]), 0);
    assert_code(&env.run("b", &["--quiet"], &["true"]), 0);
    let out = env.jw(&["wait", "a", "b", "--until-log", "x"]);
    assert_usage_error(&out, &["--until-log", "one job"]);
}
