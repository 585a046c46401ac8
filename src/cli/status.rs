//! `jobwatch status` and `jobwatch ls`: classify jobs from their files alone.

use std::io::Write;
use std::time::SystemTime;

use clap::Args;
use serde::Serialize;

use super::args::job_name;
use super::human::for_terminal;
use super::{CliError, CliResult, wants_json};
use jobwatch_core::classify::{JobState, classify};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::report::human_ms;
use jobwatch_core::store::Store;
use jobwatch_core::sys::stdio::warn;

const STATUS_HELP: &str = "\
States: running, success, failed, hung, timeout, killed, lost, invalid.
JSON (with --json or when stdout is not a terminal): one object per line.
Exits 2 when a named job does not exist or its files are invalid.

Examples:
  jobwatch status build
  jobwatch status --json | jq -r 'select(.state==\"running\") | .name'";

const LS_HELP: &str = "\
Columns as for `status`; RUNS (JSON: runs) counts the archived runs kept in
history/NAME/ (see `jobwatch gc`).

Examples:
  jobwatch ls
  jobwatch ls --json | jq -r 'select(.runs > 10) | .name'";

/// Show jobs' states, read from their files alone.
#[derive(Debug, Args)]
#[command(after_help = STATUS_HELP)]
pub struct StatusArgs {
    /// The jobs (default: all).
    #[arg(value_parser = job_name, value_name = "NAME")]
    names: Vec<JobName>,

    /// Print JSON even on a terminal.
    #[arg(long)]
    json: bool,
}

/// List every job in the directory (same as `status` with no names).
#[derive(Debug, Args)]
#[command(after_help = LS_HELP)]
pub struct LsArgs {
    /// Print JSON even on a terminal.
    #[arg(long)]
    json: bool,
}

/// One job's line.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_age_ms: Option<u64>,
    /// `k/N` for a job that may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Archived runs in history/NAME/.
    runs: usize,
}

/// Runs the `status` command.
pub fn status(store: &dyn Store, a: StatusArgs) -> CliResult {
    if a.names.is_empty() {
        return show(store, all_jobs(store)?, a.json, false);
    }
    show(store, a.names, a.json, true)
}

/// Runs the `ls` command.
pub fn ls(store: &dyn Store, a: LsArgs) -> CliResult {
    show(store, all_jobs(store)?, a.json, false)
}

/// Every job name in the store, sorted.
pub fn all_jobs(store: &dyn Store) -> Result<Vec<JobName>, CliError> {
    Ok(store.list()?)
}

fn show(store: &dyn Store, names: Vec<JobName>, json: bool, named: bool) -> CliResult {
    let json = wants_json(json);
    let now = SystemTime::now();
    let mut code = exit_code::SUCCESS;
    let mut rows = Vec::new();
    for name in names {
        let obs = store.snapshot(&name);
        let heartbeat = obs.last_beat;
        let state = classify(obs, now, None);
        match &state {
            JobState::Missing if named => {
                warn(format_args!("no job named {name}"));
                code = exit_code::USAGE;
            }
            JobState::Invalid { reason } => {
                warn(format_args!("job {name}: {}", for_terminal(reason)));
                code = exit_code::USAGE;
            }
            _ => {}
        }
        if state != JobState::Missing {
            let mut r = row(&name, &state, heartbeat, now);
            r.runs = store.archived(&name).len();
            rows.push(r);
        }
    }
    // One buffered write instead of one per line: thousands of jobs print
    // in a few syscalls.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json {
        rows.iter().try_for_each(|r| {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)
        })
    } else {
        print_table(&mut out, &rows)
    };
    match written.and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}").into())
        }
        _ => Ok(code),
    }
}

fn row(name: &JobName, state: &JobState, heartbeat: Option<SystemTime>, now: SystemTime) -> Row {
    let record = state.record();
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_millis() as u64;
    let running = matches!(state, JobState::Running { .. } | JobState::Hung { .. });
    Row {
        name: name.to_string(),
        state: state.word(),
        pid: record.and_then(|r| r.child_pid),
        started_at: record.map(|r| r.started_at.clone()),
        age_ms: record.map(|r| since(r.started())),
        heartbeat_age_ms: heartbeat.filter(|_| running).map(since),
        attempt: record
            .filter(|r| r.max_attempts > 1)
            .map(|r| format!("{}/{}", r.attempt, r.max_attempts)),
        exit_code: record.and_then(|r| r.exit_code),
        duration_ms: record.and_then(|r| r.duration_ms),
        reason: record.and_then(|r| r.reason.clone()),
        error: match state {
            JobState::Invalid { reason } => Some(reason.clone()),
            _ => None,
        },
        runs: 0,
    }
}

fn print_table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "no jobs");
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:width$}  {:8}  {:>8}  {:>8}  {:>4}  INFO",
        "NAME", "STATE", "AGE", "BEAT", "RUNS"
    )?;
    for r in rows {
        let age = r.age_ms.map(human_ms).unwrap_or_else(|| "-".into());
        let beat = r
            .heartbeat_age_ms
            .map(human_ms)
            .unwrap_or_else(|| "-".into());
        let mut info = match (&r.error, r.exit_code, &r.reason) {
            (Some(e), _, _) => e.clone(),
            (None, _, Some(reason)) => reason.clone(),
            (None, Some(c), None) => format!("exit {c}"),
            _ => r.pid.map(|p| format!("pid {p}")).unwrap_or_default(),
        };
        if let Some(k) = &r.attempt {
            info = format!("attempt {k}; {info}");
        }
        // A record's reason is anyone's text: it must not drive the terminal.
        let info = for_terminal(&info);
        writeln!(
            out,
            "{:width$}  {:8}  {:>8}  {:>8}  {:>4}  {info}",
            r.name, r.state, age, beat, r.runs
        )?;
    }
    Ok(())
}
