//! Acting on a job from outside its wrapper: finishing the record of a lost
//! job, and killing a job on request (`jobwatch kill`, a waiter's timeout or
//! hang verdict). The wrapper stays the one that writes the final record
//! while it lives; these paths only write it when it is gone.

use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use crate::breaker;
use crate::classify::{JobState, WrapperState, classify, observe, wrapper_state};
use crate::kill::{JobTarget, KillReport, terminate};
use crate::protocol::atomic::WriteError;
use crate::protocol::lock::{JobLock, LockError};
use crate::protocol::record::{Finalizer, KillRequest, rfc3339};
use crate::protocol::status_file::write_status_once;
use crate::protocol::{JobEnd, JobPaths, JobRecord, JobsDir, Outcome};
use crate::sys::proc::{self, ProcessId};

/// The reason recorded when an observer finds the wrapper gone.
pub const WRAPPER_VANISHED: &str = "the wrapper vanished without a status";

/// How long to wait for a live wrapper to write the final status after its
/// command was killed from outside.
const WRAPPER_FINISH_WAIT: Duration = Duration::from_secs(10);

/// Recovering or killing a job failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The job's files cannot be trusted.
    #[error("job {name}: {reason}")]
    Invalid {
        /// The job.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No such job.
    #[error("no job named {0}")]
    Missing(String),
    /// The job runs on another machine.
    #[error("job {name} runs on host {host}; its processes can only be signalled from there")]
    Elsewhere {
        /// The job.
        name: String,
        /// Its host.
        host: String,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Taking the job's lock failed.
    #[error(transparent)]
    Lock(LockError),
}

/// The processes of the job described by `record`, seen from outside.
pub fn target_of(record: &JobRecord) -> JobTarget {
    JobTarget {
        job_id: record.job_id.clone(),
        leader: record
            .child_pid
            .zip(record.child_start_time)
            .map(|(pid, start_time)| ProcessId { pid, start_time }),
        wrapper: None,
        born_after: Some(record.child_start_time.unwrap_or(record.wrapper_start_time)),
    }
}

/// Finishes a job whose wrapper is gone: kills what is left of it and
/// writes the final record and status, under the job's lock so that only
/// one observer does it. Returns the final state, which may be another
/// observer's verdict if one was faster.
pub fn finalize_lost(
    paths: &JobPaths,
    grace: Duration,
    why: &str,
) -> Result<JobState, RecoverError> {
    let lock = match JobLock::try_acquire(&paths.lock()) {
        Ok(lock) => lock,
        // Another observer is finishing this run, or a new run of the name
        // holds the lock: the files will tell once it is done.
        // The wait is bounded by the kill the holder may be doing.
        Err(LockError::Held) => {
            let deadline = Instant::now() + grace + WRAPPER_FINISH_WAIT;
            let settled = |s: &JobState| !matches!(s, JobState::Lost { .. });
            return Ok(poll_state(paths, deadline, settled));
        }
        Err(e) => return Err(RecoverError::Lock(e)),
    };
    let state = classify(observe(paths), SystemTime::now(), None);
    let JobState::Lost { record } = state else {
        return Ok(state);
    };
    // Another host's wrapper may be alive and unreachable; its final record
    // is its own to write. Report the verdict without writing it.
    if wrapper_state(&record) == WrapperState::Elsewhere {
        return Ok(JobState::Lost { record });
    }
    finish_lost(paths, *record, grace, why)?;
    drop(lock);
    Ok(classify(observe(paths), SystemTime::now(), None))
}

/// Re-reads the job's files every 5 ms until `settled` holds for what they
/// say, or `deadline` passes; returns the last state read.
fn poll_state(
    paths: &JobPaths,
    deadline: Instant,
    settled: impl Fn(&JobState) -> bool,
) -> JobState {
    loop {
        let state = classify(observe(paths), SystemTime::now(), None);
        if settled(&state) || Instant::now() >= deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// With the job's lock held: kills what is left of a run whose wrapper is
/// gone and writes its final record and status (`lost`).
pub fn finish_lost(
    paths: &JobPaths,
    mut record: JobRecord,
    grace: Duration,
    why: &str,
) -> Result<JobRecord, WriteError> {
    // PIDs from another boot or host mean nothing here: signal nothing.
    let local = record.boot_id == proc::boot_id() && record.host == proc::hostname();
    let report = if local {
        terminate(&target_of(&record), Signal::TERM, grace, &mut || false)
    } else {
        KillReport::default()
    };
    let end = JobEnd {
        outcome: Outcome::Lost,
        exit_code: None,
        signal: None,
        reason: Some(lost_reason(why, &report)),
    };
    record.finish(&end, Finalizer::Waiter, SystemTime::now());
    record.write(&paths.record())?;
    // A lost run is a failure to its breaker, counted before the status
    // appears (as the wrapper would have done).
    if let Err(e) = breaker::record_job(&JobsDir::already_checked(paths.dir()), &record) {
        // Never blocks: a stalled stderr must not hold up the status.
        crate::sys::stdio::notice(format_args!("{}: {e}", record.name));
    }
    write_status_once(&paths.status(), &record, Outcome::Lost)?;
    Ok(record)
}

fn lost_reason(why: &str, report: &KillReport) -> String {
    let mut s = why.to_owned();
    if report.found > 0 {
        s.push_str(&format!("; killed {} remaining process(es)", report.found));
    }
    if !report.survivors.is_empty() {
        s.push_str(&format!("; could not kill {:?}", report.survivors));
    }
    s
}

/// Kills a running job from outside its wrapper and records why: writes
/// `NAME.kill` first (so the wrapper records `outcome`), terminates the
/// process tree, then waits for the final status.
pub fn kill_job(
    paths: &JobPaths,
    outcome: Outcome,
    reason: &str,
    grace: Duration,
) -> Result<JobState, RecoverError> {
    let name = paths.name().to_string();
    let state = classify(observe(paths), SystemTime::now(), None);
    // Another host's run cannot be signalled from here, whether it still
    // beats (running) or stopped beating (lost): refuse, rather than report
    // a kill that never happened.
    if let JobState::Running { record, .. }
    | JobState::Hung { record, .. }
    | JobState::Lost { record } = &state
        && wrapper_state(record) == WrapperState::Elsewhere
    {
        return Err(RecoverError::Elsewhere {
            name,
            host: record.host.clone(),
        });
    }
    let record = match state {
        JobState::Finished { .. } => return Ok(state),
        JobState::Missing => return Err(RecoverError::Missing(name)),
        JobState::Invalid { reason } => return Err(RecoverError::Invalid { name, reason }),
        JobState::Lost { .. } => {
            return finalize_lost(paths, grace, WRAPPER_VANISHED);
        }
        JobState::Running { record, .. } | JobState::Hung { record, .. } => record,
    };
    let request = KillRequest {
        job_id: record.job_id.clone(),
        outcome,
        reason: reason.to_owned(),
        at: rfc3339(SystemTime::now()),
    };
    request.write(&paths.kill_request())?;
    terminate(&target_of(&record), Signal::TERM, grace, &mut || false);
    wait_for_final(paths, &record, grace)
}

/// Waits (bounded) for the wrapper to write the final status; finishes the
/// job itself if the wrapper turns out to be gone.
fn wait_for_final(
    paths: &JobPaths,
    record: &JobRecord,
    grace: Duration,
) -> Result<JobState, RecoverError> {
    let same_run = |s: &JobState| s.record().is_some_and(|r| r.job_id == record.job_id);
    let deadline = Instant::now() + WRAPPER_FINISH_WAIT;
    let state = poll_state(paths, deadline, |s| {
        matches!(s, JobState::Finished { .. } | JobState::Lost { .. }) || !same_run(s)
    });
    match state {
        JobState::Lost { .. } if same_run(&state) => finalize_lost(paths, grace, WRAPPER_VANISHED),
        other => Ok(other),
    }
}
