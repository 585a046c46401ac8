//! `jobwatch gc`: remove finished runs, surplus history and stray files.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use indicatif::HumanBytes;
use serde::Serialize;

use super::args::duration;
use super::{CliResult, wants_json};
use jobwatch_core::exit_code;
use jobwatch_core::gc::{ItemKind, Policy, Removal};
use jobwatch_core::ops;
use jobwatch_core::store::Store;
use jobwatch_core::sys::stdio::warn;

const GC_HELP: &str = concat!(
    "\
With neither --older-than nor --keep: keep the newest 10 archived runs per
name and remove no current run. Always removed: .tmp-* files older than a
minute, NAME.kill files of runs that are over, empty history/NAME/ and
attempts/NAME/ folders. Never touched: running jobs, NAME.lock files,
breakers/, anything behind a symlink.

Prints one line per removed run or file and a summary (JSON lines with
--json or when stdout is not a terminal); warnings go to stderr.

Examples:
  jobwatch gc --dry-run                 # what the defaults would remove
  jobwatch gc --older-than 7d           # finished runs that ended a week ago
  jobwatch gc --keep 3 --json           # at most 3 archived runs per name

",
    durations_note!()
);

/// Remove finished jobs' files and history beyond the limits.
#[derive(Debug, Args)]
#[command(after_help = GC_HELP)]
pub struct GcArgs {
    /// Remove finished runs, current and archived, that ended longer ago.
    #[arg(long, value_parser = duration, value_name = "D")]
    older_than: Option<Duration>,

    /// Keep at most N archived runs per name (the newest).
    #[arg(long, value_name = "N")]
    keep: Option<usize>,

    /// Print what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,

    /// Print JSON even on a terminal.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ItemLine<'a> {
    action: &'static str,
    #[serde(flatten)]
    removal: &'a Removal,
}

#[derive(Serialize)]
struct SummaryLine {
    action: &'static str,
    dry_run: bool,
    items: usize,
    bytes: u64,
    warnings: usize,
}

/// Runs the `gc` command.
pub fn gc(store: &dyn Store, a: GcArgs) -> CliResult {
    let policy = Policy::new(a.older_than, a.keep);
    let report = ops::gc::gc(store, &policy, a.dry_run)?;
    for w in &report.warnings {
        warn(format_args!("warning: {w}"));
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let mut lines: Vec<String> = Vec::with_capacity(report.removed.len() + 1);
    if wants_json(a.json) {
        let action = if a.dry_run { "would_remove" } else { "removed" };
        for removal in &report.removed {
            let line = ItemLine { action, removal };
            lines.push(serde_json::to_string(&line).expect("serializes"));
        }
        let summary = SummaryLine {
            action: "summary",
            dry_run: a.dry_run,
            items: report.removed.len(),
            bytes: report.bytes(),
            warnings: report.warnings.len(),
        };
        lines.push(serde_json::to_string(&summary).expect("serializes"));
    } else {
        lines.extend(report.removed.iter().map(|r| human_line(verb, r)));
        let free = if a.dry_run { "would free" } else { "freed" };
        lines.push(format!(
            "gc: {verb} {} item(s), {free} {}",
            report.removed.len(),
            HumanBytes(report.bytes())
        ));
    }
    print_lines(&lines);
    Ok(exit_code::SUCCESS)
}

/// Prints to stdout; a reader that went away (`gc | head`) is not an
/// error: the removals are done either way.
fn print_lines(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

fn human_line(verb: &str, r: &Removal) -> String {
    let what = match r.kind {
        ItemKind::Run => "run",
        ItemKind::ArchivedRun => "archived run",
        ItemKind::TempFile => "temp file",
        ItemKind::KillRequest => "kill request",
        ItemKind::EmptyDir => "empty folder",
        ItemKind::EventJournal => "old event journal",
    };
    let paths: Vec<String> = r.paths.iter().map(|p| p.display().to_string()).collect();
    format!(
        "{verb} {what} {} ({}; {})",
        paths.join(" "),
        HumanBytes(r.bytes),
        r.why
    )
}
