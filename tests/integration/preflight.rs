//! `jobwatch preflight` and `run --preflight`: every kind passes, fails,
//! is fixed, and times out; bad configs are refused with their line; a
//! failing preflight starts nothing.
//!
//! Endpoints are served by the test itself on 127.0.0.1 port 0, from
//! threads that stop when the test ends.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const PREFLIGHT_FAILED: i32 = 7;

// ------------------------------------------------------------- helpers ---

/// Writes `body` as `$T/jobwatch.toml` and returns its path.
fn config(env: &Env, body: &str) -> PathBuf {
    let path = env.scratch("jobwatch.toml");
    fs::write(&path, body).expect("write config");
    path
}

/// `jobwatch preflight --config FILE` (JSON: stdout is a pipe), with no
/// proxy from the environment between it and the test's servers.
fn preflight(env: &Env, file: &PathBuf) -> Output {
    let mut cmd = env.cmd();
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("preflight").arg("--config").arg(file);
    output_of(cmd)
}

/// Runs a config of one check and returns that check's report, asserting
/// the exit code agrees with it.
#[track_caller]
fn single(env: &Env, body: &str) -> Value {
    let out = preflight(env, &config(env, body));
    let report = json_line(&out);
    let checks = report["checks"].as_array().expect("checks is an array");
    assert_eq!(checks.len(), 1, "{report:#}");
    let check = checks[0].clone();
    let passed = check["passed"].as_bool().expect("passed is a bool");
    assert_eq!(report["passed"], passed, "{report:#}");
    assert_code(&out, if passed { 0 } else { PREFLIGHT_FAILED });
    check
}

#[track_caller]
fn assert_check(check: &Value, passed: bool, fix_ran: bool, fixed: bool, detail: &str) {
    assert_eq!(check["passed"], passed, "{check:#}");
    assert_eq!(check["fix_ran"], fix_ran, "{check:#}");
    assert_eq!(check["fixed"], fixed, "{check:#}");
    let text = check["detail"].as_str().expect("detail is a string");
    assert!(
        text.contains(detail),
        "detail should mention {detail:?}: {check:#}"
    );
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the test HTTP server does with a request.
#[derive(Clone, Copy)]
enum Reply {
    /// Answer with this status.
    Status(u16),
    /// Answer 200 once `$T/<file>` exists, 503 before.
    OkOnceExists(&'static str),
    /// Never answer (hold the connection until the server stops).
    Silence,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 port 0, on its own thread.
struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    fn start(env: &Env, reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let root = env.root().to_owned();
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let status = match reply {
                    Reply::Status(s) => s,
                    Reply::OkOnceExists(f) if root.join(f).exists() => 200,
                    Reply::OkOnceExists(_) => 503,
                    Reply::Silence => {
                        held.push(conn);
                        continue;
                    }
                };
                read_request_head(&mut conn);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = conn.shutdown(Shutdown::Write);
            }
        });
        HttpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads until the blank line that ends the request head (or 5 s pass).
fn read_request_head(conn: &mut TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// A listener whose accept queue is full, so a further connect gets no
/// answer at all: Linux drops a SYN to a listener with a full queue. The
/// backlog is 0 (one queued connection) and the test fills it, confirming
/// that a connect then times out before handing the address to a check.
struct BlackHole {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

impl BlackHole {
    fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return BlackHole {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    };
                }
                Err(e) => panic!("unexpected connect error to the black hole: {e}"),
            }
        }
        panic!("the accept queue of a backlog-0 listener never filled up");
    }
}

// ------------------------------------------------------------- command ---

#[test]
fn a_command_check_passes_when_the_command_exits_zero() {
    let env = Env::new();
    let check = single(
        &env,
        "[[check]]\nname = \"sh\"\nkind = \"command\"\ncommand = \"echo ready\"\n",
    );
    assert_check(&check, true, false, false, "ready");
    assert_eq!(check["name"], "sh");
    assert_eq!(check["kind"], "command");
}

#[test]
fn a_command_check_fails_with_its_exit_code_and_last_output_line() {
    let env = Env::new();
    let check = single(
        &env,
        "[[check]]\nname = \"c\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo first; echo broken >&2; exit 3\"]\n",
    );
    assert_check(&check, false, false, false, "exit 3");
    assert_check(&check, false, false, false, "broken");
}

#[test]
fn a_command_check_is_fixed_then_passes() {
    let env = Env::new();
    let check = single(
        &env,
        "[[check]]\nname = \"c\"\nkind = \"command\"\ncommand = \"test -e made\"\n\
         fix = \"touch made\"\n",
    );
    assert_check(&check, true, true, true, "fixed");
    assert!(
        env.scratch("made").exists(),
        "the fix ran in the config's directory"
    );
}

#[test]
fn a_fix_that_does_not_help_is_reported() {
    let env = Env::new();
    let check = single(
        &env,
        "[[check]]\nname = \"c\"\nkind = \"command\"\ncommand = \"exit 1\"\n\
         fix = \"echo tried; exit 4\"\n",
    );
    assert_check(&check, false, true, false, "fix did not help");
    assert_check(&check, false, true, false, "exit 4");
}

#[test]
fn a_command_past_its_timeout_fails_and_its_process_group_is_killed() {
    let env = Env::new();
    let check = single(
        &env,
        "[[check]]\nname = \"slow\"\nkind = \"command\"\ntimeout = \"300ms\"\n\
         command = \"sleep 300 & echo $! > bg.pid; echo waiting; wait\"\n",
    );
    assert_check(&check, false, false, false, "timed out after 300ms");
    let bg = read_pid(&env.scratch("bg.pid"));
    assert_all_gone(&[("background sleep of the check", bg)]);
}

// ----------------------------------------------------------------- tcp ---

#[test]
fn a_tcp_check_passes_when_the_port_accepts() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let check = single(
        &env,
        &format!("[[check]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"{addr}\"\n"),
    );
    assert_check(&check, true, false, false, "connected");
}

#[test]
fn a_tcp_check_resolves_host_names() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let check = single(
        &env,
        &format!("[[check]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"localhost:{port}\"\n"),
    );
    assert_check(&check, true, false, false, "connected to 127.0.0.1");
}

#[test]
fn a_tcp_check_fails_when_nothing_listens() {
    let env = Env::new();
    let port = free_port();
    let check = single(
        &env,
        &format!("[[check]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n"),
    );
    assert_check(&check, false, false, false, "refused");
}

#[test]
fn a_tcp_check_is_fixed_when_the_fix_starts_a_listener() {
    let env = Env::new();
    let port = free_port();
    // The fix asks the test to listen (file `go`) and waits until it does
    // (file `ready`), so the re-check finds the port open.
    let server = {
        let go = env.scratch("go");
        let ready = env.scratch("ready");
        thread::spawn(move || {
            wait_until("the fix asks for a listener", DEADLINE, || go.exists());
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            fs::write(&ready, "").unwrap();
            listener
        })
    };
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\
             fix = \"touch go; while [ ! -e ready ]; do sleep 0.02; done\"\n"
        ),
    );
    drop(server.join().unwrap());
    assert_check(&check, true, true, true, "fixed: connected");
}

#[test]
fn a_tcp_check_fails_when_the_connection_is_not_answered_in_time() {
    let env = Env::new();
    let hole = BlackHole::new();
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"{}\"\ntimeout = \"300ms\"\n",
            hole.addr
        ),
    );
    assert_check(&check, false, false, false, "within 300ms");
}

// ---------------------------------------------------------------- http ---

#[test]
fn an_http_check_passes_on_2xx() {
    let env = Env::new();
    let server = HttpServer::start(&env, Reply::Status(204));
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"api\"\nkind = \"http\"\nurl = \"{}\"\n",
            server.url("/health")
        ),
    );
    assert_check(&check, true, false, false, "HTTP 204");
}

#[test]
fn an_http_check_fails_on_5xx_and_when_nothing_listens() {
    let env = Env::new();
    let server = HttpServer::start(&env, Reply::Status(503));
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"api\"\nkind = \"http\"\nurl = \"{}\"\n",
            server.url("/health")
        ),
    );
    assert_check(&check, false, false, false, "HTTP 503");

    let port = free_port();
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"api\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\n"
        ),
    );
    assert_check(&check, false, false, false, "refused");
}

#[test]
fn an_http_check_is_fixed_then_passes() {
    let env = Env::new();
    let server = HttpServer::start(&env, Reply::OkOnceExists("healthy"));
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"api\"\nkind = \"http\"\nurl = \"{}\"\nfix = \"touch healthy\"\n",
            server.url("/")
        ),
    );
    assert_check(&check, true, true, true, "HTTP 200");
}

#[test]
fn an_http_check_fails_when_the_server_does_not_answer_in_time() {
    let env = Env::new();
    let server = HttpServer::start(&env, Reply::Silence);
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"api\"\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"300ms\"\n",
            server.url("/")
        ),
    );
    assert_check(&check, false, false, false, "no answer within 300ms");
}

// ---------------------------------------------------------------- path ---

#[test]
fn a_path_check_passes_fails_and_checks_executability() {
    let env = Env::new();
    fs::write(env.scratch("data.txt"), "x").unwrap();
    let tool = env.script("tool", "#!/bin/sh\nexit 0\n");
    let check = single(
        &env,
        "[[check]]\nname = \"p\"\nkind = \"path\"\npath = \"data.txt\"\n",
    );
    assert_check(&check, true, false, false, "exists");
    let check = single(
        &env,
        "[[check]]\nname = \"p\"\nkind = \"path\"\npath = \"missing\"\n",
    );
    assert_check(&check, false, false, false, "does not exist");
    let check = single(
        &env,
        "[[check]]\nname = \"p\"\nkind = \"path\"\npath = \"data.txt\"\nexecutable = true\n",
    );
    assert_check(&check, false, false, false, "not executable");
    let check = single(
        &env,
        &format!(
            "[[check]]\nname = \"p\"\nkind = \"path\"\npath = \"{tool}\"\nexecutable = true\n"
        ),
    );
    assert_check(&check, true, false, false, "executable");
}

#[test]
fn a_path_check_is_fixed_then_passes() {
    let env = Env::new();
    let check = single(
        &env,
        "[[check]]\nname = \"out\"\nkind = \"path\"\npath = \"out\"\ndir = true\n\
         fix = \"mkdir -p out\"\n",
    );
    assert_check(&check, true, true, true, "directory");
}

#[test]
fn a_fix_past_its_timeout_is_killed_and_the_check_fails() {
    let env = Env::new();
    let check = single(
        &env,
        "[[check]]\nname = \"out\"\nkind = \"path\"\npath = \"never\"\n\
         fix = \"sleep 300 & echo $! > fixbg.pid; wait\"\nfix_timeout = \"300ms\"\n",
    );
    assert_check(&check, false, true, false, "timed out after 300ms");
    let bg = read_pid(&env.scratch("fixbg.pid"));
    assert_all_gone(&[("background sleep of the fix", bg)]);
}

// ---------------------------------------------------- the whole report ---

#[test]
fn checks_run_concurrently_and_report_in_config_order() {
    let env = Env::new();
    // Each check waits for the other to have started: run one after the
    // other, the first would time out.
    let body = "\
[defaults]
timeout = \"20s\"

[[check]]
name = \"first\"
kind = \"command\"
command = \"touch a; while [ ! -e b ]; do sleep 0.02; done\"

[[check]]
name = \"second\"
kind = \"command\"
command = \"touch b; while [ ! -e a ]; do sleep 0.02; done\"

[[check]]
name = \"third\"
kind = \"path\"
path = \"nowhere\"
";
    let out = preflight(&env, &config(&env, body));
    assert_code(&out, PREFLIGHT_FAILED);
    let report = json_line(&out);
    assert_eq!(report["passed"], false, "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<_> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert_eq!(checks[0]["passed"], true, "{report:#}");
    assert_eq!(checks[1]["passed"], true, "{report:#}");
    assert_eq!(checks[2]["passed"], false, "{report:#}");
    let mut keys: Vec<_> = checks[0].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "detail",
            "duration_ms",
            "fix_ran",
            "fixed",
            "kind",
            "name",
            "passed"
        ]
    );
}

#[test]
fn the_default_config_is_jobwatch_toml_in_the_current_directory() {
    let env = Env::new();
    config(
        &env,
        "[[check]]\nname = \"ok\"\nkind = \"command\"\ncommand = \"true\"\n",
    );
    let out = env.jw(&["preflight", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_line(&out)["passed"], true);
}

// --------------------------------------------------------- bad configs ---

#[test]
fn malformed_toml_is_refused_naming_the_file_and_line() {
    let env = Env::new();
    let file = config(
        &env,
        "[[check]]\nname = \"db\"\nkind = \"tcp\"\naddress = 127.0.0.1:5432\n",
    );
    let out = preflight(&env, &file);
    assert_usage_error(&out, &["jobwatch.toml:4:"]);
}

#[test]
fn an_unknown_key_or_kind_is_refused() {
    let env = Env::new();
    let file = config(
        &env,
        "[[check]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"h:1\"\ntimout = \"1s\"\n",
    );
    assert_usage_error(&preflight(&env, &file), &["jobwatch.toml:5:", "timout"]);
    let file = config(&env, "[[check]]\nname = \"db\"\nkind = \"ping\"\n");
    assert_usage_error(&preflight(&env, &file), &["jobwatch.toml:3:", "ping"]);
}

#[test]
fn a_missing_config_is_refused() {
    let env = Env::new();
    let out = preflight(&env, &env.scratch("absent.toml"));
    assert_usage_error(&out, &["absent.toml"]);
}

// ------------------------------------------------------ run --preflight ---

/// True when the jobs directory holds no file of job `name`.
fn no_job_files(env: &Env, name: &str) -> bool {
    let Ok(entries) = fs::read_dir(&env.dir) else {
        return true;
    };
    entries
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with(name))
}

const FAILING: &str = "[[check]]\nname = \"db\"\nkind = \"path\"\npath = \"no-such-db\"\n\
[[check]]\nname = \"ok\"\nkind = \"command\"\ncommand = \"true\"\n";

#[test]
fn run_with_a_failing_preflight_refuses_with_exit_7_and_starts_nothing() {
    let env = Env::new();
    let file = config(&env, FAILING);
    let preflight_arg = format!("--preflight={}", file.display());
    for detach in [false, true] {
        let mut opts = vec![preflight_arg.as_str()];
        if detach {
            opts.push("--detach");
        }
        let out = env.run("build", &opts, &sh("touch ran"));
        assert_code(&out, PREFLIGHT_FAILED);
        let err = stderr(&out);
        assert!(
            err.contains("preflight check db (path) failed"),
            "{}",
            describe(&out)
        );
        assert!(!err.contains("check ok"), "{}", describe(&out));
        assert!(err.contains("build not started"), "{}", describe(&out));
        assert!(!env.scratch("ran").exists(), "the job must not run");
        assert!(no_job_files(&env, "build"), "no job files may exist");
    }
}

#[test]
fn run_with_a_passing_preflight_runs_the_job() {
    let env = Env::new();
    config(
        &env,
        "[[check]]\nname = \"ok\"\nkind = \"command\"\ncommand = \"true\"\n",
    );
    // Without `=`, --preflight takes the default file and never the name.
    let out = env.jw(&["run", "--preflight", "build", "--", "sh", "-c", "touch ran"]);
    assert_code(&out, 0);
    assert!(env.scratch("ran").exists(), "{}", describe(&out));
    assert_eq!(env.await_status("build"), "SUCCESS");

    let d = env.detach("bg", &["--preflight"], &sh("touch bg-ran"));
    assert!(d.pid > 0);
    assert_eq!(env.await_status("bg"), "SUCCESS");
    assert!(env.scratch("bg-ran").exists());
}

#[test]
fn run_with_a_bad_preflight_config_is_a_usage_error() {
    let env = Env::new();
    let out = env.run("build", &["--preflight=absent.toml"], &sh("touch ran"));
    assert_usage_error(&out, &["absent.toml"]);
    assert!(!env.scratch("ran").exists());
    assert!(no_job_files(&env, "build"));
}
