//! The waiter: blocks until jobs reach an outcome, woken by filesystem
//! events (or polls), and acts on what their files say: a finished job is
//! reported, a lost job is finished and its remains killed, a hung job or
//! one past the waiter's time limit is killed and recorded as such.
//!
//! Two waits also read a run's log as it grows: [`wait_until_log`] (until a
//! line matches) and [`follow`] (copy it until the run ends).

mod bound;
pub mod follow;
pub mod until_log;
pub mod watch;

use std::time::{Duration, Instant, SystemTime};

use crate::classify::{JobState, classify, observe};
use crate::model::{JobName, JobRecord, Outcome};
use crate::protocol::{JobPaths, JobsDir};
use crate::recover::{RecoverError, WRAPPER_VANISHED, finalize_lost, kill_run};
use bound::{Located, RunBinding, locate, own_verdict};

pub use bound::archived_verdict;
pub use follow::{FollowError, FollowSpec, follow};
pub use until_log::{LogMatch, LogWait, wait_until_log};
pub use watch::Wakeups;

/// Whether to return when all jobs are done or when the first one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Every job must reach an outcome.
    All,
    /// The first outcome ends the wait.
    Any,
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
    /// The job's files.
    pub paths: JobPaths,
    /// The outcome.
    pub outcome: Outcome,
    /// The final record, when there is one.
    pub record: Option<JobRecord>,
    /// Whether it still runs (a `--no-kill` timeout).
    pub running: bool,
}

impl Verdict {
    /// A verdict on a job that is no longer running.
    pub fn ended(paths: &JobPaths, outcome: Outcome, record: Option<JobRecord>) -> Self {
        Self {
            paths: paths.clone(),
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

/// Waits per `spec`; returns a verdict per job that reached one, in the
/// order of `spec.names` (with `Any`, only the finished ones).
pub fn wait(dir: &JobsDir, spec: &WaitSpec) -> Result<Vec<Verdict>, WaitError> {
    let wakeups = Wakeups::new(dir.path(), &spec.names, spec.poll, spec.exits_after);
    wait_with(dir, spec, &wakeups)
}

/// [`wait`], woken by `wakeups` (which must watch at least `spec.names`):
/// for a caller that waits again and again, such as a batch, and keeps one
/// inotify descriptor instead of paying for a new one (and its slow close)
/// per wait. `spec.poll` and `spec.exits_after` are then `wakeups`' own.
pub fn wait_with(
    dir: &JobsDir,
    spec: &WaitSpec,
    wakeups: &Wakeups,
) -> Result<Vec<Verdict>, WaitError> {
    let jobs: Vec<JobPaths> = spec.names.iter().map(|n| dir.job(n)).collect();
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
            match bound_step(dir, job, spec, first_pass, &mut runs[i])? {
                Step::Done(v) => verdicts[i] = Some(*v),
                Step::Pending { recheck_in } => {
                    vanished_since[i] = None;
                    next_check = next_check.min(recheck_in);
                }
                Step::Vanished => {
                    let since = *vanished_since[i].get_or_insert_with(Instant::now);
                    if since.elapsed() >= VANISHED_LIMIT {
                        return Err(RecoverError::Missing(job.name().to_string()).into());
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
                return time_out(dir, &jobs, verdicts, &runs, spec);
            }
            next_check = next_check.min(left);
        }
        wakeups.wait(next_check);
    }
}

enum Step {
    Done(Box<Verdict>),
    Pending {
        recheck_in: Duration,
    },
    /// The job's files disappeared after it was first seen.
    Vanished,
}

/// How long a job's files may be missing (mid-restart) before the waiter
/// reports it gone.
const VANISHED_LIMIT: Duration = Duration::from_secs(5);

/// [`step`] for the run `run` of the job (bound to the current run at the
/// first look): if the name was started again meanwhile, the bound run's own
/// verdict is read from history, and the new run is neither reported nor
/// acted on.
fn bound_step(
    dir: &JobsDir,
    job: &JobPaths,
    spec: &WaitSpec,
    first_pass: bool,
    run: &mut impl RunBinding,
) -> Result<Step, RecoverError> {
    match locate(dir, job, run) {
        Located::Archived(v) => return Ok(Step::Done(v)),
        Located::Gone => return Ok(Step::Vanished),
        Located::Current => {}
    }
    Ok(match step(job, spec, first_pass)? {
        Step::Done(v) => match own_verdict(dir, run, *v) {
            Some(v) => Step::Done(Box::new(v)),
            None => Step::Vanished,
        },
        other => other,
    })
}

/// Looks at one job once and acts on what its files say.
fn step(job: &JobPaths, spec: &WaitSpec, first_pass: bool) -> Result<Step, RecoverError> {
    let now = SystemTime::now();
    let state = classify(observe(job), now, spec.stale);
    let grace = |r: &JobRecord| spec.grace.unwrap_or(r.settings.grace());
    let state = match state {
        JobState::Lost { record } | JobState::Recorded { record } => {
            finalize_lost(job, grace(&record), WRAPPER_VANISHED)?
        }
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
            kill_run(
                job,
                Some(&record.job_id),
                Outcome::Hung,
                &reason,
                grace(&record),
            )?
        }
        other => other,
    };
    Ok(match state {
        JobState::Finished { outcome, record } => {
            Step::Done(Box::new(Verdict::ended(job, outcome, record.map(|r| *r))))
        }
        JobState::Running { hung_at, .. } => Step::Pending {
            recheck_in: hung_at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(5)),
        },
        // Killed but the wrapper has not written the status yet: report the
        // verdict rather than wait on a wrapper that stopped working.
        JobState::Hung { record, .. } => {
            Step::Done(Box::new(Verdict::ended(job, Outcome::Hung, Some(*record))))
        }
        JobState::Lost { record } => {
            Step::Done(Box::new(Verdict::ended(job, Outcome::Lost, Some(*record))))
        }
        // Committed by nobody here (another host's run): the record is the
        // outcome all the same.
        JobState::Recorded { record } => {
            let outcome = record.outcome.unwrap_or(Outcome::Lost);
            Step::Done(Box::new(Verdict::ended(job, outcome, Some(*record))))
        }
        JobState::Missing if first_pass => {
            return Err(RecoverError::Missing(job.name().to_string()));
        }
        // Seen before: the name is being restarted and its new files follow
        // within moments; files gone for longer were removed by someone.
        JobState::Missing => Step::Vanished,
        JobState::Invalid { reason } => {
            return Err(RecoverError::Invalid {
                name: job.name().to_string(),
                reason,
            });
        }
    })
}

/// The waiter's time limit passed: kill what still runs (unless told not
/// to) and report `timeout` for it. `runs` holds the run each job's wait is
/// bound to (if known): a name that moved on to a new run meanwhile gets
/// its bound run's own verdict, and the new run is left alone.
fn time_out(
    dir: &JobsDir,
    jobs: &[JobPaths],
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
        let record = observe(job).record.ok().flatten();
        if let (Some(run), Some(current)) = (run, &record)
            && current.job_id != run
            && let Some(v) = archived_verdict(dir, job.name(), run)
        {
            out.push(v);
            continue;
        }
        if !spec.kill_on_timeout {
            out.push(Verdict {
                paths: job.clone(),
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
        let state = kill_run(job, run, Outcome::Timeout, &reason, grace)?;
        let (outcome, record) = match state {
            JobState::Finished { outcome, record } => (outcome, record.map(|r| *r)),
            other => (Outcome::Timeout, other.record().cloned()),
        };
        out.push(Verdict::ended(job, outcome, record));
    }
    Ok(out)
}
