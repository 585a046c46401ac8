//! Acting on a job from outside its wrapper: finishing the record of a lost
//! job, and killing a job on request (`jobwatch kill`, a waiter's timeout or
//! hang verdict). The wrapper stays the one that writes the final record
//! while it lives; these paths only write it when it is gone.

use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use crate::breaker;
use crate::classify::{JobState, WrapperState, classify, command_exited, observe, wrapper_state};
use crate::kill::{JobTarget, KillReport, terminate};
use crate::model::{Finalizer, KillRequest, rfc3339};
use crate::model::{JobEnd, JobRecord, Outcome};
use crate::protocol::atomic::WriteError;
use crate::protocol::lock::{JobLock, LockError};
use crate::protocol::record::read_json;
use crate::protocol::status_file::write_status_once;
use crate::protocol::{JobPaths, JobsDir};
use crate::sys::proc::{self, ProcessId};
use crate::sys::signal::signal_process;

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

/// Whether a state is a run whose wrapper is gone without a status, which
/// a finisher must complete: `lost`, or a recorded outcome to commit.
pub fn needs_finisher(state: &JobState) -> bool {
    matches!(state, JobState::Lost { .. } | JobState::Recorded { .. })
}

/// Finishes a job whose wrapper is gone, under the job's lock so that only
/// one observer does it: a run whose record already holds its outcome gets
/// its status from that record; any other is finished as `lost`, with what
/// is left of it killed. Returns the final state, which may be another
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
            let settled = |s: &JobState| !needs_finisher(s);
            return Ok(poll_state(paths, deadline, settled));
        }
        Err(e) => return Err(RecoverError::Lock(e)),
    };
    let state = classify(observe(paths), SystemTime::now(), None);
    let record = match &state {
        JobState::Lost { record } | JobState::Recorded { record } => record,
        _ => return Ok(state),
    };
    // Another host's wrapper may be alive and unreachable; its final record
    // is its own to write. Report the verdict without writing it.
    if wrapper_state(record) == WrapperState::Elsewhere {
        return Ok(state);
    }
    finish_lost(paths, (**record).clone(), grace, why)?;
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
/// gone and writes its final record and status (`lost`). A record that
/// already holds an outcome is final: its status is written from it
/// instead.
pub fn finish_lost(
    paths: &JobPaths,
    mut record: JobRecord,
    grace: Duration,
    why: &str,
) -> Result<JobRecord, WriteError> {
    // PIDs from another boot or host mean nothing here: signal nothing.
    let local = record.boot_id == proc::boot_id() && record.host == proc::hostname();
    let kill_remains = |record: &JobRecord| {
        if local {
            terminate(&target_of(record), Signal::TERM, grace, &mut || false)
        } else {
            KillReport::default()
        }
    };
    if let Some(outcome) = record.outcome {
        // Its wrapper killed the leftovers before it wrote this record; a
        // process started since then still must not outlive the run.
        kill_remains(&record);
        return commit_recorded(paths, record, outcome);
    }
    let report = kill_remains(&record);
    let end = JobEnd {
        outcome: Outcome::Lost,
        exit_code: None,
        signal: None,
        reason: Some(lost_reason(why, &report)),
    };
    record.finish(&end, Finalizer::Waiter, SystemTime::now());
    crate::protocol::record::write_record(&paths.record(), &record)?;
    // A lost run is a failure to its breaker, counted before the status
    // appears (as the wrapper would have done).
    if let Err(e) = breaker::record_job(&JobsDir::already_checked(paths.dir()), &record) {
        // Never blocks: a stalled stderr must not hold up the status.
        crate::sys::stdio::notice(format_args!("{}: {e}", record.name));
    }
    write_status_once(&paths.status(), &record, Outcome::Lost)?;
    Ok(record)
}

/// With the job's lock held: writes the status of a run whose final record
/// was written by a wrapper that died before it created the status. The
/// record is the outcome: it is counted in the run's breaker (once: a
/// breaker counts each `job_id` once) and the status says what it says.
fn commit_recorded(
    paths: &JobPaths,
    record: JobRecord,
    outcome: Outcome,
) -> Result<JobRecord, WriteError> {
    if let Err(e) = breaker::record_job(&JobsDir::already_checked(paths.dir()), &record) {
        crate::sys::stdio::warn(format_args!("{}: {e}", record.name));
    }
    write_status_once(&paths.status(), &record, outcome)?;
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
    kill_run(paths, None, outcome, reason, grace)
}

/// [`kill_job`], but only if the name's current run is `run` (a `job_id`)
/// when given: a waiter kills the run it judged, never a new run of the
/// name started meanwhile (it then gets that new run's state back, untouched).
pub fn kill_run(
    paths: &JobPaths,
    run: Option<&str>,
    outcome: Outcome,
    reason: &str,
    grace: Duration,
) -> Result<JobState, RecoverError> {
    let name = paths.name().to_string();
    let state = classify(observe(paths), SystemTime::now(), None);
    if let (Some(run), Some(current)) = (run, state.record())
        && current.job_id != run
    {
        return Ok(state);
    }
    // Another host's run cannot be signalled from here, whether it still
    // beats (running) or stopped beating (lost): refuse, rather than report
    // a kill that never happened.
    if let JobState::Running { record, .. }
    | JobState::Hung { record, .. }
    | JobState::Lost { record }
    | JobState::Recorded { record } = &state
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
        JobState::Lost { .. } | JobState::Recorded { .. } => {
            return finalize_lost(paths, grace, WRAPPER_VANISHED);
        }
        JobState::Running { record, .. } | JobState::Hung { record, .. } => record,
    };
    // The wrapper is committing an outcome it already recorded: nothing of
    // the run is left to kill, and that outcome stands.
    if record.outcome.is_none() {
        request_kill(paths, &record, outcome, reason, grace)?;
        terminate(&target_of(&record), Signal::TERM, grace, &mut || false);
    }
    wait_for_final(paths, &record, grace)
}

/// Writes `NAME.kill` for the run, before any signal, and wakes its wrapper
/// to carry the request out itself should this process go away. A request
/// already there for this run is left as it is: the first cause wins.
fn request_kill(
    paths: &JobPaths,
    record: &JobRecord,
    outcome: Outcome,
    reason: &str,
    grace: Duration,
) -> Result<(), WriteError> {
    let pending = read_json::<KillRequest>(&paths.kill_request());
    if matches!(&pending, Ok(Some(req)) if req.job_id == record.job_id) {
        return Ok(());
    }
    let request = KillRequest {
        job_id: record.job_id.clone(),
        outcome,
        reason: reason.to_owned(),
        at: rfc3339(SystemTime::now()),
        grace_ms: Some(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX)),
        // Checked before the request exists: an exit seen now came first.
        command_exited: command_exited(record),
    };
    crate::protocol::record::write_kill_request(&paths.kill_request(), &request)?;
    let wrapper = ProcessId {
        pid: record.wrapper_pid,
        start_time: record.wrapper_start_time,
    };
    // SIGURG is ignored by default: a wrapper that does not listen for it
    // (another implementation) is unharmed.
    signal_process(wrapper, Signal::URG);
    Ok(())
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
        matches!(s, JobState::Finished { .. }) || needs_finisher(s) || !same_run(s)
    });
    match state {
        s if needs_finisher(&s) && same_run(&s) => finalize_lost(paths, grace, WRAPPER_VANISHED),
        other => Ok(other),
    }
}
