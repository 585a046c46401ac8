//! `jobwatch logs`: print a job's log, or its last lines; with `--follow`,
//! go on printing until the run ends.

use std::io::Write;

use clap::Args;

use super::args::job_name;
use super::{CliError, CliResult};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::ops;
use jobwatch_core::store::Store;
use jobwatch_core::wait::FollowError;

const LOGS_HELP: &str = "\
With --follow, new output is printed as it is written (across truncation
and rotation of the log) until the run ends; the exit code is then the
run's outcome: 0 success, 1 failed, 3 hung, 4 lost, 5 killed, 124 timeout.
A new run of the same name is not followed.

Examples:
  jobwatch logs build
  jobwatch logs build --tail 50
  jobwatch logs build --follow --tail 20";

/// Print a job's output (stdout and stderr, interleaved as written).
#[derive(Debug, Args)]
#[command(after_help = LOGS_HELP)]
pub struct LogsArgs {
    /// The job.
    #[arg(value_parser = job_name, allow_hyphen_values = true)]
    name: JobName,

    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,

    /// Keep printing new output until the run ends; exit with its outcome.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// Runs the `logs` command.
pub fn logs(store: &dyn Store, a: LogsArgs) -> CliResult {
    if a.follow {
        return follow_log(store, &a);
    }
    // Opened as every job file is (no symlink, no FIFO), and streamed from
    // where the tail starts: one line of any length is never held whole.
    let mut f = ops::logs::open(store, &a.name, a.tail)?;
    let mut out = std::io::stdout().lock();
    match std::io::copy(&mut f, &mut out).and_then(|_| out.flush()) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit_code::SUCCESS),
        Err(e) => Err(CliError::usage(e)),
        Ok(()) => Ok(exit_code::SUCCESS),
    }
}

/// `--follow`: the log until the run ends, then the run's exit code.
fn follow_log(store: &dyn Store, a: &LogsArgs) -> CliResult {
    ops::logs::log_path(store, &a.name)?;
    let out = &mut std::io::stdout().lock();
    match ops::wait::follow(store, &a.name, a.tail, true, out) {
        Ok(outcome) => Ok(exit_code::for_outcome(outcome)),
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(FollowError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(exit_code::SUCCESS)
        }
        Err(e) => Err(CliError::from(e)),
    }
}
