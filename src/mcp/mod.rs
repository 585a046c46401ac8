//! `jobwatch mcp`: jobwatch as an MCP (Model Context Protocol) server over
//! stdio, for AI agents whose native interface to tools is MCP.
//!
//! - [`server`]: the tools and the server (rmcp); the core stays
//!   synchronous and runs on blocking threads.
//! - [`tools`]: each tool's parameters (their JSON schemas) and body;
//!   [`args`]: reading them with errors that name the bad field.
//! - [`waiting`]: `wait` in slices under the server's cap, as a plain call
//!   or as a task, with progress reports.
//! - [`shape`]: compact, bounded results.
//!
//! stdout carries the protocol: the server keeps a private copy of it and
//! points fd 1 at stderr, so nothing else can write into the stream.

pub mod args;
pub mod server;
pub mod shape;
pub mod tools;
pub mod waiting;

use rmcp::ServiceExt;

pub use server::{JobwatchServer, Options};
pub use tools::Context;

/// Serving failed: the transport broke or the client never initialized.
#[derive(Debug, thiserror::Error)]
#[error("mcp: {0}")]
pub struct ServeError(String);

/// Serves MCP on stdin/stdout until the client disconnects.
pub fn serve(ctx: Context, options: Options) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError(format!("cannot start the async runtime: {e}")))?;
    let out = jobwatch_core::sys::child::take_stdout_for_protocol()
        .map_err(|e| ServeError(format!("cannot take stdout for the protocol: {e}")))?;
    let served = runtime.block_on(async move {
        let transport = (tokio::io::stdin(), tokio::fs::File::from_std(out));
        let service = JobwatchServer::new(ctx, options)
            .serve(transport)
            .await
            .map_err(|e| ServeError(e.to_string()))?;
        service
            .waiting()
            .await
            .map_err(|e| ServeError(e.to_string()))?;
        Ok(())
    });
    // A wait still blocking on its thread would hold the exit up to its cap:
    // give short work in flight a moment, then leave the rest behind. Every
    // file it writes is written atomically, so nothing is left half-done.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    served
}

/// How long the server lets work in flight finish after its client left.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
