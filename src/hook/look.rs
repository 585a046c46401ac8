//! A read-only look at one tracked run: still running, ended (and how), or
//! gone. Looking never acts: a lost run is reported `lost` without being
//! finished, and a run that looks hung is left to its wrapper (or to a
//! `wait`), like `logs --follow` does. A hook must never kill anything.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::session::TrackedJob;
use jobwatch_core::classify::{JobState, classify};
use jobwatch_core::model::{JobName, JobRecord, Outcome};
use jobwatch_core::store::file::FileStore;
use jobwatch_core::store::{RunAt, SAFETY_RECHECK, Snapshot, Store};
use jobwatch_core::wait::archived_verdict;

/// Log lines an outcome line carries on anything but success.
pub const TAIL_LINES: usize = 5;

/// What one look found.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// Still running: look again within this long (without an event).
    Running {
        /// Until the next look.
        recheck_in: Duration,
    },
    /// It ended.
    Ended(Box<Ending>),
    /// Neither the name's current run nor in its history: removed, or
    /// caught mid-restart (look again shortly).
    Gone,
}

/// How a run ended, with what an outcome line needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The job's name.
    pub name: String,
    /// `success`, `failed`, `timeout`, `hung`, `killed`, `lost`, or
    /// `invalid` when its files cannot be trusted.
    pub outcome: String,
    /// The command's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended the command.
    pub signal: Option<i32>,
    /// Run time.
    pub duration_ms: Option<u64>,
    /// Why it ended so.
    pub reason: Option<String>,
    /// The log (in history when the name has been started again since).
    pub log: PathBuf,
    /// The log's last lines, on anything but success.
    pub tail: Vec<String>,
}

impl Ending {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Success.as_str()
    }
}

/// Looks at `job` once.
pub fn look(job: &TrackedJob) -> View {
    let Ok(name) = JobName::parse(&job.name) else {
        return View::Gone;
    };
    if !job.dir.is_dir() {
        return View::Gone;
    }
    let store = FileStore::already_checked(&job.dir);
    let snapshot = store.snapshot(&name);
    match &snapshot.record {
        Ok(Some(r)) if r.job_id == job.job_id => look_current(&store, &name, snapshot),
        Ok(_) => match archived_verdict(&store, &name, &job.job_id) {
            Some(v) => View::Ended(Box::new(ending(
                &store,
                &name,
                &v.at,
                v.outcome.as_str(),
                v.record.as_ref(),
                None,
            ))),
            None => View::Gone,
        },
        Err(e) => View::Ended(Box::new(invalid(&store, &name, e.to_string()))),
    }
}

fn look_current(store: &dyn Store, name: &JobName, snapshot: Snapshot) -> View {
    let now = SystemTime::now();
    let current = &RunAt::Current;
    match classify(snapshot, now, None) {
        JobState::Finished { outcome, record } => View::Ended(Box::new(ending(
            store,
            name,
            current,
            outcome.as_str(),
            record.as_deref(),
            None,
        ))),
        JobState::Lost { record } => View::Ended(Box::new(ending(
            store,
            name,
            current,
            Outcome::Lost.as_str(),
            Some(&record),
            Some(format!(
                "its wrapper vanished; `jobwatch wait {name}` finishes it and kills what remains"
            )),
        ))),
        // The outcome its dead wrapper recorded is the outcome (a waiter
        // writes the status from it); a hook only reads.
        JobState::Recorded { record } => View::Ended(Box::new(ending(
            store,
            name,
            current,
            record.outcome.map_or(Outcome::Lost, |o| o).as_str(),
            Some(&record),
            None,
        ))),
        JobState::Running { hung_at, .. } => View::Running {
            recheck_in: hung_at
                .duration_since(now)
                .unwrap_or_default()
                .clamp(Duration::from_millis(5), SAFETY_RECHECK),
        },
        // Its wrapper (or a waiter) decides what a hung job is; a hook only
        // reads.
        JobState::Hung { .. } => View::Running {
            recheck_in: SAFETY_RECHECK,
        },
        JobState::Missing => View::Gone,
        JobState::Invalid { reason } => View::Ended(Box::new(invalid(store, name, reason))),
    }
}

fn ending(
    store: &dyn Store,
    name: &JobName,
    at: &RunAt,
    outcome: &str,
    record: Option<&JobRecord>,
    reason: Option<String>,
) -> Ending {
    let tail = if outcome == Outcome::Success.as_str() {
        Vec::new()
    } else {
        store.tail(name, at, TAIL_LINES)
    };
    Ending {
        name: name.to_string(),
        outcome: outcome.to_owned(),
        exit_code: record.and_then(|r| r.exit_code),
        signal: record.and_then(|r| r.signal),
        duration_ms: record.and_then(|r| r.duration_ms),
        reason: reason.or_else(|| record.and_then(|r| r.reason.clone())),
        log: store.log_path(name, at),
        tail,
    }
}

fn invalid(store: &dyn Store, name: &JobName, reason: String) -> Ending {
    Ending {
        name: name.to_string(),
        outcome: "invalid".into(),
        exit_code: None,
        signal: None,
        duration_ms: None,
        reason: Some(reason),
        log: store.log_path(name, &RunAt::Current),
        tail: Vec::new(),
    }
}
