//! `jobwatch run`: start a command as a supervised job, in the foreground
//! or detached.

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;

use super::args::{breaker_key, duration, job_name, ms, positive_duration};
use super::{CliError, CliResult, wants_json};
use jobwatch_core::breaker::{BreakerKey, BreakerSpec, PolicyUpdate};
use jobwatch_core::exit_code;
use jobwatch_core::model::{JobName, LivenessMode, Outcome, Settings};
use jobwatch_core::ops::start::{ECHO_STALL_LIMIT, Foreground, StartError};
use jobwatch_core::ops::{self, Context, Wrapper};
use jobwatch_core::report::Started;
use jobwatch_core::spec::{RunSpec, SpecError, current_dir};
use jobwatch_core::store::Store;
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
    #[arg(long, value_parser = liveness(), default_value = "auto")]
    liveness: LivenessMode,

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

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// `--liveness`: the core's [`LivenessMode`], its words and their help
/// offered as clap's possible values (the core has no clap types).
fn liveness() -> impl clap::builder::TypedValueParser<Value = LivenessMode> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        LivenessMode::ALL.map(|m| PossibleValue::new(m.as_str()).help(m.help())),
    )
    .map(|word| word.parse::<LivenessMode>().expect("one of its own words"))
}

/// Runs the `run` command.
pub fn run(store: &dyn Store, a: RunArgs) -> CliResult {
    let spec = spec(&a);
    let started = if a.detach {
        let wrapper = Wrapper::this_executable().map_err(start_error)?;
        let ctx = Context {
            store,
            wrapper: &wrapper,
        };
        ops::start::detached(&ctx, &spec).map(|d| print_started(&d.started, a.json))
    } else {
        ops::start::foreground(store, spec).map(|run| report_foreground(&a.name, &run))
    };
    started.map_err(start_error)
}

/// The run spec of the command line: the flags, validated by the core.
fn spec(a: &RunArgs) -> RunSpec {
    RunSpec {
        settings: Settings {
            heartbeat_ms: ms(a.heartbeat),
            stale_ms: ms(a.stale),
            timeout_ms: a.timeout.map(ms),
            grace_ms: ms(a.grace),
            liveness: a.liveness,
            retries: a.retries,
            backoff_ms: ms(a.backoff),
            backoff_max_ms: ms(a.backoff_max),
        },
        breaker: a.breaker.clone().map(|key| BreakerSpec {
            key,
            policy: PolicyUpdate {
                max_failures: a.max_failures,
                cooldown: a.cooldown,
            },
        }),
        preflight: a.preflight.clone(),
        echo_output: !a.detach && !a.quiet,
        ..RunSpec::new(a.name.clone(), a.command.clone(), current_dir())
    }
}

/// A start error as the command line says it: the failing preflight checks
/// first, one per line; a spec rule in the flags' own words.
fn start_error(e: StartError) -> CliError {
    if let StartError::PreflightFailed { report, .. } = &e {
        for line in jobwatch_core::preflight::failure_lines(report) {
            warn(line);
        }
    }
    match e {
        StartError::Spec(SpecError::HeartbeatOverStale { heartbeat, stale }) => {
            CliError::usage(format!(
                "--heartbeat ({}) must not be longer than --stale ({})",
                humantime::format_duration(heartbeat),
                humantime::format_duration(stale)
            ))
        }
        e => CliError::from(e),
    }
}

/// After a foreground run: what a person needs on stderr (an echo that
/// fell short, an outcome other than success), and the exit code.
fn report_foreground(name: &JobName, run: &Foreground) -> u8 {
    let log = run.log.display();
    if !run.echo_complete {
        notice(format_args!(
            "{name}: output not echoed in full: the reader took none of it for {}; all of it is in {log}",
            humantime::format_duration(ECHO_STALL_LIMIT),
        ));
    }
    let record = &run.record;
    let outcome = record.outcome.unwrap_or(Outcome::Failed);
    if outcome != Outcome::Success {
        let reason = record
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        notice_within(
            format_args!("{name} {outcome}{reason} (log: {log})"),
            ECHO_STALL_LIMIT,
        );
    }
    exit_code::for_run(outcome, record.exit_code, record.signal)
}

/// Prints the start line. A caller that closed its stdout still has a
/// started job (exit 0); it is told so on stderr if that still works.
fn print_started(s: &Started, json: bool) -> u8 {
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
    exit_code::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The flags' defaults are `run`'s documented ones, the core's.
    #[test]
    fn the_flag_defaults_are_the_cores() {
        let cli = crate::cli::Cli::try_parse_from(["jobwatch", "run", "j", "--", "true"]).unwrap();
        let crate::cli::Commands::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(spec(&a).settings, jobwatch_core::spec::default_settings());
    }
}
