//! `jobwatch status`, `ls` and `logs`: classification from the files alone.

use crate::support::*;

#[track_caller]
fn state_of(env: &Env, name: &str) -> String {
    let out = env.jw(&["status", name]);
    assert_code(&out, 0);
    let v = json_line(&out);
    assert_eq!(v["name"], name);
    v["state"]
        .as_str()
        .unwrap_or_else(|| panic!("state is not a string: {v}"))
        .to_owned()
}

#[test]
fn status_says_running_while_the_job_runs_and_success_after() {
    let env = Env::new();
    env.detach("job", &[], &env.gated("job", 0));
    assert_eq!(state_of(&env, "job"), "running");
    let out = env.jw(&["status", "job", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_line(&out)["state"], "running");

    env.release("job");
    env.await_status("job");
    assert_eq!(state_of(&env, "job"), "success");
}

#[test]
fn status_of_a_failed_job_says_failed() {
    let env = Env::new();
    assert_code(&env.run("broken", &[], &sh("exit 2")), 2);
    assert_eq!(state_of(&env, "broken"), "failed");
}

#[test]
fn status_of_a_killed_job_says_killed() {
    let env = Env::new();
    env.detach("stopme", &[], &env.gated("stopme", 0));
    assert_code(&env.jw(&["kill", "stopme", "--grace", "300ms"]), 0);
    assert_eq!(state_of(&env, "stopme"), "killed");
}

#[test]
fn status_without_names_and_ls_list_every_job_once() {
    let env = Env::new();
    assert_code(&env.run("good", &[], &["true"]), 0);
    assert_code(&env.run("bad", &[], &["false"]), 1);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["ls"],
        &["ls", "--json"],
    ] {
        let out = env.jw(args);
        assert_code(&out, 0);
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 2, "{args:?} lists each job once: {lines:#?}");
        assert_eq!(line_for(&lines, "good")["state"], "success", "{args:?}");
        assert_eq!(line_for(&lines, "bad")["state"], "failed", "{args:?}");
    }
}

#[test]
fn ls_of_an_empty_jobs_dir_prints_nothing() {
    let env = Env::new();
    let out = env.jw(&["ls"]);
    assert_code(&out, 0);
    assert!(json_lines(&out).is_empty(), "{}", describe(&out));
}

#[test]
fn logs_prints_the_whole_log() {
    let env = Env::new();
    assert_code(
        &env.run(
            "words",
            &["--quiet"],
            &sh("for w in one two three; do echo $w; done"),
        ),
        0,
    );
    let out = env.jw(&["logs", "words"]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
}

#[test]
fn logs_tail_2_prints_the_last_two_lines() {
    let env = Env::new();
    let job = sh("for w in one two three four five; do echo $w; done");
    assert_code(&env.run("words", &["--quiet"], &job), 0);
    let out = env.jw(&["logs", "words", "--tail", "2"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), ["four", "five"]);
}

#[test]
fn logs_of_a_running_job_show_its_output_so_far() {
    let env = Env::new();
    let go = env.scratch("early.go");
    let job = sh(&format!(
        "echo early-line; while [ ! -e '{}' ]; do sleep 0.02; done",
        go.display()
    ));
    env.detach("early", &[], &job);
    eventually("the log holds the first line", || {
        env.log("early").contains("early-line")
    });
    let out = env.jw(&["logs", "early"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("early-line"), "{}", describe(&out));
    env.release("early");
    assert_code(&env.wait(&["early"]).0, exit::SUCCESS);
}

#[test]
fn a_closed_stdout_ends_a_listing_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let env = Env::new();
    for name in ["a", "b", "c"] {
        assert_code(&env.run(name, FAST, &["true"]), 0);
    }
    // A pipe whose reader is already gone: every write fails with EPIPE.
    let (reader, writer) = rustix::pipe::pipe().expect("pipe");
    drop(reader);
    let mut cmd = env.cmd();
    cmd.args(["status", "--json"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped());
    let out = cmd.output().expect("status runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Ended like `cat` would be: by SIGPIPE, not by a panic.
    let sigpipe = rustix::process::Signal::PIPE.as_raw();
    assert_eq!(out.status.signal(), Some(sigpipe), "{out:?}");
}
