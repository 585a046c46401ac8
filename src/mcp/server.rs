//! The MCP server: one tool per jobwatch operation. Every tool body is the
//! synchronous core (`jobwatch_core::ops`) run on a blocking thread,
//! so a long `wait` never holds up other calls and a panic in one call
//! becomes that call's tool error, not a crashed server.

use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CreateTaskResult, CustomRequest, CustomResult, GetTaskParams, GetTaskResult, Implementation,
    JsonObject, ProgressNotificationParam, ProgressToken, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::task_manager::{TaskExit, TaskManager, TaskOptions};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};

use super::args::{self, Args, schema};
use super::tools::{
    self, BreakerResetParams, BreakerStatusParams, Context, KillParams, LogsParams,
    PreflightParams, StartParams, StatusParams, ToolResult, WaitParams,
};
use super::waiting::{
    Forever, Plan, progress_message, report_progress, wait_slice, wait_until_settled,
};

const INSTRUCTIONS: &str = "\
jobwatch runs long commands as background jobs and reports whether they \
succeeded, failed, hung, timed out or were lost. Start a job with `start`, \
then call `wait`: it returns the outcome, or `running` with progress facts \
when its time cap passes (call `wait` again; the job keeps running). Jobs \
are shared with the `jobwatch` CLI.";

/// How the server behaves, from `jobwatch mcp`'s flags.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The longest one `wait` call blocks, so it ends inside a client's
    /// tool-call timeout.
    pub max_wait: Duration,
    /// How often a pending `wait` sends a progress notification (when the
    /// client asked for them with a progress token).
    pub progress_every: Duration,
}

/// The jobwatch MCP server.
#[derive(Clone)]
pub struct JobwatchServer {
    ctx: Context,
    options: Options,
    tasks: TaskManager,
    tool_router: ToolRouter<Self>,
}

/// How long a `wait` task may run and, once over, stay readable: long
/// enough for any job worth waiting on.
const TASK_TTL: Duration = Duration::from_secs(24 * 3600);

/// Runs a tool body on a blocking thread and turns its answer into a tool
/// result; a panic in the body becomes a tool error.
async fn blocking<F>(f: F) -> CallToolResult
where
    F: FnOnce() -> ToolResult + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(text)) => CallToolResult::success(vec![ContentBlock::text(text)]),
        Ok(Err(message)) => tool_error(message),
        Err(e) => tool_error(format!("internal error: {e}")),
    }
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

#[tool_router]
impl JobwatchServer {
    /// A server over the jobs directory of `ctx`.
    pub fn new(ctx: Context, options: Options) -> Self {
        Self {
            ctx,
            options,
            tasks: TaskManager::new(),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Start a command as a background job and return at once with its name, pid and log path. \
The job runs in its own process group with an honest heartbeat; it is killed as `hung` after `stale` \
without progress and as `timeout` after `timeout`. Then call `wait`. With `after` (jobs it waits for) or `slot` (a concurrency group) it may wait `queued` first (the line says where); a job whose dependency did not succeed ends `skipped` without running.",
        input_schema = schema::<StartParams>()
    )]
    async fn start(&self, Args(p): Args<StartParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::start(&ctx, p)).await
    }

    #[tool(
        description = "Wait until jobs reach an outcome: success, failed, hung, timeout, killed, lost or skipped (never ran: a dependency failed) \
(one JSON line per job; the log's last lines on anything but success). If the time cap passes first, \
returns outcome `running` with elapsed_ms, beat_age_ms and last_line (a job still queued: state `queued` and its position) and leaves the job running: call again. \
With until_log (a regex, one job): returns `matched` and the line as soon as the log shows it, e.g. a server's ready line.",
        input_schema = schema::<WaitParams>()
    )]
    async fn wait(
        &self,
        Args(p): Args<WaitParams>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let plan = match Plan::new(&p) {
            Ok(plan) => plan,
            Err(message) => return tool_error(message),
        };
        let cap = self.options.max_wait;
        let limit = plan.timeout.map_or(cap, |t| t.min(cap));
        let progress = match context.meta.get_progress_token() {
            Some(token) => self.notify_progress(&plan, context.peer.clone(), token),
            None => Box::pin(std::future::pending()),
        };
        tokio::select! {
            answer = wait_slice(&self.ctx.store, &plan, limit) => match answer {
                Ok(slice) => CallToolResult::success(vec![ContentBlock::text(slice.text)]),
                Err(message) => tool_error(message),
            },
            never = progress => match never {},
            // The blocking slice ends by itself at its limit; nobody reads it.
            _ = context.ct.cancelled() => tool_error("wait cancelled by the client"),
        }
    }

    #[tool(
        description = "State of jobs from their files alone: queued (with its position), running, success, failed, hung, timeout, killed, lost, skipped or invalid, \
with age, heartbeat age and exit code. No names: every job.",
        input_schema = schema::<StatusParams>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn status(&self, Args(p): Args<StatusParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::status(&ctx, p)).await
    }

    #[tool(
        description = "A job's output (stdout and stderr as written): the last `tail` lines, or `length` bytes from `offset`. \
At most 16 KiB per call; the first line says the log's size and the byte range returned.",
        input_schema = schema::<LogsParams>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn logs(&self, Args(p): Args<LogsParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        match tokio::task::spawn_blocking(move || tools::logs(&ctx, p)).await {
            Ok(Ok((meta, text))) => {
                CallToolResult::success(vec![ContentBlock::text(meta), ContentBlock::text(text)])
            }
            Ok(Err(message)) => tool_error(message),
            Err(e) => tool_error(format!("internal error: {e}")),
        }
    }

    #[tool(
        description = "Kill a job: SIGTERM to its process group, `grace`, then SIGKILL to the group and every descendant \
that left it. Records outcome `killed` and returns the job's result.",
        input_schema = schema::<KillParams>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn kill(&self, Args(p): Args<KillParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::kill(&ctx, p)).await
    }

    #[tool(
        description = "Circuit breakers that stop a loop when failures repeat: state (closed, open, half-open), \
whether `start` with that breaker would run now (`admits`), consecutive failures and cooldown. No key: every breaker.",
        input_schema = schema::<BreakerStatusParams>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn breaker_status(&self, Args(p): Args<BreakerStatusParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::breaker_status(&ctx, p)).await
    }

    #[tool(
        description = "Close a circuit breaker and forget its failures, once the cause of the failures is fixed.",
        input_schema = schema::<BreakerResetParams>()
    )]
    async fn breaker_reset(&self, Args(p): Args<BreakerResetParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::breaker_reset(&ctx, p)).await
    }

    #[tool(
        description = "Run the preflight checks of a config file (commands, TCP and HTTP endpoints, paths; each may \
have a fix) before starting a loop. Returns passed, the number of checks, and each failed check with its detail; \
`start` with preflight refuses to run unless all pass.",
        input_schema = schema::<PreflightParams>()
    )]
    async fn preflight(&self, Args(p): Args<PreflightParams>) -> CallToolResult {
        blocking(move || tools::preflight(p)).await
    }
}

impl JobwatchServer {
    /// Progress notifications for a pending `wait`, every `progress_every`:
    /// elapsed seconds against the cap, and which jobs still run with their
    /// last log line.
    fn notify_progress(
        &self,
        plan: &Plan,
        peer: Peer<RoleServer>,
        token: ProgressToken,
    ) -> Forever {
        let cap = self.options.max_wait.as_secs_f64();
        report_progress(
            &self.ctx.store,
            &plan.names,
            self.options.progress_every,
            move |message, elapsed| {
                let param = ProgressNotificationParam::new(token.clone(), elapsed.as_secs_f64())
                    .with_total(cap)
                    .with_message(message);
                let peer = peer.clone();
                Box::pin(async move {
                    // A client that went away is noticed by the service itself.
                    let _ = peer.notify_progress(param).await;
                })
            },
        )
    }

    /// `wait` as a task (SEP-2663): answers at once with a task id; the task
    /// waits until the outcome (or the caller's timeout), whatever the cap,
    /// and keeps its status message current. `tasks/cancel` ends the wait,
    /// never the job.
    fn wait_as_task(&self, arguments: JsonObject) -> CallToolResponse {
        let plan = match args::parse::<WaitParams>(arguments).and_then(|p| Plan::new(&p)) {
            Ok(plan) => plan,
            Err(message) => return tool_error(message).into(),
        };
        let dir = self.ctx.store.clone();
        let cap = self.options.max_wait;
        let every = self.options.progress_every;
        let options = TaskOptions::new()
            .with_ttl_ms(TASK_TTL.as_millis() as u64)
            .with_poll_interval_ms(every.as_millis() as u64)
            .with_status_message(progress_message(&*dir, &plan.names));
        let task = self.tasks.spawn(options, move |task| {
            Box::pin(async move {
                let status = task.clone();
                let progress = report_progress(&dir, &plan.names, every, move |message, _| {
                    status.set_status_message(message);
                    Box::pin(std::future::ready(()))
                });
                let waiting = wait_until_settled(&dir, &plan, cap, task.cancelled());
                tokio::select! {
                    answer = waiting => match answer {
                        Some(Ok(text)) => Ok(CallToolResult::success(vec![ContentBlock::text(text)])),
                        Some(Err(message)) => Ok(tool_error(message)),
                        None => Err(TaskExit::Cancelled),
                    },
                    never = progress => match never {},
                }
            })
        });
        CallToolResponse::Task(CreateTaskResult::new(task))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for JobwatchServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tasks()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("jobwatch", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    /// `wait` from a client that declared the tasks extension becomes a
    /// task; everything else goes to its tool.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tasks = context
            .client_capabilities()
            .is_some_and(|caps| caps.supports_tasks());
        if tasks && request.name == "wait" {
            return Ok(self.wait_as_task(request.arguments.unwrap_or_default()));
        }
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        Ok(GetTaskResult::new(self.tasks.get_task(&request.task_id)?))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.tasks.cancel_task(&request.task_id)
    }

    /// A request rmcp could not read as any method it knows: a known method
    /// whose params are malformed lands here too (rmcp would answer
    /// "method not found"), so say what is wrong with the params instead.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Err(misread_request(&request.method, request.params.as_ref()))
    }
}

/// The error for a request rmcp could not read: invalid params, saying
/// which, for a method it serves; else method not found.
fn misread_request(method: &str, params: Option<&serde_json::Value>) -> ErrorData {
    if method == "tools/call" {
        return ErrorData::invalid_params(tool_call_problem(params), None);
    }
    if KNOWN_METHODS.contains(&method) {
        return ErrorData::invalid_params(
            format!("{method}: the params do not have the shape the MCP specification gives"),
            None,
        );
    }
    ErrorData::new(
        rmcp::model::ErrorCode::METHOD_NOT_FOUND,
        format!("method not found: {method}"),
        None,
    )
}

/// Methods this server answers; a request for one that rmcp could not read
/// had malformed params.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tasks/get",
    "tasks/cancel",
    "tasks/list",
    "tasks/result",
];

/// What is wrong with the params of a `tools/call` that rmcp could not
/// read, in one line.
fn tool_call_problem(params: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    const EXAMPLE: &str = r#"e.g. {"name": "status", "arguments": {}}"#;
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let Some(Value::Object(p)) = params else {
        let got = params.map_or("none", kind);
        return format!("tools/call: params must be an object (got {got}), {EXAMPLE}");
    };
    match p.get("name") {
        Some(Value::String(_)) => {}
        Some(other) => {
            return format!(
                "tools/call: params.name must be a tool's name, a string (got {}), {EXAMPLE}",
                kind(other)
            );
        }
        None => return format!("tools/call: params.name is missing: name the tool, {EXAMPLE}"),
    }
    match p.get("arguments") {
        Some(args) if !matches!(args, Value::Object(_) | Value::Null) => format!(
            "tools/call: arguments must be a JSON object of named arguments (got {}), {EXAMPLE}",
            kind(args)
        ),
        _ => match serde_json::from_value::<CallToolRequestParams>(Value::Object(p.clone())) {
            Err(e) => format!("tools/call: invalid params: {e}"),
            Ok(_) => "tools/call: invalid params".to_owned(),
        },
    }
}
