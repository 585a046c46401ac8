//! `kill`: a job's whole process tree (TERM, the grace, KILL), its outcome
//! recorded as `killed` by its wrapper (or by this process if the wrapper
//! is gone), and the job's result afterwards. A job that already had an
//! outcome keeps it: nothing is killed and the report says so.

use std::time::Duration;

use crate::classify::{JobState, classify};
use crate::model::{JobName, Outcome};
use crate::recover::{RecoverError, kill_job};
use crate::report::{JobReport, KillReport};
use crate::spec::DEFAULT_GRACE;
use crate::store::{RunAt, Store};

/// A kill failed: no such job, its state cannot be trusted, it runs on
/// another host, or its state could not be written (the finisher's and
/// killer's error, [`RecoverError`]).
pub type KillError = RecoverError;

/// What to kill, and how.
#[derive(Debug, Clone)]
pub struct KillJob<'a> {
    /// The job.
    pub name: &'a JobName,
    /// Between SIGTERM and SIGKILL; default: the job's own grace.
    pub grace: Option<Duration>,
    /// The reason recorded (who asked: `killed by jobwatch kill`).
    pub reason: &'a str,
}

/// Kills the job and reports its result (with no log tail).
pub fn kill(store: &dyn Store, req: &KillJob<'_>) -> Result<KillReport, KillError> {
    let name = req.name;
    let before = classify(store.snapshot(name), store.now(), None);
    let grace = req
        .grace
        .or_else(|| before.record().map(|r| r.settings.grace()))
        .unwrap_or(DEFAULT_GRACE);
    // A recorded outcome is the outcome, committed or not yet.
    let already_finished = matches!(
        before,
        JobState::Finished { .. } | JobState::Recorded { .. }
    );
    let after = kill_job(store, name, Outcome::Killed, req.reason, grace)?;
    let (outcome, record) = match &after {
        JobState::Finished { outcome, record } => (*outcome, record.as_deref()),
        // Still not committed: what the record holds, if it holds it.
        other => (
            other
                .record()
                .and_then(|r| r.outcome)
                .unwrap_or(Outcome::Killed),
            other.record(),
        ),
    };
    let mut report = JobReport::new(store, name, &RunAt::Current, outcome, record, 0);
    if already_finished {
        report.reason = Some(format!("already finished ({outcome}); nothing to kill"));
    }
    Ok(KillReport {
        report,
        already_finished,
    })
}

/// The grace a kill of `name` would use without one given: the job's own.
pub fn default_grace(store: &dyn Store, name: &JobName) -> Duration {
    classify(store.snapshot(name), store.now(), None)
        .record()
        .map_or(DEFAULT_GRACE, |r| r.settings.grace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StatusWord;
    use crate::store::memory::MemoryStore;
    use crate::store::memory::fixture::{ended, name, record};

    #[test]
    fn a_job_that_already_had_its_outcome_keeps_it_and_the_report_says_so() {
        let store = MemoryStore::new();
        let t0 = store.now();
        let j = name("j");
        store.put_record(&j, ended(record("j", "r1", t0), Outcome::Failed, t0));
        store.put_status(&j, StatusWord::Failed);
        let r = kill(
            &store,
            &KillJob {
                name: &j,
                grace: None,
                reason: "killed by the test",
            },
        )
        .unwrap();
        assert!(r.already_finished);
        assert_eq!(r.report.outcome, Outcome::Failed);
        assert_eq!(
            r.report.reason.as_deref(),
            Some("already finished (failed); nothing to kill")
        );
        assert_eq!(r.report.tail, None);
    }
}
