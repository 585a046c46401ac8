//! `jobwatch kill`: stop a job's whole process tree and record `killed`.

use std::time::Duration;

use clap::Args;

use super::args::{duration, job_name};
use super::{CliResult, wants_json};
use jobwatch_core::classify::{JobState, classify};
use jobwatch_core::exit_code;
use jobwatch_core::model::{JobName, Outcome};
use jobwatch_core::recover::kill_job;
use jobwatch_core::report::JobReport;
use jobwatch_core::store::{RunAt, Store};
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
    let before = classify(store.snapshot(&a.name), std::time::SystemTime::now(), None);
    let grace = a
        .grace
        .or_else(|| before.record().map(|r| r.settings.grace()))
        .unwrap_or(Duration::from_secs(5));
    // A recorded outcome is the outcome, committed or not yet.
    let already = matches!(
        before,
        JobState::Finished { .. } | JobState::Recorded { .. }
    );
    let after = kill_job(
        store,
        &a.name,
        Outcome::Killed,
        "killed by jobwatch kill",
        grace,
    )?;
    let (outcome, record) = match &after {
        JobState::Finished { outcome, record } => (*outcome, record.as_deref()),
        // Still not committed: what the record holds, if it holds it.
        other => (
            other
                .record()
                .and_then(|r| r.outcome)
                .unwrap_or(Outcome::Killed),
            other.record(),
        ),
    };
    let mut report = JobReport::new(store, &a.name, &RunAt::Current, outcome, record, 0);
    if already {
        report.reason = Some(format!("already finished ({outcome}); nothing to kill"));
    }
    // The kill is done whether or not the caller still reads.
    let _ = if wants_json(a.json) {
        say(report.to_json_line())
    } else {
        say(super::human::job_report(&report))
    };
    Ok(exit_code::SUCCESS)
}
