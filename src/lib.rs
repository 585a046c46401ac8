//! jobwatch: run long work in the background and learn, quickly and
//! reliably, whether it succeeded, failed, hung, timed out or was lost.
//!
//! Architecture, bottom up:
//! - [`protocol`]: the on-disk file protocol (names, paths, records, atomic
//!   writes, locks, history). Everything any process knows about a job is
//!   in these files.
//! - [`sys`]: the only OS-specific code: `/proc`, pidfd signals, reaping.
//! - [`liveness`] and [`classify`]: pure rules: what counts as progress,
//!   and what a job's files say it is.
//! - [`kill`]: terminating a job's process tree without touching anything
//!   else.
//! - [`supervise`]: the wrapper that runs a command; [`recover`]: acting on
//!   a job whose wrapper is gone; [`wait`]: the event-driven waiter.
//! - [`breaker`]: persisted circuit breakers that stop a loop when failures
//!   repeat; [`retry`]: the backoff schedule between attempts of one job.
//! - [`gc`]: housekeeping: removing finished runs, surplus history and
//!   stray files, never touching a running job.
//! - [`preflight`]: named checks of the environment run before work starts.
//! - [`mcp`]: the same operations as MCP tools for AI agents (feature
//!   `mcp`, on by default).
//! - [`logfollow`]: reading one run's log as it grows (`tail -F`), for
//!   `wait --until-log` and `logs --follow`.
//! - [`hook`]: Claude Code hooks (`jobwatch hook EVENT`): a session's
//!   background jobs wake its model when they end, without polling.
//! - [`cli`]: the command-line front end; [`exit_code`]: its documented
//!   exit codes.
#![warn(missing_docs)]
// Output goes through `sys::stdio`: a `println!` panics on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod batch;
pub mod breaker;
pub mod classify;
pub mod cli;
pub mod exit_code;
pub mod gc;
pub mod hook;
pub mod kill;
pub mod liveness;
pub mod logfollow;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod preflight;
pub mod protocol;
pub mod recover;
pub mod report;
pub mod retry;
pub mod supervise;
pub mod sys;
pub mod wait;
