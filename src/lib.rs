//! jobwatch's front ends over [`jobwatch_core`]: the command line
//! ([`cli`]), the MCP server for AI agents ([`mcp`], feature `mcp`, on by
//! default) and Claude Code's hooks ([`hook`]: a session's background jobs
//! wake its model when they end, without polling); and the detached
//! wrapper's entry point ([`wrapper`]: `jobwatch __wrapper`).
//!
//! The CLI and the MCP server never import each other: both parse their
//! input into the core's requests, call `jobwatch_core::ops`, and render
//! its report types.
//!
//! clap, rmcp, tokio, indicatif and console live here only; everything a
//! job is and does lives in `jobwatch_core` (see its crate docs and
//! docs/architecture.md).
#![warn(missing_docs)]
// Output goes through `sys::stdio`: a `println!` panics on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod cli;
pub mod hook;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod store_open;
pub mod wrapper;
