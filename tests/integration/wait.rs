//! `jobwatch wait`: outcomes, JSON lines, exit codes, its own timeout, lost
//! wrappers, and PID-reuse safety.

use rustix::process::Signal;
use serde_json::Value;

use crate::support::*;

/// A job that prints `line 1` .. `line 30` and exits with 3.
fn thirty_lines_then_exit_3() -> Vec<String> {
    sh("i=1; while [ $i -le 30 ]; do echo \"line $i\"; i=$((i+1)); done; exit 3")
}

fn lines_from(a: i32, b: i32) -> Vec<Value> {
    (a..=b).map(|i| Value::from(format!("line {i}"))).collect()
}

#[test]
fn wait_reports_failure_with_exit_code_and_the_last_20_log_lines() {
    let env = Env::new();
    assert_code(
        &env.run("bad", &["--quiet"], &thirty_lines_then_exit_3()),
        3,
    );
    let (w, lines) = env.wait(&["bad"]);
    assert_code(&w, exit::FAILED);
    let v = line_for(&lines, "bad");
    assert_eq!(v["outcome"], "failed", "{v:#}");
    assert_eq!(v["exit_code"], 3, "{v:#}");
    assert!(v["signal"].is_null(), "{v:#}");
    assert!(v["duration_ms"].is_u64(), "duration_ms: {v:#}");
    assert!(
        same_path(v["log"].as_str().unwrap(), env.file("bad", ".log")),
        "{v:#}"
    );
    assert_eq!(
        v["tail"],
        Value::from(lines_from(11, 30)),
        "default tail is 20 lines: {v:#}"
    );
}

#[test]
fn wait_tail_n_reports_the_last_n_lines() {
    let env = Env::new();
    assert_code(
        &env.run("bad", &["--quiet"], &thirty_lines_then_exit_3()),
        3,
    );
    let (w, lines) = env.wait(&["bad", "--tail", "3"]);
    assert_code(&w, exit::FAILED);
    assert_eq!(
        line_for(&lines, "bad")["tail"],
        Value::from(lines_from(28, 30))
    );
}

#[test]
fn wait_on_success_exits_0_without_a_tail() {
    let env = Env::new();
    assert_code(&env.run("fine", &["--quiet"], &sh("echo all good")), 0);
    let (w, lines) = env.wait(&["fine", "--json"]);
    assert_code(&w, exit::SUCCESS);
    let v = line_for(&lines, "fine");
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["exit_code"], 0);
    let tail_empty = v
        .get("tail")
        .is_none_or(|t| t.is_null() || t.as_array().is_some_and(|a| a.is_empty()));
    assert!(tail_empty, "no tail on success: {v:#}");
}

#[test]
fn wait_on_a_job_already_finished_returns_its_recorded_outcome() {
    let env = Env::new();
    assert_code(&env.run("done7", &[], &sh("exit 7")), 7);
    let (w, lines) = env.wait(&["done7"]);
    assert_code(&w, exit::FAILED);
    assert_eq!(line_for(&lines, "done7")["exit_code"], 7);
}

#[test]
fn wait_timeout_kills_the_whole_process_group() {
    let env = Env::new();
    let d = env.detach("long", &["--liveness", "timer"], &env.tree("t"));
    let tree = env.tree_pids("t");
    assert_eq!(tree.leader, d.pid);
    tree.assert_alive();

    let (w, lines) = env.wait(&["long", "--timeout", "300ms", "--grace", "300ms"]);
    assert_code(&w, exit::TIMEOUT);
    assert_eq!(line_for(&lines, "long")["outcome"], "timeout");
    tree.assert_gone();
    assert_eq!(env.await_status("long"), "FAILED");
    assert_eq!(env.record("long")["outcome"], "timeout");
}

#[test]
fn wait_timeout_with_no_kill_leaves_the_job_running() {
    let env = Env::new();
    let d = env.detach("keep", &[], &env.gated("keep", 0));
    let (w, lines) = env.wait(&["keep", "--timeout", "200ms", "--no-kill"]);
    assert_code(&w, exit::TIMEOUT);
    assert_eq!(line_for(&lines, "keep")["outcome"], "timeout");
    assert!(is_alive(d.pid), "--no-kill must leave the job running");
    assert!(env.status_file("keep").is_none(), "the job is not finished");

    env.release("keep");
    let (w, lines) = env.wait(&["keep"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "keep")["outcome"], "success");
}

#[test]
fn wait_stale_overrides_the_jobs_own_threshold() {
    let env = Env::new();
    let d = env.detach(
        "quiet",
        &[
            "--liveness",
            "output",
            "--heartbeat",
            "100ms",
            "--stale",
            "1h",
        ],
        &["sleep", "300"],
    );
    let (w, lines) = env.wait(&["quiet", "--stale", "1s", "--grace", "300ms"]);
    assert_code(&w, exit::HUNG);
    assert_eq!(line_for(&lines, "quiet")["outcome"], "hung");
    assert_all_gone(&[("sleep", d.pid)]);
    assert_eq!(env.await_status("quiet"), "FAILED");
    assert_eq!(env.record("quiet")["outcome"], "hung");
}

#[test]
fn wait_any_returns_when_the_first_job_finishes() {
    let env = Env::new();
    env.detach("a", &[], &env.gated("a", 0));
    let b = env.detach("b", &[], &env.gated("b", 0));
    let waiter = env.spawn(&["wait", "a", "b", "--any"]);
    env.release("a");
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    let lines = json_lines(&out);
    assert_eq!(line_for(&lines, "a")["outcome"], "success");
    if let Some(vb) = lines.iter().find(|v| v["name"] == "b") {
        let o = &vb["outcome"];
        assert!(o.is_null() || o == "running", "b has not finished: {vb:#}");
    }
    assert!(is_alive(b.pid), "b still runs");
    assert!(env.status_file("b").is_none());

    env.release("b");
    assert_code(&env.wait(&["b"]).0, exit::SUCCESS);
}

#[test]
fn wait_all_waits_for_every_job_and_reports_each() {
    let env = Env::new();
    env.detach("a", &[], &env.gated("a", 0));
    env.detach("b", &[], &env.gated("b", 1));
    let mut waiter = env.spawn(&["wait", "a", "b", "--all"]);
    env.release("a");
    env.await_status("a");
    assert!(waiter.is_running(), "--all must keep waiting while b runs");
    env.release("b");
    let out = waiter.finish();
    assert_code(&out, exit::FAILED);
    let lines = json_lines(&out);
    assert_eq!(line_for(&lines, "a")["outcome"], "success");
    let vb = line_for(&lines, "b");
    assert_eq!(vb["outcome"], "failed");
    assert_eq!(vb["exit_code"], 1);
}

#[test]
fn wait_with_a_polling_interval_still_sees_the_outcome() {
    let env = Env::new();
    env.detach("polled", &[], &env.gated("polled", 0));
    let waiter = env.spawn(&["wait", "polled", "--poll", "50ms"]);
    env.release("polled");
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&json_lines(&out), "polled")["outcome"], "success");
}

#[test]
fn killing_the_wrapper_with_sigkill_is_reported_lost_and_its_job_is_reaped() {
    let env = Env::new();
    let d = env.detach("orphan", FAST_TIMER, &env.tree("t"));
    let tree = env.tree_pids("t");
    tree.assert_alive();
    assert!(is_alive(d.wrapper_pid));
    assert_ne!(d.wrapper_pid, d.pid, "the wrapper is not the job");

    signal(d.wrapper_pid, Signal::KILL);
    eventually("the wrapper is gone", || is_gone(d.wrapper_pid));

    // Two waiters race to detect the loss; both must say lost, and only one
    // status gets written.
    let w1 = env.spawn(&["wait", "orphan"]);
    let w2 = env.spawn(&["wait", "orphan"]);
    for out in [w1.finish(), w2.finish()] {
        assert_code(&out, exit::LOST);
        assert_eq!(line_for(&json_lines(&out), "orphan")["outcome"], "lost");
    }
    tree.assert_gone();
    assert_eq!(
        env.status_file("orphan")
            .as_deref()
            .map(|s| s.lines().next()),
        Some(Some("FAILED"))
    );
    assert_eq!(env.record("orphan")["outcome"], "lost");
    let statuses = std::fs::read_dir(&env.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("status"))
        .count();
    assert_eq!(statuses, 1, "exactly one status file (and no temp copies)");

    // Later waiters read the same final outcome.
    assert_code(&env.wait(&["orphan"]).0, exit::LOST);
}

#[test]
fn status_classifies_a_job_whose_wrapper_died_as_lost() {
    let env = Env::new();
    let d = env.detach("gone", FAST_TIMER, &["sleep", "300"]);
    signal(d.wrapper_pid, Signal::KILL);
    eventually("status reports the job as lost", || {
        let out = env.jw(&["status", "gone"]);
        json_lines(&out)
            .iter()
            .any(|v| v["name"] == "gone" && v["state"] == "lost")
    });
    assert_code(&env.wait(&["gone"]).0, exit::LOST);
    assert_all_gone(&[("job", d.pid)]);
}

#[test]
fn wait_never_signals_an_unrelated_process_behind_a_stale_record() {
    let env = Env::new();
    let mut victim = unrelated_sleeper(&env);
    write_stale_record(&env, "ghost", victim.pid());

    let (w, lines) = env.wait(&["ghost", "--grace", "300ms"]);
    assert_code(&w, exit::LOST);
    assert_eq!(line_for(&lines, "ghost")["outcome"], "lost");
    assert!(
        victim.is_running(),
        "the unrelated process must not be signalled"
    );
    assert!(is_alive(victim.pid()));
    assert_eq!(env.await_status("ghost"), "FAILED");
    assert_eq!(env.record("ghost")["outcome"], "lost");
}

#[test]
fn wait_json_lines_carry_every_documented_key() {
    let env = Env::new();
    assert_code(&env.run("ok", &["--quiet"], &["true"]), 0);
    assert_code(&env.run("exit3", &["--quiet"], &sh("exit 3")), 3);
    assert_code(&env.run("sig9", &["--quiet"], &sh("kill -9 $$")), 128 + 9);
    for name in ["ok", "exit3", "sig9"] {
        let (_, lines) = env.wait(&[name]);
        let v = line_for(&lines, name);
        for key in [
            "name",
            "outcome",
            "exit_code",
            "signal",
            "duration_ms",
            "log",
        ] {
            assert!(
                v.get(key).is_some(),
                "wait JSON for {name} lacks {key:?} (null is fine): {v}"
            );
        }
        if name != "ok" {
            assert!(v["tail"].is_array(), "wait JSON for {name} lacks tail: {v}");
        }
    }
}
