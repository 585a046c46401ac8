//! The MCP server: one tool per jobwatch operation. Every tool body is the
//! synchronous library (or this executable's CLI) run on a blocking thread,
//! so a long `wait` never holds up other calls and a panic in one call
//! becomes that call's tool error, not a crashed server.

use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};

use super::args::{Args, schema};
use super::shape;
use super::tools::{
    self, BreakerResetParams, BreakerStatusParams, Context, DEFAULT_WAIT_TAIL, KillParams,
    LogsParams, Mode, PreflightParams, StartParams, StatusParams, ToolResult, WaitParams,
};
use crate::protocol::JobName;
use crate::wait::{WaitMode, WaitSpec, wait as wait_for};

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
#[derive(Debug, Clone)]
pub struct JobwatchServer {
    ctx: Context,
    options: Options,
    tool_router: ToolRouter<Self>,
}

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
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Start a command as a background job and return at once with its name, pid and log path. \
The job runs in its own process group with an honest heartbeat; it is killed as `hung` after `stale` \
without progress and as `timeout` after `timeout`. Then call `wait`.",
        input_schema = schema::<StartParams>()
    )]
    async fn start(&self, Args(p): Args<StartParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::start(&ctx, p)).await
    }

    #[tool(
        description = "Wait until jobs reach an outcome: success, failed, hung, timeout, killed or lost \
(one JSON line per job; the log's last lines on anything but success). If the time cap passes first, \
returns outcome `running` with elapsed_ms, beat_age_ms and last_line and leaves the job running: call again.",
        input_schema = schema::<WaitParams>()
    )]
    async fn wait(
        &self,
        Args(p): Args<WaitParams>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let spec = match self.wait_spec(&p) {
            Ok(spec) => spec,
            Err(message) => return tool_error(message),
        };
        let tail = p.tail.map_or(DEFAULT_WAIT_TAIL, |n| n as usize);
        let dir = self.ctx.dir.clone();
        let names = spec.names.clone();
        let waiting = tokio::task::spawn_blocking(move || -> ToolResult {
            let verdicts = wait_for(&dir, &spec).map_err(|e| e.to_string())?;
            Ok(shape::lines(
                verdicts.iter().map(|v| shape::verdict_line(v, tail)),
            ))
        });
        let progress = match context.meta.get_progress_token() {
            Some(token) => self.report_progress(context.peer.clone(), token, names),
            None => Box::pin(std::future::pending()),
        };
        let answer = tokio::select! {
            joined = waiting => joined,
            _ = progress => unreachable!("progress reports until the wait ends"),
            _ = context.ct.cancelled() => {
                // The blocking wait ends by itself at its cap; nobody reads it.
                return tool_error("wait cancelled by the client");
            }
        };
        match answer {
            Ok(Ok(text)) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Ok(Err(message)) => tool_error(message),
            Err(e) => tool_error(format!("internal error: {e}")),
        }
    }

    #[tool(
        description = "State of jobs from their files alone: running, success, failed, hung, timeout, killed, lost or invalid, \
with age, heartbeat age and exit code. No names: every job.",
        input_schema = schema::<StatusParams>()
    )]
    async fn status(&self, Args(p): Args<StatusParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::status(&ctx, p)).await
    }

    #[tool(
        description = "A job's output (stdout and stderr as written): the last `tail` lines, or `length` bytes from `offset`. \
At most 16 KiB per call; the first line says the log's size and the byte range returned.",
        input_schema = schema::<LogsParams>()
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
        input_schema = schema::<KillParams>()
    )]
    async fn kill(&self, Args(p): Args<KillParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::kill(&ctx, p)).await
    }

    #[tool(
        description = "Circuit breakers that stop a loop when failures repeat: state (closed, open, half-open), \
whether `start` with that breaker would run now (`admits`), consecutive failures and cooldown. No key: every breaker.",
        input_schema = schema::<BreakerStatusParams>()
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
        description = "Run the preflight checks of a config file before starting a loop. Returns the report; \
a failing check is reported in it (not a tool error), and `start` with preflight would refuse to run.",
        input_schema = schema::<PreflightParams>()
    )]
    async fn preflight(&self, Args(p): Args<PreflightParams>) -> CallToolResult {
        let ctx = self.ctx.clone();
        blocking(move || tools::preflight(&ctx, p)).await
    }
}

impl JobwatchServer {
    /// The library wait for `p`: capped at `max_wait`, never killing on the
    /// cap, and never forking a helper (this process lives on).
    fn wait_spec(&self, p: &WaitParams) -> Result<WaitSpec, String> {
        let names = tools::names(&p.names)?;
        let cap = self.options.max_wait;
        let timeout = match &p.timeout {
            Some(t) => crate::cli::args::duration(t)
                .map_err(|e| format!("timeout: {e}"))?
                .min(cap),
            None => cap,
        };
        Ok(WaitSpec {
            names,
            mode: match p.mode.unwrap_or_default() {
                Mode::All => WaitMode::All,
                Mode::Any => WaitMode::Any,
            },
            timeout: Some(timeout),
            stale: None,
            poll: None,
            kill_on_timeout: false,
            grace: None,
            exits_after: false,
        })
    }

    /// Sends a progress notification every `progress_every` until dropped:
    /// elapsed seconds as the progress, the first running job's last log
    /// line as the message.
    fn report_progress(
        &self,
        peer: Peer<RoleServer>,
        token: ProgressToken,
        names: Vec<JobName>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let every = self.options.progress_every;
        let cap = self.options.max_wait.as_secs_f64();
        let dir = self.ctx.dir.clone();
        Box::pin(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let dir = dir.clone();
                let names = names.clone();
                let message = tokio::task::spawn_blocking(move || progress_message(&dir, &names))
                    .await
                    .unwrap_or_default();
                let param =
                    ProgressNotificationParam::new(token.clone(), started.elapsed().as_secs_f64())
                        .with_total(cap)
                        .with_message(message);
                // A client that went away is noticed by the service itself.
                let _ = peer.notify_progress(param).await;
            }
        })
    }
}

/// One line on the jobs still running: name, elapsed time, last log line.
fn progress_message(dir: &crate::protocol::JobsDir, names: &[JobName]) -> String {
    let parts: Vec<String> = names
        .iter()
        .map(|n| dir.job(n))
        .filter(|paths| !paths.status().exists())
        .map(|paths| shape::running(&paths))
        .map(|r| {
            let elapsed = r
                .elapsed_ms
                .map(crate::report::human_ms)
                .unwrap_or_default();
            match r.last_line {
                Some(l) => format!("{}: {elapsed}, last: {l}", r.name),
                None => format!("{}: {elapsed}", r.name),
            }
        })
        .collect();
    shape::cut(&parts.join("; "), 300)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for JobwatchServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("jobwatch", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}
