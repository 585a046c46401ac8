//! Preflight: named checks of the environment (a command exits 0, a TCP or
//! HTTP endpoint answers, a path exists) that a loop runs before it starts
//! work, each with an optional fix run once before one re-check. Checks run
//! concurrently, so a preflight takes as long as its slowest check.
//!
//! # Configuration (`jobwatch.toml`)
//!
//! ```toml
//! [defaults]                 # optional
//! timeout = "5s"             # per check (default 5s)
//! fix_timeout = "60s"        # per fix (default 60s)
//!
//! [[check]]
//! name = "db"                # unique, non-empty, at most 64 characters
//! kind = "tcp"               # command | tcp | http | path
//! address = "127.0.0.1:5432" # host:port; names are resolved, every address tried
//! timeout = "2s"             # optional, overrides [defaults]
//! fix = "pg_ctl start"       # optional: run once when the check fails, then re-check
//! fix_timeout = "30s"        # optional
//!
//! [[check]]
//! name = "api"
//! kind = "http"
//! url = "http://127.0.0.1:8080/health"   # GET must answer 2xx; https works
//!
//! [[check]]
//! name = "compiler"
//! kind = "command"
//! command = "cargo --version"  # a string runs with sh -c; an array runs directly
//!
//! [[check]]
//! name = "tool"
//! kind = "path"
//! path = "./bin/tool"        # relative to the config file's directory
//! executable = true          # optional: executable by this user (not a directory)
//! dir = false                # optional: true = must be a directory, false = must not
//! ```
//!
//! Unknown keys, unknown kinds, a setting of another kind (`url` in a tcp
//! check) and duplicate names are errors that name the file and line.
//! Commands and fixes run in the config file's directory with stdin from
//! `/dev/null`, in their own process group, which is killed when they run
//! past their timeout; their output is kept only as a short tail for the
//! report. A fix's own exit code does not matter: the re-check decides.

mod checks;
mod config;

pub use checks::MAX_DETAIL;
pub use config::{
    Check, CommandLine, Config, DEFAULT_FILE, DEFAULT_FIX_TIMEOUT, DEFAULT_TIMEOUT, Fix, Kind,
    PreflightError, Probe,
};

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use checks::{Place, Probed, clip};

/// The result of a preflight: small by design (details are bounded) because
/// an agent reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightReport {
    /// Whether every check passed (after its fix, if one ran).
    pub passed: bool,
    /// One entry per check, in the order of the configuration.
    pub checks: Vec<CheckReport>,
}

impl PreflightReport {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Whether it passed in the end.
    pub passed: bool,
    /// Whether it failed, its fix ran, and the re-check passed.
    pub fixed: bool,
    /// Whether its fix ran (the first probe failed and there is a fix).
    pub fix_ran: bool,
    /// What the last probe found (and what the fix did, when it did not
    /// help); at most [`MAX_DETAIL`] characters.
    pub detail: String,
    /// Time for the whole check, fix and re-check included.
    pub duration_ms: u64,
}

/// Runs every check of `config` concurrently and reports them in order.
pub fn run_checks(config: &Config) -> PreflightReport {
    run_checks_with_env(config, &[])
}

/// [`run_checks`], with `env` added to the environment of its commands and
/// fixes: the checks a job's start runs see the job's own variables.
pub fn run_checks_with_env(config: &Config, env: &[(OsString, OsString)]) -> PreflightReport {
    let place = Place {
        dir: &config.base_dir,
        env,
    };
    let checks: Vec<CheckReport> = std::thread::scope(|s| {
        let running: Vec<_> = config
            .checks
            .iter()
            .map(|c| (c, s.spawn(move || run_check_in(c, place))))
            .collect();
        running
            .into_iter()
            .map(|(c, handle)| {
                handle.join().unwrap_or_else(|_| CheckReport {
                    name: c.name.clone(),
                    kind: c.probe.kind(),
                    passed: false,
                    fixed: false,
                    fix_ran: false,
                    detail: "internal error: the check panicked".into(),
                    duration_ms: 0,
                })
            })
            .collect()
    });
    PreflightReport {
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}

/// Runs one check: probe; on failure the fix (if any) and one re-probe.
pub fn run_check(check: &Check, base_dir: &Path) -> CheckReport {
    run_check_in(
        check,
        Place {
            dir: base_dir,
            env: &[],
        },
    )
}

fn run_check_in(check: &Check, place: Place<'_>) -> CheckReport {
    let started = Instant::now();
    let first = checks::probe_in(&check.probe, place, check.timeout);
    let (last, fix_ran) = match (&check.fix, first.passed) {
        (Some(fix), false) => {
            let fixed_by = checks::command(&fix.command, place, fix.timeout);
            let again = checks::probe_in(&check.probe, place, check.timeout);
            let detail = if again.passed {
                format!("fixed: {}", again.detail)
            } else {
                let fix = clip(&fixed_by.detail, MAX_DETAIL / 2);
                format!("{}; fix did not help (fix: {fix})", again.detail)
            };
            (
                Probed {
                    passed: again.passed,
                    detail,
                },
                true,
            )
        }
        _ => (first, false),
    };
    CheckReport {
        name: check.name.clone(),
        kind: check.probe.kind(),
        passed: last.passed,
        fixed: fix_ran && last.passed,
        fix_ran,
        detail: clip(&last.detail, MAX_DETAIL),
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// One line per failing check, for `run --preflight` to print on stderr.
pub fn failure_lines(report: &PreflightReport) -> Vec<String> {
    report
        .failures()
        .map(|c| {
            format!(
                "preflight check {} ({}) failed: {}",
                c.name, c.kind, c.detail
            )
        })
        .collect()
}
