//! `beat`: an explicit proof of progress for a running job, from outside
//! it (inside, `touch "$JOBWATCH_HEARTBEAT"` does the same).

use crate::classify::{JobState, classify};
use crate::model::JobName;
use crate::store::{Store, StoreError};

/// A beat could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum BeatError {
    /// No such job.
    #[error("no job named {0}")]
    NoSuchJob(JobName),
    /// The job is not running: a beat would prove nothing.
    #[error("job {name} is not running ({state})")]
    NotRunning {
        /// The job.
        name: JobName,
        /// Its state.
        state: &'static str,
    },
    /// The store refused (a progress mark that is not the wrapper's own).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records progress for job `name`, which must be running.
pub fn beat(store: &dyn Store, name: &JobName) -> Result<(), BeatError> {
    match classify(store.snapshot(name), store.now(), None) {
        JobState::Running { .. } | JobState::Hung { .. } => {}
        JobState::Missing => return Err(BeatError::NoSuchJob(name.clone())),
        other => {
            return Err(BeatError::NotRunning {
                name: name.clone(),
                state: other.word(),
            });
        }
    }
    // The store refuses a progress mark that is not the wrapper's own
    // (protocol §3: never through a symlink, never blocking).
    store.beat(name, store.now())?;
    Ok(())
}
