//! `jobwatch beat`: an explicit proof of progress, for jobs that know best.

use std::time::SystemTime;

use clap::Args;

use super::args::job_name;
use super::{CliError, CliResult};
use jobwatch_core::classify::{JobState, classify};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::store::Store;

/// Record progress for a running job (same as touching $JOBWATCH_HEARTBEAT).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  jobwatch beat \"$JOBWATCH_NAME\"        # inside a job\n  jobwatch beat build                    # from outside, while it runs"
)]
pub struct BeatArgs {
    /// The job.
    #[arg(value_parser = job_name, allow_hyphen_values = true)]
    name: JobName,
}

/// Runs the `beat` command.
pub fn beat(store: &dyn Store, a: BeatArgs) -> CliResult {
    match classify(store.snapshot(&a.name), SystemTime::now(), None) {
        JobState::Running { .. } | JobState::Hung { .. } => {}
        JobState::Missing => return Err(CliError::from(format!("no job named {}", a.name))),
        other => {
            return Err(CliError::from(format!(
                "job {} is not running ({})",
                a.name,
                other.word()
            )));
        }
    }
    // The store refuses a progress mark that is not the wrapper's own
    // (protocol §3: never through a symlink, never blocking).
    store.beat(&a.name, SystemTime::now())?;
    Ok(exit_code::SUCCESS)
}
