//! jobwatch's core: run long work in the background and learn, quickly and
//! reliably, whether it succeeded, failed, hung, timed out or was lost.
//!
//! This crate has no front end (no clap, rmcp, tokio, indicatif or
//! console): the `jobwatch` package's CLI, MCP server and Claude Code hooks
//! are thin layers over it.
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
//! - [`supervise`]: the wrapper that runs a command; [`detach`]: starting
//!   one in its own session; [`recover`]: acting on a job whose wrapper is
//!   gone; [`wait`]: the event-driven waiter.
//! - [`breaker`]: persisted circuit breakers that stop a loop when failures
//!   repeat; [`retry`]: the backoff schedule between attempts of one job.
//! - [`gc`]: housekeeping: removing finished runs, surplus history and
//!   stray files, never touching a running job.
//! - [`preflight`]: named checks of the environment run before work starts.
//! - [`logfollow`]: reading one run's log as it grows (`tail -F`), for
//!   `wait --until-log` and `logs --follow`.
//! - [`batch`]: many jobs from one plan: expansion, dependencies, the
//!   executor and the results table.
//! - [`report`]: the result types the front ends render; [`spec`]: the
//!   values both front ends parse (durations); [`exit_code`]: the
//!   documented exit codes.
#![warn(missing_docs)]
// Output goes through `sys::stdio`: a `println!` panics on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod batch;
pub mod breaker;
pub mod classify;
pub mod detach;
pub mod exit_code;
pub mod gc;
pub mod kill;
pub mod liveness;
pub mod logfollow;
pub mod logs;
pub mod model;
pub mod preflight;
pub mod protocol;
pub mod recover;
pub mod report;
pub mod retry;
pub mod spec;
pub mod store;
pub mod supervise;
pub mod sys;
pub mod wait;
