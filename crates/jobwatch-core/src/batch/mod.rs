//! `jobwatch batch`: many jobs from one plan, every one an ordinary job.
//!
//! - [`plan`]: the YAML plan, parsed strictly and expanded over the matrix
//!   and `repeat` into concrete jobs (pure; [`template`] and `expand` help).
//! - [`table`]: the results: one row per matrix cell (pass@1, pass^k,
//!   durations, cost, consistency, infrastructure outcomes kept apart)
//!   and a summary (pure); [`render`] prints them as a terminal table, JSON
//!   lines, Markdown and JUnit XML.
//! - [`worktree`]: one git worktree per job.
//! - [`run`]: the executor: concurrency, slot groups, dependencies, halt,
//!   resume, judges, costs and interruption, behind the [`run::Launcher`]
//!   trait; [`launch`] is its implementation over detached jobwatch jobs.

mod expand;
pub mod launch;
pub mod plan;
pub mod render;
pub mod run;
pub mod table;
pub mod template;
pub mod worktree;
