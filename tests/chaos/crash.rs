//! Crashes: the wrapper or the waiter dies by SIGKILL at an arbitrary point.

use rustix::process::Signal;

use crate::support::*;

/// Every file of a finished job agrees, and no temp file is left behind.
#[track_caller]
pub fn assert_consistent_finish(env: &Env, name: &str, outcome: &str) {
    let record = env.record(name);
    assert_eq!(record["outcome"], outcome, "record: {record}");
    assert!(
        record["ended_at"].is_string(),
        "a final record has ended_at: {record}"
    );
    let status = env.status_file(name).expect("a finished job has a status");
    let word = if outcome == "success" {
        "SUCCESS"
    } else {
        "FAILED"
    };
    assert!(
        status.starts_with(&format!("{word}\noutcome={outcome}\n")),
        "status file agrees with the record: {status:?}"
    );
    assert_no_temp_files(env);
}

/// No `.tmp-*` file is left in the jobs directory.
#[track_caller]
pub fn assert_no_temp_files(env: &Env) {
    let temps: Vec<String> = std::fs::read_dir(&env.dir)
        .expect("list jobs dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

#[test]
fn sigkill_of_the_wrapper_leaves_a_lost_job_with_consistent_files_and_no_orphans() {
    let env = Env::new();
    // The grandchild also escapes the group: the lost-job cleanup must find
    // it by the job id in its environment.
    let job = env.tree_script("t", "", "setsid sleep 300");
    let d = env.detach("crashy", FAST_TIMER, &job);
    let tree = env.tree_pids("t");
    tree.assert_alive();

    signal(d.wrapper_pid, Signal::KILL);
    eventually("the wrapper is gone", || is_gone(d.wrapper_pid));
    assert_eq!(
        env.status_file("crashy"),
        None,
        "a dead wrapper writes nothing"
    );

    let (out, lines) = env.wait(&["crashy", "--json", "--grace", "300ms"]);
    assert_code(&out, exit::LOST);
    assert_eq!(line_for(&lines, "crashy")["outcome"], "lost");
    assert_consistent_finish(&env, "crashy", "lost");
    assert_eq!(env.record("crashy")["finalized_by"], "waiter");
    tree.assert_gone();
    eventually("no process of the test is left", || {
        env.tagged_processes().is_empty()
    });
    let status = env.jw(&["status", "crashy", "--json"]);
    assert_code(&status, 0);
    assert_eq!(json_line(&status)["state"], "lost");
}

#[test]
fn sigkill_of_the_waiter_leaves_the_job_running_and_a_new_waiter_gets_its_outcome() {
    let env = Env::new();
    let job = env.gated("g", 0);
    let d = env.detach("steady", FAST_TIMER, &job);

    let mut first = env.spawn(&["wait", "steady", "--json"]);
    // Killed while it really waits (its watch is set and it sleeps on it),
    // not while it is still starting up.
    await_blocked_on_events(first.pid());
    assert!(first.is_running(), "the first waiter is still waiting");
    signal(first.pid(), Signal::KILL);
    eventually("the first waiter is gone", || !first.is_running());

    assert!(is_alive(d.pid), "the job survives its waiter");
    assert!(is_alive(d.wrapper_pid), "the wrapper survives the waiter");
    assert_eq!(env.status_file("steady"), None);
    let status = env.jw(&["status", "steady", "--json"]);
    assert_eq!(json_line(&status)["state"], "running");

    let second = env.spawn(&["wait", "steady", "--json"]);
    env.release("g");
    let out = second.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(json_line(&out)["outcome"], "success");
    assert_consistent_finish(&env, "steady", "success");
    assert!(env.log("steady").contains("released"));
}
