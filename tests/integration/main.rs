//! Integration tests for the `jobwatch` binary: one test binary, one module
//! per area. Every test owns a temp jobs directory and kills what it starts.

mod bad_input;
mod batch;
mod breaker;
mod claude_e2e;
mod events;
mod front;
mod gc;
mod hooks;
mod kill;
mod liveness;
mod logs_follow;
#[cfg(feature = "mcp")]
mod mcp;
mod outcomes;
mod preflight;
mod promises;
mod protocol;
mod retries;
mod run;
mod status;
mod support;
mod terminal;
mod until_log;
mod wait;
