//! Kills that are carried out as the protocol says, and only on the job they
//! are meant for: a stopped job is continued so its TERM handler runs, and a
//! job started with `run --detach` from inside another job is its own.

use rustix::process::Signal;

use crate::support::*;

#[test]
fn a_stopped_job_being_killed_is_continued_so_its_term_handler_runs() {
    let env = Env::new();
    let job = sh(
        "trap 'echo handled > \"$T/cz.term\"; exit 0' TERM; echo ready; \
         while :; do sleep 0.05; done",
    );
    let d = env.detach("cz", &["--liveness", "timer", "--grace", "300ms"], &job);
    eventually("the job runs", || env.log("cz").contains("ready"));
    // Stop the whole job, as a terminal's Ctrl-Z would.
    let group = rustix::process::Pid::from_raw(d.pid).unwrap();
    rustix::process::kill_process_group(group, Signal::STOP).expect("stop the job");
    eventually("the job is stopped", || proc_state(d.pid) == Some('T'));

    // A grace long enough that only a handler, never SIGKILL, ends it first.
    let out = env.jw(&["kill", "cz", "--grace", "30s", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_line(&out)["outcome"], "killed", "{}", describe(&out));
    let marker = std::fs::read_to_string(env.scratch("cz.term"))
        .expect("the TERM handler ran: the stopped job was continued");
    assert_eq!(marker.trim(), "handled");
    let record = env.record("cz");
    assert_eq!(record["outcome"], "killed", "{record}");
    assert_eq!(
        record["exit_code"], 0,
        "it exited from its handler: {record}"
    );
}

#[test]
fn a_job_started_with_run_detach_inside_another_job_outlives_it() {
    let env = Env::new();
    let outer = env.script(
        "outer.sh",
        "\"$JW\" run inner --detach --json --liveness timer --heartbeat 100ms --stale 1s \
         -- sh -c 'while [ ! -e \"$T/inner.go\" ]; do sleep 0.02; done; echo inner done' \
         > \"$T/inner.json\" || exit 9\n\
         sleep 300 &\n\
         echo $! > \"$T/leftover.pid\"\n\
         exit 0\n",
    );
    env.detach("outer", FAST_TIMER, &["sh".to_owned(), outer]);
    let (out, lines) = env.wait(&["outer", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "outer")["outcome"], "success");
    // The outer job's own leftover still dies with it.
    let leftover = read_pid(&env.scratch("leftover.pid"));
    assert_all_gone(&[("outer job's leftover", leftover)]);

    let started: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.scratch("inner.json")).unwrap())
            .expect("the inner run printed its start line");
    let inner_pid = int(&started, "pid");
    let inner_wrapper = int(&started, "wrapper_pid");
    assert!(is_alive(inner_pid), "the inner job survives the outer one");
    assert!(is_alive(inner_wrapper), "so does its wrapper");
    let status = env.jw(&["status", "inner", "--json"]);
    assert_eq!(
        json_line(&status)["state"],
        "running",
        "{}",
        describe(&status)
    );
    let environ = std::fs::read(format!("/proc/{inner_wrapper}/environ")).unwrap();
    let outer_id = env.record("outer")["job_id"].as_str().unwrap().to_owned();
    assert!(
        !environ
            .split(|b| *b == 0)
            .any(|kv| kv == format!("JOBWATCH_JOB_ID={outer_id}").as_bytes()),
        "the inner wrapper does not carry the outer job's id"
    );

    env.release("inner");
    let (out, lines) = env.wait(&["inner", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "inner")["outcome"], "success");
    assert!(env.log("inner").contains("inner done"));
}
