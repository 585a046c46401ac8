//! `jobwatch logs`: print a job's log, or its last lines.

use std::io::Write;

use clap::Args;

use super::args::job_name;
use super::{CliError, CliResult};
use crate::exit_code;
use crate::protocol::{JobName, JobsDir};
use crate::report::tail_bytes;

/// Print a job's output (stdout and stderr, interleaved as written).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  jobwatch logs build\n  jobwatch logs build --tail 50")]
pub struct LogsArgs {
    /// The job.
    #[arg(value_parser = job_name, allow_hyphen_values = true)]
    name: JobName,

    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
}

/// Runs the `logs` command.
pub fn logs(dir: &JobsDir, a: LogsArgs) -> CliResult {
    let path = dir.job(&a.name).log();
    if !path.exists() {
        return Err(CliError::from(format!(
            "no log for job {} ({})",
            a.name,
            path.display()
        )));
    }
    let read_err =
        |e: std::io::Error| CliError::from(format!("cannot read {}: {e}", path.display()));
    let mut out = std::io::stdout().lock();
    let written = match a.tail {
        Some(n) => out.write_all(&tail_bytes(&path, n).map_err(read_err)?),
        None => {
            let mut f = std::fs::File::open(&path).map_err(read_err)?;
            std::io::copy(&mut f, &mut out).map(drop)
        }
    };
    match written {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit_code::SUCCESS),
        Err(e) => Err(CliError::from(e)),
        Ok(()) => Ok(exit_code::SUCCESS),
    }
}
