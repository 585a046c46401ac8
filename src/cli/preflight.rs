//! `jobwatch preflight`: run the checks of a config file and report them as
//! a table (terminal) or one JSON object; exit 7 when any check fails.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{CliResult, wants_json};
use jobwatch_core::exit_code;
use jobwatch_core::ops;
use jobwatch_core::preflight::{self, PreflightReport};
use jobwatch_core::report::human_ms;

const PREFLIGHT_HELP: &str = "\
Config (TOML), default ./jobwatch.toml:
  [[check]]
  name = \"db\"
  kind = \"tcp\"                # command | tcp | http | path
  address = \"127.0.0.1:5432\"
  timeout = \"2s\"              # default 5s, or [defaults] timeout
  fix = \"pg_ctl start\"        # optional: run once on failure, then re-check

Checks run concurrently. JSON (with --json or when stdout is not a terminal):
{\"passed\":bool,\"checks\":[{\"name\",\"kind\",\"passed\",\"fixed\",\"fix_ran\",\"detail\",\"duration_ms\"}]}
Exit codes: 0 all checks passed, 7 a check failed, 2 bad or missing config.

Examples:
  jobwatch preflight
  jobwatch preflight --config ci/jobwatch.toml --json
  jobwatch run build --preflight -- make -j8     # refuses (exit 7) unless all pass";

/// Check the environment: commands, TCP and HTTP endpoints, paths.
#[derive(Debug, Args)]
#[command(after_help = PREFLIGHT_HELP)]
pub struct PreflightArgs {
    /// The config file.
    #[arg(long, value_name = "FILE", default_value = preflight::DEFAULT_FILE)]
    config: PathBuf,

    /// Print JSON even on a terminal.
    #[arg(long)]
    json: bool,
}

/// Runs the `preflight` command.
pub fn preflight(a: PreflightArgs) -> CliResult {
    let report = ops::preflight::run(&a.config, &[])?;
    let mut out = std::io::stdout().lock();
    let text = if wants_json(a.json) {
        serde_json::to_string(&report).expect("a report serializes")
    } else {
        table(&report, unicode_ok())
    };
    // A closed stdout (`| head`) must not hide the verdict: the exit code.
    let _ = writeln!(out, "{text}");
    Ok(verdict(&report))
}

/// The exit code of the report's verdict (the core's mapping): 7 when a
/// check failed.
fn verdict(report: &PreflightReport) -> u8 {
    exit_code::for_preflight(report)
}

/// One aligned row per check, then a summary line.
fn table(report: &PreflightReport, unicode: bool) -> String {
    let (ok, bad) = if unicode {
        ("✓", "✗")
    } else {
        ("ok", "FAIL")
    };
    let width = |f: fn(&preflight::CheckReport) -> usize| report.checks.iter().map(f).max();
    let name_w = width(|c| c.name.chars().count()).unwrap_or(0);
    let kind_w = width(|c| c.kind.as_str().len()).unwrap_or(0);
    let mark_w = if unicode { 1 } else { 4 };
    let mut lines: Vec<String> = report
        .checks
        .iter()
        .map(|c| {
            let mark = if c.passed { ok } else { bad };
            format!(
                "{mark:<mark_w$}  {:<name_w$}  {:<kind_w$}  {:>7}  {}",
                c.name,
                c.kind.as_str(),
                human_ms(c.duration_ms),
                c.detail,
            )
        })
        .collect();
    let failed = report.failures().count();
    lines.push(match failed {
        0 => format!("all {} checks passed", report.checks.len()),
        n => format!("{n} of {} checks failed", report.checks.len()),
    });
    lines.join("\n")
}

/// Whether the terminal can show ✓ and ✗: a UTF-8 locale, and not asked to
/// keep output plain.
fn unicode_ok() -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    locale.contains("utf-8") || locale.contains("utf8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobwatch_core::preflight::{CheckReport, Kind};

    fn row(name: &str, kind: Kind, passed: bool, detail: &str) -> CheckReport {
        CheckReport {
            name: name.into(),
            kind,
            passed,
            fixed: false,
            fix_ran: false,
            detail: detail.into(),
            duration_ms: 12,
        }
    }

    #[test]
    fn the_table_aligns_columns_and_sums_up() {
        let report = PreflightReport {
            passed: false,
            checks: vec![
                row("db", Kind::Tcp, true, "connected to 127.0.0.1:5432"),
                row("compiler", Kind::Command, false, "exit 127"),
            ],
        };
        let t = table(&report, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("ok    db        tcp    "), "{t}");
        assert!(lines[1].starts_with("FAIL  compiler  command"), "{t}");
        let col = |l: &str, needle: &str| l.find(needle).unwrap();
        assert_eq!(col(lines[0], "connected"), col(lines[1], "exit 127"), "{t}");
        assert_eq!(lines[2], "1 of 2 checks failed");
        assert!(table(&report, true).starts_with("✓  db"));
        assert_eq!(verdict(&report), exit_code::PREFLIGHT_FAILED);
    }
}
