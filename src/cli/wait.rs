//! `jobwatch wait`: block until jobs reach an outcome and print it.

use std::time::Duration;

use clap::Args;
use regex::Regex;

use super::args::{duration, job_name, positive_duration};
use super::progress::Spinner;
use super::{CliResult, wants_json};
use jobwatch_core::exit_code;
use jobwatch_core::model::{JobName, Outcome};
use jobwatch_core::report::{JobReport, MatchReport};
use jobwatch_core::store::Store;
use jobwatch_core::sys::stdio::say;
use jobwatch_core::wait::{LogWait, Verdict, WaitMode, WaitSpec, wait as wait_for, wait_until_log};

const WAIT_HELP: &str = concat!(
    "\
Prints one line per job: JSON when --json or stdout is not a terminal
(name, outcome, exit_code, duration_ms, log, result, and the log's tail on
anything but success), a short line on a terminal.

Exit codes: 0 success, 1 failed, 2 usage or bad input, 3 hung, 4 lost, 5 killed, 6 breaker open, 7 preflight failed, 124 timeout.
With several jobs: --all (default) exits with the first non-success in the
order given; --any with the first job that finished.

--until-log REGEX (one job only) returns as soon as a line of the job's
current run's log matches, from its first byte: outcome matched, exit 0,
the line in the report. If the run ends first, its own outcome and code.

Examples:
  jobwatch wait build
  jobwatch wait build test --all --timeout 30m --tail 50
  jobwatch wait shard1 shard2 --any --json
  jobwatch wait server --until-log 'listening on [0-9]+' --timeout 2m

",
    durations_note!()
);

/// Wait until jobs succeed, fail, hang, time out or are lost.
#[derive(Debug, Args)]
#[command(after_help = WAIT_HELP)]
pub struct WaitArgs {
    /// The jobs to wait for.
    #[arg(required = true, value_parser = job_name, value_name = "NAME")]
    names: Vec<JobName>,

    /// Return when the first job reaches an outcome.
    #[arg(long, conflicts_with = "all")]
    any: bool,

    /// Return when every job has reached an outcome (the default).
    #[arg(long)]
    all: bool,

    /// Give up after this long: kill the jobs still running (outcome
    /// timeout) unless --no-kill.
    #[arg(long, value_parser = positive_duration, value_name = "D")]
    timeout: Option<Duration>,

    /// Call a job hung (and kill it) after this long without progress,
    /// instead of leaving that to the job's own --stale.
    #[arg(long, value_parser = positive_duration, value_name = "D")]
    stale: Option<Duration>,

    /// Poll at this interval instead of using filesystem events.
    #[arg(long, value_parser = positive_duration, value_name = "D")]
    poll: Option<Duration>,

    /// Log lines to print on any outcome but success.
    #[arg(long, default_value_t = 20, value_name = "N")]
    tail: usize,

    /// Print JSON even on a terminal (and show no spinner).
    #[arg(long)]
    json: bool,

    /// No spinner on a terminal (it shows on stderr otherwise).
    #[arg(long)]
    quiet: bool,

    /// On --timeout, leave the jobs running.
    #[arg(long)]
    no_kill: bool,

    /// Time between SIGTERM and SIGKILL when killing (default: the job's own).
    #[arg(long, value_parser = duration, value_name = "D")]
    grace: Option<Duration>,

    /// Return as soon as a line of the job's log matches this regex
    /// (outcome matched, exit 0). One job only.
    #[arg(long, value_parser = log_regex, value_name = "REGEX")]
    until_log: Option<Regex>,
}

/// Runs the `wait` command.
pub fn wait(store: &dyn Store, a: WaitArgs) -> CliResult {
    let spec = WaitSpec {
        names: a.names.clone(),
        mode: if a.any { WaitMode::Any } else { WaitMode::All },
        timeout: a.timeout,
        stale: a.stale,
        poll: a.poll,
        kill_on_timeout: !a.no_kill,
        grace: a.grace,
        exits_after: true,
    };
    let spinner = Spinner::start(store, &a.names, !a.quiet && !a.json);
    if let Some(pattern) = &a.until_log {
        return until_log(store, &spec, pattern, &a, spinner);
    }
    let verdicts = wait_for(store, &spec);
    drop(spinner);
    let verdicts = verdicts?;
    let json = wants_json(a.json);
    for v in &verdicts {
        let report = JobReport::of_verdict(store, v, a.tail);
        // The exit code carries the outcome whether or not stdout works.
        let _ = if json {
            say(report.to_json_line())
        } else {
            say(super::human::job_report(&report))
        };
    }
    Ok(exit_code_of(&verdicts, spec.mode))
}

/// `--all`: the first non-success in argument order, else 0. `--any`: the
/// first finished job's code.
fn exit_code_of(verdicts: &[Verdict], mode: WaitMode) -> u8 {
    let code = |v: &Verdict| exit_code::for_outcome(v.outcome);
    match mode {
        WaitMode::All => verdicts
            .iter()
            .find(|v| v.outcome != Outcome::Success)
            .map_or(exit_code::SUCCESS, code),
        WaitMode::Any => verdicts.first().map_or(exit_code::SUCCESS, code),
    }
}

/// A regex for `--until-log`, with its error on one line.
fn log_regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| {
        let why = e.to_string();
        let last = why
            .lines()
            .last()
            .unwrap_or("")
            .trim_start_matches("error: ");
        format!("invalid regex: {last}")
    })
}

/// `--until-log`: one line, `matched` with exit 0, or the run's own end.
/// `wait --until-log`: the spinner (if any) is cleared before the result
/// is printed.
fn until_log(
    store: &dyn Store,
    spec: &WaitSpec,
    pattern: &Regex,
    a: &WaitArgs,
    spinner: Option<Spinner>,
) -> CliResult {
    let json = wants_json(a.json);
    let waited = wait_until_log(store, spec, pattern);
    drop(spinner);
    let (line, code) = match waited? {
        LogWait::Matched(m) => {
            let r = MatchReport::new(store, &m.name, &m.at, &m.line, m.running, m.record.as_ref());
            let line = if json {
                r.to_json_line()
            } else {
                super::human::match_report(&r)
            };
            (line, exit_code::SUCCESS)
        }
        LogWait::Ended(v) => {
            let r = JobReport::of_verdict(store, &v, a.tail);
            let line = if json {
                r.to_json_line()
            } else {
                super::human::job_report(&r)
            };
            (line, exit_code::for_outcome(v.outcome))
        }
    };
    let _ = say(line);
    Ok(code)
}
