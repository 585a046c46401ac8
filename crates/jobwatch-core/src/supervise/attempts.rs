//! Attempts (protocol §14): starting an attempt's command, listing a
//! finished attempt in the record, and putting its log aside so that the
//! next attempt starts a fresh `NAME.log` and no attempt's output is lost.
//!
//! Whether an attempt is retried, and how long the backoff (with jitter)
//! lasts, are decisions of the state machine (`machine.rs`); this module
//! only carries them out.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::machine::{Event, Now};
use super::{RunSpec, StartError, Supervisor, io_err};
use crate::kill::{DETACHED_WRAPPER_ENV, JOB_ID_ENV};
use crate::model::{Attempt, JobEnd, JobName, JobRecord, Outcome, rfc3339};
use crate::store::{Claim, RunAt, Store, StoreError};
use crate::sys::child::reap;
use crate::sys::proc::{self, ProcessId};

/// A finished attempt, for the record's `attempts` list: attempt `k`,
/// started at `started`, ended at `now`, then a backoff of `backoff`
/// before the next one (none for the last).
pub(super) fn attempt_of(
    k: u32,
    started: SystemTime,
    end: &JobEnd,
    now: SystemTime,
    backoff: Option<Duration>,
) -> Attempt {
    Attempt {
        attempt: k,
        started_at: rfc3339(started),
        ended_at: rfc3339(now),
        duration_ms: now.duration_since(started).unwrap_or_default().as_millis() as u64,
        outcome: end.outcome,
        exit_code: end.exit_code,
        signal: end.signal,
        reason: end.reason.clone(),
        backoff_ms: backoff.map(|d| d.as_millis() as u64),
    }
}

/// A job that could not start its next attempt for a reason other than
/// its command.
fn failed_to_start(why: String) -> JobEnd {
    JobEnd {
        outcome: Outcome::Failed,
        exit_code: None,
        signal: None,
        reason: Some(format!("cannot start the next attempt: {why}")),
    }
}

/// How a job ends whose command cannot be executed: failed, with the exit
/// code a shell would give (127 not found, 126 not executable).
pub(super) fn spawn_failure(record: &JobRecord, err: &io::Error) -> JobEnd {
    let code = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    JobEnd {
        outcome: Outcome::Failed,
        exit_code: Some(code),
        signal: None,
        reason: Some(format!(
            "cannot run {:?}: {err}",
            record.command.first().map_or("", String::as_str)
        )),
    }
}

/// The current run's log, created if missing, opened for appending: every
/// writer's bytes land at the end, whoever else writes. Never through a
/// symlink (§3): a log swapped for one fails the attempt loudly.
pub(super) fn create_log(store: &dyn Store, name: &JobName) -> Result<File, StartError> {
    store.logs().open_for_append(name).map_err(io_err(format!(
        "cannot create {}",
        store.log_path(name, &RunAt::Current).display()
    )))
}

/// Starts the command in its own process group, its output going straight
/// to `log` (protocol §6.2 step 7, environment per §10).
pub(super) fn spawn_command(
    store: &dyn Store,
    spec: &RunSpec,
    record: &JobRecord,
    log: &File,
) -> io::Result<Child> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    Command::new(program)
        .args(args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .env("JOBWATCH_NAME", spec.name.as_str())
        .envs(store.job_env(&spec.name))
        .env(JOB_ID_ENV, &record.job_id)
        // The mark of a detached wrapper is the wrapper's alone: its job is
        // not another run's wrapper.
        .env_remove(DETACHED_WRAPPER_ENV)
        .spawn()
}

/// Records a freshly spawned command in the record (and the file store's
/// `NAME.pid`), made durable: from here on a reader can find and judge it.
pub(super) fn record_child(
    claim: &mut dyn Claim,
    record: &mut JobRecord,
    child: &Child,
) -> Result<(), StoreError> {
    let child_id = proc::identify(child.id() as i32).unwrap_or(ProcessId {
        pid: child.id() as i32,
        start_time: 0,
    });
    record.child_pid = Some(child_id.pid);
    record.child_start_time = Some(child_id.start_time);
    record.pgid = Some(child_id.pid);
    claim.mark_spawned(record)
}

impl Supervisor<'_> {
    /// Starts attempt `k` with a fresh log, heartbeat and time limit:
    /// [`Event::Spawned`], or [`Event::StartFailed`] when the command can
    /// no longer be executed (which ends the job).
    pub(super) fn start_attempt(&mut self, k: u32) -> Event {
        self.record.attempt = k;
        let fresh = create_log(self.store, &self.spec.name)
            .map_err(|e| failed_to_start(e.to_string()))
            .and_then(|log| {
                self.claim
                    .reset_beat()
                    .map_err(|e| failed_to_start(e.to_string()))?;
                Ok(log)
            });
        let log = match fresh {
            Ok(log) => log,
            Err(end) => return Event::StartFailed(end),
        };
        let started = Now {
            wall: SystemTime::now(),
            mono: Instant::now(),
        };
        match spawn_command(self.store, &self.spec, &self.record, &log) {
            Ok(child) => self.child = child,
            Err(e) => return Event::StartFailed(spawn_failure(&self.record, &e)),
        }
        if let Err(e) = record_child(self.claim.as_mut(), &mut self.record, &self.child) {
            // A command nobody can find in the files must not run on.
            let pid = self.child.id() as i32;
            self.kill_leftovers();
            reap(pid);
            return Event::StartFailed(failed_to_start(e.to_string()));
        }
        if let Some(tee) = &self.tee {
            tee.follow(&self.log_path());
        }
        Event::Spawned { started }
    }

    /// Lists a finished attempt in the record and moves its log to
    /// `attempts/NAME/K.log`, so the next attempt starts a fresh `NAME.log`
    /// and no attempt's output is lost (a log someone removed leaves
    /// nothing to move). On error the attempt is not listed.
    pub(super) fn put_attempt_aside(&mut self, attempt: Attempt) -> Result<(), StoreError> {
        let k = attempt.attempt;
        // A fresh log exists throughout, so readers of the log never find
        // it missing between attempts; the next attempt appends to it.
        let logs = self.store.logs();
        logs.put_attempt_aside(&self.spec.name, k)
            .map_err(|source| StoreError::Io {
                context: format!(
                    "cannot write {}",
                    logs.attempt_log(&self.spec.name, k).display()
                ),
                source,
            })?;
        if let Some(tee) = &self.tee {
            tee.notice(format!(
                "{} attempt {k}/{} {}{}; retrying in {}",
                self.record.name,
                self.record.max_attempts,
                attempt.outcome,
                attempt
                    .exit_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default(),
                humantime::format_duration(Duration::from_millis(
                    attempt.backoff_ms.unwrap_or_default()
                ))
            ));
        }
        self.record.attempts.push(attempt);
        let record = self.record.clone();
        self.claim.write_record(&record).inspect_err(|_| {
            self.record.attempts.pop();
        })
    }
}
