//! `jobwatch run`: start a command as a supervised job, in the foreground
//! or detached.

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;

use super::args::{breaker_key, duration, job_name, ms, positive_duration};
use super::{CliError, CliResult, wants_json};
use jobwatch_core::breaker::{BreakerKey, BreakerSpec, PolicyUpdate};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobRecord;
use jobwatch_core::model::{JobName, LivenessMode, Outcome, Settings};
use jobwatch_core::ops::queue::{DetachedQueued, QueueRun};
use jobwatch_core::ops::start::{ECHO_STALL_LIMIT, Foreground, StartError};
use jobwatch_core::ops::{self, Context};
use jobwatch_core::queue::{After, SlotRequest};
use jobwatch_core::report::{Queued, Started};
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
  jobwatch run test --detach --after build -- make test  # queued until build succeeds
  jobwatch run shard3 --detach --slot gpu:2 -- ./shard.sh 3  # at most 2 of slot gpu at once

Foreground exit code: the command's own, 128+N if signal N ended it, 124 on timeout, 3 when hung,
6 when the breaker refused to start, 7 when a preflight check failed, 8 when the job was
skipped (a dependency of --after did not succeed).

With --after or --slot the job is queued: it starts once its dependencies have ended and a
slot of its group is free, with no process waiting for it when detached (whoever ends a run
starts what may run next). `status` shows it `queued` with its position; `kill` removes it.

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

    /// Start only after job OTHER's current (or queued) run ends: with
    /// `:success` (the default) it must succeed, else this job ends
    /// `skipped` (exit 8) without running; with `:done`, however it ended.
    /// Repeatable.
    #[arg(long, value_name = "OTHER[:success|:done]")]
    after: Vec<After>,

    /// At most N jobs of GROUP run at once, across every caller; the rest
    /// wait `queued`, first come first. N defaults to the group's size (1
    /// for a new group); a group keeps its size while it has jobs.
    #[arg(long, value_name = "GROUP[:N]")]
    slot: Option<SlotRequest>,

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
    let queued = QueueRun {
        spec,
        after: a.after.clone(),
        slot: a.slot.clone(),
    };
    if queued.is_queued() {
        return run_queued(store, &a, queued);
    }
    let spec = queued.spec;
    let started = if a.detach {
        let wrapper = super::detached_wrapper().map_err(start_error)?;
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

/// `run` with `--after`/`--slot`: the job is queued; detached, this
/// returns at once (started, queued, or skipped at once); in the
/// foreground, it waits here for its turn and runs the job.
fn run_queued(store: &dyn Store, a: &RunArgs, req: QueueRun) -> CliResult {
    if a.detach {
        return match ops::queue::detached(store, req).map_err(start_error)? {
            DetachedQueued::Started(s) => Ok(print_started(&s, a.json)),
            DetachedQueued::Queued(q) => Ok(print_queued(&q, a.json)),
            DetachedQueued::Ended(record) => Ok(print_ended(&record, a.json)),
        };
    }
    let json = a.json;
    ops::queue::foreground(store, req, &mut |q| {
        // stdout is the job's output: the queued line goes to stderr.
        if json {
            notice(serde_json::to_string(q).expect("a queued line serializes"));
        } else {
            notice(queued_line(q));
        }
    })
    .map(|run| report_foreground(&a.name, &run))
    .map_err(start_error)
}

/// `queued NAME (2 of 5 in slot gpu, waiting for …)`.
fn queued_line(q: &Queued) -> String {
    format!(
        "queued {} ({}); wait with: jobwatch wait {}",
        q.name, q.waiting_for, q.name
    )
}

/// Prints a queued job's line (stdout, like a start line).
fn print_queued(q: &Queued, json: bool) -> u8 {
    let printed = if wants_json(json) {
        say(serde_json::to_string(q).expect("a queued line serializes"))
    } else {
        say(queued_line(q))
    };
    if let Err(e) = printed {
        warn(format_args!(
            "{} is queued, but its line could not be printed: {e}",
            q.name
        ));
    }
    exit_code::SUCCESS
}

/// A queued job that ended at once without running (a dependency had
/// not succeeded): its outcome line, and its outcome's exit code.
fn print_ended(record: &JobRecord, json: bool) -> u8 {
    let outcome = record.outcome.unwrap_or(Outcome::Skipped);
    let reason = record.reason.as_deref().unwrap_or("");
    let line = if wants_json(json) {
        serde_json::json!({
            "name": record.name,
            "outcome": outcome.as_str(),
            "job_id": record.job_id,
            "reason": reason,
        })
        .to_string()
    } else {
        format!("{} {outcome}: {reason}", record.name)
    };
    if let Err(e) = say(line) {
        warn(format_args!("{} {outcome}: {reason} ({e})", record.name));
    }
    exit_code::for_run(outcome, record.exit_code, record.signal)
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
