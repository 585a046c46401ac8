//! The [`Launcher`] of today: every batch job is an ordinary detached
//! jobwatch job (what `jobwatch run NAME --detach` starts), so `status`,
//! `wait`, `kill`, `logs` and the MCP server see it like any other; the
//! batch waits for them with the library's event-driven waiter.

use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

use super::run::{Ended, Launch, LaunchError, Launcher, Seen};
use crate::classify::{JobState, classify};
use crate::detach::{Placement, spawn_detached};
use crate::model::{JobName, JobRecord, Outcome};
use crate::recover::kill_job;
use crate::store::file::FileStore;
use crate::store::{RunAt, Store, Watch, WatchFor};
use crate::supervise::RunSpec;
use crate::wait::{Verdict, WaitMode, WaitSpec, wait_with};

/// Largest result file read for a cost: a result is a small JSON object.
const MAX_RESULT_BYTES: u64 = 1 << 20;

/// Starts batch jobs as detached jobwatch jobs in one jobs directory.
pub struct Detached {
    store: FileStore,
    /// One watch for the whole batch (every job and judge name), kept
    /// across waits.
    watch: Box<dyn Watch>,
    /// The wrappers this process spawned: reaped once they exit, so a long
    /// batch leaves no zombies.
    wrappers: Mutex<Vec<Child>>,
}

impl Detached {
    /// A launcher for jobs in `dir`; `names` are every name the batch may
    /// run (jobs and judges).
    pub fn new(store: &FileStore, names: &[JobName]) -> Detached {
        Detached {
            store: store.clone(),
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
    fn start(&self, job: &Launch) -> Result<(), LaunchError> {
        if !job.cwd.is_dir() {
            return Err(LaunchError(format!(
                "cwd {} is not a directory",
                job.cwd.display()
            )));
        }
        let spec = RunSpec {
            name: job.name.clone(),
            command: job.command.iter().map(Into::into).collect(),
            settings: job.settings,
            echo_output: false,
            breaker: job.breaker.clone(),
        };
        let place = Placement {
            cwd: Some(job.cwd.clone()),
            env: job.env.clone(),
        };
        let (_, wrapper) = spawn_detached(&self.store, self.store.path(), &spec, &place)
            .map_err(|e| LaunchError(e.message))?;
        self.wrappers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(wrapper);
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
        grace: Option<Duration>,
    ) -> Result<(), LaunchError> {
        let store = &self.store;
        let grace = grace.unwrap_or_else(|| {
            classify(store.snapshot(name), store.now(), None)
                .record()
                .map_or(Duration::from_secs(5), |r| r.settings.grace())
        });
        kill_job(store, name, Outcome::Killed, reason, grace)
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
