//! The front ends under a hostile caller: a terminal that stops reading, a
//! stdout or stderr that is a closed pipe, durations too long to count, and
//! arguments that are wrong in ways a person or an agent easily gets wrong.
//! jobwatch never panics, never lets its caller's terminal hold up the job,
//! and says in one line what is wrong and how to fix it.

use std::fs;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::support::*;

// ------------------------------------------------------------- helpers ---

/// A process started with stdio the test chose; killed and reaped when
/// dropped before it exited.
struct Spawned {
    child: Child,
    what: String,
}

impl Spawned {
    fn new(mut cmd: Command) -> Self {
        let what = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        Self { child, what }
    }

    /// Waits (bounded by [`DEADLINE`]) for the process to exit.
    #[track_caller]
    fn exit_status(&mut self) -> ExitStatus {
        let what = format!("{} exited", self.what);
        wait_for(&what, || self.child.try_wait().expect("try_wait"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe whose read end is already closed: any write to it fails with
/// EPIPE (the writer ignores SIGPIPE, as `run` and `mcp` do).
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer
}

/// `jobwatch --dir DIR ARGS...` with stdin closed and stdout/stderr as given.
fn jw_with(env: &Env, args: &[&str], stdout: Stdio, stderr: Stdio) -> Command {
    let mut cmd = env.cmd();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    cmd
}

/// A scratch file to take a process's stderr, and a way to read it back.
fn stderr_file(env: &Env, name: &str) -> (Stdio, std::path::PathBuf) {
    let path = env.scratch(name);
    let file = fs::File::create(&path).expect("create stderr file");
    (Stdio::from(file), path)
}

#[track_caller]
fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "jobwatch panicked:\n{stderr}"
    );
}

/// Waits until `NAME.job.json` exists (a wait before it would find no job).
#[track_caller]
fn await_record(env: &Env, name: &str) {
    let path = env.file(name, ".job.json");
    eventually(&format!("{} exists", path.display()), || path.exists());
}

/// A job that writes far more than a pipe holds (about 1.2 MB).
const CHATTY: &[&str] = &["sh", "-c", "seq 200000"];

// ---------------------------- item 2: a stalled terminal never delays ---

#[test]
fn a_foreground_run_whose_reader_never_reads_records_success_while_the_pipe_is_unread() {
    let env = Env::new();
    let (reader, writer) = std::io::pipe().expect("pipe");
    let args = run_args(
        "t",
        &["--stale", "2s", "--heartbeat", "500ms"],
        CHATTY,
        false,
    );
    let mut run = Spawned::new(jw_with(&env, &args, writer.into(), Stdio::null()));
    await_record(&env, "t");

    // Nobody reads the run's stdout: the job's outcome must not wait on it.
    let (out, lines) = env.wait(&["t", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "t")["outcome"], "success", "{lines:?}");
    assert_eq!(env.await_status("t"), "SUCCESS");
    assert_eq!(env.record("t")["outcome"], "success");
    assert_eq!(env.record("t")["exit_code"], 0);

    drop(reader);
    assert_eq!(run.exit_status().code(), Some(0));
}

#[test]
fn a_foreground_run_with_retries_on_a_stalled_terminal_retries_and_records_its_outcome() {
    let env = Env::new();
    let (reader, writer) = std::io::pipe().expect("pipe");
    let err = writer.try_clone().expect("clone pipe");
    let job = sh(&format!(
        "seq 100000; if [ -e '{0}' ]; then exit 0; fi; touch '{0}'; exit 7",
        env.scratch("second").display()
    ));
    let args = run_args(
        "r",
        &[
            "--retries",
            "1",
            "--backoff",
            "0s",
            "--stale",
            "2s",
            "--heartbeat",
            "500ms",
        ],
        &job,
        false,
    );
    // stdout and stderr are one pipe that nobody reads (`2>&1 | stuck`).
    let mut run = Spawned::new(jw_with(&env, &args, writer.into(), err.into()));
    await_record(&env, "r");

    let (out, lines) = env.wait(&["r", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "r")["outcome"], "success", "{lines:?}");
    let record = env.record("r");
    let attempts = record["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{record:#}");
    assert_eq!(attempts[0]["outcome"], "failed", "{record:#}");
    assert_eq!(attempts[0]["exit_code"], 7, "{record:#}");

    drop(reader);
    assert_eq!(run.exit_status().code(), Some(0));
}

#[test]
fn a_foreground_run_exits_soon_after_its_status_even_if_its_reader_never_reads() {
    let env = Env::new();
    // The read end stays open and unread for the whole test, as a caller
    // that reads the output only after the process exited would keep it.
    let (_reader, writer) = std::io::pipe().expect("pipe");
    let (err, err_path) = stderr_file(&env, "run.err");
    let args = run_args(
        "t",
        &["--stale", "2s", "--heartbeat", "500ms"],
        CHATTY,
        false,
    );
    let mut run = Spawned::new(jw_with(&env, &args, writer.into(), err));

    assert_eq!(env.await_status("t"), "SUCCESS");
    assert_eq!(run.exit_status().code(), Some(0), "the job's own code");
    let stderr = fs::read_to_string(&err_path).unwrap();
    assert_no_panic(&stderr);
    let log = env.file("t", ".log");
    assert!(
        stderr.contains(&log.display().to_string()),
        "a truncated echo names the full log:\n{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line about the echo:\n{stderr}"
    );
}

// ---------------------------------- item 3: no panic on a closed pipe ---

#[test]
fn run_detach_with_a_closed_stdout_starts_the_job_and_exits_0_without_a_panic() {
    let env = Env::new();
    let (err, err_path) = stderr_file(&env, "detach.err");
    let args = run_args("d", &[], &["true"], true);
    let mut run = Spawned::new(jw_with(&env, &args, closed_pipe().into(), err));
    assert_eq!(run.exit_status().code(), Some(0));
    assert_no_panic(&fs::read_to_string(&err_path).unwrap());
    let (out, lines) = env.wait(&["d", "--json"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&lines, "d")["outcome"], "success");
}

#[test]
fn a_failing_foreground_job_with_a_closed_stderr_exits_with_its_own_code() {
    let env = Env::new();
    let args = run_args("f", &[], &["sh", "-c", "echo out; exit 3"], false);
    let mut run = Spawned::new(jw_with(&env, &args, Stdio::null(), closed_pipe().into()));
    assert_eq!(run.exit_status().code(), Some(3));
    assert_eq!(env.await_status("f"), "FAILED");
    assert_eq!(env.record("f")["outcome"], "failed");
}

#[test]
fn a_foreground_run_with_retries_and_a_closed_stderr_keeps_its_result() {
    let env = Env::new();
    let args = run_args(
        "r",
        &["--retries", "1", "--backoff", "0s"],
        &["sh", "-c", "exit 3"],
        false,
    );
    let mut run = Spawned::new(jw_with(&env, &args, Stdio::null(), closed_pipe().into()));
    assert_eq!(run.exit_status().code(), Some(3));
    let (out, lines) = env.wait(&["r", "--json"]);
    assert_code(&out, exit::FAILED);
    let line = line_for(&lines, "r");
    assert_eq!(line["outcome"], "failed", "{line}");
    assert_eq!(line["exit_code"], 3, "{line}");
    assert_eq!(
        env.record("r")["attempts"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn a_foreground_run_with_a_closed_stdout_still_succeeds() {
    let env = Env::new();
    let (err, err_path) = stderr_file(&env, "run.err");
    let args = run_args("s", &[], CHATTY, false);
    let mut run = Spawned::new(jw_with(&env, &args, closed_pipe().into(), err));
    assert_eq!(run.exit_status().code(), Some(0));
    assert_no_panic(&fs::read_to_string(&err_path).unwrap());
    assert_eq!(env.await_status("s"), "SUCCESS");
}

#[test]
fn usage_errors_with_a_closed_stderr_exit_2_without_a_panic() {
    let env = Env::new();
    for args in [
        vec!["run", "n", "true"],
        vec!["run", "n", "--timeout", "1x", "--", "true"],
        vec!["wait", "x", "--timeout", "1x"],
        vec![
            "run",
            "n",
            "--heartbeat",
            "2s",
            "--stale",
            "1s",
            "--",
            "true",
        ],
    ] {
        let mut run = Spawned::new(jw_with(&env, &args, Stdio::null(), closed_pipe().into()));
        assert_eq!(run.exit_status().code(), Some(exit::USAGE), "{args:?}");
    }
}

// ----------------------------------- item 4: durations never overflow ---

/// Far more milliseconds than a u64 holds (it wrapped to 384 ms once).
const HUGE: &str = "18446744073709552s";

#[test]
fn run_refuses_every_duration_too_long_to_count_and_starts_nothing() {
    let env = Env::new();
    let marker = "touch \"$T/ran\"";
    for flag in [
        "--timeout",
        "--stale",
        "--heartbeat",
        "--grace",
        "--backoff",
        "--backoff-max",
        "--cooldown",
    ] {
        let opts = [flag, HUGE, "--breaker", "b"];
        for detach in [false, true] {
            let out = env.jw(&run_args("big", &opts, &sh(marker), detach));
            assert_usage_error(&out, &[flag, "too long"]);
            assert!(!env.scratch("ran").exists(), "{flag}: nothing may run");
            assert!(!env.file("big", ".job.json").exists(), "{flag}");
        }
    }
}

#[test]
fn the_longest_duration_is_100_years() {
    let env = Env::new();
    let out = env.run("y", &["--timeout", "100y", "--stale", "100y"], &["true"]);
    assert_code(&out, exit::SUCCESS);
    let settings = &env.record("y")["settings"];
    assert_eq!(settings["timeout_ms"], 3_155_760_000_000u64, "{settings}");
    let out = env.run("y", &["--timeout", "100y 1s"], &["true"]);
    assert_usage_error(&out, &["--timeout", "too long", "100 years"]);
}

#[test]
fn wait_with_a_huge_timeout_or_stale_is_refused_without_a_panic() {
    let env = Env::new();
    env.detach("w", FAST_TIMER, &env.gated("w", 0));
    for args in [
        ["w", "--timeout", "9223372036854775807s"],
        ["w", "--stale", "18446744073709551615s"],
        ["w", "--poll", HUGE],
        ["w", "--grace", HUGE],
    ] {
        let mut a = vec!["wait"];
        a.extend(args);
        let out = env.jw(&a);
        assert_usage_error(&out, &[args[1], "too long"]);
        assert_no_panic(&stderr(&out));
    }
    env.release("w");
    let (out, _) = env.wait(&["w", "--json"]);
    assert_code(&out, exit::SUCCESS);
}

#[test]
fn kill_with_a_huge_grace_is_refused_and_the_job_keeps_running() {
    let env = Env::new();
    let job = env.detach("k", FAST_TIMER, &env.gated("k", 0));
    let out = env.jw(&["kill", "k", "--grace", HUGE]);
    assert_usage_error(&out, &["--grace", "too long"]);
    assert!(is_alive(job.pid), "a refused kill touches nothing");
    env.release("k");
    let (out, _) = env.wait(&["k", "--json"]);
    assert_code(&out, exit::SUCCESS);
}

#[test]
fn gc_breaker_and_mcp_flags_refuse_a_huge_duration() {
    let env = Env::new();
    for args in [
        vec!["gc", "--older-than", HUGE],
        vec!["breaker", "record", "b", "failure", "--cooldown", HUGE],
        #[cfg(feature = "mcp")]
        vec!["mcp", "--max-wait", HUGE],
    ] {
        let out = env.jw(&args);
        assert_usage_error(&out, &[args[args.len() - 2], "too long"]);
    }
}
