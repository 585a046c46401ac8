//! The command-line front end: clap definitions, one module per command,
//! each a thin layer over the library. Errors become one line on stderr and
//! a documented exit code.

pub(crate) mod args;
mod batch;
mod beat;
mod breaker;
mod completions;
mod gc;
mod kill;
mod logs;
#[cfg(feature = "mcp")]
mod mcp;
mod preflight;
mod progress;
pub(crate) mod run;
pub(crate) mod status;
mod wait;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit_code;
use crate::protocol::JobsDir;

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 failed, 2 usage or bad input, 3 hung, 4 lost, 5 killed, 6 breaker open, 7 preflight failed, 124 timeout.
Jobs directory: --dir, else $JOBWATCH_DIR, else $XDG_STATE_HOME/jobwatch, else ~/.local/state/jobwatch.

Examples:
  jobwatch run build --detach --timeout 30m -- make -j8
  jobwatch wait build --tail 30";

/// Run long work in the background and learn whether it succeeded, failed,
/// hung, timed out or was lost.
#[derive(Debug, Parser)]
#[command(name = "jobwatch", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Jobs directory (default: $JOBWATCH_DIR, $XDG_STATE_HOME/jobwatch or
    /// ~/.local/state/jobwatch).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    Run(run::RunArgs),
    Wait(wait::WaitArgs),
    Status(status::StatusArgs),
    Ls(status::LsArgs),
    Logs(logs::LogsArgs),
    Kill(kill::KillArgs),
    Beat(beat::BeatArgs),
    #[cfg(feature = "mcp")]
    Mcp(mcp::McpArgs),
    Breaker(breaker::BreakerArgs),
    Gc(gc::GcArgs),
    Completions(completions::CompletionsArgs),
    Preflight(preflight::PreflightArgs),
    Batch(batch::BatchArgs),
}

/// An error that carries its exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// The message (one line).
    pub message: String,
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            code: exit_code::USAGE,
            message: e.to_string(),
        }
    }
}

/// What every command returns: an exit code, or an error to print.
pub type CliResult = Result<u8, CliError>;

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("jobwatch: {}", one_line(&e.message));
            ExitCode::from(e.code)
        }
    }
}

fn dispatch(cli: Cli) -> CliResult {
    // The wrapper must outlive its reader, and the MCP server ends its own
    // way when its client leaves; every other command is a listing.
    if !is_long_lived(&cli.command) {
        crate::sys::signal::exit_on_broken_pipe();
    }
    let dir = || open_dir(cli.dir.clone());
    match cli.command {
        Commands::Run(a) => run::run(&dir()?, a),
        Commands::Wait(a) => wait::wait(&dir()?, a),
        Commands::Status(a) => status::status(&dir()?, a),
        Commands::Ls(a) => status::ls(&dir()?, a),
        Commands::Logs(a) => logs::logs(&dir()?, a),
        Commands::Kill(a) => kill::kill(&dir()?, a),
        Commands::Beat(a) => beat::beat(&dir()?, a),
        #[cfg(feature = "mcp")]
        Commands::Mcp(a) => mcp::mcp(&dir()?, a),
        Commands::Breaker(a) => breaker::breaker(&dir()?, a),
        Commands::Gc(a) => gc::gc(&dir()?, a),
        Commands::Completions(a) => completions::completions(a),
        Commands::Preflight(a) => preflight::preflight(a),
        Commands::Batch(a) => batch::batch(&dir()?, a),
    }
}

fn is_long_lived(command: &Commands) -> bool {
    match command {
        Commands::Run(_) | Commands::Batch(_) => true,
        #[cfg(feature = "mcp")]
        Commands::Mcp(_) => true,
        _ => false,
    }
}

fn open_dir(explicit: Option<PathBuf>) -> Result<JobsDir, CliError> {
    let path = match explicit {
        Some(p) => p,
        None => JobsDir::default_path()?,
    };
    Ok(JobsDir::open_or_create(&path)?)
}

/// Help and version go to stdout with exit 0; a usage error is one line on
/// stderr with exit 2.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            // A mistyped job name like `-x` reaches clap as an option.
            let hint = if e.kind() == ErrorKind::UnknownArgument {
                "; if that was meant as a job name: names start with a letter or digit"
            } else {
                ""
            };
            eprintln!("jobwatch: {first}{hint} (see --help)");
            ExitCode::from(exit_code::USAGE)
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether output should be JSON: asked for, or stdout is not a terminal.
fn wants_json(flag: bool) -> bool {
    flag || !std::io::stdout().is_terminal()
}
