//! Processes that are not what the record says: a reused PID must never be
//! signalled, and a descendant that escaped the job's group must still die.

use serde_json::Value;

use crate::support::*;

/// Field 22 of `/proc/PID/stat`: the start time in clock ticks.
fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn pids_in_a_record_now_held_by_unrelated_processes_are_never_signalled() {
    let env = Env::new();
    let mut job_victim = unrelated_sleeper(&env);
    let mut wrapper_victim = unrelated_sleeper(&env);
    write_stale_record(&env, "ghost", job_victim.pid());
    // The recorded wrapper PID now belongs to a live unrelated process too.
    let mut record = env.record("ghost");
    // Its start time differs from the recorded one, as after PID reuse.
    let actual_start = start_time(wrapper_victim.pid());
    record["wrapper_pid"] = Value::from(wrapper_victim.pid());
    record["wrapper_start_time"] = Value::from(actual_start + 100_000);
    std::fs::write(env.file("ghost", ".job.json"), record.to_string()).unwrap();

    let status = env.jw(&["status", "ghost", "--json"]);
    assert_eq!(
        json_line(&status)["state"],
        "lost",
        "a reused wrapper PID is not a live wrapper\n{}",
        describe(&status)
    );
    let (out, lines) = env.wait(&["ghost", "--json", "--grace", "300ms"]);
    assert_code(&out, exit::LOST);
    assert_eq!(line_for(&lines, "ghost")["outcome"], "lost");
    assert!(
        job_victim.is_running(),
        "the process at the job's old PID was signalled"
    );
    assert!(
        wrapper_victim.is_running(),
        "the process at the wrapper's old PID was signalled"
    );

    // Reusing the name retires the old run without touching them either.
    assert_code(&env.run("ghost", FAST, &["true"]), 0);
    assert!(job_victim.is_running() && wrapper_victim.is_running());
}

#[test]
fn descendants_that_call_setsid_die_with_the_job_even_when_it_succeeds() {
    let env = Env::new();
    // One escapee stays the leader's child; the other is orphaned (its
    // parent subshell exits) and reparented to the wrapper.
    let job = sh("setsid sleep 300 & echo $! > \"$T/direct.pid\"; \
         ( setsid sleep 300 & echo $! > \"$T/orphan.pid\" ); \
         while [ ! -e \"$T/g.go\" ]; do sleep 0.02; done; exit 0");
    let d = env.detach(
        "escapes",
        &["--liveness", "timer", "--grace", "300ms"],
        &job,
    );
    let direct = read_pid(&env.scratch("direct.pid"));
    let orphan = read_pid(&env.scratch("orphan.pid"));
    for pid in [direct, orphan] {
        eventually("the escapee has left the job's group", || {
            pgid_of(pid).is_some_and(|g| g != d.pid)
        });
    }
    env.release("g");
    let (out, lines) = env.wait(&["escapes", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "escapes")["outcome"], "success");
    assert_all_gone(&[("direct escapee", direct), ("orphaned escapee", orphan)]);
}
