//! `jobwatch breaker`: read, reset and feed the persisted circuit breakers
//! that stop a loop when failures repeat.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::args::{breaker_key, duration};
use super::{CliResult, wants_json};
use jobwatch_core::breaker::{BreakerKey, BreakerView, Event, PolicyUpdate};
use jobwatch_core::exit_code::{self, Coded};
use jobwatch_core::ops;
use jobwatch_core::report::human_ms;
use jobwatch_core::store::Store;
use jobwatch_core::sys::stdio::{say, warn};

const BREAKER_HELP: &str = "\
A breaker opens after N consecutive failures (failed, hung, timeout, lost; a killed
run counts neither way) and refuses `run --breaker KEY` (exit 6) until it is reset
or, with a cooldown, until one trial run succeeds.

Examples:
  jobwatch breaker status
  jobwatch breaker status deploy || echo 'deploys are failing: stop the loop'
  jobwatch breaker record tests failure --max-failures 5
  jobwatch breaker reset deploy";

/// Read, reset or feed circuit breakers.
#[derive(Debug, Args)]
#[command(after_help = BREAKER_HELP)]
pub struct BreakerArgs {
    #[command(subcommand)]
    command: BreakerCommand,
}

#[derive(Debug, Subcommand)]
enum BreakerCommand {
    /// Show one breaker (exit 6 if it refuses runs) or all of them.
    #[command(
        after_help = "Examples:\n  jobwatch breaker status\n  jobwatch breaker status deploy --json"
    )]
    Status {
        /// The breaker (default: all).
        #[arg(value_parser = breaker_key)]
        key: Option<BreakerKey>,
        /// Print JSON even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// Close a breaker and forget its failures.
    #[command(after_help = "Example:\n  jobwatch breaker reset deploy")]
    Reset {
        /// The breaker.
        #[arg(value_parser = breaker_key)]
        key: BreakerKey,
        /// Print JSON even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// Record a success or failure of work a script ran itself (exit 6 if
    /// the breaker now refuses runs).
    #[command(
        after_help = concat!(
            "Example:\n  make test && r=success || r=failure; jobwatch breaker record tests $r\n\n",
            durations_note!()
        )
    )]
    Record {
        /// The breaker.
        #[arg(value_parser = breaker_key)]
        key: BreakerKey,
        /// What happened.
        #[arg(value_parser = ["success", "failure"])]
        result: String,
        /// Consecutive failures that open the breaker (stored; default 3).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
        max_failures: Option<u32>,
        /// After this long an open breaker admits one trial (stored).
        #[arg(long, value_parser = duration, value_name = "D")]
        cooldown: Option<Duration>,
        /// Print JSON even on a terminal.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the `breaker` command.
pub fn breaker(store: &dyn Store, a: BreakerArgs) -> CliResult {
    match a.command {
        BreakerCommand::Status {
            key: Some(key),
            json,
        } => {
            let view = ops::breaker::status(store, &key)?;
            print(std::slice::from_ref(&view), json);
            Ok(exit_code::for_breaker(&view))
        }
        BreakerCommand::Status { key: None, json } => {
            let mut views = Vec::new();
            let mut code = exit_code::SUCCESS;
            for entry in ops::breaker::list(store)? {
                match entry {
                    Ok(view) => views.push(view),
                    Err(e) => {
                        code = code.max(e.exit_code());
                        warn(e);
                    }
                }
            }
            print(&views, json);
            Ok(code)
        }
        BreakerCommand::Reset { key, json } => {
            let view = ops::breaker::reset(store, &key)?;
            print(&[view], json);
            Ok(exit_code::SUCCESS)
        }
        BreakerCommand::Record {
            key,
            result,
            max_failures,
            cooldown,
            json,
        } => {
            let event = if result == "success" {
                Event::Success
            } else {
                Event::Failure
            };
            let policy = PolicyUpdate {
                max_failures,
                cooldown,
            };
            let view = ops::breaker::record(store, &key, event, policy)?;
            print(std::slice::from_ref(&view), json);
            Ok(exit_code::for_breaker(&view))
        }
    }
}

/// Prints the views; a reader that went away is not an error (the
/// command's work is done, and its exit code still tells).
fn print(views: &[BreakerView], json: bool) {
    let _ = lines(views, json).iter().try_for_each(say);
}

fn lines(views: &[BreakerView], json: bool) -> Vec<String> {
    if wants_json(json) {
        return views
            .iter()
            .map(|v| serde_json::to_string(v).expect("a view serializes"))
            .collect();
    }
    if views.is_empty() {
        return vec!["no breakers".to_owned()];
    }
    let width = views.iter().map(|v| v.key.len()).max().unwrap_or(3).max(3);
    let mut out = vec![format!(
        "{:width$}  {:9}  {:>8}  INFO",
        "KEY", "STATE", "FAILURES"
    )];
    for v in views {
        out.push(format!(
            "{:width$}  {:9}  {:>8}  {}",
            v.key,
            v.state,
            format!("{}/{}", v.consecutive_failures, v.max_failures),
            info(v)
        ));
    }
    out
}

/// What a person wants to know next: when it will admit a run, and what
/// happened last.
fn info(v: &BreakerView) -> String {
    let mut parts = Vec::new();
    match (&v.trial_job, v.trial_in_ms, v.cooldown_ms) {
        (Some(job), _, _) if !v.admits => parts.push(format!("trial run {job} running")),
        (_, Some(ms), _) => parts.push(format!("trial in {}", human_ms(ms))),
        (_, None, None) if !v.admits => parts.push("open until reset".to_owned()),
        _ => {}
    }
    if let Some(c) = v.cooldown_ms {
        parts.push(format!("cooldown {}", human_ms(c)));
    }
    if let Some(last) = &v.last {
        let what = match (&last.job, last.outcome) {
            (Some(job), Some(o)) => format!("last: {job} {o}"),
            _ => format!("last: {:?}", last.event).to_lowercase(),
        };
        parts.push(format!("{what} at {}", last.at));
    }
    parts.join("; ")
}
