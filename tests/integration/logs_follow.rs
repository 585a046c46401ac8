//! `jobwatch logs NAME --follow`: the log as it is written, across
//! truncation and rotation, until the run ends; the exit code is the run's.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use rustix::process::Signal;

use crate::support::*;

/// A job script that blocks until the test calls `env.release(gate)`.
fn gate(env: &Env, gate: &str) -> String {
    format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done",
        env.scratch(&format!("{gate}.go")).display()
    )
}

/// Starts a job running `script`, waits until it has written `expect`,
/// then starts `logs NAME --follow EXTRA...` and waits until it has read the
/// log to its end.
fn follow_after(env: &Env, name: &str, script: &str, expect: &str, extra: &[&str]) -> ChildGuard {
    env.detach(name, &[], &sh(script));
    eventually("the job wrote its first output", || env.log(name) == expect);
    let mut args = vec!["logs", name, "--follow"];
    args.extend_from_slice(extra);
    let follower = env.spawn(&args);
    await_read_to_end(follower.pid(), &env.file(name, ".log"));
    follower
}

#[test]
fn logs_follow_prints_everything_written_and_exits_0_on_success() {
    let env = Env::new();
    let script = format!(
        "echo one; printf two-; {}; printf 'half\\n'; echo three",
        gate(&env, "go")
    );
    let follower = follow_after(&env, "ok", &script, "one\ntwo-", &[]);
    env.release("go");
    let out = follower.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(stdout(&out), "one\ntwo-half\nthree\n", "{}", describe(&out));
}

#[test]
fn logs_follow_with_tail_starts_at_the_last_lines_and_exits_1_on_failure() {
    let env = Env::new();
    let script = format!(
        "echo a; echo b; echo c; {}; echo d; exit 9",
        gate(&env, "go")
    );
    let follower = follow_after(&env, "bad", &script, "a\nb\nc\n", &["--tail", "1"]);
    env.release("go");
    let out = follower.finish();
    assert_code(&out, exit::FAILED);
    assert_eq!(stdout(&out), "c\nd\n", "{}", describe(&out));
}

#[test]
fn logs_follow_of_a_finished_job_prints_it_and_exits_with_its_code() {
    let env = Env::new();
    assert_code(&env.run("done", &["--quiet"], &sh("echo x; exit 2")), 2);
    let out = env.jw(&["logs", "done", "-f"]);
    assert_code(&out, exit::FAILED);
    assert_eq!(stdout(&out), "x\n");
}

#[test]
fn logs_follow_reads_a_truncated_log_from_its_start() {
    let env = Env::new();
    let script = format!(
        "i=0; while [ $i -lt 30 ]; do echo \"old $i\"; i=$((i+1)); done; {}; echo after truncation",
        gate(&env, "go")
    );
    let old: String = (0..30).map(|i| format!("old {i}\n")).collect();
    let follower = follow_after(&env, "t", &script, &old, &[]);
    fs::File::options()
        .write(true)
        .open(env.file("t", ".log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    env.release("go");
    let out = follower.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(stdout(&out), format!("{old}after truncation\n"));
}

#[test]
fn logs_follow_moves_to_a_log_that_replaced_the_old_one_in_the_same_run() {
    let env = Env::new();
    let script = format!("echo first; {}", gate(&env, "go"));
    let follower = follow_after(&env, "r", &script, "first\n", &[]);
    // What logrotate's `create` mode does: move the log, start a new one.
    let log = env.file("r", ".log");
    fs::rename(&log, env.scratch("r.log.1")).unwrap();
    fs::write(&log, "second\n").unwrap();
    env.release("go");
    let out = follower.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(stdout(&out), "first\nsecond\n", "{}", describe(&out));
}

#[test]
fn logs_follow_stays_with_its_run_when_the_name_restarts() {
    let env = Env::new();
    let script = format!(
        "echo first run; {}; echo first done; exit 1",
        gate(&env, "go")
    );
    let follower = follow_after(&env, "n", &script, "first run\n", &[]);
    // The follower sleeps through its run's end and the next run's start.
    signal(follower.pid(), Signal::STOP);
    env.release("go");
    env.await_status("n");
    env.detach("n", &[], &sh("echo second run"));
    eventually("the second run wrote", || env.log("n").contains("second"));
    signal(follower.pid(), Signal::CONT);
    let out = follower.finish();
    assert_code(&out, exit::FAILED);
    assert_eq!(
        stdout(&out),
        "first run\nfirst done\n",
        "{}",
        describe(&out)
    );
}

#[test]
fn logs_follow_exits_quietly_when_its_reader_goes_away() {
    let env = Env::new();
    let script = format!(
        "echo first; {}; i=0; while [ $i -lt 2000 ]; do echo \"line $i\"; i=$((i+1)); done",
        gate(&env, "go")
    );
    env.detach("p", &[], &sh(&script));
    eventually("the job wrote", || env.log("p") == "first\n");
    let mut cmd = env.cmd();
    cmd.args(["logs", "p", "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn logs --follow");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "first\n");
    drop(reader); // like `| head -n 1` exiting
    env.release("go");
    let mut status = None;
    wait_until("logs --follow exits", CMD_DEADLINE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    // Ended the way `tail -f | head` ends: by SIGPIPE, quietly.
    let sigpipe = Signal::PIPE.as_raw();
    assert_eq!(status.unwrap().signal(), Some(sigpipe), "stderr: {err}");
    assert!(err.is_empty(), "no message, no panic: {err}");
    assert_code(&env.wait(&["p"]).0, exit::SUCCESS);
}
