//! Circuit breakers: a loop's memory of repeated failure, persisted so that
//! it survives between invocations (an in-memory breaker forgets everything
//! when the loop's process ends).
//!
//! One small JSON file per key, `breakers/KEY.json`, changed only under an
//! exclusive `flock` on `breakers/KEY.lock` and replaced atomically, so
//! concurrent recorders never lose a count and readers never see a torn
//! file. The rules:
//!
//! - A success closes the breaker and resets the count.
//! - A failure (failed, hung, timeout, lost) adds one; `max_failures`
//!   consecutive failures open it. A run that was killed on purpose counts
//!   neither way.
//! - While open, runs are refused. With a cooldown, once it has passed, one
//!   trial run is admitted (half-open): its success closes the breaker, its
//!   failure re-opens it for another cooldown. Without a cooldown it stays
//!   open until `reset`.
//! - Each run is counted once, however many processes report it (the
//!   wrapper, or whoever finishes a lost run).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::classify::{JobState, classify, observe};
use crate::model::{JobName, JobRecord, Outcome};
use crate::model::{rfc3339, unix_ms};
use crate::protocol::JobsDir;
use crate::protocol::atomic::{WriteError, write_atomic};
use crate::protocol::lock::{JobLock, LockError};
use crate::protocol::open::create_dirs_within;
use crate::protocol::record::{RecordError, read_json};
use crate::sys::proc::{self, ProcessId};

/// The breaker file format this build writes.
pub const BREAKER_VERSION: u32 = 1;
/// Consecutive failures that open a breaker unless told otherwise.
pub const DEFAULT_MAX_FAILURES: u32 = 3;
/// The longest anyone waits for a breaker's lock. Every holder keeps it for
/// one read-modify-write of a small file (milliseconds, even with many jobs
/// ending together); a holder that keeps it longer is stuck, and a job's
/// end must not wait on it (its result matters more than its count).
pub const LOCK_PATIENCE: Duration = Duration::from_secs(10);
/// How many recently counted runs a breaker remembers, so that a run
/// reported twice (by its wrapper, then by a finisher) counts once.
const REMEMBERED_RUNS: usize = 32;

/// A validated breaker key: the same syntax as a job name, since it names a
/// file too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BreakerKey(String);

impl BreakerKey {
    /// Validates `s` as a breaker key.
    pub fn parse(s: &str) -> Result<Self, String> {
        JobName::parse(s)
            .map(|n| Self(n.as_str().to_owned()))
            .map_err(|e| e.to_string().replace("job name", "breaker key"))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BreakerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Policy given by the caller; `None` keeps what the breaker file says (or
/// the default for a new breaker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyUpdate {
    /// Consecutive failures that open the breaker.
    pub max_failures: Option<u32>,
    /// How long an open breaker refuses before it admits one trial run.
    pub cooldown: Option<Duration>,
}

/// The breaker's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Runs are admitted.
    Closed,
    /// Runs are refused (until the cooldown has passed, if there is one).
    Open,
    /// One trial run has been admitted; its outcome decides.
    HalfOpen,
}

/// A run the breaker knows about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// The job's name.
    pub job: String,
    /// The run's unique id (`job_id` in its record).
    pub job_id: String,
}

/// The trial run admitted by a half-open breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The run.
    #[serde(flatten)]
    pub run: RunRef,
    /// When it was admitted (RFC 3339, UTC).
    pub admitted_at: String,
    /// The process that admitted it and is starting it: until the run's
    /// record exists, its being alive is what says the trial still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starter: Option<Starter>,
}

/// A process on one host and boot, as recorded in a breaker file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Starter {
    /// Its host.
    pub host: String,
    /// Its boot.
    pub boot_id: String,
    /// Its PID.
    pub pid: i32,
    /// Its start time (clock ticks since boot), which makes the PID safe.
    pub start_time: u64,
}

impl Starter {
    /// This process.
    fn me() -> Self {
        let me = proc::myself();
        Self {
            host: proc::hostname().to_owned(),
            boot_id: proc::boot_id().to_owned(),
            pid: me.pid,
            start_time: me.start_time,
        }
    }

    /// Whether it still runs (a process elsewhere cannot be checked: no).
    fn is_alive(&self) -> bool {
        self.host == proc::hostname()
            && self.boot_id == proc::boot_id()
            && proc::is_alive(ProcessId {
                pid: self.pid,
                start_time: self.start_time,
            })
    }
}

/// What happened to a run, as a breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// The work succeeded.
    Success,
    /// The work failed (failed, hung, timeout or lost).
    Failure,
    /// The run was stopped on purpose (killed): no verdict on the work.
    Neutral,
}

impl Event {
    /// How a job outcome counts.
    pub fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => Event::Success,
            Outcome::Killed => Event::Neutral,
            Outcome::Failed | Outcome::Hung | Outcome::Timeout | Outcome::Lost => Event::Failure,
        }
    }
}

/// The last thing recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastEvent {
    /// What was recorded.
    pub event: Event,
    /// The job outcome behind it, when a job reported it.
    pub outcome: Option<Outcome>,
    /// The job, when a job reported it.
    pub job: Option<String>,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// `breakers/KEY.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// Format version ([`BREAKER_VERSION`]).
    pub version: u32,
    /// The key.
    pub key: String,
    /// Stored state (see [`Breaker::view`] for what it means now).
    pub state: State,
    /// Failures since the last success (or reset).
    pub consecutive_failures: u32,
    /// Consecutive failures that open the breaker.
    pub max_failures: u32,
    /// Cooldown before a trial run, in ms; `None`: open until reset.
    pub cooldown_ms: Option<u64>,
    /// When it last opened (RFC 3339, UTC).
    pub opened_at: Option<String>,
    /// When it last opened, in ms since the Unix epoch.
    pub opened_unix_ms: Option<u64>,
    /// The admitted trial run while half-open.
    pub trial: Option<Trial>,
    /// The last event recorded.
    pub last: Option<LastEvent>,
    /// Successes recorded, ever (until reset).
    pub successes: u64,
    /// Failures recorded, ever (until reset).
    pub failures: u64,
    /// Runs already counted, newest last.
    #[serde(default)]
    pub counted_runs: Vec<String>,
}

impl Breaker {
    /// A closed breaker with no history.
    pub fn new(key: &BreakerKey) -> Self {
        Self {
            version: BREAKER_VERSION,
            key: key.as_str().to_owned(),
            state: State::Closed,
            consecutive_failures: 0,
            max_failures: DEFAULT_MAX_FAILURES,
            cooldown_ms: None,
            opened_at: None,
            opened_unix_ms: None,
            trial: None,
            last: None,
            successes: 0,
            failures: 0,
            counted_runs: Vec::new(),
        }
    }

    fn apply_policy(&mut self, policy: PolicyUpdate) {
        if let Some(n) = policy.max_failures {
            self.max_failures = n.max(1);
        }
        if let Some(c) = policy.cooldown {
            self.cooldown_ms = Some(c.as_millis() as u64);
        }
    }

    /// When an open breaker admits a trial run; `None` if it never does by
    /// itself (no cooldown) or is not open.
    pub fn trial_due(&self) -> Option<SystemTime> {
        if self.state != State::Open {
            return None;
        }
        let opened = UNIX_EPOCH + Duration::from_millis(self.opened_unix_ms?);
        Some(opened + Duration::from_millis(self.cooldown_ms?))
    }

    fn open(&mut self, now: SystemTime) {
        self.state = State::Open;
        self.opened_at = Some(rfc3339(now));
        self.opened_unix_ms = Some(unix_ms(now));
        self.trial = None;
    }

    /// Counts one event. Returns false (and changes nothing) when `run` was
    /// already counted.
    fn count(&mut self, event: Event, run: Option<&RunRef>, outcome: Option<Outcome>) -> bool {
        let now = SystemTime::now();
        if let Some(r) = run {
            if self.counted_runs.contains(&r.job_id) {
                return false;
            }
            self.counted_runs.push(r.job_id.clone());
            let excess = self.counted_runs.len().saturating_sub(REMEMBERED_RUNS);
            self.counted_runs.drain(..excess);
        }
        let is_trial = |b: &Self| match (run, &b.trial) {
            (Some(r), Some(t)) => t.run.job_id == r.job_id,
            // A report without a run (`breaker record`) speaks for the trial.
            (None, Some(_)) => true,
            _ => false,
        };
        match event {
            Event::Success => {
                self.successes += 1;
                self.consecutive_failures = 0;
                self.state = State::Closed;
                self.trial = None;
                self.opened_at = None;
                self.opened_unix_ms = None;
            }
            Event::Failure => {
                self.failures += 1;
                self.consecutive_failures += 1;
                // While half-open only the trial decides: a run admitted
                // before the breaker opened may still fail late, and that
                // must not let a second trial in beside the first.
                let reopen = match self.state {
                    State::HalfOpen => is_trial(self),
                    // A late failure while open restarts the cooldown: the
                    // trouble is still going on.
                    State::Open => true,
                    State::Closed => self.consecutive_failures >= self.max_failures,
                };
                if reopen {
                    self.open(now);
                }
            }
            Event::Neutral => {
                if is_trial(self) {
                    // The trial ended without a verdict: admit another.
                    self.trial = None;
                    self.state = State::Open;
                }
            }
        }
        self.last = Some(LastEvent {
            event,
            outcome,
            job: run.map(|r| r.job.clone()),
            at: rfc3339(now),
        });
        true
    }

    /// What the breaker means now: whether a run would be admitted, and
    /// when a refused one could try again.
    pub fn view(&self, trial_running: bool, now: SystemTime) -> BreakerView {
        let due = self.trial_due();
        let (state, admits) = match self.state {
            State::Closed => ("closed", true),
            State::Open if due.is_some_and(|d| now >= d) => ("half-open", true),
            State::Open => ("open", false),
            State::HalfOpen => ("half-open", !trial_running),
        };
        BreakerView {
            key: self.key.clone(),
            state,
            admits,
            consecutive_failures: self.consecutive_failures,
            max_failures: self.max_failures,
            cooldown_ms: self.cooldown_ms,
            opened_at: self.opened_at.clone(),
            trial_in_ms: due
                .filter(|_| !admits)
                .map(|d| d.duration_since(now).unwrap_or_default().as_millis() as u64),
            trial_job: self.trial.as_ref().map(|t| t.run.job.clone()),
            last: self.last.clone(),
        }
    }
}

/// The breaker a job reports to, and the policy its `run` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSpec {
    /// The key.
    pub key: BreakerKey,
    /// Policy changes asked for on the command line.
    pub policy: PolicyUpdate,
}

/// A breaker as `breaker status` shows it: small enough for an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerView {
    /// The key.
    pub key: String,
    /// `closed`, `open` or `half-open`.
    pub state: &'static str,
    /// Whether `run --breaker KEY` would start now.
    pub admits: bool,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Consecutive failures that open it.
    pub max_failures: u32,
    /// The cooldown, in ms, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<u64>,
    /// When it last opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<String>,
    /// While open: how long until a trial run is admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_in_ms: Option<u64>,
    /// While half-open: the trial run's job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_job: Option<String>,
    /// The last event recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<LastEvent>,
}

/// The answer to "may this run start?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Closed: start.
    Admitted,
    /// Half-open: start, as the one trial run.
    Trial,
    /// Open: do not start.
    Refused(Box<BreakerView>),
}

/// A breaker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError {
    /// The state file is unreadable or malformed.
    #[error("breaker {key}: {source}")]
    Read {
        /// The key.
        key: String,
        /// What went wrong.
        source: RecordError,
    },
    /// The state file could not be written.
    #[error("breaker {key}: {source}")]
    Write {
        /// The key.
        key: String,
        /// What went wrong.
        source: WriteError,
    },
    /// The lock could not be taken.
    #[error("breaker {key}: {source}")]
    Lock {
        /// The key.
        key: String,
        /// What went wrong.
        source: LockError,
    },
    /// Another process held the breaker's lock for longer than
    /// [`LOCK_PATIENCE`]: it is stuck, since every update takes milliseconds.
    #[error(
        "breaker {key}: {} was held by another process for more than {}s; nothing was counted or changed",
        path.display(),
        LOCK_PATIENCE.as_secs()
    )]
    Busy {
        /// The key.
        key: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The breakers folder could not be created or listed.
    #[error("cannot use {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn file_of(dir: &JobsDir, key: &BreakerKey) -> PathBuf {
    dir.breakers().join(format!("{key}.json"))
}

fn lock_of(dir: &JobsDir, key: &BreakerKey) -> PathBuf {
    dir.breakers().join(format!("{key}.lock"))
}

fn read(path: &Path, key: &BreakerKey) -> Result<Breaker, BreakerError> {
    let stored: Option<Breaker> = read_json(path).map_err(|source| BreakerError::Read {
        key: key.to_string(),
        source,
    })?;
    match stored {
        Some(b) if b.version > BREAKER_VERSION => Err(BreakerError::Read {
            key: key.to_string(),
            source: RecordError::Malformed {
                path: path.display().to_string(),
                detail: format!(
                    "breaker version {} is newer than this jobwatch understands ({BREAKER_VERSION})",
                    b.version
                ),
            },
        }),
        Some(b) => Ok(b),
        None => Ok(Breaker::new(key)),
    }
}

/// The breaker's state for [`reset`]: a malformed file, or something that
/// is no regular file at all (a FIFO, a symlink: replaced, never followed,
/// by the atomic write), reads as new.
fn read_or_new(path: &Path, key: &BreakerKey) -> Result<Breaker, BreakerError> {
    match read(path, key) {
        Err(BreakerError::Read {
            source: RecordError::Malformed { .. } | RecordError::Unusable { .. },
            ..
        }) => Ok(Breaker::new(key)),
        other => other,
    }
}

/// Runs `change` on the breaker's state under its lock and writes the
/// result back if `change` says so.
fn update<T>(
    dir: &JobsDir,
    key: &BreakerKey,
    read_state: fn(&Path, &BreakerKey) -> Result<Breaker, BreakerError>,
    change: impl FnOnce(&mut Breaker) -> (bool, T),
) -> Result<T, BreakerError> {
    // A real folder: a symlinked `breakers/` would carry the state (and
    // its lock) out of the jobs directory.
    let folder = dir.breakers();
    create_dirs_within(dir.path(), &folder).map_err(|source| BreakerError::Folder {
        path: folder.clone(),
        source,
    })?;
    let lock_path = lock_of(dir, key);
    let _lock =
        JobLock::acquire_within(&lock_path, LOCK_PATIENCE).map_err(|source| match source {
            LockError::Held => BreakerError::Busy {
                key: key.to_string(),
                path: lock_path.clone(),
            },
            source => BreakerError::Lock {
                key: key.to_string(),
                source,
            },
        })?;
    let path = file_of(dir, key);
    let mut breaker = read_state(&path, key)?;
    let (changed, answer) = change(&mut breaker);
    if changed {
        let mut json = serde_json::to_vec_pretty(&breaker).expect("a breaker always serializes");
        json.push(b'\n');
        write_atomic(&path, &json).map_err(|source| BreakerError::Write {
            key: key.to_string(),
            source,
        })?;
    }
    Ok(answer)
}

/// Whether the breaker's trial run is still running.
fn trial_running(dir: &JobsDir, breaker: &Breaker) -> bool {
    let Some(trial) = &breaker.trial else {
        return false;
    };
    let Ok(name) = JobName::parse(&trial.run.job) else {
        return false;
    };
    match classify(observe(&dir.job(&name)), SystemTime::now(), None) {
        JobState::Running { record, .. } | JobState::Hung { record, .. }
            if record.job_id == trial.run.job_id =>
        {
            true
        }
        state if state.record().is_some_and(|r| r.job_id == trial.run.job_id) => false,
        // No record of the trial yet: it is still starting (finishing the
        // name's previous run may take a whole grace period) for as long
        // as the process that admitted it lives.
        _ => trial.starter.as_ref().is_some_and(Starter::is_alive),
    }
}

/// Reads one breaker (a key never recorded reads as closed).
pub fn status(dir: &JobsDir, key: &BreakerKey) -> Result<BreakerView, BreakerError> {
    let breaker = read(&file_of(dir, key), key)?;
    Ok(breaker.view(trial_running(dir, &breaker), SystemTime::now()))
}

/// Reads every breaker in the jobs directory, sorted by key; a malformed
/// file is returned as an error in its place, so one bad file hides no
/// other.
pub fn list(dir: &JobsDir) -> Result<Vec<Result<BreakerView, BreakerError>>, BreakerError> {
    let folder = dir.breakers();
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BreakerError::Folder {
                path: folder,
                source,
            });
        }
    };
    let mut keys: Vec<BreakerKey> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            BreakerKey::parse(name.strip_suffix(".json")?).ok()
        })
        .collect();
    keys.sort();
    Ok(keys.iter().map(|k| status(dir, k)).collect())
}

/// Closes the breaker and forgets its count, keeping its policy.
/// A damaged file cannot be trusted for anything else, but repairing it is
/// what a reset is for: it is replaced by a closed breaker (with the
/// default policy, as the stored one is unreadable).
pub fn reset(dir: &JobsDir, key: &BreakerKey) -> Result<BreakerView, BreakerError> {
    let breaker = update(dir, key, read_or_new, |b| {
        let policy = (b.max_failures, b.cooldown_ms);
        *b = Breaker::new(key);
        (b.max_failures, b.cooldown_ms) = policy;
        (true, b.clone())
    })?;
    Ok(breaker.view(false, SystemTime::now()))
}

/// Records an event, from a job (`run` = the run, counted once) or from a
/// script (`run` = `None`).
pub fn record_event(
    dir: &JobsDir,
    key: &BreakerKey,
    event: Event,
    outcome: Option<Outcome>,
    run: Option<&RunRef>,
    policy: PolicyUpdate,
) -> Result<BreakerView, BreakerError> {
    let breaker = update(dir, key, read, |b| {
        b.apply_policy(policy);
        b.count(event, run, outcome);
        (true, b.clone())
    })?;
    Ok(breaker.view(trial_running(dir, &breaker), SystemTime::now()))
}

/// Whether the breaker would refuse a run with `policy` now, read without
/// taking its lock or changing anything: lets `run` turn a refused job
/// away before it creates any file of the job. [`admit`] still decides.
pub fn refusal(
    dir: &JobsDir,
    key: &BreakerKey,
    policy: PolicyUpdate,
) -> Result<Option<BreakerView>, BreakerError> {
    let mut breaker = read(&file_of(dir, key), key)?;
    breaker.apply_policy(policy);
    let view = breaker.view(trial_running(dir, &breaker), SystemTime::now());
    Ok((!view.admits).then_some(view))
}

/// Decides whether `run` may start, and remembers it as the trial run when
/// a half-open breaker admits it.
pub fn admit(
    dir: &JobsDir,
    key: &BreakerKey,
    run: &RunRef,
    policy: PolicyUpdate,
) -> Result<Admission, BreakerError> {
    update(dir, key, read, |b| {
        let before = b.clone();
        b.apply_policy(policy);
        let now = SystemTime::now();
        let view = b.view(trial_running(dir, b), now);
        let admission = match (b.state, view.admits) {
            (State::Closed, _) => Admission::Admitted,
            (_, true) => {
                b.state = State::HalfOpen;
                b.trial = Some(Trial {
                    run: run.clone(),
                    admitted_at: rfc3339(now),
                    starter: Some(Starter::me()),
                });
                Admission::Trial
            }
            (_, false) => Admission::Refused(Box::new(view)),
        };
        (*b != before, admission)
    })
}

/// Reports a finished job's outcome to the breaker its record names (if
/// any). Called before the status is written, so that a loop which sees
/// the status also sees the breaker's updated state.
pub fn record_job(dir: &JobsDir, record: &JobRecord) -> Result<(), BreakerError> {
    let (Some(key), Some(outcome)) = (&record.breaker, record.outcome) else {
        return Ok(());
    };
    let key = BreakerKey::parse(key).map_err(|detail| BreakerError::Read {
        key: key.clone(),
        source: RecordError::Malformed {
            path: format!("{}.job.json", record.name),
            detail,
        },
    })?;
    let run = RunRef {
        job: record.name.clone(),
        job_id: record.job_id.clone(),
    };
    record_event(
        dir,
        &key,
        Event::of(outcome),
        Some(outcome),
        Some(&run),
        PolicyUpdate::default(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u32) -> RunRef {
        RunRef {
            job: "j".into(),
            job_id: format!("id-{n}"),
        }
    }

    /// Makes the breaker half-open with run `n` as its trial.
    fn admit_trial(b: &mut Breaker, n: u32) {
        b.state = State::HalfOpen;
        b.trial = Some(Trial {
            run: run(n),
            admitted_at: String::new(),
            starter: None,
        });
    }

    fn breaker(max: u32, cooldown_ms: Option<u64>) -> Breaker {
        let mut b = Breaker::new(&BreakerKey::parse("k").unwrap());
        b.max_failures = max;
        b.cooldown_ms = cooldown_ms;
        b
    }

    #[test]
    fn opens_after_exactly_max_consecutive_failures() {
        let mut b = breaker(3, None);
        for n in 0..2 {
            b.count(Event::Failure, Some(&run(n)), Some(Outcome::Failed));
            assert_eq!(b.state, State::Closed);
        }
        b.count(Event::Success, Some(&run(2)), Some(Outcome::Success));
        for n in 3..5 {
            b.count(Event::Failure, Some(&run(n)), Some(Outcome::Hung));
        }
        assert_eq!(b.state, State::Closed, "a success reset the count");
        b.count(Event::Failure, Some(&run(5)), Some(Outcome::Lost));
        assert_eq!(b.state, State::Open);
        assert!(!b.view(false, SystemTime::now()).admits);
    }

    #[test]
    fn a_run_is_counted_once() {
        let mut b = breaker(2, None);
        assert!(b.count(Event::Failure, Some(&run(1)), None));
        assert!(!b.count(Event::Failure, Some(&run(1)), None));
        assert_eq!((b.consecutive_failures, b.state), (1, State::Closed));
    }

    #[test]
    fn the_cooldown_admits_a_trial_whose_failure_reopens() {
        let mut b = breaker(1, Some(1000));
        b.count(Event::Failure, Some(&run(1)), None);
        let opened = UNIX_EPOCH + Duration::from_millis(b.opened_unix_ms.unwrap());
        let early = b.view(false, opened + Duration::from_millis(999));
        assert_eq!((early.state, early.admits), ("open", false));
        assert_eq!(early.trial_in_ms, Some(1));
        let due = b.view(false, opened + Duration::from_millis(1000));
        assert_eq!((due.state, due.admits), ("half-open", true));
        admit_trial(&mut b, 2);
        assert!(
            !b.view(true, SystemTime::now()).admits,
            "one trial at a time"
        );
        b.count(Event::Failure, Some(&run(2)), None);
        assert_eq!(b.state, State::Open);
        assert!(b.trial.is_none());
    }

    #[test]
    fn only_the_trial_decides_a_half_open_breaker() {
        let mut b = breaker(1, Some(0));
        b.count(Event::Failure, Some(&run(1)), None);
        admit_trial(&mut b, 2);
        b.count(Event::Failure, Some(&run(3)), Some(Outcome::Failed));
        assert_eq!(b.state, State::HalfOpen, "a late failure of another run");
        assert!(!b.view(true, SystemTime::now()).admits);
        b.count(Event::Success, Some(&run(2)), Some(Outcome::Success));
        assert_eq!((b.state, b.consecutive_failures), (State::Closed, 0));
    }

    #[test]
    fn a_killed_trial_leaves_room_for_another() {
        let mut b = breaker(1, Some(0));
        b.count(Event::Failure, Some(&run(1)), None);
        admit_trial(&mut b, 2);
        b.count(Event::Neutral, Some(&run(2)), Some(Outcome::Killed));
        assert_eq!(b.state, State::Open);
        assert!(b.view(false, SystemTime::now()).admits);
    }

    #[test]
    fn outcomes_count_as_the_docs_say() {
        assert_eq!(Event::of(Outcome::Success), Event::Success);
        assert_eq!(Event::of(Outcome::Killed), Event::Neutral);
        for o in [
            Outcome::Failed,
            Outcome::Hung,
            Outcome::Timeout,
            Outcome::Lost,
        ] {
            assert_eq!(Event::of(o), Event::Failure);
        }
    }
}
