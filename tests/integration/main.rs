//! Integration tests for the `jobwatch` binary: one test binary, one module
//! per area. Every test owns a temp jobs directory and kills what it starts.

mod bad_input;
mod kill;
mod liveness;
#[cfg(feature = "mcp")]
mod mcp;
mod protocol;
mod run;
mod status;
mod support;
mod wait;
