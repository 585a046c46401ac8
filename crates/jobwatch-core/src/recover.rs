//! Acting on a job from outside its wrapper: finishing the record of a lost
//! job, and killing a job on request (`jobwatch kill`, a waiter's timeout or
//! hang verdict). The wrapper stays the one that writes the final record
//! while it lives; these paths only write it when it is gone.

use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use crate::breaker;
use crate::classify::{JobState, classify};
use crate::kill::{JobTarget, KillReport, command_exited, terminate};
use crate::model::{Finalizer, JobEnd, JobName, JobRecord, KillRequest, Outcome, rfc3339};
use crate::store::{
    Claim, ClaimError, ClaimWait, Holder, SAFETY_RECHECK, Store, StoreError, WatchFor,
};
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
    /// Writing the job's state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Claiming the job's name failed.
    #[error(transparent)]
    Claim(ClaimError),
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

/// Claims the name and, under the claim, finishes a job whose wrapper is
/// gone ([`finish_lost`]), so that only one observer does it: a run whose
/// record already holds its outcome gets its status from that record; any
/// other is finished as `lost`, with what is left of it killed. When
/// someone else holds the claim, waits (bounded) for what they do. Returns
/// the final state, which may be another observer's verdict if one was
/// faster. (The name says what it does first: [`finish_lost`] is the part
/// that needs the claim, and takes it as an argument.)
pub fn claim_and_finish_lost(
    store: &dyn Store,
    name: &JobName,
    grace: Duration,
    why: &str,
) -> Result<JobState, RecoverError> {
    let mut claim = match store.claim(name, ClaimWait::No) {
        Ok(claim) => claim,
        // Another observer is finishing this run, or a new run of the name
        // holds the claim: the store will tell once it is done.
        // The wait is bounded by the kill the holder may be doing.
        Err(ClaimError::Held { .. } | ClaimError::AlreadyRunning { .. }) => {
            let deadline = Instant::now() + grace + WRAPPER_FINISH_WAIT;
            let settled = |s: &JobState| !needs_finisher(s);
            return Ok(wait_for_state(store, name, deadline, settled));
        }
        Err(e) => return Err(RecoverError::Claim(e)),
    };
    let state = classify(claim.snapshot(), store.now(), None);
    let record = match &state {
        JobState::Lost { record } | JobState::Recorded { record } => record,
        _ => return Ok(state),
    };
    // Another host's wrapper may be alive and unreachable; its final record
    // is its own to write. Report the verdict without writing it.
    if store.holder(record) == Holder::Elsewhere {
        return Ok(state);
    }
    finish_lost(store, claim.as_mut(), (**record).clone(), grace, why)?;
    drop(claim);
    Ok(classify(store.snapshot(name), store.now(), None))
}

/// Reads the name's state until `settled` holds for what it says, or
/// `deadline` passes; returns the last state read. Between looks it sleeps
/// on the store's [`Watch`](crate::store::Watch), which wakes it when the
/// status appears, the record changes or the wrapper's claim is released
/// (its death); the state is re-read at least every [`SAFETY_RECHECK`] all
/// the same, and a store that cannot see changes (a network filesystem)
/// polls. The watch exists before the first look, so no change after it
/// is missed.
fn wait_for_state(
    store: &dyn Store,
    name: &JobName,
    deadline: Instant,
    settled: impl Fn(&JobState) -> bool,
) -> JobState {
    let watch = store.watch(std::slice::from_ref(name), WatchFor::default());
    loop {
        let state = classify(store.snapshot(name), store.now(), None);
        let left = deadline.saturating_duration_since(Instant::now());
        if settled(&state) || left.is_zero() {
            return state;
        }
        watch.wait(left.min(SAFETY_RECHECK));
    }
}

/// Under the name's claim (the compiler checks it is held): kills what is
/// left of a run whose wrapper is gone and commits its final record and
/// status (`lost`). A record that already holds an outcome is final: its
/// status is committed from it instead.
pub fn finish_lost(
    store: &dyn Store,
    claim: &mut dyn Claim,
    mut record: JobRecord,
    grace: Duration,
    why: &str,
) -> Result<JobRecord, StoreError> {
    // PIDs from another boot, host or PID namespace mean nothing here:
    // signal nothing.
    let local = proc::place_of_record(&record) == proc::Place::Here;
    let kill_remains = |record: &JobRecord| {
        if local {
            terminate(&target_of(record), Signal::TERM, grace, &mut || false)
        } else {
            KillReport::default()
        }
    };
    if record.outcome.is_some() {
        // Its wrapper killed the leftovers before it wrote this record; a
        // process started since then still must not outlive the run.
        kill_remains(&record);
        return commit_recorded(store, claim, record);
    }
    let report = kill_remains(&record);
    let end = JobEnd {
        outcome: Outcome::Lost,
        exit_code: None,
        signal: None,
        reason: Some(lost_reason(why, &report)),
    };
    record.finish(&end, Finalizer::Waiter, SystemTime::now());
    claim.write_record(&record)?;
    // A lost run is a failure to its breaker, counted before the status
    // appears (as the wrapper would have done).
    if let Err(e) = breaker::record_job(store, &record) {
        // Never blocks: a stalled stderr must not hold up the status.
        crate::sys::stdio::notice(format_args!("{}: {e}", record.name));
    }
    claim.commit(&record)?;
    Ok(record)
}

/// Under the name's claim: commits the status of a run whose final record
/// was written by a wrapper that died before it committed it. The record
/// is the outcome: it is counted in the run's breaker (once: a breaker
/// counts each `job_id` once) and the status says what it says.
fn commit_recorded(
    store: &dyn Store,
    claim: &mut dyn Claim,
    record: JobRecord,
) -> Result<JobRecord, StoreError> {
    if let Err(e) = breaker::record_job(store, &record) {
        crate::sys::stdio::warn(format_args!("{}: {e}", record.name));
    }
    claim.commit(&record)?;
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

/// Kills a running job from outside its wrapper and records why: stores
/// a kill request first (so the wrapper records `outcome`), terminates the
/// process tree, then waits for the final status.
pub fn kill_job(
    store: &dyn Store,
    name: &JobName,
    outcome: Outcome,
    reason: &str,
    grace: Duration,
) -> Result<JobState, RecoverError> {
    kill_run(store, name, None, outcome, reason, grace)
}

/// [`kill_job`], but only if the name's current run is `run` (a `job_id`)
/// when given: a waiter kills the run it judged, never a new run of the
/// name started meanwhile (it then gets that new run's state back, untouched).
pub fn kill_run(
    store: &dyn Store,
    name: &JobName,
    run: Option<&str>,
    outcome: Outcome,
    reason: &str,
    grace: Duration,
) -> Result<JobState, RecoverError> {
    let state = classify(store.snapshot(name), store.now(), None);
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
        && store.holder(record) == Holder::Elsewhere
    {
        return Err(RecoverError::Elsewhere {
            name: name.to_string(),
            host: record.host.clone(),
        });
    }
    let record = match state {
        JobState::Finished { .. } => return Ok(state),
        JobState::Missing => return Err(RecoverError::Missing(name.to_string())),
        JobState::Invalid { reason } => {
            return Err(RecoverError::Invalid {
                name: name.to_string(),
                reason,
            });
        }
        JobState::Lost { .. } | JobState::Recorded { .. } => {
            return claim_and_finish_lost(store, name, grace, WRAPPER_VANISHED);
        }
        JobState::Running { record, .. } | JobState::Hung { record, .. } => record,
    };
    // The wrapper is committing an outcome it already recorded: nothing of
    // the run is left to kill, and that outcome stands.
    if record.outcome.is_none() {
        request_kill(store, name, &record, outcome, reason, grace)?;
        // Processes are only ever signalled on their own host: elsewhere,
        // the wrapper carries the request out itself.
        if proc::place_of_record(&record) == proc::Place::Here {
            terminate(&target_of(&record), Signal::TERM, grace, &mut || false);
        }
    }
    wait_for_final(store, name, &record, grace)
}

/// Stores a kill request for the run, before any signal, and wakes its
/// wrapper to carry the request out itself should this process go away. A
/// request already there for this run is left as it is: the first cause
/// wins.
fn request_kill(
    store: &dyn Store,
    name: &JobName,
    record: &JobRecord,
    outcome: Outcome,
    reason: &str,
    grace: Duration,
) -> Result<(), StoreError> {
    let pending = store.kill_request(name);
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
    store.request_kill(name, &request)?;
    let wrapper = ProcessId {
        pid: record.wrapper_pid,
        start_time: record.wrapper_start_time,
    };
    // SIGURG is ignored by default: a wrapper that does not listen for it
    // (another implementation) is unharmed. Elsewhere, the store's watch
    // wakes it.
    if proc::place_of_record(record) == proc::Place::Here {
        signal_process(wrapper, Signal::URG);
    }
    Ok(())
}

/// Waits (bounded) for the wrapper to commit the final status; finishes
/// the job itself if the wrapper turns out to be gone.
fn wait_for_final(
    store: &dyn Store,
    name: &JobName,
    record: &JobRecord,
    grace: Duration,
) -> Result<JobState, RecoverError> {
    let same_run = |s: &JobState| s.record().is_some_and(|r| r.job_id == record.job_id);
    // A wrapper elsewhere first gives the job the request's grace; if it is
    // cut off, the store reports it gone only once its lease expires.
    let remote = match proc::place_of_record(record) {
        proc::Place::Here => Duration::ZERO,
        _ => grace + store.holder_expiry(record),
    };
    let deadline = Instant::now() + WRAPPER_FINISH_WAIT + remote;
    let state = wait_for_state(store, name, deadline, |s| {
        matches!(s, JobState::Finished { .. }) || needs_finisher(s) || !same_run(s)
    });
    match state {
        s if needs_finisher(&s) && same_run(&s) => {
            claim_and_finish_lost(store, name, grace, WRAPPER_VANISHED)
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerKey;
    use crate::model::StatusWord;
    use crate::store::ClaimWait;
    use crate::store::memory::MemoryStore;
    use crate::store::memory::fixture::{ended, name, record};

    #[test]
    fn a_finisher_commits_the_outcome_a_dead_wrapper_recorded_and_counts_it_once() {
        let store = MemoryStore::new();
        let t0 = store.now();
        let j = name("j");
        let mut final_record = ended(record("j", "r1", t0), Outcome::Failed, t0);
        final_record.breaker = Some("k".into());
        store.put_record(&j, final_record.clone());
        // Its wrapper wrote the final record and died before the status.
        let state = claim_and_finish_lost(&store, &j, Duration::ZERO, WRAPPER_VANISHED).unwrap();
        assert!(
            matches!(
                state,
                JobState::Finished {
                    outcome: Outcome::Failed,
                    ..
                }
            ),
            "{state:?}"
        );
        assert_eq!(store.status(&j), Some(StatusWord::Failed));
        assert_eq!(
            store.record(&j),
            Some(final_record),
            "the record is left as it was"
        );
        let key = BreakerKey::parse("k").unwrap();
        assert_eq!(
            breaker::status(&store, &key).unwrap().consecutive_failures,
            1
        );
        // A second finisher finds nothing left to do, and counts nothing.
        claim_and_finish_lost(&store, &j, Duration::ZERO, WRAPPER_VANISHED).unwrap();
        assert_eq!(
            breaker::status(&store, &key).unwrap().consecutive_failures,
            1
        );
    }

    #[test]
    fn a_finisher_finishes_a_run_whose_wrapper_vanished_as_lost_under_its_claim() {
        let store = MemoryStore::new();
        let t0 = store.now();
        let j = name("j");
        store.put_record(&j, record("j", "r1", t0));
        let state = claim_and_finish_lost(&store, &j, Duration::ZERO, WRAPPER_VANISHED).unwrap();
        assert!(matches!(
            state,
            JobState::Finished {
                outcome: Outcome::Lost,
                ..
            }
        ));
        let lost = store.record(&j).unwrap();
        assert_eq!(lost.outcome, Some(Outcome::Lost));
        assert_eq!(lost.finalized_by, Some(Finalizer::Waiter));
        assert_eq!(lost.reason.as_deref(), Some(WRAPPER_VANISHED));
        assert_eq!(store.status(&j), Some(StatusWord::Failed));
        assert!(!store.is_claimed(&j), "the claim is released");
    }

    #[test]
    fn another_hosts_run_is_reported_lost_but_never_written() {
        let store = MemoryStore::new();
        let j = name("j");
        store.put_record(&j, record("j", "r1", store.now()));
        store.set_holder("r1", Holder::Elsewhere);
        // Silent for longer than any healthy wrapper allows.
        store.advance(Duration::from_secs(60));
        let state = claim_and_finish_lost(&store, &j, Duration::ZERO, WRAPPER_VANISHED).unwrap();
        assert_eq!(state.word(), "lost");
        assert_eq!(store.status(&j), None);
        assert_eq!(store.record(&j).unwrap().outcome, None);
    }

    /// Polls `cond` until it holds, for at most 10 s.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_killer_sleeps_on_the_stores_wake_ups_until_the_wrapper_commits() {
        let store = MemoryStore::new();
        let t0 = store.now();
        let j = name("j");
        store.put_record(&j, record("j", "r1", t0));
        store.set_holder("r1", Holder::Alive);
        let state = std::thread::scope(|s| {
            let killer =
                s.spawn(|| kill_job(&store, &j, Outcome::Killed, "by the test", Duration::ZERO));
            // Its request stored (the fixture's PIDs are nobody's: nothing
            // is signalled), the killer waits for the wrapper's status:
            // asleep on the store's watch, not re-reading on a timer.
            eventually("the killer sleeps on the store's watch", || {
                store.sleepers() == 1
            });
            let req = store.kill_request(&j).unwrap().expect("a kill request");
            let mut claim = store.claim(&j, ClaimWait::No).unwrap();
            let mut done = record("j", "r1", t0);
            done.finish(
                &JobEnd {
                    outcome: req.outcome,
                    exit_code: None,
                    signal: Some(15),
                    reason: Some(req.reason),
                },
                Finalizer::Wrapper,
                t0,
            );
            claim.write_record(&done).unwrap();
            claim.commit(&done).unwrap();
            drop(claim);
            killer.join().unwrap()
        })
        .unwrap();
        match state {
            JobState::Finished { outcome, record } => {
                assert_eq!(outcome, Outcome::Killed);
                assert_eq!(record.unwrap().reason.as_deref(), Some("by the test"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kill_request_is_stored_for_its_run_before_anything_else() {
        let store = MemoryStore::new();
        let j = name("j");
        let rec = record("j", "r1", store.now());
        request_kill(
            &store,
            &j,
            &rec,
            Outcome::Timeout,
            "too slow",
            Duration::ZERO,
        )
        .unwrap();
        // The first cause wins: a second request for the run changes nothing.
        request_kill(&store, &j, &rec, Outcome::Killed, "later", Duration::ZERO).unwrap();
        let req = store.kill_request(&j).unwrap().unwrap();
        assert_eq!(
            (req.job_id.as_str(), req.outcome, req.reason.as_str()),
            ("r1", Outcome::Timeout, "too slow")
        );
    }
}
