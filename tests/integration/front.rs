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

// --------------------------------------------- item 10: clear errors ---

#[test]
fn a_command_without_dashes_is_told_to_go_after_them() {
    let env = Env::new();
    let out = env.jw(&["run", "n", "true"]);
    assert_usage_error(
        &out,
        &[
            "unexpected argument 'true'",
            "after `--`",
            "jobwatch run n -- true",
        ],
    );
    let out = env.jw(&["run", "n", "--timeout", "5s", "--detach", "make", "-j8"]);
    assert_usage_error(
        &out,
        &["'make'", "jobwatch run n --timeout 5s --detach -- make -j8"],
    );
    let out = env.jw(&["run", "--detach", "n", "sh", "-c", "echo hi"]);
    assert_usage_error(&out, &["jobwatch run --detach n -- sh -c 'echo hi'"]);
    assert!(!env.dir.join("n.job.json").exists(), "nothing ran");
}

#[test]
fn a_missing_command_or_name_is_named() {
    let env = Env::new();
    for args in [vec!["run", "n", "--"], vec!["run", "n"]] {
        let out = env.jw(&args);
        assert_usage_error(&out, &["no command", "after `--`", "jobwatch run n -- "]);
    }
    let out = env.jw(&["run"]);
    assert_usage_error(&out, &["no job name", "jobwatch run build -- "]);
    let out = env.jw(&["wait"]);
    assert_usage_error(&out, &["<NAME>"]);
}

#[test]
fn an_unexpected_option_still_hints_at_job_names() {
    let env = Env::new();
    let out = env.jw(&["kill", "-x"]);
    assert_usage_error(&out, &["'-x'", "name"]);
    let out = env.jw(&["kill", "a", "b"]);
    assert_usage_error(&out, &["unexpected argument 'b'"]);
    assert!(
        !stderr(&out).contains("job name"),
        "a plain extra argument is no name problem: {}",
        stderr(&out)
    );
}

// ------------------------------- sweep: reads bounded by what is shown ---

/// A finished job whose log is one line of 32 MiB.
fn one_huge_line(env: &Env, name: &str) {
    let job = sh("head -c 33554432 /dev/zero | tr '\\0' x; echo; echo last");
    assert_code(&env.run(name, &["--quiet"], &job), 0);
}

/// Most memory a process may use to show a few lines of a 32 MiB log (a
/// debug build's own footprint is far below).
const SMALL_RSS_KIB: i64 = 24 * 1024;

#[test]
// Reaped by `wait4` below, which std's `Child` cannot see.
#[allow(clippy::zombie_processes)]
fn logs_tail_of_a_huge_log_reads_only_its_end() {
    let env = Env::new();
    one_huge_line(&env, "big");
    let mut cmd = jw_with(
        &env,
        &["logs", "big", "--tail", "1"],
        Stdio::piped(),
        Stdio::null(),
    );
    let mut child = cmd.spawn().expect("spawn logs");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    // Reaped here, with its resource use (std's wait gives no rusage).
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert_eq!(out, "last\n");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert!(
        usage.ru_maxrss < SMALL_RSS_KIB,
        "logs --tail 1 used {} KiB to print one short line",
        usage.ru_maxrss
    );
}

/// The MCP server, spoken to in raw JSON-RPC.
#[cfg(feature = "mcp")]
mod mcp {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{ChildStdin, Stdio};
    use std::sync::mpsc;
    use std::thread;

    use serde_json::{Value, json};

    use super::*;

    /// Peak memory of a live process, in KiB.
    fn peak_rss_kib(pid: u32) -> i64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    // ------------------------------------------------------------ MCP ---

    /// `jobwatch mcp` spoken to in raw JSON-RPC lines, for requests an SDK
    /// client cannot send (e.g. `arguments` that are not an object).
    struct RawMcp {
        server: Spawned,
        stdin: Option<ChildStdin>,
        lines: mpsc::Receiver<String>,
        next_id: u64,
    }

    impl RawMcp {
        fn start(env: &Env) -> Self {
            let mut cmd = env.cmd();
            cmd.arg("mcp")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut server = Spawned::new(cmd);
            let stdin = server.child.stdin.take();
            let stdout = server.child.stdout.take().expect("stdout");
            let (tx, lines) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            let mut mcp = Self {
                server,
                stdin,
                lines,
                next_id: 1,
            };
            let init = mcp.request(
                "initialize",
                json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "front-tests", "version": "1"}
                }),
            );
            assert!(init.get("result").is_some(), "initialize: {init}");
            mcp.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
            mcp
        }

        fn send(&mut self, message: &Value) {
            let stdin = self.stdin.as_mut().expect("stdin open");
            writeln!(stdin, "{message}").expect("write to the server");
            stdin.flush().expect("flush");
        }

        /// Sends a request and returns its response (notifications skipped).
        #[track_caller]
        fn request(&mut self, method: &str, params: Value) -> Value {
            let id = self.next_id;
            self.next_id += 1;
            self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
            loop {
                let line = self
                    .lines
                    .recv_timeout(CMD_DEADLINE)
                    .unwrap_or_else(|_| panic!("no answer to {method} #{id}"));
                let v: Value = serde_json::from_str(&line).expect("a JSON-RPC line");
                if v["id"] == id {
                    return v;
                }
            }
        }

        /// A `tools/call`, expected to be a one-line tool error; its text.
        #[track_caller]
        fn tool_error(&mut self, tool: &str, arguments: Value) -> String {
            let v = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
            let result = &v["result"];
            assert_eq!(result["isError"], true, "expected a tool error: {v}");
            let text = result["content"][0]["text"]
                .as_str()
                .unwrap_or_else(|| panic!("no text in {v}"))
                .to_owned();
            assert_eq!(text.lines().count(), 1, "one-line error: {text}");
            text
        }
    }

    impl Drop for RawMcp {
        fn drop(&mut self) {
            drop(self.stdin.take());
            let pid = self.server.child.id() as i32;
            eventually("the server exited after its client left", || {
                matches!(self.server.child.try_wait(), Ok(Some(_))) || is_gone(pid)
            });
        }
    }

    #[test]
    fn tools_call_whose_arguments_are_not_an_object_is_an_invalid_params_error() {
        let env = Env::new();
        let mut mcp = RawMcp::start(&env);
        for arguments in [json!([]), json!(["name", "x"]), json!("x"), json!(3)] {
            let v = mcp.request(
                "tools/call",
                json!({"name": "status", "arguments": arguments}),
            );
            let error = &v["error"];
            assert_eq!(error["code"], -32602, "{v}");
            let message = error["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("arguments") && message.contains("object"),
                "{v}"
            );
            assert_eq!(message.lines().count(), 1, "{v}");
        }
        let v = mcp.request("tools/call", json!({"arguments": {}}));
        assert_eq!(v["error"]["code"], -32602, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("name"),
            "{v}"
        );
        // The server goes on serving.
        let v = mcp.request("tools/call", json!({"name": "status", "arguments": {}}));
        assert_eq!(v["result"]["isError"], false, "{v}");
    }

    #[test]
    fn start_names_the_argument_that_holds_a_nul_byte() {
        let env = Env::new();
        let mut mcp = RawMcp::start(&env);
        let text = mcp.tool_error(
            "start",
            json!({"name": "x", "command": ["echo", "a\u{0}b"]}),
        );
        assert!(
            text.contains("command[1]") && text.contains("NUL"),
            "{text}"
        );
        assert!(
            !text.contains("jobwatch"),
            "blames the argument, not the binary: {text}"
        );
        let text = mcp.tool_error(
            "start",
            json!({"name": "x", "command": ["true"], "cwd": "/tmp\u{0}x"}),
        );
        assert!(text.contains("cwd") && text.contains("NUL"), "{text}");
        assert!(!env.file("x", ".job.json").exists());
    }

    #[test]
    fn start_refuses_an_env_entry_no_process_could_receive() {
        let env = Env::new();
        let mut mcp = RawMcp::start(&env);
        for (key, value, needle) in [
            ("", "v", "\"\""),
            ("A=B", "v", "\"A=B\""),
            ("A\u{0}B", "v", "\"A\\0B\""),
            ("OK", "a\u{0}b", "\"OK\""),
        ] {
            let text = mcp.tool_error(
                "start",
                json!({"name": "e", "command": ["true"], "env": {key: value}}),
            );
            assert!(text.starts_with("env"), "{text}");
            assert!(text.contains(needle), "names the key {needle}: {text}");
        }
        assert!(!env.file("e", ".job.json").exists(), "nothing started");
    }

    #[test]
    fn durations_too_long_to_count_are_tool_errors() {
        let env = Env::new();
        let mut mcp = RawMcp::start(&env);
        for field in ["timeout", "stale", "backoff", "backoff_max", "cooldown"] {
            let mut args = json!({"name": "m", "command": ["true"], "breaker": "b"});
            args[field] = json!(HUGE);
            let text = mcp.tool_error("start", args);
            assert!(
                text.starts_with(field) && text.contains("too long"),
                "{text}"
            );
        }
        assert!(!env.file("m", ".job.json").exists(), "nothing started");
        let v = mcp.request(
            "tools/call",
            json!({"name": "start", "arguments": {"name": "m", "command": ["sleep", "30"]}}),
        );
        assert_eq!(v["result"]["isError"], false, "{v}");
        let text = mcp.tool_error("wait", json!({"names": ["m"], "timeout": HUGE}));
        assert!(
            text.starts_with("timeout") && text.contains("too long"),
            "{text}"
        );
        let text = mcp.tool_error("kill", json!({"name": "m", "grace": HUGE}));
        assert!(
            text.starts_with("grace") && text.contains("too long"),
            "{text}"
        );
        let v = mcp.request(
            "tools/call",
            json!({"name": "kill", "arguments": {"name": "m", "grace": "0s"}}),
        );
        assert_eq!(v["result"]["isError"], false, "{v}");
    }

    #[test]
    fn logs_reads_at_most_what_it_returns() {
        let env = Env::new();
        one_huge_line(&env, "big");
        let mut mcp = RawMcp::start(&env);
        let v = mcp.request(
            "tools/call",
            json!({"name": "logs", "arguments": {"name": "big", "tail": 2}}),
        );
        let content = &v["result"]["content"];
        assert_eq!(v["result"]["isError"], false, "{v}");
        let text = content[1]["text"].as_str().unwrap_or_default();
        assert!(
            text.ends_with("\nlast\n") && text.len() <= 16 * 1024,
            "{}",
            text.len()
        );
        let meta: Value = serde_json::from_str(content[0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(meta["to"], meta["size"], "{meta}");
        let peak = peak_rss_kib(mcp.server.child.id());
        assert!(
            peak < SMALL_RSS_KIB + 16 * 1024,
            "the server peaked at {peak} KiB"
        );
    }

    #[test]
    fn logs_from_an_offset_past_the_end_is_empty_not_an_error() {
        let env = Env::new();
        assert_code(&env.run("j", &["--quiet"], &["echo", "hello"]), 0);
        let mut mcp = RawMcp::start(&env);
        for offset in [6u64, 7, u64::MAX] {
            let v = mcp.request(
                "tools/call",
                json!({"name": "logs", "arguments": {"name": "j", "offset": offset}}),
            );
            assert_eq!(v["result"]["isError"], false, "{v}");
            let content = &v["result"]["content"];
            let meta: Value = serde_json::from_str(content[0]["text"].as_str().unwrap()).unwrap();
            assert_eq!(
                (meta["from"].as_u64(), meta["to"].as_u64()),
                (Some(6), Some(6)),
                "{meta}"
            );
            assert_eq!(content[1]["text"], "", "{v}");
        }
    }
}
