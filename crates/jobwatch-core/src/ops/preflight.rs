//! `preflight`: the named checks of a config file (a command exits 0, an
//! endpoint answers, a path exists), run concurrently, each with its fix.
//! A failing check is a result (`passed: false`); a config that cannot be
//! read or parsed is an error.

use std::ffi::OsString;
use std::path::Path;

use crate::preflight::{Config, PreflightError, PreflightReport, run_checks_with_env};

/// Loads `config` and runs its checks, with `env` added to the
/// environment of their commands (a job's own, when its start runs them).
pub fn run(config: &Path, env: &[(OsString, OsString)]) -> Result<PreflightReport, PreflightError> {
    let config = Config::load(config)?;
    Ok(run_checks_with_env(&config, env))
}
