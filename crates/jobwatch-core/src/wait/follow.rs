//! `logs --follow`: copy a run's log as it grows, woken by its writes, until
//! the run ends; then copy the rest and report how it ended.
//!
//! Following only reads: it never finishes a lost run or kills a hung one
//! (that is `wait`'s job). A run whose wrapper vanished ends the follow
//! with outcome `lost`; a run that looks hung is followed on, since its
//! wrapper (or a waiter) is what decides.

use std::io::{self, Write};
use std::time::Duration;

use super::Verdict;
use super::bound::{Located, Look, LookSchedule, locate, own_verdict};
use crate::classify::{JobState, classify};
use crate::logs::{LogChunk, LogFollower};
use crate::model::{JobName, Outcome};
use crate::store::{RunAt, SAFETY_RECHECK, Store, Wake, WatchFor};

/// How to follow.
#[derive(Debug, Clone, Default)]
pub struct FollowSpec {
    /// Start with the last N lines instead of the whole log.
    pub tail: Option<usize>,
    /// The calling process exits right after (see
    /// [`super::WaitSpec::exits_after`]).
    pub exits_after: bool,
}

/// Following failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// No job of that name (or its files vanished for good).
    #[error("no job named {0}")]
    Missing(String),
    /// The job's files cannot be trusted.
    #[error("job {name} is invalid: {reason}")]
    Invalid {
        /// The job.
        name: String,
        /// Why.
        reason: String,
    },
    /// Reading the log failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The log.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing the copy failed (a closed pipe is [`io::ErrorKind::BrokenPipe`]).
    #[error("cannot write the log: {0}")]
    Output(#[source] io::Error),
}

/// Copies the log of job `name`'s current run to `out` (from its start, or
/// its last `spec.tail` lines) and goes on copying what the run writes until
/// it ends; returns the run's verdict. Follows the log across truncation and
/// replacement within the run; a new run of the name is not followed.
pub fn follow(
    store: &dyn Store,
    name: &JobName,
    spec: &FollowSpec,
    out: &mut impl Write,
) -> Result<Verdict, FollowError> {
    let mut log = LogFollower::new(store, name);
    let read_err = |source| FollowError::Read {
        path: store.log_path(name, &RunAt::Current).display().to_string(),
        source,
    };
    if let Some(n) = spec.tail {
        log.start_at_last_lines(n).map_err(read_err)?;
    }
    let watch = store.watch(
        std::slice::from_ref(name),
        WatchFor {
            log_writes: true,
            exits_after: spec.exits_after,
            ..WatchFor::default()
        },
    );
    let mut first_look = true;
    let mut schedule = LookSchedule::new();
    let mut wake = Wake::State;
    loop {
        copy_new(store, name, &mut log, out)?;
        if schedule.due(wake) {
            match look(store, name, &mut log, first_look)? {
                Look::Ended(v) => {
                    // The run is over: what it wrote is all there now.
                    copy_new(store, name, &mut log, out)?;
                    return Ok(*v);
                }
                Look::Pending(recheck_in) => schedule.pending(recheck_in),
                Look::Vanished if schedule.vanished() => {}
                Look::Vanished => return Err(FollowError::Missing(name.to_string())),
            }
            first_look = false;
        }
        wake = watch.wait(schedule.until_next());
    }
}

/// Reads the bound run's state, without acting on it.
fn look(
    store: &dyn Store,
    name: &JobName,
    log: &mut LogFollower<'_>,
    first_look: bool,
) -> Result<Look, FollowError> {
    match locate(store, name, log) {
        Located::Archived(v) => return Ok(Look::Ended(v)),
        Located::Gone => return Ok(Look::Vanished),
        Located::Current => {}
    }
    let now = store.now();
    let ended = |outcome, record| Verdict::ended(name, RunAt::Current, outcome, record);
    let v = match classify(store.snapshot(name), now, None) {
        JobState::Finished { outcome, record } => ended(outcome, record.map(|r| *r)),
        JobState::Lost { record } => ended(Outcome::Lost, Some(*record)),
        // The wrapper died committing: its record is the run's outcome.
        JobState::Recorded { record } => {
            ended(record.outcome.unwrap_or(Outcome::Lost), Some(*record))
        }
        JobState::Running { hung_at, .. } => {
            let until_hung = hung_at.duration_since(now).unwrap_or_default();
            return Ok(Look::Pending(until_hung.max(Duration::from_millis(5))));
        }
        JobState::Hung { .. } => return Ok(Look::Pending(SAFETY_RECHECK)),
        JobState::Missing if first_look => {
            return Err(FollowError::Missing(name.to_string()));
        }
        JobState::Missing => return Ok(Look::Vanished),
        JobState::Invalid { reason } => {
            return Err(FollowError::Invalid {
                name: name.to_string(),
                reason,
            });
        }
    };
    Ok(match own_verdict(store, log, v) {
        Some(v) => Look::Ended(Box::new(v)),
        None => Look::Vanished,
    })
}

/// Copies what is new in the log to `out`, and flushes it: a partial line
/// is shown as soon as it is written.
fn copy_new(
    store: &dyn Store,
    name: &JobName,
    log: &mut LogFollower<'_>,
    out: &mut impl Write,
) -> Result<(), FollowError> {
    loop {
        match log.next_chunk() {
            Ok(Some(LogChunk::Bytes(bytes))) => {
                out.write_all(bytes).map_err(FollowError::Output)?;
            }
            Ok(Some(LogChunk::Restart)) => {}
            Ok(None) => break,
            Err(source) => {
                return Err(FollowError::Read {
                    path: store.log_path(name, &RunAt::Current).display().to_string(),
                    source,
                });
            }
        }
    }
    out.flush().map_err(FollowError::Output)
}
