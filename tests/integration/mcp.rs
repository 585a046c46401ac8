//! `jobwatch mcp` driven by the MCP SDK's own client over a child process's
//! stdio: the same path a real agent's client takes.

use std::future::Future;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, ClientRequest, DetailedTask, GetTaskParams, Implementation,
    ProgressNotificationParam, Request, ServerResult, TaskPayload, TaskStatus,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::*;

/// Success results stay this small.
const SMALL: usize = 300;

/// A client that forwards every progress notification to a channel, and
/// declares the tasks extension when `tasks` is set.
struct Client {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    tasks: bool,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.tasks {
            ClientCapabilities::builder().enable_tasks().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("jobwatch-tests", "1"))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }
}

/// A running `jobwatch mcp` with a connected client.
struct Mcp {
    client: RunningService<RoleClient, Client>,
    progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
    server_pid: i32,
}

/// A tool's answer: its text blocks, and whether it is a tool error.
#[derive(Debug)]
struct Answer {
    text: String,
    is_error: bool,
}

impl Answer {
    fn of(r: CallToolResult) -> Self {
        let text = r
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            text,
            is_error: r.is_error == Some(true),
        }
    }

    /// The JSON lines of a successful answer.
    #[track_caller]
    fn ok_lines(&self) -> Vec<Value> {
        assert!(
            !self.is_error,
            "expected success, got a tool error: {}",
            self.text
        );
        self.text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The single JSON line of a small successful answer.
    #[track_caller]
    fn ok_small(&self) -> Value {
        assert!(
            self.text.len() <= SMALL,
            "a success result must be at most {SMALL} bytes, got {}: {}",
            self.text.len(),
            self.text
        );
        let mut lines = self.ok_lines();
        assert_eq!(lines.len(), 1, "one line expected: {}", self.text);
        lines.pop().unwrap()
    }

    #[track_caller]
    fn err_containing(&self, needle: &str) {
        assert!(self.is_error, "expected a tool error, got: {}", self.text);
        assert!(
            self.text.contains(needle),
            "error should mention {needle:?}: {}",
            self.text
        );
        assert_eq!(
            self.text.lines().count(),
            1,
            "one-line error: {}",
            self.text
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `body` against a fresh `jobwatch mcp EXTRA...` on `env`'s jobs dir,
/// then shuts the server down and checks it exited.
fn with_server<F, Fut>(env: &Env, extra: &[&str], body: F)
where
    F: FnOnce(Mcp) -> Fut,
    Fut: Future<Output = Mcp>,
{
    with_client(env, extra, false, body)
}

/// [`with_server`] with a client that declares the tasks extension when
/// `tasks` is set.
fn with_client<F, Fut>(env: &Env, extra: &[&str], tasks: bool, body: F)
where
    F: FnOnce(Mcp) -> Fut,
    Fut: Future<Output = Mcp>,
{
    let mut cmd = env.cmd();
    cmd.arg("mcp").args(extra);
    runtime().block_on(async {
        let transport =
            TokioChildProcess::new(tokio::process::Command::from(cmd)).expect("spawn jobwatch mcp");
        let server_pid = transport.id().expect("server pid") as i32;
        let (tx, rx) = mpsc::unbounded_channel();
        let client = tokio::time::timeout(
            CMD_DEADLINE,
            Client {
                progress: tx,
                tasks,
            }
            .serve(transport),
        )
        .await
        .expect("initialize within the deadline")
        .expect("initialize");
        let mcp = body(Mcp {
            client,
            progress: rx,
            server_pid,
        })
        .await;
        let pid = mcp.server_pid;
        tokio::time::timeout(CMD_DEADLINE, mcp.client.cancel())
            .await
            .expect("shutdown within the deadline")
            .expect("shutdown");
        eventually("the server exited after its client left", || is_gone(pid));
    });
}

impl Mcp {
    /// Calls `wait` from a tasks-capable client; returns the task id.
    async fn wait_task(&self, args: Value) -> String {
        let params = CallToolRequestParams::new("wait")
            .with_arguments(args.as_object().expect("arguments are an object").clone());
        match self.client.call_tool_once(params).await.expect("wait") {
            CallToolResponse::Task(created) => created.task.task_id,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    async fn task(&self, id: &str) -> DetailedTask {
        let got = self
            .client
            .peer()
            .get_task(GetTaskParams::new(id.to_owned()));
        got.await.expect("tasks/get").task
    }

    /// Polls the task until `done` holds for it (bounded by [`DEADLINE`]).
    async fn task_until(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&DetailedTask) -> bool,
    ) -> DetailedTask {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let task = self.task(id).await;
            if done(&task) {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task never {what}: {task:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn call(&self, tool: &str, args: Value) -> Answer {
        let params = CallToolRequestParams::new(tool.to_owned())
            .with_arguments(args.as_object().expect("arguments are an object").clone());
        let result = tokio::time::timeout(CMD_DEADLINE, self.client.call_tool(params))
            .await
            .unwrap_or_else(|_| panic!("{tool} did not answer within {CMD_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"));
        Answer::of(result)
    }
}

/// Polls `cond` every [`POLL`] without blocking the runtime; panics naming
/// `what` after [`DEADLINE`].
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[test]
fn lists_every_tool_with_an_object_schema() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let tools = mcp.client.list_all_tools().await.expect("tools/list");
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "breaker_reset",
                "breaker_status",
                "kill",
                "logs",
                "preflight",
                "start",
                "status",
                "wait"
            ]
        );
        for t in &tools {
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
            assert!(
                t.description.as_deref().is_some_and(|d| !d.is_empty()),
                "{} has a description",
                t.name
            );
        }
        let read_only = |name: &str| {
            let tool = tools.iter().find(|t| t.name == name).unwrap();
            tool.annotations.as_ref().and_then(|a| a.read_only_hint)
        };
        assert_eq!(read_only("status"), Some(true));
        assert_eq!(read_only("logs"), Some(true));
        assert_eq!(read_only("start"), None);
        let start = tools.iter().find(|t| t.name == "start").unwrap();
        let required = start
            .input_schema
            .get("required")
            .cloned()
            .unwrap_or_default();
        assert_eq!(required, json!(["name", "command"]));
        mcp
    });
}

#[test]
fn drives_a_job_from_start_to_logs_and_shares_it_with_the_cli() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let started = mcp
            .call(
                "start",
                json!({"name": "build", "command": ["sh", "-c", "echo hello; echo \"v=$V\"; pwd"],
                       "cwd": env.root(), "env": {"V": "42"}}),
            )
            .await
            .ok_small();
        assert_eq!(started["name"], "build");
        assert!(started["pid"].as_i64().is_some_and(|p| p > 0), "{started}");

        let done = mcp
            .call("wait", json!({"names": ["build"]}))
            .await
            .ok_small();
        assert_eq!(done["outcome"], "success", "{done}");
        assert_eq!(done["exit_code"], 0);
        assert!(done.get("tail").is_none(), "no tail on success: {done}");

        let status = mcp
            .call("status", json!({"names": ["build"]}))
            .await
            .ok_small();
        assert_eq!(status["state"], "success");

        let logs = mcp.call("logs", json!({"name": "build", "tail": 2})).await;
        assert!(!logs.is_error, "{}", logs.text);
        let root = env.root().canonicalize().unwrap();
        assert!(
            logs.text.contains("v=42"),
            "env reached the job: {}",
            logs.text
        );
        assert!(
            logs.text.contains(&*root.to_string_lossy()),
            "cwd: {}",
            logs.text
        );
        assert!(
            !logs.text.contains("hello"),
            "only the last 2 lines: {}",
            logs.text
        );
        let range = mcp
            .call("logs", json!({"name": "build", "offset": 0, "length": 5}))
            .await;
        let mut parts = range.text.splitn(2, '\n');
        let meta: Value = serde_json::from_str(parts.next().unwrap()).unwrap();
        assert_eq!(
            (meta["from"].clone(), meta["to"].clone()),
            (json!(0), json!(5))
        );
        assert_eq!(parts.next(), Some("hello"));

        // The CLI sees the MCP job, and MCP sees a CLI job.
        let cli = json_line(&env.jw(&["status", "build", "--json"]));
        assert_eq!(cli["state"], "success");
        assert_code(&env.run("cli-job", FAST, &["true"]), 0);
        let rows = mcp.call("status", json!({})).await.ok_lines();
        let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
        assert_eq!(names, ["build", "cli-job"]);
        mcp
    });
}

#[test]
fn a_failed_job_reports_a_bounded_tail() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let script = "for i in $(seq 1 400); do printf 'line %s %0300d\\n' $i 0; done; exit 3";
        mcp.call(
            "start",
            json!({"name": "noisy", "command": ["sh", "-c", script]}),
        )
        .await
        .ok_small();
        let answer = mcp
            .call("wait", json!({"names": ["noisy"], "tail": 50}))
            .await;
        let v = &answer.ok_lines()[0];
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["exit_code"], 3);
        let tail = v["tail"].as_array().expect("a tail on failure");
        assert!(
            !tail.is_empty() && tail.len() < 50,
            "bounded: {} lines",
            tail.len()
        );
        assert!(
            tail.last()
                .unwrap()
                .as_str()
                .unwrap()
                .starts_with("line 400 ")
        );
        assert!(
            answer.text.len() <= 3_000,
            "bounded result: {} bytes",
            answer.text.len()
        );
        mcp
    });
}

#[test]
fn wait_returns_running_at_its_cap_and_kill_stops_the_job() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let started = mcp
            .call(
                "start",
                json!({"name": "stuck", "command": ["sh", "-c", "echo warming up; exec sleep 300"],
                       "liveness": "timer"}),
            )
            .await
            .ok_small();
        let pid = started["pid"].as_i64().unwrap() as i32;
        eventually("the job printed its line", || {
            env.log("stuck").contains("warming up")
        });

        let running = mcp
            .call("wait", json!({"names": ["stuck"], "timeout": "300ms"}))
            .await
            .ok_small();
        assert_eq!(running["outcome"], "running", "{running}");
        assert_eq!(running["last_line"], "warming up");
        assert!(running["elapsed_ms"].as_u64().is_some(), "{running}");
        assert!(is_alive(pid), "the wait's cap never kills the job");

        let killed = mcp
            .call("kill", json!({"name": "stuck", "grace": "200ms"}))
            .await
            .ok_small();
        assert_eq!(killed["outcome"], "killed", "{killed}");
        assert_all_gone(&[("job", pid)]);
        let again = mcp
            .call("wait", json!({"names": ["stuck"]}))
            .await
            .ok_lines();
        assert_eq!(again[0]["outcome"], "killed");
        mcp
    });
}

#[test]
fn bad_requests_are_one_line_tool_errors_and_the_server_keeps_serving() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        mcp.call("wait", json!({"names": ["nope"]}))
            .await
            .err_containing("no job named nope");
        mcp.call("status", json!({"names": ["nope"]}))
            .await
            .err_containing("no job named nope");
        mcp.call("logs", json!({"name": "nope"}))
            .await
            .err_containing("no log for job nope");
        mcp.call("kill", json!({"name": "nope"}))
            .await
            .err_containing("no job named nope");
        mcp.call("start", json!({"name": "../x", "command": ["true"]}))
            .await
            .err_containing("invalid job name");
        mcp.call("start", json!({"name": "x"}))
            .await
            .err_containing("missing field `command`");
        mcp.call("start", json!({"name": "x", "command": []}))
            .await
            .err_containing("command is empty");
        mcp.call(
            "start",
            json!({"name": "x", "command": ["true"], "timeout": "10x"}),
        )
        .await
        .err_containing("timeout: invalid duration");
        mcp.call("wait", json!({"names": []}))
            .await
            .err_containing("names is empty");
        mcp.call(
            "start",
            json!({"name": "x", "command": ["true"], "cwd": "/no/such/dir"}),
        )
        .await
        .err_containing("is not a directory");
        // Malformed files: a tool error for wait, an `invalid` row for status.
        std::fs::create_dir_all(&env.dir).unwrap();
        std::fs::write(env.file("broken", ".job.json"), b"{not json").unwrap();
        mcp.call("wait", json!({"names": ["broken"]}))
            .await
            .err_containing("job broken:");
        let row = mcp
            .call("status", json!({"names": ["broken"]}))
            .await
            .ok_small();
        assert_eq!(row["state"], "invalid", "{row}");
        // An unknown tool is protocol misuse: a protocol error, not a crash.
        let unknown = mcp
            .client
            .call_tool(CallToolRequestParams::new("frobnicate"))
            .await;
        assert!(unknown.is_err(), "unknown tool: {unknown:?}");

        // Still serving.
        let ok = mcp
            .call("start", json!({"name": "after", "command": ["true"]}))
            .await
            .ok_small();
        assert_eq!(ok["name"], "after");
        let done = mcp
            .call("wait", json!({"names": ["after"]}))
            .await
            .ok_small();
        assert_eq!(done["outcome"], "success");
        mcp
    });
}

/// The 16 KiB (16384 bytes) most one `logs` call returns.
const LOG_CAP: usize = 16 * 1024;

#[test]
fn logs_returns_at_most_16_kib_a_call_whatever_is_asked() {
    let env = &Env::new();
    // 100 lines of 400 bytes: 40,000 bytes of log.
    let job = sh("i=0; while [ $i -lt 100 ]; do printf '%0399d\\n' $i; i=$((i+1)); done");
    assert_code(&env.run("big", &["--quiet"], &job), 0);
    let log = std::fs::read(env.file("big", ".log")).unwrap();
    assert_eq!(log.len(), 40_000);
    with_server(env, &[], |mcp| async move {
        let asks = [
            json!({"name": "big", "tail": 1000}),
            json!({"name": "big", "offset": 0}),
            json!({"name": "big", "offset": 0, "length": 1_000_000}),
            json!({"name": "big", "offset": 20_000, "length": 1_000_000}),
        ];
        for ask in asks {
            let answer = mcp.call("logs", ask.clone()).await;
            assert!(!answer.is_error, "{ask}: {}", answer.text);
            let (meta, text) = answer.text.split_once('\n').expect("meta line, then text");
            let meta: Value = serde_json::from_str(meta).unwrap();
            let (from, to) = (int(&meta, "from") as usize, int(&meta, "to") as usize);
            assert_eq!(to - from, LOG_CAP, "{ask}: {meta}");
            assert_eq!(text.len(), LOG_CAP, "{ask}: {meta}");
            assert_eq!(
                text.as_bytes(),
                &log[from..to],
                "{ask}: the text is that range"
            );
        }
        mcp
    });
}

#[test]
fn a_pending_wait_does_not_hold_up_another() {
    let env = &Env::new();
    with_server(env, &["--max-wait", "60s"], |mcp| async move {
        for job in ["slow", "fast"] {
            mcp.call("start", json!({"name": job, "command": env.gated(job, 0)}))
                .await
                .ok_small();
        }
        let mcp = std::sync::Arc::new(mcp);
        let server = mcp.server_pid;
        assert!(
            !has_inotify_fd(server),
            "precondition: no wait is in flight yet"
        );
        let slow = tokio::spawn({
            let mcp = mcp.clone();
            async move { mcp.call("wait", json!({"names": ["slow"]})).await }
        });
        // The slow wait is in flight, blocked on its job's gate: the server
        // watches the jobs directory for it. Only then is the fast one sent.
        until(
            "the server waits for the slow job on an inotify watch",
            || has_inotify_watch(server),
        )
        .await;
        let fast = tokio::spawn({
            let mcp = mcp.clone();
            async move { mcp.call("wait", json!({"names": ["fast"]})).await }
        });
        // Only the second job may finish: its wait must answer while the
        // first one is still pending (its job cannot end before the gate). A
        // server that served one call at a time would answer it only after
        // the slow wait's 60 s cap.
        env.release("fast");
        let fast = tokio::time::timeout(DEADLINE, fast)
            .await
            .expect("the fast wait answers while the slow one still blocks")
            .expect("fast wait task")
            .ok_small();
        assert_eq!(fast["outcome"], "success");
        assert!(
            !slow.is_finished(),
            "the slow wait cannot have answered yet"
        );
        let status = mcp
            .call("status", json!({"names": ["slow"]}))
            .await
            .ok_small();
        assert_eq!(
            status["state"], "running",
            "other calls are served meanwhile"
        );
        env.release("slow");
        let slow = slow.await.expect("slow wait task").ok_small();
        assert_eq!(slow["outcome"], "success");
        std::sync::Arc::try_unwrap(mcp).unwrap_or_else(|_| panic!("no other users"))
    });
}

#[test]
fn wait_until_log_returns_on_the_marker_and_leaves_the_server_running() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let script = "echo booting; echo listening on 8080; exec sleep 300";
        let started = mcp
            .call(
                "start",
                json!({"name": "srv", "command": ["sh", "-c", script], "liveness": "timer"}),
            )
            .await
            .ok_small();
        let ready = mcp
            .call(
                "wait",
                json!({"names": ["srv"], "until_log": "listening on [0-9]+"}),
            )
            .await
            .ok_small();
        assert_eq!(ready["outcome"], "matched", "{ready}");
        assert_eq!(ready["line"], "listening on 8080");
        assert_eq!(ready["running"], true);
        assert!(
            is_alive(started["pid"].as_i64().unwrap() as i32),
            "the server keeps running"
        );

        mcp.call("wait", json!({"names": ["srv"], "until_log": "("}))
            .await
            .err_containing("until_log: invalid regex");
        mcp.call("wait", json!({"names": ["srv", "other"], "until_log": "x"}))
            .await
            .err_containing("until_log reads one job's log");
        // No match before the cap: `running`, as for a plain wait.
        let still = mcp
            .call(
                "wait",
                json!({"names": ["srv"], "until_log": "never printed", "timeout": "200ms"}),
            )
            .await
            .ok_small();
        assert_eq!(still["outcome"], "running", "{still}");
        mcp.call("kill", json!({"name": "srv", "grace": "0s"}))
            .await
            .ok_small();
        mcp
    });
}

#[test]
fn preflight_reports_failures_and_gates_start() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let write = |file: &str, text: &str| {
            let path = env.scratch(file);
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        };
        let good = write(
            "good.toml",
            "[[check]]\nname = \"made\"\nkind = \"command\"\ncommand = \"test -e made\"\n\
             fix = \"touch made\"\n",
        );
        let bad = write(
            "bad.toml",
            "[[check]]\nname = \"sh\"\nkind = \"command\"\ncommand = \"echo ready\"\n\
             [[check]]\nname = \"db\"\nkind = \"command\"\ncommand = \"echo db down >&2; exit 3\"\n",
        );
        let broken = write("broken.toml", "[[check]]\nname = \"x\"\nkind = \"nope\"\n");

        let fixed = mcp
            .call("preflight", json!({"config": good}))
            .await
            .ok_small();
        assert_eq!(
            fixed,
            json!({"passed": true, "checks": 1, "fixed": ["made"]})
        );
        let failed = mcp
            .call("preflight", json!({"config": bad}))
            .await
            .ok_small();
        assert_eq!(failed["passed"], false);
        assert_eq!(failed["checks"], 2);
        let failures = failed["failed"].as_array().unwrap();
        assert_eq!(failures.len(), 1, "{failed}");
        assert_eq!(failures[0]["name"], "db");
        mcp.call("preflight", json!({"config": broken}))
            .await
            .err_containing("broken.toml:");
        mcp.call("preflight", json!({"config": env.scratch("none.toml")}))
            .await
            .err_containing("cannot read preflight config");

        // start with preflight: refused without a trace, or started.
        let refused = mcp
            .call(
                "start",
                json!({"name": "gated", "command": ["true"], "preflight_config": bad}),
            )
            .await;
        refused.err_containing("(exit 7: preflight failed)");
        refused.err_containing("db");
        // `preflight: true` reads jobwatch.toml in the job's cwd.
        std::fs::copy(&bad, env.scratch("jobwatch.toml")).unwrap();
        mcp.call(
            "start",
            json!({"name": "gated", "command": ["true"], "preflight": true, "cwd": env.root()}),
        )
        .await
        .err_containing("(exit 7: preflight failed)");
        mcp.call("status", json!({"names": ["gated"]}))
            .await
            .err_containing("no job named gated");
        mcp.call(
            "start",
            json!({"name": "gated", "command": ["true"], "preflight_config": good}),
        )
        .await
        .ok_small();
        let done = mcp
            .call("wait", json!({"names": ["gated"]}))
            .await
            .ok_small();
        assert_eq!(done["outcome"], "success");
        mcp
    });
}

/// The server, spawned here with plain pipes (rather than the SDK's
/// child-process transport, which SIGTERMs a server slow to leave) so the
/// test can see how it exited: by itself, with status 0, although a `wait`
/// was still blocked on one of its threads.
#[test]
fn the_server_exits_by_itself_when_its_client_leaves_during_a_wait() {
    let env = &Env::new();
    let mut cmd = env.cmd();
    cmd.args(["mcp", "--max-wait", "10m", "--progress-every", "50ms"]);
    runtime().block_on(async {
        let mut server = tokio::process::Command::from(cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn jobwatch mcp");
        let transport = (server.stdout.take().unwrap(), server.stdin.take().unwrap());
        let (tx, mut progress) = mpsc::unbounded_channel();
        let client = Client {
            progress: tx,
            tasks: false,
        }
        .serve(transport)
        .await
        .expect("initialize");
        let start = CallToolRequestParams::new("start").with_arguments(
            json!({"name": "idle", "command": env.gated("idle", 0)})
                .as_object()
                .unwrap()
                .clone(),
        );
        Answer::of(client.call_tool(start).await.expect("start")).ok_small();
        let request = ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new("wait")
                .with_arguments(json!({"names": ["idle"]}).as_object().unwrap().clone()),
        ));
        let pending = client
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .expect("send wait");
        // A progress notification proves the wait is blocking on its thread.
        tokio::time::timeout(CMD_DEADLINE, progress.recv())
            .await
            .expect("progress while waiting")
            .expect("progress channel open");
        drop(pending);
        client.cancel().await.expect("close the connection");
        let status = tokio::time::timeout(CMD_DEADLINE, server.wait())
            .await
            .expect("the server exits long before its 10-minute cap")
            .expect("wait for the server");
        assert_eq!(
            status.code(),
            Some(0),
            "the server left by itself: {status}"
        );
    });
}

#[test]
fn a_pending_wait_sends_progress_with_the_last_log_line() {
    let env = &Env::new();
    with_server(env, &["--progress-every", "50ms"], |mut mcp| async move {
        let gate = env.scratch("go");
        let script = format!(
            "echo compiling step 7; while [ ! -e '{}' ]; do sleep 0.02; done",
            gate.display()
        );
        mcp.call(
            "start",
            json!({"name": "long", "command": ["sh", "-c", script]}),
        )
        .await
        .ok_small();
        eventually("the job printed", || env.log("long").contains("step 7"));
        let request = ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new("wait")
                .with_arguments(json!({"names": ["long"]}).as_object().unwrap().clone()),
        ));
        let handle = mcp
            .client
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .expect("send wait");
        let token = handle.progress_token.clone();
        let first = tokio::time::timeout(CMD_DEADLINE, mcp.progress.recv())
            .await
            .expect("a progress notification while waiting")
            .expect("progress channel open");
        assert_eq!(first.progress_token, token);
        let message = first.message.unwrap_or_default();
        assert!(
            message.contains("long") && message.contains("compiling step 7"),
            "{message}"
        );

        std::fs::write(&gate, b"go").unwrap();
        let response = tokio::time::timeout(CMD_DEADLINE, handle.await_response())
            .await
            .expect("wait answers after the job ends")
            .expect("wait response");
        let ServerResult::CallToolResult(result) = response else {
            panic!("unexpected response {response:?}");
        };
        assert_eq!(Answer::of(result).ok_small()["outcome"], "success");
        mcp
    });
}

#[test]
fn retries_and_breakers_reach_the_job_and_the_breaker_tools() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let fail = json!({"name": "deploy", "command": ["sh", "-c", "echo try; exit 1"],
                          "retries": 1, "backoff": "10ms", "breaker": "deploy",
                          "max_failures": 1});
        mcp.call("start", fail.clone()).await.ok_small();
        let done = mcp
            .call("wait", json!({"names": ["deploy"]}))
            .await
            .ok_lines();
        assert_eq!(done[0]["outcome"], "failed", "{done:?}");
        assert_eq!(done[0]["attempt"], "2/2", "both attempts ran: {done:?}");

        let open = mcp
            .call("breaker_status", json!({"key": "deploy"}))
            .await
            .ok_small();
        assert_eq!(
            (open["state"].clone(), open["admits"].clone()),
            (json!("open"), json!(false))
        );
        let refused = mcp.call("start", fail.clone()).await;
        refused.err_containing("breaker deploy is open");
        refused.err_containing("(exit 6: breaker open)");
        // The CLI agrees.
        assert_code(&env.jw(&["breaker", "status", "deploy", "--json"]), 6);

        let reset = mcp
            .call("breaker_reset", json!({"key": "deploy"}))
            .await
            .ok_small();
        assert_eq!(reset["state"], "closed");
        let all = mcp.call("breaker_status", json!({})).await.ok_lines();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0]["admits"], true);
        mcp.call("breaker_reset", json!({"key": "../etc"}))
            .await
            .err_containing("invalid breaker key");
        mcp.call(
            "start",
            json!({"name": "x", "command": ["true"], "retries": -1}),
        )
        .await
        .err_containing("retries");
        mcp
    });
}

#[test]
fn a_wait_task_waits_past_the_cap_until_the_outcome() {
    let env = &Env::new();
    let extra = ["--max-wait", "100ms", "--progress-every", "50ms"];
    with_client(env, &extra, true, |mcp| async move {
        let gate = env.scratch("go");
        let script = format!(
            "echo compiling step 7; while [ ! -e '{}' ]; do sleep 0.02; done; echo linked",
            gate.display()
        );
        mcp.call(
            "start",
            json!({"name": "long", "command": ["sh", "-c", script]}),
        )
        .await
        .ok_small();
        eventually("the job printed", || env.log("long").contains("step 7"));
        let id = mcp.wait_task(json!({"names": ["long"]})).await;

        let working = mcp
            .task_until(&id, "showed the job's last line", |t| {
                t.task
                    .status_message
                    .as_deref()
                    .is_some_and(|m| m.contains("compiling step 7"))
            })
            .await;
        assert_eq!(working.status(), TaskStatus::Working);
        // Let the job run for several caps (its own recorded age says so):
        // the task keeps waiting instead of answering `running`.
        eventually("the job ran past 5 caps", || {
            let row = json_line(&env.jw(&["status", "long", "--json"]));
            row["age_ms"].as_u64().is_some_and(|ms| ms > 500)
        });
        assert_eq!(mcp.task(&id).await.status(), TaskStatus::Working);

        std::fs::write(&gate, b"go").unwrap();
        let done = mcp
            .task_until(&id, "completed", |t| t.status() != TaskStatus::Working)
            .await;
        let TaskPayload::Completed { result } = done.payload else {
            panic!("expected a completed task: {done:?}");
        };
        let result: CallToolResult = serde_json::from_value(Value::Object(result)).unwrap();
        assert_eq!(Answer::of(result).ok_small()["outcome"], "success");

        // Cancelling a wait task ends the wait, never the job.
        let started = mcp
            .call(
                "start",
                json!({"name": "idle", "command": ["sleep", "300"], "liveness": "timer"}),
            )
            .await
            .ok_small();
        let id = mcp.wait_task(json!({"names": ["idle"]})).await;
        mcp.client
            .peer()
            .cancel_task(CancelTaskParams::new(id.clone()))
            .await
            .expect("tasks/cancel");
        let cancelled = mcp
            .task_until(&id, "cancelled", |t| t.status() != TaskStatus::Working)
            .await;
        assert_eq!(cancelled.status(), TaskStatus::Cancelled);
        assert!(
            is_alive(started["pid"].as_i64().unwrap() as i32),
            "the job still runs"
        );
        mcp.call("kill", json!({"name": "idle", "grace": "0s"}))
            .await
            .ok_small();

        // An invalid request is a tool error at once, not a task; an unknown
        // job is found by the task, which completes with a tool error.
        let bad = CallToolRequestParams::new("wait")
            .with_arguments(json!({"names": ["../x"]}).as_object().unwrap().clone());
        match mcp.client.call_tool_once(bad).await.expect("wait") {
            CallToolResponse::Complete(r) => Answer::of(r).err_containing("invalid job name"),
            other => panic!("expected a tool error, got {other:?}"),
        }
        let id = mcp.wait_task(json!({"names": ["nope"]})).await;
        let done = mcp
            .task_until(&id, "completed", |t| t.status() != TaskStatus::Working)
            .await;
        let TaskPayload::Completed { result } = done.payload else {
            panic!("expected a completed task: {done:?}");
        };
        let result: CallToolResult = serde_json::from_value(Value::Object(result)).unwrap();
        Answer::of(result).err_containing("no job named nope");
        mcp
    });
}

/// The measured sizes of typical results, printed for the record (run with
/// `--nocapture`); the assertions above bound them.
#[test]
fn typical_result_sizes() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let start = mcp
            .call(
                "start",
                json!({"name": "sized", "command": ["sh", "-c", "echo ok"]}),
            )
            .await;
        let wait = mcp.call("wait", json!({"names": ["sized"]})).await;
        let status = mcp.call("status", json!({"names": ["sized"]})).await;
        mcp.call(
            "start",
            json!({"name": "bad", "command": ["sh", "-c", "seq 1 30; exit 1"]}),
        )
        .await
        .ok_small();
        let failed = mcp.call("wait", json!({"names": ["bad"]})).await;
        let missing = mcp.call("wait", json!({"names": ["nope"]})).await;
        let sleeper = json!({"name": "sleeper", "command": ["sh", "-c", "echo step 1 of 9; exec sleep 300"],
                             "liveness": "timer", "breaker": "nightly"});
        mcp.call("start", sleeper).await.ok_small();
        eventually("the sleeper printed", || {
            env.log("sleeper").contains("step 1")
        });
        let running = mcp
            .call("wait", json!({"names": ["sleeper"], "timeout": "100ms"}))
            .await;
        let breaker = mcp.call("breaker_status", json!({"key": "nightly"})).await;
        let killed = mcp
            .call("kill", json!({"name": "sleeper", "grace": "0s"}))
            .await;
        let config = env.scratch("ok.toml");
        std::fs::write(
            &config,
            "[[check]]\nname = \"sh\"\nkind = \"command\"\ncommand = \"true\"\n",
        )
        .unwrap();
        let preflight = mcp.call("preflight", json!({"config": config})).await;
        let all = [
            ("start", &start),
            ("wait success", &wait),
            ("status", &status),
            ("wait running (cap passed)", &running),
            ("kill", &killed),
            ("breaker_status", &breaker),
            ("preflight passed", &preflight),
            ("wait failed (tail 20)", &failed),
            ("tool error", &missing),
        ];
        for (what, a) in all {
            eprintln!("{what}: {} bytes: {}", a.text.len(), a.text);
        }
        for (_, a) in &all[..7] {
            a.ok_small();
        }
        assert!(failed.text.len() < 1_000);
        mcp
    });
}

/// `start` has no `heartbeat`: a `stale` shorter than the default heartbeat
/// (10 s) must not be refused over a setting the agent cannot give.
#[test]
fn start_with_a_stale_shorter_than_the_default_heartbeat_runs_the_job() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        mcp.call(
            "start",
            json!({"name": "quick", "command": ["true"], "stale": "2s"}),
        )
        .await
        .ok_small();
        let done = mcp
            .call("wait", json!({"names": ["quick"]}))
            .await
            .ok_small();
        assert_eq!(done["outcome"], "success", "{done}");
        let settings = env.record("quick")["settings"].clone();
        assert_eq!(settings["stale_ms"], 2000, "{settings}");
        assert_eq!(
            settings["heartbeat_ms"], 2000,
            "the heartbeat shrinks to fit: {settings}"
        );
        mcp
    });
}

/// A recorded outcome is the outcome (issue 9): `kill` of a run whose
/// wrapper died after recording it, before its status, kills nothing and
/// says so, as the CLI's `kill` does.
#[test]
fn kill_of_a_run_whose_outcome_is_recorded_says_it_had_already_finished() {
    let env = &Env::new();
    assert_code(&env.run("rec", &["--quiet"], &sh("exit 3")), 3);
    std::fs::remove_file(env.file("rec", ".status")).unwrap();
    with_server(env, &[], |mcp| async move {
        let killed = mcp.call("kill", json!({"name": "rec"})).await.ok_small();
        assert_eq!(killed["outcome"], "failed", "{killed}");
        assert_eq!(killed["exit_code"], 3, "{killed}");
        assert_eq!(
            killed["reason"], "already finished (failed); nothing to kill",
            "{killed}"
        );
        mcp
    });
    let cli = json_line(&env.jw(&["kill", "rec", "--json"]));
    assert_eq!(cli["reason"], "already finished (failed); nothing to kill");
}

/// Issue 10: `start` builds the run spec and starts the wrapper itself,
/// handing it the spec on its stdin: the job gets its environment, and no
/// process's argv shows it (nor any setting).
#[test]
fn start_hands_the_wrapper_its_spec_and_a_secret_reaches_no_argv() {
    let env = &Env::new();
    with_server(env, &[], |mcp| async move {
        let script = "echo \"token=$TOKEN\"; exec sleep 300";
        let started = mcp
            .call(
                "start",
                json!({"name": "sec", "command": ["sh", "-c", script],
                       "env": {"TOKEN": "s3cret-value"}, "stale": "5m", "retries": 1}),
            )
            .await
            .ok_small();
        until("the job printed its token", || {
            env.log("sec").contains("token=")
        })
        .await;
        assert!(
            env.log("sec").contains("token=s3cret-value"),
            "{}",
            env.log("sec")
        );
        let record = env.record("sec");
        let wrapper = int(&record, "wrapper_pid");
        assert_eq!(argv_after_program(wrapper), ["__wrapper"]);
        let shown = ps_args(wrapper);
        assert!(shown.ends_with(" __wrapper"), "ps shows {shown:?}");
        assert!(!shown.contains("s3cret"), "{shown:?}");
        assert!(!ps_args(int(&started, "pid")).contains("s3cret"));
        assert_eq!(record["settings"]["stale_ms"], 300_000);
        assert_eq!(record["settings"]["retries"], 1);
        assert_eq!(ppid_of(wrapper), Some(mcp.server_pid), "the server's child");
        mcp.call("kill", json!({"name": "sec", "grace": "0s"}))
            .await
            .ok_small();
        // The server reaps the wrappers it started: no zombie is left.
        until("the wrapper is reaped", || proc_state(wrapper).is_none()).await;
        mcp
    });
}
