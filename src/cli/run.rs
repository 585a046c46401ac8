//! `jobwatch run`: start a command as a supervised job, in the foreground
//! or detached.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::args::{breaker_key, duration, job_name, ms, positive_duration};
use super::{CliError, CliResult, wants_json};
use jobwatch_core::breaker::{BreakerKey, BreakerSpec, PolicyUpdate};
use jobwatch_core::detach::{Placement, Started, spawn_detached};
use jobwatch_core::exit_code;
use jobwatch_core::model::{JobName, LivenessMode, Settings};
use jobwatch_core::store::Store;
use jobwatch_core::supervise::{RunSpec, StartError, start};
use jobwatch_core::sys::stdio::{notice, notice_within, say, warn};

const RUN_HELP: &str = concat!(
    "\
Examples:
  jobwatch run build -- make -j8                      # foreground, exit code = make's
  jobwatch run train --detach --timeout 2h --stale 5m -- python train.py
  jobwatch run dev --detach --liveness output -- npm run dev
  jobwatch run fetch --retries 3 --backoff 2s -- ./download.sh
  jobwatch run deploy --breaker deploy --max-failures 3 --cooldown 10m -- ./deploy.sh
  jobwatch run tests --preflight -- cargo test           # checks ./jobwatch.toml first

Foreground exit code: the command's own, 128+N if signal N ended it, 124 on timeout, 3 when hung,
6 when the breaker refused to start, 7 when a preflight check failed.

In the foreground the output is also copied to stdout, best-effort: a reader that stops reading
never delays the job's outcome or its status. Once the job is over, run waits at most 2s for a
reader that takes nothing more, then exits (all of the output is in NAME.log).

",
    durations_note!()
);

/// Run a command as a job: its own process group, output to NAME.log,
/// an honest heartbeat, time limit and hang detection enforced by the wrapper.
#[derive(Debug, Args)]
#[command(after_help = RUN_HELP)]
pub struct RunArgs {
    /// Job name: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
    #[arg(value_parser = job_name, allow_hyphen_values = true)]
    name: JobName,

    /// Return as soon as the job has started; it survives this shell.
    #[arg(long)]
    detach: bool,

    /// Kill the job (outcome timeout) when it runs longer than this.
    #[arg(long, value_parser = positive_duration, value_name = "D")]
    timeout: Option<Duration>,

    /// Kill the job (outcome hung) after this long without progress.
    #[arg(long, value_parser = positive_duration, default_value = "60s", value_name = "D")]
    stale: Duration,

    /// How often the wrapper looks for progress and beats.
    #[arg(long, value_parser = positive_duration, default_value = "10s", value_name = "D")]
    heartbeat: Duration,

    /// What counts as progress: output, cpu, beat (explicit only), timer
    /// (wrapper alive), or auto (output, CPU or explicit beat).
    #[arg(long, value_enum, default_value = "auto")]
    liveness: Liveness,

    /// Time between SIGTERM and SIGKILL when the job is killed.
    #[arg(long, value_parser = duration, default_value = "5s", value_name = "D")]
    grace: Duration,

    /// Run a failed, hung or timed-out attempt again, up to N more times
    /// (each attempt's log is kept; --timeout applies to each attempt).
    #[arg(long, default_value_t = 0, value_name = "N")]
    retries: u32,

    /// Delay before the first retry; it doubles for each further retry,
    /// with jitter (each delay is between half and all of that).
    #[arg(long, value_parser = duration, default_value = "1s", value_name = "D")]
    backoff: Duration,

    /// Longest delay between attempts.
    #[arg(long, value_parser = duration, default_value = "5m", value_name = "D")]
    backoff_max: Duration,

    /// Circuit breaker KEY: refuse to start (exit 6) while it is open, and
    /// count the job's final outcome under KEY.
    #[arg(long, value_parser = breaker_key, value_name = "KEY")]
    breaker: Option<BreakerKey>,

    /// Consecutive failures that open the breaker (default 3; stored with
    /// the breaker).
    #[arg(long, requires = "breaker", value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    max_failures: Option<u32>,

    /// After this long, an open breaker admits one trial run (default:
    /// stays open until `jobwatch breaker reset`).
    #[arg(long, requires = "breaker", value_parser = duration, value_name = "D")]
    cooldown: Option<Duration>,

    /// Do not copy the command's output to the terminal (foreground only).
    #[arg(long)]
    quiet: bool,

    /// Print the detach line as JSON even on a terminal.
    #[arg(long)]
    json: bool,

    /// Run the preflight checks of FILE (default ./jobwatch.toml) first;
    /// refuse to start (exit 7) unless all pass.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true,
          default_missing_value = jobwatch_core::preflight::DEFAULT_FILE)]
    preflight: Option<std::path::PathBuf>,

    /// Internal: this process is the detached wrapper.
    #[arg(long, hide = true)]
    detached_supervisor: bool,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// `--liveness`: the core's [`LivenessMode`], spelled for clap (the core
/// has no clap types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Liveness {
    /// New output, CPU use or an explicit beat, whichever shows progress.
    Auto,
    /// New output on stdout or stderr (and explicit beats).
    Output,
    /// CPU time used by the job's process tree (and explicit beats).
    Cpu,
    /// Only explicit beats (`jobwatch beat`, or touching `$JOBWATCH_HEARTBEAT`).
    Beat,
    /// The wrapper beats while it lives: the plain pattern, for compatibility.
    Timer,
}

impl From<Liveness> for LivenessMode {
    fn from(l: Liveness) -> Self {
        match l {
            Liveness::Auto => LivenessMode::Auto,
            Liveness::Output => LivenessMode::Output,
            Liveness::Cpu => LivenessMode::Cpu,
            Liveness::Beat => LivenessMode::Beat,
            Liveness::Timer => LivenessMode::Timer,
        }
    }
}

/// Runs the `run` command.
pub fn run(opened: &super::store::Opened, a: RunArgs) -> CliResult {
    let store = &*opened.store;
    if a.heartbeat > a.stale {
        return Err(CliError::from(format!(
            "--heartbeat ({}) must not be longer than --stale ({})",
            humantime::format_duration(a.heartbeat),
            humantime::format_duration(a.stale)
        )));
    }
    if let Some(config) = a.preflight.as_deref().filter(|_| !a.detached_supervisor) {
        refuse_unless_preflight_passes(config, &a.name)?;
    }
    if a.detached_supervisor {
        run_as_detached_wrapper(store, &a)
    } else if a.detach {
        spawn_detached_wrapper(opened, &a)
    } else {
        run_in_foreground(store, &a)
    }
}

/// Runs the checks in this process, before anything is spawned or any job
/// file written; prints each failing check on stderr and refuses with exit 7.
fn refuse_unless_preflight_passes(
    config: &std::path::Path,
    name: &JobName,
) -> Result<(), CliError> {
    let report = super::preflight::load_and_run(config)?;
    if report.passed {
        return Ok(());
    }
    for line in jobwatch_core::preflight::failure_lines(&report) {
        warn(line);
    }
    Err(CliError {
        code: super::preflight::verdict(&report),
        message: format!(
            "{name} not started: preflight failed ({})",
            config.display()
        ),
    })
}

fn spec(a: &RunArgs, echo_output: bool) -> RunSpec {
    RunSpec {
        name: a.name.clone(),
        command: a.command.clone(),
        settings: Settings {
            heartbeat_ms: ms(a.heartbeat),
            stale_ms: ms(a.stale),
            timeout_ms: a.timeout.map(ms),
            grace_ms: ms(a.grace),
            liveness: a.liveness.into(),
            retries: a.retries,
            backoff_ms: ms(a.backoff),
            backoff_max_ms: ms(a.backoff_max),
        },
        echo_output,
        breaker: a.breaker.clone().map(|key| BreakerSpec {
            key,
            policy: PolicyUpdate {
                max_failures: a.max_failures,
                cooldown: a.cooldown,
            },
        }),
    }
}

fn start_error(e: StartError) -> CliError {
    let code = match &e {
        StartError::BreakerOpen(_) => exit_code::BREAKER_OPEN,
        other => other.shell_code().unwrap_or(exit_code::USAGE),
    };
    CliError {
        code,
        message: e.to_string(),
    }
}

/// How long a foreground run, its job over and its status written, waits
/// for a reader that takes none of the rest of the echo (or of its last
/// line on stderr) before it exits anyway: a caller that reads the output
/// only after the process exited must not wait forever.
const ECHO_STALL_LIMIT: Duration = Duration::from_secs(2);

fn run_in_foreground(store: &dyn Store, a: &RunArgs) -> CliResult {
    let supervisor = start(store, spec(a, !a.quiet)).map_err(start_error)?;
    let log = supervisor.log_path();
    let echo = supervisor.echo();
    // Returns with the status written and the name's lock released: nothing
    // below can change or delay the job's result.
    let record = supervisor.run_to_end()?;
    if let Some(echo) = echo
        && !echo.finish(ECHO_STALL_LIMIT)
    {
        notice(format_args!(
            "{}: output not echoed in full: the reader took none of it for {}; all of it is in {}",
            a.name,
            humantime::format_duration(ECHO_STALL_LIMIT),
            log.display()
        ));
    }
    let outcome = record
        .outcome
        .unwrap_or(jobwatch_core::model::Outcome::Failed);
    if outcome != jobwatch_core::model::Outcome::Success {
        let reason = record
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        notice_within(
            format_args!("{} {outcome}{reason} (log: {})", a.name, log.display()),
            ECHO_STALL_LIMIT,
        );
    }
    Ok(exit_code::for_run(outcome, record.exit_code, record.signal))
}

/// The detached wrapper: reports readiness on stdout (a pipe to the `run
/// --detach` that spawned it), then lets go of that pipe and supervises.
fn run_as_detached_wrapper(store: &dyn Store, a: &RunArgs) -> CliResult {
    let supervisor = start(store, spec(a, false)).map_err(start_error)?;
    let record = supervisor.record();
    let started = Started {
        name: record.name.clone(),
        pid: record.child_pid.unwrap_or_default(),
        wrapper_pid: record.wrapper_pid,
        log: supervisor.log_path().display().to_string(),
    };
    let line = serde_json::to_string(&started).expect("serializes");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    jobwatch_core::sys::child::release_stdio(&supervisor.log_path());
    supervisor.run_to_end()?;
    Ok(exit_code::SUCCESS)
}

/// Starts a wrapper in a new session (immune to this terminal's hangup) and
/// returns once it reports the job started, or relays why it could not.
fn spawn_detached_wrapper(opened: &super::store::Opened, a: &RunArgs) -> CliResult {
    let place = Placement {
        env: opened.env.clone(),
        ..Placement::default()
    };
    let (started, _wrapper) = spawn_detached(&*opened.store, &opened.dir, &spec(a, false), &place)
        .map_err(|e| CliError {
            code: e.code,
            message: e.message,
        })?;
    print_started(&started, a.json);
    Ok(exit_code::SUCCESS)
}

/// Prints the start line. A caller that closed its stdout still has a
/// started job (exit 0); it is told so on stderr if that still works.
fn print_started(s: &Started, json: bool) {
    let printed = if wants_json(json) {
        say(serde_json::to_string(s).expect("a start line serializes"))
    } else {
        say(format_args!(
            "started {} (pid {}); log: {}; wait with: jobwatch wait {}",
            s.name, s.pid, s.log, s.name
        ))
    };
    if let Err(e) = printed {
        warn(format_args!(
            "{} started (pid {}), but its start line could not be printed: {e}",
            s.name, s.pid
        ));
    }
}
