//! Liveness: silent deadlocked jobs are reported hung and killed; jobs that
//! show progress the way their `--liveness` mode expects are never hung.

use std::fs;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// Waits until `NAME.heartbeat` has advanced to 2.5 s after `t0` — well past
/// the 1 s stale threshold — while the job keeps running (a status appearing
/// first means it was wrongly judged hung).
#[track_caller]
fn assert_heartbeat_outlives_the_stale_threshold(env: &Env, name: &str, t0: SystemTime) {
    assert_heartbeat_advances(env, name, t0, Duration::from_millis(2500));
}

/// Waits until `NAME.heartbeat` has advanced to `by` after `t0` while the
/// job keeps running (a status appearing first means it was judged hung).
#[track_caller]
fn assert_heartbeat_advances(env: &Env, name: &str, t0: SystemTime, by: Duration) {
    let target = t0 + by;
    let hb = env.file(name, ".heartbeat");
    eventually(
        &format!("{name}.heartbeat advances {by:?} past the start"),
        || {
            if let Some(status) = env.status_file(name) {
                panic!(
                    "{name} finished while it was making progress: status {status:?}, record {}",
                    env.record(name)
                );
            }
            mtime(&hb).is_some_and(|m| m >= target)
        },
    );
}

#[test]
fn a_silent_sleep_under_output_liveness_is_reported_hung_and_killed() {
    let env = Env::new();
    let mut opts = vec!["--liveness", "output"];
    opts.extend_from_slice(FAST);
    let d = env.detach("deadlock", &opts, &["sleep", "300"]);
    let (w, lines) = env.wait(&["deadlock"]);
    assert_code(&w, exit::HUNG);
    assert_eq!(line_for(&lines, "deadlock")["outcome"], "hung");
    assert_all_gone(&[("sleep", d.pid)]);
    assert_eq!(env.await_status("deadlock"), "FAILED");
    assert_eq!(env.record("deadlock")["outcome"], "hung");
}

#[test]
fn a_foreground_run_of_a_hung_job_exits_3() {
    let env = Env::new();
    let mut opts = vec!["--liveness", "output"];
    opts.extend_from_slice(FAST);
    let out = env.run("fghung", &opts, &["sleep", "300"]);
    assert_code(&out, 3);
    assert_eq!(env.record("fghung")["outcome"], "hung");
    assert_all_gone(&[("sleep", int(&env.record("fghung"), "child_pid"))]);
}

#[test]
fn a_process_blocked_reading_a_fifo_is_hung_under_auto_liveness() {
    let env = Env::new();
    let fifo = env.scratch("fifo");
    let mut mk = env.other("mkfifo");
    mk.arg(&fifo);
    assert_code(&output_of(mk), 0);

    let fifo = fifo.to_string_lossy().into_owned();
    let d = env.detach("blocked", FAST, &["cat", fifo.as_str()]);
    let (w, lines) = env.wait(&["blocked"]);
    assert_code(&w, exit::HUNG);
    assert_eq!(line_for(&lines, "blocked")["outcome"], "hung");
    assert_all_gone(&[("cat", d.pid)]);
    assert_eq!(env.record("blocked")["outcome"], "hung");
}

/// Prints a line every 100 ms for about 2.5 s.
fn steady_printer() -> Vec<String> {
    sh("i=0; while [ $i -lt 25 ]; do echo \"tick $i\"; sleep 0.1; i=$((i+1)); done")
}

#[test]
fn a_job_that_prints_steadily_is_never_reported_hung() {
    let env = Env::new();
    let out = env.run(
        "chatty",
        &["--stale", "1s", "--heartbeat", "100ms"],
        &steady_printer(),
    );
    assert_code(&out, 0);
    assert_eq!(env.record("chatty")["outcome"], "success");
    assert!(env.log("chatty").contains("tick 24"));
}

#[test]
fn a_job_that_prints_steadily_is_never_hung_under_output_liveness() {
    let env = Env::new();
    let opts = [
        "--liveness",
        "output",
        "--stale",
        "1s",
        "--heartbeat",
        "100ms",
    ];
    let out = env.run("chatty", &opts, &steady_printer());
    assert_code(&out, 0);
    assert_eq!(env.record("chatty")["outcome"], "success");
}

#[test]
fn a_busy_silent_job_is_alive_under_cpu_liveness() {
    let env = Env::new();
    let go = env.scratch("spin.go");
    let job = sh(&format!("while [ ! -e '{}' ]; do :; done", go.display()));
    let mut opts = vec!["--liveness", "cpu"];
    opts.extend_from_slice(FAST);
    let t0 = SystemTime::now();
    env.detach("spin", &opts, &job);
    assert_heartbeat_outlives_the_stale_threshold(&env, "spin", t0);
    env.release("spin");
    assert_code(&env.wait(&["spin"]).0, exit::SUCCESS);
}

/// A `--liveness beat` job that beats with `beat_cmd` every 100 ms until
/// released outlives its stale threshold and then succeeds.
fn assert_a_beating_job_stays_alive(beat_cmd: &str) {
    let env = Env::new();
    let go = env.scratch("beater.go");
    let job = sh(&format!(
        "while [ ! -e '{}' ]; do {beat_cmd} || exit 99; sleep 0.1; done",
        go.display()
    ));
    let mut opts = vec!["--liveness", "beat"];
    opts.extend_from_slice(FAST);
    let t0 = SystemTime::now();
    env.detach("beater", &opts, &job);
    assert_heartbeat_outlives_the_stale_threshold(&env, "beater", t0);
    env.release("beater");
    let (w, lines) = env.wait(&["beater"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "beater")["outcome"], "success");
}

#[test]
fn touching_jobwatch_heartbeat_keeps_a_beat_liveness_job_alive() {
    assert_a_beating_job_stays_alive("touch \"$JOBWATCH_HEARTBEAT\"");
}

#[test]
fn jobwatch_beat_keeps_a_beat_liveness_job_alive() {
    // Uses the job's own $JOBWATCH_DIR and $JOBWATCH_NAME, no --dir.
    assert_a_beating_job_stays_alive("\"$JW\" beat \"$JOBWATCH_NAME\"");
}

#[test]
fn a_beat_liveness_job_that_never_beats_is_hung_even_if_it_prints() {
    let env = Env::new();
    let mut opts = vec!["--liveness", "beat"];
    opts.extend_from_slice(FAST);
    let job = sh("while :; do echo still printing; sleep 0.1; done");
    let d = env.detach("nobeat", &opts, &job);
    let (w, lines) = env.wait(&["nobeat"]);
    assert_code(&w, exit::HUNG);
    assert_eq!(line_for(&lines, "nobeat")["outcome"], "hung");
    assert_all_gone(&[("job", d.pid)]);
}

#[test]
fn timer_liveness_keeps_a_silent_job_alive_while_its_wrapper_lives() {
    let env = Env::new();
    let t0 = SystemTime::now();
    let d = env.detach("timer", FAST_TIMER, &["sleep", "300"]);
    assert_heartbeat_outlives_the_stale_threshold(&env, "timer", t0);
    assert!(is_alive(d.pid));
    assert_code(&env.jw(&["kill", "timer", "--grace", "300ms"]), 0);
    assert_all_gone(&[("sleep", d.pid)]);
}

#[test]
fn beat_command_touches_the_heartbeat() {
    let env = Env::new();
    // Stale far beyond the hour we age the heartbeat by, so it is never hung.
    let opts = [
        "--liveness",
        "beat",
        "--heartbeat",
        "100ms",
        "--stale",
        "24h",
    ];
    env.detach("manual", &opts, &env.gated("manual", 0));
    let hb = env.file("manual", ".heartbeat");
    age_file(&hb);
    let before = mtime(&hb).unwrap();
    assert_code(&env.jw(&["beat", "manual"]), 0);
    let after = mtime(&hb).unwrap();
    assert!(
        after > before + Duration::from_secs(1800),
        "beat must refresh the heartbeat mtime"
    );
    env.release("manual");
    assert_code(&env.wait(&["manual"]).0, exit::SUCCESS);
}

// ------------------------------------------- CPU liveness over a tree ---
//
// The wrapper samples its job tree's CPU cheaply while nothing in it runs,
// and looks for new processes when something does (src/sys/cpu.rs); these
// pin down what that must never miss.

#[test]
fn two_processes_blocked_on_each_other_are_hung_under_cpu_liveness() {
    let env = Env::new();
    let (a, b) = (env.scratch("a.fifo"), env.scratch("b.fifo"));
    let mut mk = env.other("mkfifo");
    mk.arg(&a).arg(&b);
    assert_code(&output_of(mk), 0);
    let sub_pid = env.scratch("sub.pid");
    // Each opens for reading the FIFO only the other would write: both
    // block forever, using no CPU.
    let job = sh(&format!(
        "(read x < '{a}'; echo > '{b}') & echo $! > '{sub}'; read y < '{b}'; echo > '{a}'",
        a = a.display(),
        b = b.display(),
        sub = sub_pid.display()
    ));
    let mut opts = vec!["--liveness", "cpu"];
    opts.extend_from_slice(FAST);
    let d = env.detach("deadlock", &opts, &job);
    let (w, lines) = env.wait(&["deadlock"]);
    assert_code(&w, exit::HUNG);
    assert_eq!(line_for(&lines, "deadlock")["outcome"], "hung");
    assert_eq!(env.record("deadlock")["outcome"], "hung");
    assert_all_gone(&[("leader", d.pid), ("subshell", read_pid(&sub_pid))]);
}

/// A job whose leader and child only wait, and whose grandchild, forked
/// 0.3 s after the start (after the wrapper has sampled the quiet tree a
/// few times at a 100 ms heartbeat), burns CPU until released.
fn late_burning_grandchild(env: &Env, prefix: &str) -> Vec<String> {
    let go = env.scratch(&format!("{prefix}.go"));
    let burner = format!("sh -c \"while [ ! -e '{}' ]; do :; done\"", go.display());
    env.tree_script(prefix, "sleep 0.3", &burner)
}

/// Waits until the grandchild of [`Env::tree_script`] has written its PID.
fn grandchild_started(env: &Env, prefix: &str) -> i32 {
    let file = env.scratch(&format!("{prefix}.grandchild.pid"));
    wait_for("the grandchild has started", || {
        fs::read_to_string(&file).ok()?.trim().parse().ok()
    })
}

#[test]
fn a_job_whose_only_progress_is_a_late_grandchilds_cpu_stays_alive() {
    let env = Env::new();
    // A 2 s threshold leaves room for a slow start on a loaded machine.
    let opts = [
        "--liveness",
        "cpu",
        "--heartbeat",
        "100ms",
        "--stale",
        "2s",
        "--grace",
        "300ms",
    ];
    env.detach("late", &opts, &late_burning_grandchild(&env, "late"));
    grandchild_started(&env, "late");
    // Three stale periods after the grandchild started.
    assert_heartbeat_advances(&env, "late", SystemTime::now(), Duration::from_secs(6));
    env.release("late");
    let (w, lines) = env.wait(&["late"]);
    assert_code(&w, exit::SUCCESS);
    assert_eq!(line_for(&lines, "late")["outcome"], "success");
}

#[test]
fn a_waiter_sees_a_late_grandchilds_cpu_as_progress_within_a_heartbeat() {
    let env = Env::new();
    // The wrapper's own threshold is far away: only the heartbeat it keeps
    // (moved at each sample that sees CPU progress, protocol section 7)
    // tells a waiter with a short --stale that the job is alive.
    let opts = ["--liveness", "cpu", "--heartbeat", "100ms", "--stale", "1h"];
    env.detach("late", &opts, &late_burning_grandchild(&env, "late"));
    grandchild_started(&env, "late");
    let (w, lines) = env.wait(&["late", "--stale", "2s", "--timeout", "5s", "--no-kill"]);
    assert_code(&w, exit::TIMEOUT);
    assert_ne!(line_for(&lines, "late")["outcome"], "hung");
    env.release("late");
    assert_code(&env.wait(&["late"]).0, exit::SUCCESS);
}

#[test]
fn grandchildren_that_burn_and_exit_between_samples_keep_their_job_alive() {
    let env = Env::new();
    let go = env.scratch("brief.go");
    // Each burner lives a few tens of milliseconds, less than the 100 ms
    // between samples, and is reaped by the child before the next one.
    let job = env.tree_script(
        "brief",
        "",
        &format!(
            "while [ ! -e '{}' ]; do sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'; sleep 0.2; done",
            go.display()
        ),
    );
    let mut opts = vec!["--liveness", "cpu"];
    opts.extend_from_slice(FAST);
    let t0 = SystemTime::now();
    env.detach("brief", &opts, &job);
    assert_heartbeat_advances(&env, "brief", t0, Duration::from_secs(4));
    env.release("brief");
    assert_code(&env.wait(&["brief"]).0, exit::SUCCESS);
}

#[test]
fn an_idle_wrapper_does_not_read_the_whole_process_table_at_each_sample() {
    let Some(()) = runnable(strace()) else {
        return;
    };
    let env = Env::new();
    let opts = ["--liveness", "cpu", "--heartbeat", "50ms", "--stale", "1h"];
    let d = env.detach("idle", &opts, &["sleep", "300"]);
    let trace = env.scratch("idle.strace");
    let tracer = attach_strace(&env, d.wrapper_pid, &trace, &["-e", "trace=ppoll,openat"]);
    let samples = |t: &str| t.lines().filter(|l| l.contains("ppoll(")).count();
    eventually("the wrapper has slept and sampled 30 times", || {
        fs::read_to_string(&trace).is_ok_and(|t| samples(&t) >= 30)
    });
    let t = detach_strace(tracer, &trace);
    let scans = t
        .lines()
        .filter(|l| l.contains("openat(") && l.contains("\"/proc\","))
        .count();
    // Finding the tree again after the start may scan (twice at most, on a
    // kernel without children files); an idle tree is never scanned again.
    assert!(
        scans <= 2,
        "{scans} scans of /proc over {} samples:\n{t}",
        samples(&t)
    );
    assert_code(&env.jw(&["kill", "idle", "--grace", "300ms"]), 0);
    assert_all_gone(&[("sleep", d.pid)]);
}
