//! `jobwatch wait`: block until jobs reach an outcome and print it.

use std::time::Duration;

use clap::Args;
use regex::Regex;

use super::args::{duration, job_name, positive_duration};
use super::progress::Spinner;
use super::{CliResult, wants_json};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::ops::{
    self,
    wait::{WaitAnswer, WaitRequest},
};
use jobwatch_core::store::Store;
use jobwatch_core::sys::stdio::say;
use jobwatch_core::wait::{WaitMode, WaitSpec};

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
    let req = WaitRequest {
        spec: WaitSpec {
            names: a.names.clone(),
            mode: if a.any { WaitMode::Any } else { WaitMode::All },
            timeout: a.timeout,
            stale: a.stale,
            poll: a.poll,
            kill_on_timeout: !a.no_kill,
            grace: a.grace,
            exits_after: true,
        },
        tail: a.tail,
        until_log: a.until_log,
    };
    let spinner = Spinner::start(store, &a.names, !a.quiet && !a.json);
    let answer = ops::wait::wait(store, &req);
    // The spinner is cleared before anything else is printed.
    drop(spinner);
    let answer = answer?;
    let json = wants_json(a.json);
    let lines: Vec<String> = match &answer {
        WaitAnswer::Matched(m) if json => vec![m.to_json_line()],
        WaitAnswer::Matched(m) => vec![super::human::match_report(m)],
        WaitAnswer::Reports { reports, .. } => reports
            .iter()
            .map(|r| {
                if json {
                    r.to_json_line()
                } else {
                    super::human::job_report(r)
                }
            })
            .collect(),
    };
    for line in lines {
        // The exit code carries the outcome whether or not stdout works.
        let _ = say(line);
    }
    Ok(exit_code::for_wait(&answer))
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
