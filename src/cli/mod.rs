//! The command-line front end: clap definitions, one module per command,
//! each a thin layer over the library. Errors become one line on stderr and
//! a documented exit code.

/// The rule every duration flag follows, for the `--help` of each command
/// that has one (a macro, so that `concat!` can put it in a constant).
macro_rules! durations_note {
    () => {
        "Durations: 500ms, 10s, 5m, 1h 30m, 2d, ...; at most 100y: a longer one is refused
(exit 2), never cut short."
    };
}

pub mod args;
mod batch;
mod beat;
mod breaker;
mod completions;
mod events;
mod gc;
pub(crate) mod human;
mod kill;
mod logs;
#[cfg(feature = "mcp")]
mod mcp;
mod preflight;
mod progress;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod store;
mod usage;
mod wait;

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use jobwatch_core::exit_code;
use jobwatch_core::ops::start::{StartError, WRAPPER_ARG, Wrapper};
use jobwatch_core::store::file::FileStore;
use jobwatch_core::sys::stdio::warn;

const AFTER_HELP: &str = concat!(
    "\
Exit codes: 0 success, 1 failed, 2 usage or bad input, 3 hung, 4 lost, 5 killed, 6 breaker open, 7 preflight failed, 124 timeout.
Jobs directory: --dir, else $JOBWATCH_DIR, else $XDG_STATE_HOME/jobwatch, else ~/.local/state/jobwatch.
Many hosts: --store etcd://HOST:PORT[,...][/NAMESPACE] or $JOBWATCH_STORE (docs/multi-host.md).
",
    durations_note!(),
    "

Examples:
  jobwatch run build --detach --timeout 30m -- make -j8
  jobwatch wait build --tail 30"
);

/// Run long work in the background and learn whether it succeeded, failed,
/// hung, timed out or was lost.
#[derive(Debug, Parser)]
#[command(name = "jobwatch", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    store: store::StoreArgs,

    #[command(subcommand)]
    pub(crate) command: Commands,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Commands {
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
    Hook(crate::hook::HookArgs),
    Batch(batch::BatchArgs),
    Events(events::EventsArgs),
}

/// An error that carries its exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// The message (one line).
    pub message: String,
}

impl CliError {
    /// Bad input the command line itself found: exit 2.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        CliError {
            code: exit_code::USAGE,
            message: message.to_string(),
        }
    }
}

/// An operation's error, with the exit code the core maps it to (only
/// errors that have one convert: `exit_code::Coded`).
impl<E: exit_code::Coded> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// What every command returns: an exit code, or an error to print.
pub type CliResult = Result<u8, CliError>;

/// Parses the command line, runs the command and returns its exit code.
/// `jobwatch __wrapper` is a detached wrapper, which reads its run spec
/// on stdin: it has no flags to parse.
pub fn main() -> ExitCode {
    // Whatever this process is, it may end a run, and then it starts the
    // queued jobs waiting for it: with the wrapper detached jobs get (the
    // lean one beside this executable, else this executable's `__wrapper`).
    if let Ok(wrapper) = Wrapper::beside_this_executable() {
        jobwatch_core::ops::queue::install(wrapper);
    }
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(WRAPPER_ARG)) {
        return ExitCode::from(crate::wrapper::main());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // It may quote a hostile file (serde names an unknown word it
            // found in a record): safe for a terminal.
            warn(human::for_terminal(&e.message));
            ExitCode::from(e.code)
        }
    }
}

/// The wrapper detached jobs get (the lean `jobwatch-wrapper` beside this
/// executable); when it is missing, says once on stderr why the larger
/// fallback runs them.
pub(crate) fn detached_wrapper() -> Result<Wrapper, StartError> {
    let wrapper = Wrapper::beside_this_executable()?;
    if let Some(why) = &wrapper.fallback {
        warn(format!("note: {why}"));
    }
    Ok(wrapper)
}

fn dispatch(cli: Cli) -> CliResult {
    // The wrapper must outlive its reader, and the MCP server ends its own
    // way when its client leaves; every other command is a listing.
    if !is_long_lived(&cli.command) {
        jobwatch_core::sys::signal::exit_on_broken_pipe();
    }
    // `--dir` or `--store`: one store for every command (cli/store.rs).
    let open = || cli.store.open();
    match cli.command {
        Commands::Run(a) => run::run(&*open()?, a),
        Commands::Wait(a) => wait::wait(&*open()?, a),
        Commands::Status(a) => status::status(&*open()?, a),
        Commands::Ls(a) => status::ls(&*open()?, a),
        Commands::Logs(a) => logs::logs(&*open()?, a),
        Commands::Kill(a) => kill::kill(&*open()?, a),
        Commands::Beat(a) => beat::beat(&*open()?, a),
        #[cfg(feature = "mcp")]
        Commands::Mcp(a) => mcp::mcp(open()?.into(), a),
        Commands::Breaker(a) => breaker::breaker(&*open()?, a),
        Commands::Gc(a) => gc::gc(&*open()?, a),
        Commands::Completions(a) => completions::completions(a),
        Commands::Preflight(a) => preflight::preflight(a),
        // A hook must never block the agent over a bad jobs directory: it
        // opens the directory itself and turns every problem into a note.
        Commands::Hook(a) => Ok(crate::hook::main(cli.store.dir.clone(), a)),
        Commands::Batch(_) if !cli.store.is_files() => Err(CliError::usage(
            "batch runs on the jobs directory only (not with --store)",
        )),
        Commands::Batch(a) => batch::batch(&open_dir(cli.store.dir.clone())?, a),
        Commands::Events(a) => events::events(&*open()?, a),
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

/// The jobs directory (`--dir`, else the defaults) as the store.
fn open_dir(explicit: Option<PathBuf>) -> Result<FileStore, CliError> {
    Ok(FileStore::open(explicit.as_deref())?)
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
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            warn(format_args!("{} (see --help)", usage::message(&e, &argv)));
            ExitCode::from(exit_code::USAGE)
        }
    }
}

/// Whether output should be JSON: asked for, or stdout is not a terminal.
fn wants_json(flag: bool) -> bool {
    flag || !std::io::stdout().is_terminal()
}
