//! The waiter: blocks until jobs reach an outcome, woken by its store's
//! [`Watch`] (events, or polls), and acts on what the store holds: a
//! finished job is reported, a lost job is finished and its remains killed,
//! a hung job or one past the waiter's time limit is killed and recorded as
//! such. What to do about one look is the pure [`decide`].
//!
//! Two waits also read a run's log as it grows: [`wait_until_log`] (until a
//! line matches) and [`follow`] (copy it until the run ends).

mod bound;
pub mod follow;
pub mod until_log;

use std::time::{Duration, Instant, SystemTime};

use crate::classify::{JobState, classify};
use crate::model::{JobName, JobRecord, Outcome};
use crate::recover::{RecoverError, WRAPPER_VANISHED, claim_and_finish_lost, kill_run};
use crate::store::{RunAt, Store, Watch, WatchFor};
use bound::{Located, RunBinding, locate, own_verdict};

pub use bound::archived_verdict;
pub use follow::{FollowError, FollowSpec, follow};
pub use until_log::{LogMatch, LogWait, wait_until_log};

/// Whether to return when all jobs are done or when the first one is
/// (`all`, `any` where a front end takes a word).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitMode {
    /// Every job must reach an outcome (the default).
    #[default]
    All,
    /// The first outcome ends the wait.
    Any,
}

impl WaitMode {
    /// Both modes, in the order they are offered.
    pub const ALL: [WaitMode; 2] = [WaitMode::All, WaitMode::Any];

    /// The word for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitMode::All => "all",
            WaitMode::Any => "any",
        }
    }

    /// What the mode waits for, in one line.
    pub fn help(self) -> &'static str {
        match self {
            WaitMode::All => "Return when every job has an outcome (default).",
            WaitMode::Any => "Return when the first job has one.",
        }
    }
}

/// What to wait for and how.
#[derive(Debug, Clone)]
pub struct WaitSpec {
    /// The jobs.
    pub names: Vec<JobName>,
    /// All or any.
    pub mode: WaitMode,
    /// The waiter's own time limit.
    pub timeout: Option<Duration>,
    /// Overrides the jobs' stale threshold.
    pub stale: Option<Duration>,
    /// Poll at this interval instead of using events.
    pub poll: Option<Duration>,
    /// Kill jobs still running when the time limit passes.
    pub kill_on_timeout: bool,
    /// Grace period for kills; default: each job's own.
    pub grace: Option<Duration>,
    /// The calling process exits right after the wait (the CLI): the slow
    /// inotify teardown is then moved off its exit path.
    pub exits_after: bool,
}

/// One job's verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The job.
    pub name: JobName,
    /// Which run it is about: the current one, or one archived meanwhile
    /// (a report then names its archived log).
    pub at: RunAt,
    /// The outcome.
    pub outcome: Outcome,
    /// The final record, when there is one.
    pub record: Option<JobRecord>,
    /// Whether it still runs (a `--no-kill` timeout).
    pub running: bool,
}

impl Verdict {
    /// A verdict on a job that is no longer running.
    pub fn ended(name: &JobName, at: RunAt, outcome: Outcome, record: Option<JobRecord>) -> Self {
        Self {
            name: name.clone(),
            at,
            outcome,
            record,
            running: false,
        }
    }
}

/// Waiting failed before any verdict.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// A job acting on which failed.
    #[error(transparent)]
    Recover(#[from] RecoverError),
    /// `--until-log` reads one job's log; this many names were given.
    #[error("--until-log waits on exactly one job's log, but {0} job names were given")]
    UntilLogNames(usize),
    /// Reading the job's log failed.
    #[error("cannot read {path}: {source}")]
    Log {
        /// The log.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The watch a wait per `spec` needs.
fn watch_for(spec: &WaitSpec) -> WatchFor {
    WatchFor {
        poll: spec.poll,
        exits_after: spec.exits_after,
        ..WatchFor::default()
    }
}

/// Waits per `spec`; returns a verdict per job that reached one, in the
/// order of `spec.names` (with `Any`, only the finished ones).
pub fn wait(store: &dyn Store, spec: &WaitSpec) -> Result<Vec<Verdict>, WaitError> {
    let watch = store.watch(&spec.names, watch_for(spec));
    wait_with(store, spec, watch.as_ref())
}

/// [`wait`], woken by `watch` (which must watch at least `spec.names`): for
/// a caller that waits again and again, such as a batch, and keeps one
/// watch instead of paying for a new one (and its slow close) per wait.
/// `spec.poll` and `spec.exits_after` are then `watch`'s own.
pub fn wait_with(
    store: &dyn Store,
    spec: &WaitSpec,
    watch: &dyn Watch,
) -> Result<Vec<Verdict>, WaitError> {
    let jobs = &spec.names;
    let started = Instant::now();
    // A limit too far away for the clock never comes.
    let deadline = spec.timeout.and_then(|t| started.checked_add(t));
    let mut verdicts: Vec<Option<Verdict>> = vec![None; jobs.len()];
    let mut vanished_since: Vec<Option<Instant>> = vec![None; jobs.len()];
    // The run of each name seen first: its outcome is the one reported.
    let mut runs: Vec<Option<String>> = vec![None; jobs.len()];
    let mut first_pass = true;
    loop {
        let mut next_check = Duration::from_secs(3600);
        for (i, job) in jobs.iter().enumerate() {
            if verdicts[i].is_some() {
                continue;
            }
            match bound_step(store, job, spec, first_pass, &mut runs[i])? {
                Step::Done(v) => verdicts[i] = Some(*v),
                Step::Pending { recheck_in } => {
                    vanished_since[i] = None;
                    next_check = next_check.min(recheck_in);
                }
                Step::Vanished => {
                    let since = *vanished_since[i].get_or_insert_with(Instant::now);
                    if since.elapsed() >= VANISHED_LIMIT {
                        return Err(RecoverError::Missing(job.to_string()).into());
                    }
                    next_check = next_check.min(Duration::from_millis(50));
                }
            }
        }
        first_pass = false;
        let done = verdicts.iter().filter(|v| v.is_some()).count();
        let finished = match spec.mode {
            WaitMode::All => done == jobs.len(),
            WaitMode::Any => done > 0,
        };
        if finished {
            return Ok(verdicts.into_iter().flatten().collect());
        }
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return time_out(store, jobs, verdicts, &runs, spec);
            }
            next_check = next_check.min(left);
        }
        watch.wait(next_check);
    }
}

enum Step {
    Done(Box<Verdict>),
    Pending {
        recheck_in: Duration,
    },
    /// The job's state disappeared after it was first seen.
    Vanished,
}

/// How long a job's state may be missing (mid-restart) before the waiter
/// reports it gone.
const VANISHED_LIMIT: Duration = Duration::from_secs(5);

/// [`step`] for the run `run` of the job (bound to the current run at the
/// first look): if the name was started again meanwhile, the bound run's own
/// verdict is read from history, and the new run is neither reported nor
/// acted on.
fn bound_step(
    store: &dyn Store,
    name: &JobName,
    spec: &WaitSpec,
    first_pass: bool,
    run: &mut impl RunBinding,
) -> Result<Step, RecoverError> {
    match locate(store, name, run) {
        Located::Archived(v) => return Ok(Step::Done(v)),
        Located::Gone => return Ok(Step::Vanished),
        Located::Current => {}
    }
    Ok(match step(store, name, spec, first_pass)? {
        Step::Done(v) => match own_verdict(store, run, *v) {
            Some(v) => Step::Done(Box::new(v)),
            None => Step::Vanished,
        },
        other => other,
    })
}

/// What the waiter does about one look at a job: the pure part of a step,
/// decided from the job's state and the time alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Its wrapper is gone without a status: finish it (commit its recorded
    /// outcome, or finish it as lost), then look again.
    Finish {
        /// The run's record.
        record: Box<JobRecord>,
    },
    /// No progress for longer than allowed, and its wrapper did not act:
    /// kill it as hung (with this reason), then look again.
    KillHung {
        /// The run's record.
        record: Box<JobRecord>,
        /// The reason to record.
        reason: String,
    },
    /// It reached an outcome.
    Done {
        /// The outcome.
        outcome: Outcome,
        /// The final record, when it has one.
        record: Option<Box<JobRecord>>,
    },
    /// Still going: look again within this long.
    Pending {
        /// When to look again.
        recheck_in: Duration,
    },
    /// Its state vanished after it was first seen (a restart in progress).
    Vanished,
    /// No such job (at the first look).
    Missing,
    /// Its state cannot be trusted.
    Invalid {
        /// One line on why.
        reason: String,
    },
}

/// The waiter's decision on one look at a job in `state` at `now`.
pub fn decide(state: JobState, now: SystemTime, first_pass: bool) -> Decision {
    match state {
        JobState::Lost { record } | JobState::Recorded { record } => Decision::Finish { record },
        JobState::Hung {
            record,
            last_progress,
        } => {
            let quiet = last_progress
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            let reason = format!(
                "no progress for {} (found by wait; the wrapper did not act)",
                humantime::format_duration(Duration::from_secs(quiet.as_secs()))
            );
            Decision::KillHung { record, reason }
        }
        other => settle(other, now, first_pass),
    }
}

/// The verdict on a state the waiter has acted on (or need not act on).
pub fn settle(state: JobState, now: SystemTime, first_pass: bool) -> Decision {
    match state {
        JobState::Finished { outcome, record } => Decision::Done { outcome, record },
        JobState::Running { hung_at, .. } => Decision::Pending {
            recheck_in: hung_at
                .duration_since(now)
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(5)),
        },
        // Killed but the wrapper has not committed yet: report the verdict
        // rather than wait on a wrapper that stopped working.
        JobState::Hung { record, .. } => Decision::Done {
            outcome: Outcome::Hung,
            record: Some(record),
        },
        JobState::Lost { record } => Decision::Done {
            outcome: Outcome::Lost,
            record: Some(record),
        },
        // Committed by nobody here (another host's run): the record is the
        // outcome all the same.
        JobState::Recorded { record } => Decision::Done {
            outcome: record.outcome.unwrap_or(Outcome::Lost),
            record: Some(record),
        },
        JobState::Missing if first_pass => Decision::Missing,
        // Seen before: the name is being restarted and its new state
        // follows within moments; state gone for longer was removed.
        JobState::Missing => Decision::Vanished,
        JobState::Invalid { reason } => Decision::Invalid { reason },
    }
}

/// Looks at one job once and acts on what the store holds.
fn step(
    store: &dyn Store,
    name: &JobName,
    spec: &WaitSpec,
    first_pass: bool,
) -> Result<Step, RecoverError> {
    let grace = |r: &JobRecord| spec.grace.unwrap_or(r.settings.grace());
    let state = classify(store.snapshot(name), store.now(), spec.stale);
    let decision = match decide(state, store.now(), first_pass) {
        Decision::Finish { record } => {
            let state = claim_and_finish_lost(store, name, grace(&record), WRAPPER_VANISHED)?;
            settle(state, store.now(), first_pass)
        }
        Decision::KillHung { record, reason } => {
            let state = kill_run(
                store,
                name,
                Some(&record.job_id),
                Outcome::Hung,
                &reason,
                grace(&record),
            )?;
            settle(state, store.now(), first_pass)
        }
        other => other,
    };
    Ok(match decision {
        Decision::Done { outcome, record } => Step::Done(Box::new(Verdict::ended(
            name,
            RunAt::Current,
            outcome,
            record.map(|r| *r),
        ))),
        Decision::Pending { recheck_in } => Step::Pending { recheck_in },
        Decision::Vanished => Step::Vanished,
        Decision::Missing => return Err(RecoverError::Missing(name.to_string())),
        Decision::Invalid { reason } => {
            return Err(RecoverError::Invalid {
                name: name.to_string(),
                reason,
            });
        }
        // Acting on a state settles it.
        Decision::Finish { .. } | Decision::KillHung { .. } => {
            unreachable!("settle never asks to act")
        }
    })
}

/// The waiter's time limit passed: kill what still runs (unless told not
/// to) and report `timeout` for it. `runs` holds the run each job's wait is
/// bound to (if known): a name that moved on to a new run meanwhile gets
/// its bound run's own verdict, and the new run is left alone.
fn time_out(
    store: &dyn Store,
    jobs: &[JobName],
    verdicts: Vec<Option<Verdict>>,
    runs: &[Option<String>],
    spec: &WaitSpec,
) -> Result<Vec<Verdict>, WaitError> {
    let limit = humantime::format_duration(spec.timeout.unwrap_or_default());
    let mut out = Vec::new();
    for (i, (job, verdict)) in jobs.iter().zip(verdicts).enumerate() {
        if let Some(v) = verdict {
            out.push(v);
            continue;
        }
        let run = runs.get(i).and_then(|r| r.as_deref());
        let record = store.snapshot(job).record.ok().flatten();
        if let (Some(run), Some(current)) = (run, &record)
            && current.job_id != run
            && let Some(v) = archived_verdict(store, job, run)
        {
            out.push(v);
            continue;
        }
        if !spec.kill_on_timeout {
            out.push(Verdict {
                name: job.clone(),
                at: RunAt::Current,
                outcome: Outcome::Timeout,
                record,
                running: true,
            });
            continue;
        }
        let reason = format!("still running after wait --timeout {limit}; killed");
        let grace = spec.grace.unwrap_or_else(|| {
            record
                .as_ref()
                .map_or(Duration::from_secs(5), |r| r.settings.grace())
        });
        let state = kill_run(store, job, run, Outcome::Timeout, &reason, grace)?;
        let (outcome, record) = match state {
            JobState::Finished { outcome, record } => (outcome, record.map(|r| *r)),
            other => (Outcome::Timeout, other.record().cloned()),
        };
        out.push(Verdict::ended(job, RunAt::Current, outcome, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StatusWord;
    use crate::store::memory::MemoryStore;
    use crate::store::memory::fixture::{ended, name, record};
    use crate::store::{ClaimWait, Holder};

    fn look(store: &MemoryStore, job: &JobName, first_pass: bool) -> Decision {
        decide(
            classify(store.snapshot(job), store.now(), None),
            store.now(),
            first_pass,
        )
    }

    #[test]
    fn each_look_is_decided_from_the_state_and_the_time_alone() {
        let store = MemoryStore::new();
        let t0 = store.now();
        let j = name("j");
        assert_eq!(look(&store, &j, true), Decision::Missing);
        assert_eq!(look(&store, &j, false), Decision::Vanished, "mid-restart");
        store.put_record(&j, record("j", "r1", t0));
        store.set_holder("r1", Holder::Alive);
        store.put_output(&j, t0, &[]);
        assert_eq!(
            look(&store, &j, true),
            Decision::Pending {
                recheck_in: Duration::from_secs(12)
            },
            "look again when it would turn hung"
        );
        store.advance(Duration::from_secs(15));
        match look(&store, &j, false) {
            Decision::KillHung { record, reason } => {
                assert_eq!(record.job_id, "r1");
                assert_eq!(
                    reason,
                    "no progress for 15s (found by wait; the wrapper did not act)"
                );
            }
            other => panic!("{other:?}"),
        }
        store.set_holder("r1", Holder::Dead);
        assert!(matches!(look(&store, &j, false), Decision::Finish { .. }));
        store.put_record(&j, ended(record("j", "r1", t0), Outcome::Timeout, t0));
        store.put_status(&j, StatusWord::Failed);
        match look(&store, &j, false) {
            Decision::Done { outcome, record } => {
                assert_eq!(outcome, Outcome::Timeout);
                assert_eq!(record.unwrap().job_id, "r1");
            }
            other => panic!("{other:?}"),
        }
        store.damage_record(&j, "malformed j.job.json: eof");
        assert_eq!(
            look(&store, &j, false),
            Decision::Invalid {
                reason: "malformed j.job.json: eof".into()
            }
        );
    }

    #[test]
    fn acting_on_a_hung_or_lost_run_settles_what_the_waiter_reports() {
        let store = MemoryStore::new();
        let t0 = store.now();
        let rec = || Box::new(record("j", "r1", t0));
        // Killed, but its wrapper has not committed: the verdict stands.
        let hung = JobState::Hung {
            record: rec(),
            last_progress: None,
        };
        assert!(matches!(
            settle(hung, t0, false),
            Decision::Done {
                outcome: Outcome::Hung,
                ..
            }
        ));
        // Another host's run that nobody here may finish.
        let lost = JobState::Lost { record: rec() };
        assert!(matches!(
            settle(lost, t0, false),
            Decision::Done {
                outcome: Outcome::Lost,
                ..
            }
        ));
        let mut recorded = record("j", "r1", t0);
        recorded.outcome = Some(Outcome::Success);
        let recorded = JobState::Recorded {
            record: Box::new(recorded),
        };
        assert!(matches!(
            settle(recorded, t0, false),
            Decision::Done {
                outcome: Outcome::Success,
                ..
            }
        ));
    }

    #[test]
    fn a_waiter_sleeps_on_the_store_and_wakes_when_the_run_is_committed() {
        let store = MemoryStore::new();
        let t0 = store.now();
        let j = name("j");
        store.put_record(&j, record("j", "r1", t0));
        store.set_holder("r1", Holder::Alive);
        let spec = WaitSpec {
            names: vec![j.clone()],
            mode: WaitMode::All,
            timeout: None,
            stale: None,
            poll: None,
            kill_on_timeout: false,
            grace: None,
            exits_after: false,
        };
        let verdicts = std::thread::scope(|s| {
            let waiter = s.spawn(|| wait(&store, &spec));
            let mut claim = store.claim(&j, ClaimWait::No).unwrap();
            let done = ended(record("j", "r1", t0), Outcome::Success, t0);
            claim.write_record(&done).unwrap();
            claim.commit(&done).unwrap();
            drop(claim);
            waiter.join().unwrap()
        })
        .unwrap();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].outcome, Outcome::Success);
        assert_eq!(verdicts[0].at, RunAt::Current);
        assert_eq!(verdicts[0].record.as_ref().unwrap().job_id, "r1");
    }
}
