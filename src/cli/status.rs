//! `jobwatch status` and `jobwatch ls`: classify jobs from their files alone.

use std::io::Write;

use clap::Args;

use super::args::job_name;
use super::human::for_terminal;
use super::{CliError, CliResult, wants_json};
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::ops::{self, status::Entry, status::StatusRequest};
use jobwatch_core::report::{StatusRow, human_ms};
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

/// Runs the `status` command.
pub fn status(store: &dyn Store, a: StatusArgs) -> CliResult {
    let names = (!a.names.is_empty()).then_some(a.names);
    show(store, names, a.json)
}

/// Runs the `ls` command.
pub fn ls(store: &dyn Store, a: LsArgs) -> CliResult {
    show(store, None, a.json)
}

fn show(store: &dyn Store, names: Option<Vec<JobName>>, json: bool) -> CliResult {
    let json = wants_json(json);
    let listing = ops::status::status(store, &StatusRequest { names, limit: None })?;
    for entry in &listing.entries {
        match entry {
            Entry::NoSuchJob(name) => warn(format_args!("no job named {name}")),
            Entry::Job(StatusRow {
                name,
                error: Some(reason),
                ..
            }) => warn(format_args!("job {name}: {}", for_terminal(reason))),
            Entry::Job(_) => {}
        }
    }
    let rows: Vec<&StatusRow> = listing.rows().collect();
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
            Err(CliError::usage(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(exit_code::for_listing(&listing)),
    }
}

fn print_table(out: &mut impl Write, rows: &[&StatusRow]) -> std::io::Result<()> {
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
