//! `jobwatch beat`: an explicit proof of progress, for jobs that know best.

use std::time::SystemTime;

use clap::Args;

use super::args::job_name;
use super::{CliError, CliResult};
use jobwatch_core::classify::{JobState, classify, observe};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::protocol::JobsDir;
use jobwatch_core::protocol::open::touch;

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
pub fn beat(dir: &JobsDir, a: BeatArgs) -> CliResult {
    let paths = dir.job(&a.name);
    match classify(observe(&paths), SystemTime::now(), None) {
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
    // Never through a symlink, never blocking (protocol §3): a heartbeat
    // that is not the wrapper's own file is refused, its target untouched.
    let hb = paths.heartbeat();
    touch(&hb, SystemTime::now(), false)
        .map_err(|e| format!("cannot touch {}: {e}", hb.display()))?;
    Ok(exit_code::SUCCESS)
}
