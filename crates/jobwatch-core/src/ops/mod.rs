//! The operations layer: one function per operation, called by both front
//! ends (the CLI and the MCP server) and by a batch. A front end parses its
//! input into a typed request, calls one of these, and renders the result
//! (a [`crate::report`] type) or the typed error (each mapped to its exit
//! code in [`crate::exit_code`]). Nothing here knows clap, rmcp or a
//! terminal; nothing in a front end decides anything about a job.
//!
//! | operation | module | result |
//! |---|---|---|
//! | start, foreground or detached, and the detached wrapper's own side | [`start`] | [`crate::report::Started`], a finished record |
//! | wait (several jobs, or `--until-log`), follow a log | [`wait`] | [`wait::WaitAnswer`] of [`crate::report::JobReport`]s or a [`crate::report::MatchReport`] |
//! | status, ls | [`status`] | [`status::Listing`] of [`crate::report::StatusRow`]s |
//! | logs (stream, tail, byte range) | [`logs`] | a positioned log, [`logs::LogText`] |
//! | kill | [`kill`] | [`crate::report::KillReport`] |
//! | beat | [`beat`] | — |
//! | gc | [`gc`] | [`crate::gc::Report`] |
//! | breaker status, list, reset, record | [`breaker`] | [`crate::breaker::BreakerView`]s |
//! | preflight | [`preflight`] | [`crate::preflight::PreflightReport`] |
//!
//! Every operation takes the store as `&dyn Store`; starting a detached job
//! also needs to know how to start a wrapper ([`Context`]).

pub mod beat;
pub mod breaker;
pub mod gc;
pub mod kill;
pub mod logs;
pub mod preflight;
pub mod start;
pub mod status;
pub mod wait;

use crate::store::Store;

pub use start::Wrapper;

/// What an operation that may start a detached wrapper needs: the store,
/// and how to start a wrapper (this executable, told `__wrapper`).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Where state lives.
    pub store: &'a dyn Store,
    /// How to start a detached wrapper.
    pub wrapper: &'a Wrapper,
}
