//! `logs --follow`: copy a run's log as it grows, woken by its writes, until
//! the run ends; then copy the rest and report how it ended.
//!
//! Following only reads: it never finishes a lost run or kills a hung one
//! (that is `wait`'s job). A run whose wrapper vanished ends the follow
//! with outcome `lost`; a run that looks hung is followed on, since its
//! wrapper (or a waiter) is what decides.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use super::Verdict;
use super::bound::{Located, Look, LookSchedule, locate, own_verdict};
use super::watch::{SAFETY_RECHECK, Wake, Wakeups};
use crate::classify::{JobState, classify, observe};
use crate::logfollow::{LogChunk, LogFollower};
use crate::model::{JobName, Outcome};
use crate::protocol::{JobPaths, JobsDir};

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
    dir: &JobsDir,
    name: &JobName,
    spec: &FollowSpec,
    out: &mut impl Write,
) -> Result<Verdict, FollowError> {
    let job = dir.job(name);
    let mut log = LogFollower::new(&job);
    let read_err = |source| FollowError::Read {
        path: job.log().display().to_string(),
        source,
    };
    if let Some(n) = spec.tail {
        log.start_at_last_lines(n).map_err(read_err)?;
    }
    let wakeups = Wakeups::with_log_writes(
        dir.path(),
        std::slice::from_ref(name),
        None,
        spec.exits_after,
    );
    let mut first_look = true;
    let mut schedule = LookSchedule::new();
    let mut wake = Wake::State;
    loop {
        copy_new(&job, &mut log, out)?;
        if schedule.due(wake) {
            match look(dir, &job, &mut log, first_look)? {
                Look::Ended(v) => {
                    // The run is over: what it wrote is all there now.
                    copy_new(&job, &mut log, out)?;
                    return Ok(*v);
                }
                Look::Pending(recheck_in) => schedule.pending(recheck_in),
                Look::Vanished if schedule.vanished() => {}
                Look::Vanished => return Err(FollowError::Missing(name.to_string())),
            }
            first_look = false;
        }
        wake = wakeups.wait(schedule.until_next());
    }
}

/// Reads the bound run's state, without acting on it.
fn look(
    dir: &JobsDir,
    job: &JobPaths,
    log: &mut LogFollower,
    first_look: bool,
) -> Result<Look, FollowError> {
    match locate(dir, job, log) {
        Located::Archived(v) => return Ok(Look::Ended(v)),
        Located::Gone => return Ok(Look::Vanished),
        Located::Current => {}
    }
    let now = SystemTime::now();
    let ended = |outcome, record| Verdict::ended(job, outcome, record);
    let v = match classify(observe(job), now, None) {
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
            return Err(FollowError::Missing(job.name().to_string()));
        }
        JobState::Missing => return Ok(Look::Vanished),
        JobState::Invalid { reason } => {
            return Err(FollowError::Invalid {
                name: job.name().to_string(),
                reason,
            });
        }
    };
    Ok(match own_verdict(dir, log, v) {
        Some(v) => Look::Ended(Box::new(v)),
        None => Look::Vanished,
    })
}

/// Copies what is new in the log to `out`, and flushes it: a partial line
/// is shown as soon as it is written.
fn copy_new(
    job: &JobPaths,
    log: &mut LogFollower,
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
                    path: job.log().display().to_string(),
                    source,
                });
            }
        }
    }
    out.flush().map_err(FollowError::Output)
}
