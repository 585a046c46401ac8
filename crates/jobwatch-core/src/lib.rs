//! jobwatch's core: run long work in the background and learn, quickly and
//! reliably, whether it succeeded, failed, hung, timed out or was lost.
//!
//! This crate has no front end (no clap, rmcp, tokio, indicatif or
//! console): the `jobwatch` package's CLI, MCP server and Claude Code hooks
//! are thin layers over it.
//!
//! The map (docs/architecture.md draws it), bottom up:
//! - [`model`]: the store-agnostic vocabulary: job names, run records,
//!   outcomes, settings, kill requests.
//! - [`store`]: THE SEAM: the traits every store implements (`Store`,
//!   `Claim` — a held claim is a value —, `Watch`, `DocStore`, `GcStore`,
//!   `EventLog`),
//!   their contract, and two stores: [`store::file`] (protocol v1, the only
//!   code that knows job file names, `flock`, inotify and `statfs`) and
//!   [`store::memory`] (the test double of the deciding code).
//! - [`logs`]: this host's logs and result files (`LocalLogs`), tails, and
//!   following a log as it grows (`tail -F`).
//! - [`sys`]: the only OS-specific code: `/proc`, pidfd signals, reaping;
//!   [`kill`]: terminating a job's process tree without touching anything
//!   else.
//! - Pure rules: [`liveness`] (what counts as progress), [`classify`] (a
//!   snapshot's state), [`wait::decide`] (the waiter's verdict on one
//!   look), the breaker's `count`/`view`/`admit`, [`gc::PrunePlan`],
//!   [`retry`] (the backoff between attempts), and the wrapper's state
//!   machine (`supervise/machine.rs`: every decision of a running job).
//! - The machinery over a `&dyn Store`: [`supervise`] (the wrapper that
//!   runs a command, under its claim); [`recover`] (finishing a lost run,
//!   kill requests); [`wait`] (the event-driven waiter, `--until-log`,
//!   `logs --follow`); [`breaker`] (persisted circuit breakers, through
//!   `DocStore`); [`gc`] (housekeeping); [`preflight`] (named checks before
//!   work starts); [`batch`] (many jobs from one plan); [`events`]
//!   (following the event journal every store keeps: each run's start and
//!   end, from a cursor).
//! - [`ops`]: THE OPERATIONS LAYER, one function per operation (start,
//!   wait, follow, status, logs, kill, beat, gc, breaker, preflight), the
//!   only thing the front ends call; starting a detached job hands its
//!   wrapper the [`spec::RunSpec`] once, on a pipe.
//! - [`spec`]: the typed run spec (built by a front end, validated here)
//!   and the store spec, durations and `run`'s defaults; [`report`]: the
//!   result types the front ends render; [`exit_code`]: the documented exit
//!   codes, and the one mapping of outcomes and errors to them.
#![warn(missing_docs)]
// Output goes through `sys::stdio`: a `println!` panics on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod batch;
pub mod breaker;
pub mod classify;
pub mod events;
pub mod exit_code;
pub mod gc;
pub mod kill;
pub mod liveness;
pub mod logs;
pub mod model;
pub mod ops;
pub mod preflight;
pub mod recover;
pub mod report;
pub mod retry;
pub mod spec;
pub mod store;
pub mod supervise;
pub mod sys;
pub mod wait;
