//! The [`Launcher`] of today: every batch job is an ordinary detached
//! jobwatch job, started and killed by the same operations as `jobwatch
//! run NAME --detach` and `jobwatch kill` ([`crate::ops::start`],
//! [`crate::ops::kill`]), so `status`, `wait`, `kill`, `logs` and the MCP
//! server see it like any other; the batch waits for them with the
//! library's event-driven waiter, on one watch for the whole batch.

use std::process::Child;
use std::sync::Mutex;

use super::run::{Ended, LaunchError, Launcher, Seen};
use crate::classify::{JobState, classify};
use crate::model::{JobName, JobRecord, Outcome};
use crate::ops::{self, Context, Wrapper};
use crate::spec::RunSpec;
use crate::store::file::FileStore;
use crate::store::{RunAt, Store, Watch, WatchFor};
use crate::wait::{Verdict, WaitMode, WaitSpec, wait_with};

/// Largest result file read for a cost: a result is a small JSON object.
const MAX_RESULT_BYTES: u64 = 1 << 20;

/// Starts batch jobs as detached jobwatch jobs in one jobs directory.
pub struct Detached {
    store: FileStore,
    /// How to start a job's wrapper.
    wrapper: Wrapper,
    /// One watch for the whole batch (every job and judge name), kept
    /// across waits.
    watch: Box<dyn Watch>,
    /// The wrappers this process spawned: reaped once they exit, so a long
    /// batch leaves no zombies.
    wrappers: Mutex<Vec<Child>>,
}

impl Detached {
    /// A launcher for jobs in `dir`, started by `wrapper`; `names` are
    /// every name the batch may run (jobs and judges).
    pub fn new(store: &FileStore, wrapper: Wrapper, names: &[JobName]) -> Detached {
        Detached {
            store: store.clone(),
            wrapper,
            watch: store.watch(names, WatchFor::default()),
            wrappers: Mutex::new(Vec::new()),
        }
    }

    fn reap(&self) {
        let mut wrappers = self.wrappers.lock().unwrap_or_else(|p| p.into_inner());
        wrappers.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.reap();
    }
}

impl Launcher for Detached {
    fn start(&self, job: &RunSpec) -> Result<(), LaunchError> {
        let ctx = Context {
            store: &self.store,
            wrapper: &self.wrapper,
        };
        let started = ops::start::detached(&ctx, job).map_err(|e| LaunchError(e.to_string()))?;
        self.wrappers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(started.wrapper);
        Ok(())
    }

    fn wait_any(&self, names: &[JobName]) -> Result<Vec<Ended>, LaunchError> {
        let spec = WaitSpec {
            names: names.to_vec(),
            mode: WaitMode::Any,
            timeout: None,
            stale: None,
            poll: None,
            kill_on_timeout: false,
            grace: None,
            exits_after: false,
        };
        let verdicts = wait_with(&self.store, &spec, self.watch.as_ref())
            .map_err(|e| LaunchError(e.to_string()))?;
        self.reap();
        Ok(verdicts
            .into_iter()
            .map(|v| ended_of_verdict(&self.store, &v))
            .collect())
    }

    fn kill(
        &self,
        name: &JobName,
        reason: &str,
        grace: Option<std::time::Duration>,
    ) -> Result<(), LaunchError> {
        let req = ops::kill::KillJob {
            name,
            grace,
            reason,
        };
        ops::kill::kill(&self.store, &req)
            .map(drop)
            .map_err(|e| LaunchError(e.to_string()))
    }

    fn look(&self, name: &JobName) -> Result<Seen, LaunchError> {
        let store = &self.store;
        match classify(store.snapshot(name), store.now(), None) {
            JobState::Missing => Ok(Seen::Missing),
            // Hung, lost or recorded-but-uncommitted: the waiter acts on it
            // (kills, finishes, commits the recorded outcome).
            JobState::Running { .. }
            | JobState::Hung { .. }
            | JobState::Lost { .. }
            | JobState::Recorded { .. } => Ok(Seen::Running),
            JobState::Finished { outcome, record } => Ok(Seen::Ended(Box::new(ended(
                store,
                name,
                &RunAt::Current,
                outcome,
                record.as_deref(),
            )))),
            JobState::Invalid { reason } => Err(LaunchError(format!("job {name}: {reason}"))),
        }
    }
}

fn ended_of_verdict(store: &dyn Store, v: &Verdict) -> Ended {
    ended(store, &v.name, &v.at, v.outcome, v.record.as_ref())
}

fn ended(
    store: &dyn Store,
    name: &JobName,
    at: &RunAt,
    outcome: Outcome,
    record: Option<&JobRecord>,
) -> Ended {
    let result_file = store.logs().result_file(name, at);
    Ended {
        name: name.clone(),
        outcome,
        exit_code: record.and_then(|r| r.exit_code),
        duration_ms: record.and_then(|r| r.duration_ms),
        started_unix_ms: record.map(|r| r.started_unix_ms),
        attempts: record.map_or(1, |r| r.attempt),
        reason: record.and_then(|r| r.reason.clone()),
        log: Some(store.log_path(name, at)),
        result: read_result(store, name, at),
        result_file: Some(result_file),
    }
}

/// The job's result file as JSON, if it wrote a small valid one (read
/// safely: a FIFO there never holds up the batch).
fn read_result(store: &dyn Store, name: &JobName, at: &RunAt) -> Option<serde_json::Value> {
    let text = store.logs().read_result(name, at, MAX_RESULT_BYTES)?;
    serde_json::from_slice(&text).ok()
}
