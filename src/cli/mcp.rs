//! `jobwatch mcp`: serve the jobs directory to an MCP client over stdio.

use std::time::Duration;

use clap::Args;

use super::args::positive_duration;
use super::{CliError, CliResult};
use crate::mcp::{Context, Options, serve};
use jobwatch_core::exit_code;
use jobwatch_core::store::Store;

const MCP_HELP: &str = concat!(
    "\
Speaks MCP (JSON-RPC) on stdin/stdout; diagnostics go to stderr. Tools:
start, wait, status, logs, kill, breaker_status, breaker_reset, preflight.
Jobs are the same as the CLI's (same jobs directory). A client that
declares the tasks extension gets `wait` as a task that lasts until the
outcome.

Register with Claude Code (.mcp.json):
  {\"mcpServers\": {\"jobwatch\": {\"command\": \"jobwatch\", \"args\": [\"mcp\"]}}}

Examples:
  jobwatch mcp
  jobwatch mcp --max-wait 25s --dir /tmp/jobs

",
    durations_note!(),
    " The same holds for the tools' duration arguments."
);

/// Serve jobwatch's tools to an MCP client (an AI agent) over stdio.
#[derive(Debug, Args)]
#[command(after_help = MCP_HELP)]
pub struct McpArgs {
    /// The longest one `wait` call blocks before answering `running`; keep
    /// it below the client's tool-call timeout.
    #[arg(long, value_parser = positive_duration, default_value = "50s", value_name = "D")]
    max_wait: Duration,

    /// How often a pending `wait` sends a progress notification (when the
    /// client passed a progress token).
    #[arg(long, value_parser = positive_duration, default_value = "5s", value_name = "D")]
    progress_every: Duration,
}

/// Runs the `mcp` command.
pub fn mcp(store: std::sync::Arc<dyn Store>, a: McpArgs) -> CliResult {
    let ctx = Context {
        store,
        wrapper: std::sync::Arc::new(super::detached_wrapper()?),
    };
    let options = Options {
        max_wait: a.max_wait,
        progress_every: a.progress_every,
    };
    serve(ctx, options).map_err(|e| CliError {
        code: exit_code::FAILED,
        message: e.to_string(),
    })?;
    Ok(exit_code::SUCCESS)
}
