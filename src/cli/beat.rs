//! `jobwatch beat`: an explicit proof of progress, for jobs that know best.

use clap::Args;

use super::CliResult;
use super::args::job_name;
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::ops;
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
    ops::beat::beat(store, &a.name)?;
    Ok(exit_code::SUCCESS)
}
