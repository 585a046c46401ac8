//! `jobwatch kill`: stop a job's whole process tree and record `killed`.

use std::time::Duration;

use clap::Args;

use super::args::{duration, job_name};
use super::{CliResult, wants_json};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::ops::{self, kill::KillJob};
use jobwatch_core::store::Store;
use jobwatch_core::sys::stdio::say;

/// Kill a job: SIGTERM to its process group, a grace period, then SIGKILL
/// to the group and every descendant that left it. A reused PID is never
/// signalled.
#[derive(Debug, Args)]
#[command(
    after_help = concat!(
        "Examples:\n  jobwatch kill build\n  jobwatch kill build --grace 0s   # SIGKILL at once\n\n",
        durations_note!()
    )
)]
pub struct KillArgs {
    /// The job.
    #[arg(value_parser = job_name, allow_hyphen_values = true)]
    name: JobName,

    /// Time between SIGTERM and SIGKILL (default: the job's own, 5s).
    #[arg(long, value_parser = duration, value_name = "D")]
    grace: Option<Duration>,

    /// Print JSON even on a terminal.
    #[arg(long)]
    json: bool,
}

/// Runs the `kill` command.
pub fn kill(store: &dyn Store, a: KillArgs) -> CliResult {
    let killed = ops::kill::kill(
        store,
        &KillJob {
            name: &a.name,
            grace: a.grace,
            reason: "killed by jobwatch kill",
        },
    )?;
    // The kill is done whether or not the caller still reads.
    let _ = if wants_json(a.json) {
        say(killed.report.to_json_line())
    } else {
        say(super::human::job_report(&killed.report))
    };
    Ok(exit_code::SUCCESS)
}
