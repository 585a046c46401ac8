//! Many jobs at once: one waiter over 200 detached jobs, and readers racing
//! jobs that finish.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::crash::{assert_consistent_finish, assert_no_temp_files};
use crate::gate::Gate;
use crate::support::*;

/// Many wrappers share two cores here: sample rarely, and never call a
/// job hung because a loaded machine delayed a heartbeat.
const CALM: &[&str] = &[
    "--liveness",
    "timer",
    "--heartbeat",
    "1s",
    "--stale",
    "60s",
    "--grace",
    "300ms",
];

/// Job `i` fails with code 3 when `i % 4 == 0`, else succeeds.
fn expected(i: usize) -> (&'static str, i32) {
    if i.is_multiple_of(4) {
        ("failed", 3)
    } else {
        ("success", 0)
    }
}

#[test]
fn two_hundred_detached_jobs_and_one_wait_all_get_every_outcome_right() {
    const JOBS: usize = 200;
    let env = Env::new();
    let mut gate = Gate::closed(&env, "start");
    let names: Vec<String> = (0..JOBS).map(|i| format!("many{i:03}")).collect();
    for (i, name) in names.iter().enumerate() {
        env.detach(name, CALM, &gate.job(expected(i).1));
    }
    let mut args = vec!["wait", "--all", "--json"];
    args.extend(names.iter().map(String::as_str));
    let waiter = env.spawn(&args);
    gate.open();
    let out = waiter.finish();

    // --all exits with the first non-success job's code in argument order.
    assert_code(&out, exit::FAILED);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), JOBS, "one line per job\n{}", describe(&out));
    for (i, name) in names.iter().enumerate() {
        let (outcome, code) = expected(i);
        let line = line_for(&lines, name);
        assert_eq!(line["outcome"], outcome, "{line}");
        assert_eq!(line["exit_code"], code, "{line}");
        assert_consistent_finish(&env, name, outcome);
        for suffix in [".pid", ".log", ".heartbeat", ".lock"] {
            assert!(env.file(name, suffix).exists(), "{name}{suffix} is missing");
        }
        assert!(env.log(name).contains("through"), "{name} ran to its end");
    }
}

/// One read of a job's raw files, status first: a status, once there, must
/// be complete and sit beside a final record (the record is written first).
fn check_raw_files(env: &Env, name: &str) -> bool {
    let status = env.status_file(name);
    let record = env.record(name);
    match status {
        None => false,
        Some(s) => {
            assert!(
                s == "SUCCESS\noutcome=success\nexit_code=0\n"
                    || s == "FAILED\noutcome=failed\nexit_code=3\n",
                "{name}.status read torn or unexpected: {s:?}"
            );
            assert!(
                record["outcome"].is_string(),
                "{name}.status exists beside a non-final record: {record}"
            );
            true
        }
    }
}

#[test]
fn status_hammered_while_jobs_finish_never_shows_a_torn_or_invalid_state() {
    const JOBS: usize = 24;
    let env = Env::new();
    let mut gate = Gate::closed(&env, "finish");
    let names: Vec<String> = (0..JOBS).map(|i| format!("race{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        env.detach(name, CALM, &gate.job(expected(i).1));
    }
    let stop = AtomicBool::new(false);
    let states = thread::scope(|s| {
        let cli = s.spawn(|| {
            let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
            let mut args = vec!["status", "--json"];
            args.extend(names.iter().map(String::as_str));
            loop {
                let done = stop.load(Ordering::SeqCst);
                let out = env.jw(&args);
                assert_code(&out, 0);
                let lines = json_lines(&out);
                assert_eq!(lines.len(), JOBS, "one line per job\n{}", describe(&out));
                for (i, name) in names.iter().enumerate() {
                    let state = line_for(&lines, name)["state"].as_str().unwrap().to_owned();
                    let word = match state.as_str() {
                        "running" => "running",
                        s if s == expected(i).0 => "final",
                        other => panic!("{name} read as {other}\n{}", describe(&out)),
                    };
                    *seen.entry(word).or_default() += 1;
                }
                if done {
                    return seen;
                }
            }
        });
        let raw = s.spawn(|| {
            let start = std::time::Instant::now();
            while names.iter().filter(|n| check_raw_files(&env, n)).count() < JOBS {
                assert!(
                    start.elapsed() < CMD_DEADLINE,
                    "the jobs did not all finish"
                );
                thread::yield_now();
            }
        });
        gate.open();
        raw.join().expect("raw reader");
        stop.store(true, Ordering::SeqCst);
        cli.join().expect("status reader")
    });
    assert!(
        states.get("final").is_some_and(|&n| n >= JOBS),
        "{states:?}"
    );
    assert_no_temp_files(&env);
}
