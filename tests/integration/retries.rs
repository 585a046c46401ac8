//! `run --retries`: attempts, their logs and record, backoff, kills during
//! the backoff, and how retried jobs look to `status`, `wait`, breakers and
//! history.

use std::fs;

use rustix::process::Signal;
use serde_json::Value;

use crate::support::*;

/// Short backoff so that retried tests stay fast.
const QUICK: &[&str] = &["--quiet", "--backoff", "10ms"];

/// A job that counts its attempts in `$T/<name>.count` (the shell sees the
/// number as `$n`), prints `attempt $n of <name>`, then runs `then`.
fn counting(env: &Env, name: &str, then: &str) -> Vec<String> {
    let script = env.script(
        &format!("{name}.sh"),
        &format!(
            "n=$(cat \"$T/{name}.count\" 2>/dev/null || echo 0)\n\
             n=$((n+1))\n\
             echo $n > \"$T/{name}.count\"\n\
             echo \"attempt $n of {name}\"\n\
             {then}\n"
        ),
    );
    vec!["sh".into(), script]
}

/// Shell code that waits until the test calls `env.release(gate)`.
fn gate(env: &Env, gate: &str) -> String {
    format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done",
        env.scratch(&format!("{gate}.go")).display()
    )
}

/// How many attempts the counting job `name` has started.
fn attempts_started(env: &Env, name: &str) -> u32 {
    fs::read_to_string(env.scratch(&format!("{name}.count")))
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0)
}

/// The `attempts` array of the record, as (attempt, outcome) pairs.
fn attempt_outcomes(record: &Value) -> Vec<(u64, String)> {
    record["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts in {record:#}"))
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `attempts/NAME/K.log`.
fn attempt_log(env: &Env, name: &str, k: u32) -> Option<String> {
    fs::read_to_string(env.dir.join("attempts").join(name).join(format!("{k}.log"))).ok()
}

/// `status NAME` as JSON.
#[track_caller]
fn status_of(env: &Env, name: &str) -> Value {
    let out = env.jw(&["status", name, "--json"]);
    json_line(&out)
}

#[test]
fn every_attempt_keeps_its_own_log_and_the_record_lists_them() {
    let env = Env::new();
    let mut opts = QUICK.to_vec();
    opts.extend(["--retries", "2"]);
    let job = counting(&env, "flaky", "[ $n -ge 3 ] || exit $((10+n))");
    assert_code(&env.run("flaky", &opts, &job), 0);
    assert_eq!(attempts_started(&env, "flaky"), 3);

    assert_eq!(
        attempt_log(&env, "flaky", 1).as_deref(),
        Some("attempt 1 of flaky\n")
    );
    assert_eq!(
        attempt_log(&env, "flaky", 2).as_deref(),
        Some("attempt 2 of flaky\n")
    );
    assert_eq!(
        attempt_log(&env, "flaky", 3),
        None,
        "the last attempt writes NAME.log"
    );
    assert_eq!(env.log("flaky"), "attempt 3 of flaky\n");

    let r = env.record("flaky");
    assert_eq!(r["outcome"], "success", "{r:#}");
    assert_eq!(
        (r["attempt"].clone(), r["max_attempts"].clone()),
        (3.into(), 3.into())
    );
    assert_eq!(
        attempt_outcomes(&r),
        [
            (1, "failed".into()),
            (2, "failed".into()),
            (3, "success".into())
        ]
    );
    let a = r["attempts"].as_array().unwrap();
    assert_eq!(
        a.iter().map(|a| a["exit_code"].clone()).collect::<Vec<_>>(),
        [Value::from(11), 12.into(), 0.into()]
    );
    for x in a {
        for key in ["started_at", "ended_at"] {
            assert!(x[key].is_string(), "{key} in {x:#}");
        }
    }
    assert!(
        a[0]["backoff_ms"].is_u64() && a[1]["backoff_ms"].is_u64(),
        "{r:#}"
    );
    assert!(
        a[2].get("backoff_ms").is_none(),
        "no backoff after the last: {r:#}"
    );
    // The status is written once, for the job.
    assert_eq!(env.await_status("flaky"), "SUCCESS");
    assert_eq!(status_of(&env, "flaky")["attempt"], "3/3");
}

#[test]
fn a_success_stops_further_attempts() {
    let env = Env::new();
    let mut opts = QUICK.to_vec();
    opts.extend(["--retries", "2"]);
    let job = counting(&env, "j", "[ $n -ge 2 ]");
    assert_code(&env.run("j", &opts, &job), 0);
    assert_eq!(
        attempts_started(&env, "j"),
        2,
        "no 3rd attempt after a success"
    );
    let r = env.record("j");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["max_attempts"], 3);
    assert_eq!(
        attempt_outcomes(&r),
        [(1, "failed".into()), (2, "success".into())]
    );
    let (w, lines) = env.wait(&["j"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "j")["outcome"], "success");
}

#[test]
fn a_job_without_retries_has_no_attempt_list() {
    let env = Env::new();
    assert_code(&env.run("once", &["--quiet"], &sh("exit 3")), 3);
    let r = env.record("once");
    assert!(r.get("attempts").is_none(), "{r:#}");
    assert_eq!(
        (r["attempt"].clone(), r["max_attempts"].clone()),
        (1.into(), 1.into())
    );
    assert!(status_of(&env, "once").get("attempt").is_none());
    assert!(!env.dir.join("attempts").join("once").exists());
}

#[test]
fn status_shows_the_running_attempt() {
    let env = Env::new();
    let job = counting(
        &env,
        "j",
        &format!("[ $n -ge 2 ] || exit 1; {}; exit 0", gate(&env, "second")),
    );
    env.detach("j", &["--retries", "2", "--backoff", "10ms"], &job);
    let v = wait_for("status shows attempt 2/3 running", || {
        let v = status_of(&env, "j");
        (v["attempt"] == "2/3" && v["state"] == "running").then_some(v)
    });
    assert!(v["exit_code"].is_null(), "{v:#}");
    assert!(env.status_file("j").is_none(), "no status between attempts");
    assert_eq!(env.record("j")["attempt"], 2);
    assert_eq!(attempt_outcomes(&env.record("j")), [(1, "failed".into())]);

    env.release("second");
    let (w, _) = env.wait(&["j"]);
    assert_code(&w, exit::SUCCESS);
    let v = status_of(&env, "j");
    assert_eq!(
        (v["state"].as_str(), v["attempt"].as_str()),
        (Some("success"), Some("2/3"))
    );
}

#[test]
fn the_backoff_doubles_with_jitter_up_to_its_cap() {
    let env = Env::new();
    let opts = [
        "--quiet",
        "--retries",
        "3",
        "--backoff",
        "100ms",
        "--backoff-max",
        "300ms",
    ];
    assert_code(&env.run("j", &opts, &sh("exit 1")), 1);
    let r = env.record("j");
    let delays: Vec<u64> = r["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.get("backoff_ms").and_then(Value::as_u64))
        .collect();
    assert_eq!(delays.len(), 3, "one delay before each retry: {r:#}");
    // Equal jitter: each delay lies in [nominal/2, nominal], where nominal
    // is 100ms doubled per retry and capped at 300ms.
    for (delay, nominal) in delays.iter().zip([100, 200, 300]) {
        assert!(
            (nominal / 2..=nominal).contains(delay),
            "delay {delay} outside [{}, {nominal}]: {delays:?}",
            nominal / 2
        );
    }
    assert_eq!(r["outcome"], "failed");
    assert_eq!(attempt_outcomes(&r).len(), 4);
}

#[test]
fn kill_during_the_backoff_ends_the_job_as_killed_without_another_attempt() {
    let env = Env::new();
    let job = counting(&env, "j", "exit 1");
    let opts = ["--retries", "3", "--backoff", "30s", "--backoff-max", "30s"];
    env.detach("j", &opts, &job);
    wait_until("attempt 1 is recorded", DEADLINE, || {
        env.file("j", ".job.json").exists()
            && env.record("j")["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    });

    let out = env.jw(&["kill", "j", "--grace", "300ms"]);
    assert_code(&out, 0);
    // kill returns once the final status is written: long before 30s.
    assert_eq!(
        env.status_file("j")
            .as_deref()
            .and_then(|s| s.lines().next()),
        Some("FAILED"),
        "status exists when kill returns\n{}",
        describe(&out)
    );
    let r = env.record("j");
    assert_eq!(r["outcome"], "killed", "{r:#}");
    assert_eq!(
        attempt_outcomes(&r),
        [(1, "failed".into())],
        "the backoff is not an attempt: {r:#}"
    );
    assert_eq!(attempts_started(&env, "j"), 1, "no further attempt");
    let (w, lines) = env.wait(&["j"]);
    assert_code(&w, exit::KILLED);
    assert_eq!(line_for(&lines, "j")["outcome"], "killed");
}

#[test]
fn a_signal_to_the_wrapper_during_the_backoff_ends_the_job_as_killed() {
    let env = Env::new();
    let job = counting(&env, "j", "exit 1");
    let d = env.detach("j", &["--retries", "3", "--backoff", "30s"], &job);
    wait_until("attempt 1 is recorded", DEADLINE, || {
        env.file("j", ".job.json").exists()
            && env.record("j")["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    });
    signal(d.wrapper_pid, Signal::TERM);
    let (w, lines) = env.wait(&["j"]);
    assert_code(&w, exit::KILLED);
    assert_eq!(line_for(&lines, "j")["outcome"], "killed");
    let r = env.record("j");
    assert_eq!(attempt_outcomes(&r), [(1, "failed".into())], "{r:#}");
    assert_eq!(attempts_started(&env, "j"), 1);
    eventually("the wrapper exits", || is_gone(d.wrapper_pid));
}

#[test]
fn a_killed_attempt_is_not_retried() {
    let env = Env::new();
    let job = counting(&env, "j", &gate(&env, "never"));
    env.detach("j", &["--retries", "3", "--backoff", "10ms"], &job);
    wait_until("attempt 1 runs", DEADLINE, || {
        attempts_started(&env, "j") == 1
    });
    assert_code(&env.jw(&["kill", "j", "--grace", "300ms"]), 0);
    let r = env.record("j");
    assert_eq!(r["outcome"], "killed");
    assert_eq!(attempt_outcomes(&r), [(1, "killed".into())]);
    assert_eq!(attempts_started(&env, "j"), 1);
}

#[test]
fn a_hung_attempt_is_retried() {
    let env = Env::new();
    // Attempt 1 prints once and then stays silent: hung under output
    // liveness. Attempt 2 succeeds.
    let job = counting(&env, "j", "[ $n -ge 2 ] || exec sleep 30");
    let mut opts = vec!["--quiet", "--retries", "1", "--backoff", "10ms"];
    opts.extend([
        "--liveness",
        "output",
        "--heartbeat",
        "100ms",
        "--stale",
        "500ms",
        "--grace",
        "100ms",
    ]);
    assert_code(&env.run("j", &opts, &job), 0);
    let r = env.record("j");
    assert_eq!(r["outcome"], "success", "{r:#}");
    assert_eq!(
        attempt_outcomes(&r),
        [(1, "hung".into()), (2, "success".into())]
    );
    assert_eq!(
        attempt_log(&env, "j", 1).as_deref(),
        Some("attempt 1 of j\n")
    );
}

#[test]
fn a_timed_out_attempt_is_retried_with_a_fresh_time_limit() {
    let env = Env::new();
    // Attempt 2 waits for the test, which releases it only once it runs:
    // under a time limit counted from the job's start it would already be
    // over, and attempt 2 would be killed at once.
    let job = counting(
        &env,
        "j",
        &format!("[ $n -ge 2 ] || exec sleep 30; {}", gate(&env, "second")),
    );
    let opts = [
        "--retries",
        "1",
        "--backoff",
        "10ms",
        "--timeout",
        "2s",
        "--grace",
        "100ms",
        "--liveness",
        "timer",
    ];
    env.detach("j", &opts, &job);
    wait_until("attempt 2 runs", DEADLINE, || {
        attempts_started(&env, "j") == 2
    });
    env.release("second");
    let (w, _) = env.wait(&["j"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(
        attempt_outcomes(&env.record("j")),
        [(1, "timeout".into()), (2, "success".into())]
    );
}

#[test]
fn a_job_that_fails_every_attempt_counts_once_for_its_breaker() {
    let env = Env::new();
    let mut opts = QUICK.to_vec();
    opts.extend(["--retries", "2", "--breaker", "k", "--max-failures", "2"]);
    let job = counting(&env, "j", "exit 1");
    assert_code(&env.run("j", &opts, &job), 1);
    assert_eq!(attempts_started(&env, "j"), 3);
    let out = env.jw(&["breaker", "status", "k", "--json"]);
    assert_code(&out, 0);
    let v = json_line(&out);
    assert_eq!(v["consecutive_failures"], 1, "one job, one failure: {v:#}");
    assert_eq!(v["state"], "closed", "{v:#}");

    // A job that succeeds after failed attempts is a success to its breaker.
    let job = counting(&env, "ok", "[ $n -ge 2 ]");
    assert_code(&env.run("ok", &opts, &job), 0);
    let v = json_line(&env.jw(&["breaker", "status", "k", "--json"]));
    assert_eq!(v["consecutive_failures"], 0, "{v:#}");
}

#[test]
fn the_next_run_archives_the_attempts_into_history() {
    let env = Env::new();
    let mut opts = QUICK.to_vec();
    opts.extend(["--retries", "2"]);
    let job = counting(&env, "j", "[ $n -ge 3 ] || exit 1");
    assert_code(&env.run("j", &opts, &job), 0);
    let job_id = env.record("j")["job_id"].clone();

    assert_code(&env.run("j", &["--quiet"], &sh("echo second run")), 0);
    assert!(
        !env.dir.join("attempts").join("j").exists(),
        "the new run starts without earlier attempts"
    );
    assert_eq!(env.log("j"), "second run\n");
    let runs: Vec<_> = fs::read_dir(env.dir.join("history").join("j"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let old = &runs[0];
    let read = |p: &str| fs::read_to_string(old.join(p)).unwrap();
    assert_eq!(read("attempts/1.log"), "attempt 1 of j\n");
    assert_eq!(read("attempts/2.log"), "attempt 2 of j\n");
    assert_eq!(read("j.log"), "attempt 3 of j\n");
    let record: Value = serde_json::from_str(&read("j.job.json")).unwrap();
    assert_eq!(record["job_id"], job_id);
    assert_eq!(attempt_outcomes(&record).len(), 3);
}

#[test]
fn wait_on_a_retrying_job_returns_only_the_final_outcome() {
    let env = Env::new();
    let job = counting(
        &env,
        "j",
        &format!(
            "if [ $n -eq 1 ]; then {}; exit 1; fi; {}; exit 0",
            gate(&env, "first"),
            gate(&env, "second")
        ),
    );
    env.detach("j", &["--retries", "1", "--backoff", "10ms"], &job);
    let waiter = env.spawn(&["wait", "j"]);
    env.release("first");
    wait_until("attempt 2 runs", DEADLINE, || {
        attempts_started(&env, "j") == 2
    });
    assert!(env.status_file("j").is_none());
    let mut waiter = waiter;
    assert!(
        waiter.is_running(),
        "wait does not return on a failed attempt"
    );

    env.release("second");
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{}", describe(&out));
    assert_eq!(line_for(&lines, "j")["outcome"], "success");
}

#[test]
fn an_attempt_whose_log_was_removed_is_still_retried() {
    let env = Env::new();
    let mut opts = QUICK.to_vec();
    opts.extend(["--retries", "1"]);
    let job = counting(
        &env,
        "j",
        "[ $n -ge 2 ] && exit 0; rm \"$JOBWATCH_DIR/$JOBWATCH_NAME.log\"; exit 1",
    );
    let out = env.run("j", &opts, &job);
    assert_code(&out, 0);
    assert_eq!(env.await_status("j"), "SUCCESS");
    assert_eq!(
        attempt_outcomes(&env.record("j")),
        [(1, "failed".into()), (2, "success".into())]
    );
    assert_eq!(env.log("j"), "attempt 2 of j\n");
    assert_eq!(attempt_log(&env, "j", 1), None, "nothing was left to keep");
}

#[test]
fn an_attempt_log_that_cannot_be_put_aside_ends_the_job_with_its_outcome() {
    let env = Env::new();
    assert_code(&env.run("first", &["--quiet"], &["true"]), 0);
    // A file where the attempts folder belongs: no log can be put aside.
    fs::write(env.dir.join("attempts"), b"in the way").unwrap();
    let mut opts = QUICK.to_vec();
    opts.extend(["--retries", "2"]);
    let job = counting(&env, "j", "exit 4");
    let out = env.run("j", &opts, &job);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("not retrying"), "{}", describe(&out));
    assert_eq!(env.await_status("j"), "FAILED", "the result is kept");
    let r = env.record("j");
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(attempt_outcomes(&r), [(1, "failed".into())], "{r:#}");
    assert_eq!(attempts_started(&env, "j"), 1);
    assert_eq!(env.log("j"), "attempt 1 of j\n", "its log stays in place");
}
