//! Starting a detached wrapper: this executable, in a new session (immune
//! to the caller's terminal hangup), that reports on a pipe once its job
//! has started, or why it could not.
//!
//! Used by `run --detach` and by a batch's launcher. The wrapper is this
//! executable run as `run NAME --detached-supervisor` with the settings as
//! flags (issue 10 replaces them with a typed spec sent over the pipe).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exit_code;
use crate::kill::{DETACHED_WRAPPER_ENV, JOB_ID_ENV, find_members};
use crate::model::JobName;
use crate::recover;
use crate::spec::ms;
use crate::store::Store;
use crate::supervise::RunSpec;
use crate::sys::child::detach_into_new_session;
use crate::sys::proc::{self, ProcessId};

/// A detached job could not be started: the one-line reason and the exit
/// code to give (the wrapper's own, or [`exit_code::USAGE`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DetachError {
    /// The exit code.
    pub code: u8,
    /// The message (one line).
    pub message: String,
}

impl DetachError {
    fn usage(e: impl std::fmt::Display) -> Self {
        Self {
            code: exit_code::USAGE,
            message: e.to_string(),
        }
    }
}

/// The line printed when a detached job has started.
#[derive(Debug, Serialize, Deserialize)]
pub struct Started {
    /// The job's name.
    pub name: String,
    /// The command's PID.
    pub pid: i32,
    /// The wrapper's PID.
    pub wrapper_pid: i32,
    /// The job's log.
    pub log: String,
}

/// Where a detached job starts: its working directory (default: this
/// process's) and extra environment variables.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The working directory.
    pub cwd: Option<std::path::PathBuf>,
    /// Variables added to this process's environment.
    pub env: Vec<(String, String)>,
}

/// Starts `spec` as a detached job: a wrapper (this executable with
/// `run --detached-supervisor`) in a new session, placed per `place`,
/// told to use `store` through `--dir dir` (the jobs directory; a store
/// elsewhere is named in `place.env`, e.g. `JOBWATCH_STORE`). Returns once
/// the wrapper reports the job started, with the wrapper's
/// process, which a long-lived caller reaps once the job has ended; or the
/// wrapper's reason and exit code when it could not start the job.
pub fn spawn_detached(
    store: &dyn Store,
    dir: &Path,
    spec: &RunSpec,
    place: &Placement,
) -> Result<(Started, std::process::Child), DetachError> {
    let s = &spec.settings;
    let exe = std::env::current_exe().map_err(DetachError::usage)?;
    let mut cmd = Command::new(exe);
    cmd.arg("--dir")
        .arg(dir)
        .arg("run")
        .arg(spec.name.as_str())
        .arg("--detached-supervisor")
        .arg(format!("--stale={}ms", s.stale_ms))
        .arg(format!("--heartbeat={}ms", s.heartbeat_ms))
        .arg(format!("--grace={}ms", s.grace_ms))
        .arg(format!("--liveness={}", s.liveness.as_str()));
    if let Some(t) = s.timeout_ms {
        cmd.arg(format!("--timeout={t}ms"));
    }
    cmd.arg(format!("--retries={}", s.retries))
        .arg(format!("--backoff={}ms", s.backoff_ms))
        .arg(format!("--backoff-max={}ms", s.backoff_max_ms));
    if let Some(b) = &spec.breaker {
        cmd.arg(format!("--breaker={}", b.key));
        if let Some(n) = b.policy.max_failures {
            cmd.arg(format!("--max-failures={n}"));
        }
        if let Some(c) = b.policy.cooldown {
            cmd.arg(format!("--cooldown={}ms", ms(c)));
        }
    }
    cmd.arg("--").args(&spec.command);
    if let Some(cwd) = &place.cwd {
        cmd.current_dir(cwd);
    }
    cmd.envs(place.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The wrapper runs a job of its own: started from inside another
        // job, it must not carry that job's id (which would make it a
        // member of it), and it is marked as a wrapper, which other runs'
        // kills leave alone with everything below it.
        .env_remove(JOB_ID_ENV)
        .env(DETACHED_WRAPPER_ENV, "1");
    detach_into_new_session(&mut cmd);
    let mut child = cmd.spawn().map_err(DetachError::usage)?;
    // Our unreaped child cannot change identity: this tells its record
    // from any other run's.
    let wrapper = proc::identify(child.id() as i32);
    let mut first_line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut first_line);
    }
    if let Ok(started) = serde_json::from_str::<Started>(first_line.trim()) {
        // The wrapper sends later diagnostics to the job's log.
        drop(child.stderr.take());
        return Ok((started, child));
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map_err(DetachError::usage)?;
    let message = err.trim().trim_start_matches("jobwatch: ").to_owned();
    if let Some(lost) =
        wrapper.and_then(|w| settle_unreported_start(store, &spec.name, s.grace(), w, &message))
    {
        return Err(lost);
    }
    Err(DetachError {
        code: status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .filter(|c| *c != 0)
            .unwrap_or(exit_code::USAGE),
        message: if message.is_empty() {
            "the detached wrapper exited before the job started".to_owned()
        } else {
            message
        },
    })
}

/// The wrapper ended without reporting the start. If it got as far as
/// writing its own record, its run must not stay as it is: it is finished
/// (as `lost`, its processes killed) and, when the command had been
/// spawned, reported as the lost run it is (exit 4) rather than as a job
/// that never started. `None` when the wrapper left no unfinished run.
fn settle_unreported_start(
    store: &dyn Store,
    name: &JobName,
    grace: Duration,
    wrapper: ProcessId,
    wrapper_said: &str,
) -> Option<DetachError> {
    let record = store.snapshot(name).record.ok().flatten()?;
    // Only a record of this host's PID namespace can name our child: another
    // host's wrapper may have the same PID and start time in its own.
    let ours = record.wrapper_pid == wrapper.pid
        && record.wrapper_start_time == wrapper.start_time
        && proc::place_of_record(&record) == proc::Place::Here;
    if !ours || record.outcome.is_some() {
        return None;
    }
    // The command may run without the record naming it yet: its processes
    // carry the run's id.
    let spawned =
        record.child_pid.is_some() || !find_members(&recover::target_of(&record)).is_empty();
    let why = if spawned {
        "the detached wrapper died after starting the command, before it reported the start"
    } else {
        "the detached wrapper died before it started the command"
    };
    let finished = recover::finalize_lost(store, name, grace, why);
    if !spawned {
        return None;
    }
    let said = if wrapper_said.is_empty() {
        String::new()
    } else {
        format!(" ({wrapper_said})")
    };
    let what = match finished {
        Ok(_) => "the run is lost and its processes were killed".to_owned(),
        Err(e) => format!("the run is lost; finishing it failed: {e}"),
    };
    Some(DetachError {
        code: exit_code::LOST,
        message: format!(
            "job {}: the detached wrapper died after starting the command{said}; {what}",
            name
        ),
    })
}
