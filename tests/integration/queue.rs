//! The daemonless queue: `run --after OTHER[:success|:done]` and
//! `run --slot GROUP[:N]` (protocol §19). Jobs wait `queued` with no
//! process of their own; whoever ends a run (or looks) starts what may run
//! next.

use std::fs;
use std::thread;

use serde_json::Value;

use crate::support::*;

/// `run NAME --detach OPTS -- CMD` for a job that is queued: its line.
#[track_caller]
fn queue(env: &Env, name: &str, opts: &[&str], command: &[String]) -> Value {
    let out = env.jw(&run_args(name, opts, command, true));
    assert_code(&out, 0);
    json_line(&out)
}

/// `status NAME`'s JSON line (`null` while it has no job).
#[track_caller]
fn status_of(env: &Env, name: &str) -> Value {
    let out = env.jw(&["status", name, "--json"]);
    json_lines(&out).pop().unwrap_or(Value::Null)
}

/// A job that appends its name to `$T/order` and exits `code`.
fn note(name: &str, code: i32) -> Vec<String> {
    sh(&format!("echo {name} >> \"$T/order\"; exit {code}"))
}

fn order(env: &Env) -> Vec<String> {
    fs::read_to_string(env.scratch("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_job_after_another_waits_queued_and_starts_once_it_succeeded() {
    let env = Env::new();
    env.detach("build", &[], &env.gated("build", 0));
    let q = queue(&env, "test", &["--after", "build"], &note("test", 0));
    assert_eq!(q["queued"], true, "{q}");
    assert_eq!(q["position"], 1, "{q}");

    let row = status_of(&env, "test");
    assert_eq!(row["state"], "queued", "{row}");
    assert_eq!(row["position"], 1, "{row}");
    assert!(
        row["reason"].as_str().unwrap().contains("build (running)"),
        "{row}"
    );
    assert!(order(&env).is_empty(), "nothing ran yet");

    env.release("build");
    let (w, lines) = env.wait(&["test"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "test")["outcome"], "success");
    assert_eq!(order(&env), ["test"]);
    // The run is the one queued: its job_id was fixed when it was queued.
    assert_eq!(env.record("test")["job_id"], q["job_id"]);
}

#[test]
fn a_failed_dependency_skips_its_dependents_transitively_with_their_own_exit_code() {
    let env = Env::new();
    env.detach("a", &[], &env.gated("a", 1));
    queue(&env, "b", &["--after", "a"], &note("b", 0));
    queue(&env, "c", &["--after", "b:success"], &note("c", 0));
    // `done`: runs whatever its dependency ended with, skipped included.
    queue(&env, "d", &["--after", "c:done"], &note("d", 0));

    env.release("a");
    let (w, lines) = env.wait(&["b", "c", "d"]);
    assert_eq!(line_for(&lines, "b")["outcome"], "skipped", "{lines:?}");
    assert_eq!(line_for(&lines, "c")["outcome"], "skipped", "{lines:?}");
    assert_eq!(line_for(&lines, "d")["outcome"], "success", "{lines:?}");
    assert_ne!(code(&w), exit::SUCCESS);
    assert!(
        line_for(&lines, "b")["reason"]
            .as_str()
            .unwrap()
            .contains("dependency a ended failed"),
        "{lines:?}"
    );
    assert_eq!(order(&env), ["d"], "skipped jobs never ran");
    assert_eq!(env.status_file("b").unwrap().lines().next(), Some("FAILED"));
    assert!(env.status_file("b").unwrap().contains("outcome=skipped"));

    let (w, _) = env.wait(&["c"]);
    assert_code(&w, exit::SKIPPED);
    // A dependency that failed before the job is queued: skipped at once.
    let out = env.jw(&run_args("e", &["--after", "a"], &note("e", 0), true));
    assert_code(&out, exit::SKIPPED);
    assert_eq!(json_line(&out)["outcome"], "skipped");
    let out = env.run("f", &["--after", "b"], &note("f", 0));
    assert_code(&out, exit::SKIPPED);
    assert!(stderr(&out).contains("f skipped"), "{}", describe(&out));
    assert_eq!(order(&env), ["d"]);
}

#[test]
fn a_foreground_run_after_a_job_waits_for_it_and_returns_its_own_exit_code() {
    let env = Env::new();
    env.detach("first", &[], &env.gated("first", 0));
    let fg = env.spawn(&run_args(
        "second",
        &["--after", "first"],
        &note("second", 3),
        false,
    ));
    eventually("second is queued", || {
        status_of(&env, "second")["state"] == "queued"
    });
    env.release("first");
    let out = fg.finish();
    assert_code(&out, 3);
    assert!(stderr(&out).contains("queued second"), "{}", describe(&out));
    assert_eq!(order(&env), ["second"]);
}

/// A job that counts itself in `$T/running` (under an flock) while it
/// runs, and notes the count it saw in `$T/seen`.
fn counted(name: &str) -> Vec<String> {
    sh(&format!(
        "flock \"$T/count.lock\" sh -c 'n=$(cat \"$T/running\" 2>/dev/null || echo 0); \
         n=$((n+1)); echo $n > \"$T/running\"; echo $n >> \"$T/seen\"'; \
         echo {name} >> \"$T/order\"; sleep 0.2; \
         flock \"$T/count.lock\" sh -c 'n=$(cat \"$T/running\"); echo $((n-1)) > \"$T/running\"'"
    ))
}

#[test]
fn a_slot_of_n_never_runs_more_than_n_jobs_at_once_across_concurrent_submitters() {
    let env = Env::new();
    let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    thread::scope(|scope| {
        for chunk in names.chunks(3) {
            let env = &env;
            scope.spawn(move || {
                for name in chunk {
                    let out = env.jw(&run_args(name, &["--slot", "pool:2"], &counted(name), true));
                    assert_code(&out, 0);
                }
            });
        }
    });
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (w, lines) = env.wait(&refs);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(lines.len(), names.len());
    let seen: Vec<u32> = fs::read_to_string(env.scratch("seen"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(seen.len(), names.len(), "every job ran once");
    assert!(
        seen.iter().all(|&n| n <= 2),
        "more than 2 at once: {seen:?}"
    );
}

#[test]
fn a_slot_serves_its_jobs_first_come_first_and_status_shows_their_places() {
    let env = Env::new();
    env.detach("head", &["--slot", "one:1"], &env.gated("head", 0));
    for (i, name) in ["q1", "q2", "q3"].iter().enumerate() {
        let q = queue(&env, name, &["--slot", "one"], &note(name, 0));
        assert_eq!(q["position"], i + 1, "{q}");
        assert_eq!(q["queue"], "one", "{q}");
    }
    let listing = json_lines(&env.jw(&["status", "--json"]));
    for (i, name) in ["q1", "q2", "q3"].iter().enumerate() {
        let row = line_for(&listing, name);
        assert_eq!(row["state"], "queued", "{row}");
        assert_eq!(row["position"], i + 1, "{row}");
    }
    // A size other than the group's is refused while it has jobs.
    let out = env.jw(&run_args("q4", &["--slot", "one:3"], &note("q4", 0), true));
    assert_usage_error(&out, &["slot group one has size 1"]);

    env.release("head");
    let (w, _) = env.wait(&["q1", "q2", "q3"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(order(&env), ["q1", "q2", "q3"]);
}

#[test]
fn a_hung_job_frees_its_slot() {
    let env = Env::new();
    let silent = sh("sleep 300");
    let mut opts = vec!["--slot", "h:1", "--liveness", "output"];
    opts.extend_from_slice(FAST);
    env.detach("stuck", &opts, &silent);
    queue(&env, "next", &["--slot", "h"], &note("next", 0));
    let (w, lines) = env.wait(&["next"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "next")["outcome"], "success");
    assert_eq!(env.record("stuck")["outcome"], "hung");
}

#[test]
fn a_killed_queued_job_never_starts() {
    let env = Env::new();
    env.detach("gate", &[], &env.gated("gate", 0));
    queue(&env, "doomed", &["--after", "gate"], &note("doomed", 0));
    queue(&env, "witness", &["--after", "gate"], &note("witness", 0));

    let out = env.jw(&["kill", "doomed"]);
    assert_code(&out, 0);
    let record = env.record("doomed");
    assert_eq!(record["outcome"], "killed");
    assert!(record["child_pid"].is_null(), "{record}");
    assert!(record["reason"].as_str().unwrap().contains("queued"));

    env.release("gate");
    let (w, _) = env.wait(&["witness"]);
    assert_code(&w, exit::SUCCESS);
    // The dispatch that started the witness did not start the killed job,
    // nor does any later look.
    assert_code(&env.jw(&["status"]), 0);
    assert_eq!(order(&env), ["witness"]);
    assert_eq!(env.record("doomed")["outcome"], "killed");
}

#[test]
fn a_wait_on_a_queued_job_past_its_limit_ends_it_timeout_without_running_it() {
    let env = Env::new();
    env.detach("gate", &[], &env.gated("gate", 0));
    queue(&env, "late", &["--after", "gate"], &note("late", 0));
    let (w, lines) = env.wait(&["late", "--timeout", "300ms"]);
    assert_code(&w, exit::TIMEOUT);
    assert!(
        stderr(&w).contains("late is queued: waiting for gate (running)"),
        "{}",
        describe(&w)
    );
    assert_eq!(line_for(&lines, "late")["outcome"], "timeout");
    env.release("gate");
    let (w, _) = env.wait(&["gate"]);
    assert_code(&w, exit::SUCCESS);
    assert_code(&env.jw(&["status"]), 0);
    assert!(order(&env).is_empty(), "late never ran");
}

#[test]
fn a_crash_of_the_committing_wrapper_does_not_strand_the_queue() {
    let env = Env::new();
    let d = env.detach("a", &[], &env.gated("a", 0));
    queue(&env, "b", &["--after", "a"], &note("b", 0));
    // Hold the queue's lock: a's wrapper commits, then blocks in its
    // dispatch, where it is killed.
    let lock = env.dir.join("queues/_after.lock");
    assert!(lock.exists(), "the queue has its lock file");
    let mut holder = env.other("flock");
    // -o: the lock stays with flock itself, not with its sleep.
    holder.arg("-o").arg(&lock).args(["sleep", "300"]);
    let holder = ChildGuard::spawn(holder);
    eventually("the test holds the queue's lock", || !has_flock_free(&lock));
    env.release("a");
    assert_eq!(env.await_status("a"), "SUCCESS");
    assert!(is_alive(d.wrapper_pid), "a's wrapper waits for the queue");
    signal(d.wrapper_pid, rustix::process::Signal::KILL);
    eventually("a's wrapper is gone", || is_gone(d.wrapper_pid));
    drop(holder);
    eventually("the queue's lock is free", || has_flock_free(&lock));
    assert!(order(&env).is_empty(), "nobody dispatched b yet");
    assert!(!env.file("b", ".job.json").exists(), "b has not started");
    assert!(env.dir.join("queued/b.json").exists(), "b is still queued");
    // Whoever looks next (here: the wait) dispatches.
    let (w, _) = env.wait(&["b"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(order(&env), ["b"]);
}

/// Whether an exclusive flock on `path` can be taken now (`flock -n`).
fn has_flock_free(path: &std::path::Path) -> bool {
    std::process::Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_dependency_whose_wrapper_died_is_finished_lost_and_its_dependent_skipped() {
    let env = Env::new();
    let d = env.detach("victim", &["--liveness", "timer"], &sh("sleep 300"));
    queue(&env, "after", &["--after", "victim"], &note("after", 0));
    signal(d.wrapper_pid, rustix::process::Signal::KILL);
    eventually("the wrapper is gone", || is_gone(d.wrapper_pid));
    let (w, lines) = env.wait(&["after"]);
    assert_code(&w, exit::SKIPPED);
    assert!(
        line_for(&lines, "after")["reason"]
            .as_str()
            .unwrap()
            .contains("victim ended lost"),
        "{lines:?}"
    );
    assert_eq!(env.record("victim")["outcome"], "lost");
    eventually("the victim's command was killed", || is_gone(d.pid));
    assert!(order(&env).is_empty());
}

#[test]
fn cycles_and_unknown_names_are_refused_with_one_line_errors() {
    let env = Env::new();
    let out = env.jw(&run_args("x", &["--after", "nosuch"], &note("x", 0), true));
    assert_usage_error(&out, &["--after nosuch", "no job named nosuch"]);
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", describe(&out));

    let out = env.jw(&run_args("x", &["--after", "x"], &note("x", 0), true));
    assert_usage_error(&out, &["dependency cycle x -> x"]);

    let out = env.jw(&run_args("x", &["--after", "y:later"], &note("x", 0), true));
    assert_usage_error(&out, &["\"later\" is not success or done"]);
    let out = env.jw(&run_args("x", &["--slot", "g:0"], &note("x", 0), true));
    assert_usage_error(&out, &["invalid slot"]);

    // a ran; b waits for a gate and for a; queuing a again after b closes
    // the cycle a -> b -> a, refused before anything is queued.
    assert_code(&env.run("a", &[], &sh("true")), 0);
    env.detach("gate", &[], &env.gated("gate", 0));
    queue(
        &env,
        "b",
        &["--after", "gate", "--after", "a"],
        &note("b", 0),
    );
    let out = env.jw(&run_args("a", &["--after", "b"], &note("a", 0), true));
    assert_usage_error(&out, &["dependency cycle a -> b -> a"]);
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", describe(&out));
    assert_eq!(status_of(&env, "a")["state"], "success", "a was not queued");
    assert!(!env.dir.join("queued/a.json").exists());
    env.release("gate");
    let (w, _) = env.wait(&["b"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(order(&env), ["b"]);
}

#[test]
fn a_queued_job_that_another_process_started_meanwhile_is_reported_started() {
    let Some(()) = runnable(strace()) else {
        return;
    };
    let env = Env::new();
    env.detach("g", &["--slot", "s:1"], &env.gated("g", 0));
    // The submitter of x is held for 3 s at its first directory listing:
    // the dispatch that follows its look, once x waits in the queue.
    let mut submit = env.other("strace");
    submit
        .args(["-qq", "-o", "/dev/null", "-e", "trace=getdents64"])
        .args(["-e", "inject=getdents64:delay_enter=3000000:when=1"])
        .arg(bin())
        .arg("--dir")
        .arg(&env.dir)
        .args(run_args("x", &["--slot", "s"], &env.gated("x", 0), true));
    let submit = ChildGuard::spawn(submit);
    let queue = env.dir.join("queues/s.json");
    eventually("x waits in slot s", || {
        fs::read_to_string(&queue).is_ok_and(|q| q.contains("\"waiting\":[{\"name\":\"x\""))
    });
    // g ends: its wrapper starts x while x's submitter is held.
    env.release("g");
    let pid = wait_for("x runs", || {
        let text = fs::read_to_string(env.file("x", ".job.json")).ok()?;
        let record: Value = serde_json::from_str(&text).ok()?;
        record["child_pid"].as_i64()
    });
    let out = submit.finish();
    assert_code(&out, 0);
    let line = json_line(&out);
    assert_eq!(line["name"], "x", "{line}");
    assert_eq!(line["pid"], pid, "{line}");
    env.release("x");
    let (w, _) = env.wait(&["x"]);
    assert_code(&w, exit::SUCCESS);
}

/// Nobody waits and nobody looks: the wrapper that commits the
/// dependency's outcome starts the dependent itself (with the wrapper
/// binary it is, the lean `jobwatch-wrapper` here), and that one ends too.
#[test]
fn the_wrapper_that_ends_a_dependency_starts_its_dependent_with_nobody_looking() {
    let env = Env::new();
    env.detach("first", &[], &env.gated("first", 0));
    queue(&env, "second", &["--after", "first"], &note("second", 0));
    env.release("first");
    // Only the job files are read from here on: no `wait` or `status`,
    // which would dispatch too.
    eventually("the dependent ran and ended", || {
        env.file("second", ".status").exists()
    });
    assert_eq!(order(&env), ["second"]);
    assert_eq!(env.record("second")["outcome"], "success");
}
