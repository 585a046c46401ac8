//! `jobwatch kill`: TERM to the group, grace, KILL to the group and to
//! escaped descendants; never a reused PID.

use crate::support::*;

#[test]
fn kill_terminates_the_whole_tree_and_records_killed() {
    let env = Env::new();
    let d = env.detach("victim", &["--liveness", "timer"], &env.tree("t"));
    let tree = env.tree_pids("t");
    assert_eq!(tree.leader, d.pid);
    tree.assert_alive();

    let out = env.jw(&["kill", "victim", "--grace", "300ms"]);
    assert_code(&out, 0);
    // kill returns only after the final status is written.
    let status = env
        .status_file("victim")
        .expect("status exists when kill returns");
    assert_eq!(status.lines().next(), Some("FAILED"));
    assert_eq!(env.record("victim")["outcome"], "killed");
    tree.assert_gone();

    let (w, lines) = env.wait(&["victim"]);
    assert_code(&w, exit::KILLED);
    assert_eq!(line_for(&lines, "victim")["outcome"], "killed");
}

#[test]
fn a_grandchild_that_ignores_sigterm_dies_by_sigkill_after_the_grace() {
    let env = Env::new();
    let job = env.tree_script("t", "trap '' TERM", "sleep 300");
    env.detach("stubborn", &["--liveness", "timer"], &job);
    let tree = env.tree_pids("t");
    tree.assert_alive();

    assert_code(&env.jw(&["kill", "stubborn", "--grace", "300ms"]), 0);
    tree.assert_gone();
    assert_eq!(env.await_status("stubborn"), "FAILED");
    assert_eq!(env.record("stubborn")["outcome"], "killed");
}

#[test]
fn a_sigterm_ignoring_grandchild_is_killed_after_the_grace_on_timeout() {
    let env = Env::new();
    let job = env.tree_script("t", "trap '' TERM", "sleep 300");
    env.detach(
        "stubborn",
        &["--liveness", "timer", "--timeout", "2s", "--grace", "300ms"],
        &job,
    );
    let tree = env.tree_pids("t");
    let (w, lines) = env.wait(&["stubborn"]);
    assert_code(&w, exit::TIMEOUT);
    assert_eq!(line_for(&lines, "stubborn")["outcome"], "timeout");
    tree.assert_gone();
}

#[test]
fn kill_also_reaches_descendants_that_left_the_process_group() {
    let env = Env::new();
    let job = env.tree_script("t", "", "setsid sleep 300");
    let d = env.detach("escape", &["--liveness", "timer"], &job);
    let tree = env.tree_pids("t");
    tree.assert_alive();
    assert_ne!(
        pgid_of(tree.grandchild),
        Some(d.pid),
        "precondition: the grandchild left the job's process group"
    );

    assert_code(&env.jw(&["kill", "escape", "--grace", "300ms"]), 0);
    tree.assert_gone();
    assert_eq!(env.record("escape")["outcome"], "killed");
}

#[test]
fn kill_never_signals_an_unrelated_process_behind_a_stale_record() {
    let env = Env::new();
    let mut victim = unrelated_sleeper(&env);
    write_stale_record(&env, "ghost", victim.pid());

    let out = env.jw(&["kill", "ghost", "--grace", "300ms"]);
    assert!(
        victim.is_running(),
        "the unrelated process must not be signalled\n{}",
        describe(&out)
    );
    assert!(is_alive(victim.pid()));
    // Its wrapper is dead, so the run is lost: kill finishes it as `lost`
    // (docs/protocol.md §9.3), signalling nothing it cannot prove is the job.
    assert_eq!(
        env.status_file("ghost")
            .as_deref()
            .map(|s| s.lines().next()),
        Some(Some("FAILED")),
        "kill leaves a final status\n{}",
        describe(&out)
    );
    let rec = env.record("ghost");
    assert_eq!(rec["outcome"], "lost", "{rec:#}\n{}", describe(&out));
    assert_eq!(rec["finalized_by"], "waiter", "{rec:#}");
    let (w, lines) = env.wait(&["ghost"]);
    assert_code(&w, exit::LOST);
    assert_eq!(line_for(&lines, "ghost")["outcome"], "lost");
}

/// Whether `pid` is stopped inside clone(2) or clone3(2) (its spawn of the
/// command, held by strace).
fn held_in_clone(pid: i32) -> bool {
    let Ok(line) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let nr = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    nr.is_some_and(|nr| [libc::SYS_clone, libc::SYS_clone3].contains(&nr))
        && proc_state(pid) == Some('t')
}

#[test]
fn a_kill_requested_before_the_command_is_spawned_still_sends_it_a_term() {
    let Some(()) = runnable(strace()) else {
        return;
    };
    let env = Env::new();
    // The wrapper is held (4 s) at its spawn of the command: its record
    // exists, its command does not, so the killer finds nothing to signal.
    let mut wrapper = env.other("strace");
    wrapper
        .args(["-qq", "-o"])
        .arg(env.scratch("spawn.strace"))
        .args([
            "-e",
            "trace=clone,clone3",
            "-e",
            "inject=clone,clone3:delay_enter=4000000:when=1",
        ])
        .arg(bin())
        .arg("--dir")
        .arg(&env.dir)
        .args(run_args(
            "early",
            &["--quiet", "--grace", "20s"],
            &["sleep", "300"],
            false,
        ));
    let wrapper = ChildGuard::spawn(wrapper);
    let wrapper_pid = wait_for("the wrapper's record", || {
        let text = std::fs::read_to_string(env.file("early", ".job.json")).ok()?;
        let record: serde_json::Value = serde_json::from_str(&text).ok()?;
        record["wrapper_pid"].as_i64().map(|p| p as i32)
    });
    eventually("the wrapper is held at the spawn", || {
        held_in_clone(wrapper_pid)
    });
    let killer = env.spawn(&["kill", "early", "--grace", "20s"]);
    eventually("the kill request is written", || {
        env.file("early", ".kill").exists()
    });
    // Its requester's TERM reached no process of the job: the wrapper
    // sends one itself as soon as the command runs, rather than waiting
    // out the 20 s grace and sending KILL.
    let out = wrapper.finish_within(CMD_DEADLINE);
    assert!(stderr(&out).contains("early killed"), "{}", describe(&out));
    let record = env.record("early");
    assert_eq!(record["outcome"], "killed", "{record:#}");
    assert_eq!(
        record["signal"], 15,
        "ended by a TERM, not by KILL: {record:#}"
    );
    assert_code(&killer.finish(), 0);
}
