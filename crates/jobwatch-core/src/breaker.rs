//! Circuit breakers: a loop's memory of repeated failure, persisted so that
//! it survives between invocations (an in-memory breaker forgets everything
//! when the loop's process ends).
//!
//! One small JSON document per key in the store's [`DocStore`](crate::store::DocStore) (the file
//! store's `breakers/KEY.json`, changed only under an exclusive `flock` on
//! `breakers/KEY.lock` and replaced atomically), so concurrent recorders
//! never lose a count and readers never see a torn document. The rules
//! (pure: [`Breaker::count`], [`Breaker::view`], [`Breaker::admit`]):
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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::classify::{JobState, classify};
use crate::model::{JobName, JobRecord, NameError, Outcome, rfc3339, unix_ms};
use crate::store::{DocKind, Store, StoreError};
use crate::sys::proc::{self, ProcessId};

/// The breaker file format this build writes.
pub const BREAKER_VERSION: u32 = 1;
/// Consecutive failures that open a breaker unless told otherwise.
pub const DEFAULT_MAX_FAILURES: u32 = 3;
/// The longest anyone waits for a breaker's lock (the file store's): a
/// holder that keeps it longer is stuck, and a job's end must not wait on
/// it (its result matters more than its count).
pub use crate::store::file::LOCK_PATIENCE;
/// How many recently counted runs a breaker remembers, so that a run
/// reported twice (by its wrapper, then by a finisher) counts once.
const REMEMBERED_RUNS: usize = 32;

/// A validated breaker key: the same syntax as a job name, since it names a
/// file too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BreakerKey(String);

/// Why a string is not a valid breaker key: the job-name rules, said of a
/// key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The string was empty.
    #[error("invalid breaker key: it is empty (use [A-Za-z0-9][A-Za-z0-9._-]{{0,63}})")]
    Empty,
    /// The string was longer than a name may be.
    #[error("invalid breaker key {0:?}: longer than {max} characters", max = crate::model::MAX_NAME_LEN)]
    TooLong(String),
    /// The first character was not an ASCII letter or digit.
    #[error("invalid breaker key {0:?}: it must start with a letter or digit")]
    BadStart(String),
    /// A character outside `[A-Za-z0-9._-]` appeared.
    #[error(
        "invalid breaker key {name:?}: character {bad:?} is not allowed (use A-Z a-z 0-9 . _ -)"
    )]
    BadChar {
        /// The rejected key.
        name: String,
        /// The first offending character.
        bad: char,
    },
}

impl From<NameError> for KeyError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Empty => KeyError::Empty,
            NameError::TooLong(s) => KeyError::TooLong(s),
            NameError::BadStart(s) => KeyError::BadStart(s),
            NameError::BadChar { name, bad } => KeyError::BadChar { name, bad },
        }
    }
}

impl BreakerKey {
    /// Validates `s` as a breaker key (it names a document, as a job name
    /// names files: the same syntax).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        Ok(Self(JobName::parse(s)?.as_str().to_owned()))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key travels as its string and is validated on the way in.
impl Serialize for BreakerKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BreakerKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BreakerKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for BreakerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Policy given by the caller; `None` keeps what the breaker file says (or
/// the default for a new breaker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// Consecutive failures that open the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<u32>,
    /// How long an open breaker refuses before it admits one trial run
    /// (`cooldown_ms` when handed over).
    #[serde(
        default,
        rename = "cooldown_ms",
        with = "crate::spec::opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
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
    pub fn me() -> Self {
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

    /// Counts one event at `now`. Returns false (and changes nothing) when
    /// `run` was already counted.
    pub fn count(
        &mut self,
        event: Event,
        run: Option<&RunRef>,
        outcome: Option<Outcome>,
        now: SystemTime,
    ) -> bool {
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
            State::Closed => (ViewState::Closed, true),
            State::Open if due.is_some_and(|d| now >= d) => (ViewState::HalfOpen, true),
            State::Open => (ViewState::Open, false),
            State::HalfOpen => (ViewState::HalfOpen, !trial_running),
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
    /// Decides whether `run` may start at `now` (with `policy` applied),
    /// and makes it the trial run when a half-open breaker admits it;
    /// `starter` is the process that starts it.
    pub fn admit(
        &mut self,
        run: &RunRef,
        policy: PolicyUpdate,
        trial_running: bool,
        starter: Option<Starter>,
        now: SystemTime,
    ) -> Admission {
        self.apply_policy(policy);
        let view = self.view(trial_running, now);
        match (self.state, view.admits) {
            (State::Closed, _) => Admission::Admitted,
            (_, true) => {
                self.state = State::HalfOpen;
                self.trial = Some(Trial {
                    run: run.clone(),
                    admitted_at: rfc3339(now),
                    starter,
                });
                Admission::Trial
            }
            (_, false) => Admission::Refused(Box::new(view)),
        }
    }
}

/// What a breaker means now, as `breaker status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ViewState {
    /// Runs are admitted.
    #[serde(rename = "closed")]
    Closed,
    /// Runs are refused.
    #[serde(rename = "open")]
    Open,
    /// One trial run is admitted (or running).
    #[serde(rename = "half-open")]
    HalfOpen,
}

impl ViewState {
    /// The word shown: `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewState::Closed => "closed",
            ViewState::Open => "open",
            ViewState::HalfOpen => "half-open",
        }
    }
}

impl std::fmt::Display for ViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The breaker a job reports to, and the policy its `run` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    pub state: ViewState,
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
    /// The store could not read or write the breaker (an unusable file
    /// included: a FIFO, a symlink, one over its cap).
    #[error("breaker {key}: {source}")]
    Store {
        /// The key.
        key: String,
        /// What went wrong.
        source: StoreError,
    },
    /// The stored breaker is not a valid one.
    #[error("breaker {key}: malformed {doc}: {detail}")]
    Malformed {
        /// The key.
        key: String,
        /// The document (or record) that is malformed.
        doc: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Another process held the breaker's lock for longer than anyone
    /// waits ([`LOCK_PATIENCE`] in the file store): it is stuck, since
    /// every update takes milliseconds.
    #[error(
        "breaker {key}: {what} was held by another process for more than {}s; nothing was counted or changed",
        waited.as_secs()
    )]
    Busy {
        /// The key.
        key: String,
        /// What was held (the lock file).
        what: String,
        /// How long this process waited.
        waited: Duration,
    },
    /// The breakers' place (folder) could not be created or listed.
    #[error(transparent)]
    Folder(StoreError),
}

impl BreakerError {
    fn of(key: &str, e: StoreError) -> Self {
        match e {
            StoreError::Busy { what, waited } => BreakerError::Busy {
                key: key.to_owned(),
                what,
                waited,
            },
            folder @ StoreError::Folder { .. } => BreakerError::Folder(folder),
            source => BreakerError::Store {
                key: key.to_owned(),
                source,
            },
        }
    }
}

/// Parses a stored breaker; `None` bytes are a new, closed breaker.
fn parse(
    store: &dyn Store,
    key: &BreakerKey,
    bytes: Option<&[u8]>,
) -> Result<Breaker, BreakerError> {
    let malformed = |detail: String| BreakerError::Malformed {
        key: key.to_string(),
        doc: store.docs().describe(DocKind::Breaker, key.as_str()),
        detail,
    };
    let Some(bytes) = bytes else {
        return Ok(Breaker::new(key));
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed("the file is empty".into()));
    }
    let b: Breaker = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if b.version > BREAKER_VERSION {
        return Err(malformed(format!(
            "breaker version {} is newer than this jobwatch understands ({BREAKER_VERSION})",
            b.version
        )));
    }
    Ok(b)
}

fn read(store: &dyn Store, key: &BreakerKey) -> Result<Breaker, BreakerError> {
    let bytes = store
        .docs()
        .read(DocKind::Breaker, key.as_str())
        .map_err(|e| BreakerError::of(key.as_str(), e))?;
    parse(store, key, bytes.as_deref())
}

/// How an update reads the stored breaker.
#[derive(Clone, Copy)]
enum Reading {
    /// As it is: a malformed or unusable one is an error.
    Strict,
    /// For a reset: a malformed or unusable one (a FIFO, a symlink:
    /// replaced, never followed) reads as new.
    Repairing,
}

/// Runs `change` on the breaker's state in one atomic read-modify-write of
/// the store and writes the result back if `change` says so.
fn update<T>(
    store: &dyn Store,
    key: &BreakerKey,
    reading: Reading,
    mut change: impl FnMut(&mut Breaker) -> (bool, T),
) -> Result<T, BreakerError> {
    let mut outcome: Option<Result<T, BreakerError>> = None;
    let repairing = matches!(reading, Reading::Repairing);
    let mut f = |current: crate::store::DocRead<'_>| -> Option<Vec<u8>> {
        let mut breaker = match current {
            Ok(bytes) => match parse(store, key, bytes) {
                Ok(b) => b,
                Err(_) if repairing => Breaker::new(key),
                Err(e) => {
                    outcome = Some(Err(e));
                    return None;
                }
            },
            Err(StoreError::Invalid(_)) if repairing => Breaker::new(key),
            // The store returns its read error.
            Err(_) => return None,
        };
        let (changed, answer) = change(&mut breaker);
        outcome = Some(Ok(answer));
        changed.then(|| {
            let mut json =
                serde_json::to_vec_pretty(&breaker).expect("a breaker always serializes");
            json.push(b'\n');
            json
        })
    };
    store
        .docs()
        .update(DocKind::Breaker, key.as_str(), &mut f)
        .map_err(|e| BreakerError::of(key.as_str(), e))?;
    outcome.expect("a successful update ran its change")
}

/// Whether the breaker's trial run is still running.
fn trial_running(store: &dyn Store, breaker: &Breaker) -> bool {
    let Some(trial) = &breaker.trial else {
        return false;
    };
    let Ok(name) = JobName::parse(&trial.run.job) else {
        return false;
    };
    match classify(store.snapshot(&name), store.now(), None) {
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
pub fn status(store: &dyn Store, key: &BreakerKey) -> Result<BreakerView, BreakerError> {
    let breaker = read(store, key)?;
    Ok(breaker.view(trial_running(store, &breaker), store.now()))
}

/// Reads every breaker in the store, sorted by key; a malformed one is
/// returned as an error in its place, so one bad document hides no other.
pub fn list(store: &dyn Store) -> Result<Vec<Result<BreakerView, BreakerError>>, BreakerError> {
    let keys = store
        .docs()
        .list(DocKind::Breaker)
        .map_err(BreakerError::Folder)?;
    let mut keys: Vec<BreakerKey> = keys
        .iter()
        .filter_map(|k| BreakerKey::parse(k).ok())
        .collect();
    keys.sort();
    Ok(keys.iter().map(|k| status(store, k)).collect())
}

/// Closes the breaker and forgets its count, keeping its policy.
/// A damaged document cannot be trusted for anything else, but repairing it
/// is what a reset is for: it is replaced by a closed breaker (with the
/// default policy, as the stored one is unreadable).
pub fn reset(store: &dyn Store, key: &BreakerKey) -> Result<BreakerView, BreakerError> {
    let breaker = update(store, key, Reading::Repairing, |b| {
        let policy = (b.max_failures, b.cooldown_ms);
        *b = Breaker::new(key);
        (b.max_failures, b.cooldown_ms) = policy;
        (true, b.clone())
    })?;
    Ok(breaker.view(false, store.now()))
}

/// Records an event, from a job (`run` = the run, counted once) or from a
/// script (`run` = `None`).
pub fn record_event(
    store: &dyn Store,
    key: &BreakerKey,
    event: Event,
    outcome: Option<Outcome>,
    run: Option<&RunRef>,
    policy: PolicyUpdate,
) -> Result<BreakerView, BreakerError> {
    let now = store.now();
    let breaker = update(store, key, Reading::Strict, |b| {
        b.apply_policy(policy);
        b.count(event, run, outcome, now);
        (true, b.clone())
    })?;
    Ok(breaker.view(trial_running(store, &breaker), store.now()))
}

/// Whether the breaker would refuse a run with `policy` now, read without
/// taking its lock or changing anything: lets `run` turn a refused job
/// away before it creates any state of the job. [`admit`] still decides.
pub fn refusal(
    store: &dyn Store,
    key: &BreakerKey,
    policy: PolicyUpdate,
) -> Result<Option<BreakerView>, BreakerError> {
    let mut breaker = read(store, key)?;
    breaker.apply_policy(policy);
    let view = breaker.view(trial_running(store, &breaker), store.now());
    Ok((!view.admits).then_some(view))
}

/// Decides whether `run` may start, and remembers it as the trial run when
/// a half-open breaker admits it (started by this process).
pub fn admit(
    store: &dyn Store,
    key: &BreakerKey,
    run: &RunRef,
    policy: PolicyUpdate,
) -> Result<Admission, BreakerError> {
    update(store, key, Reading::Strict, |b| {
        let before = b.clone();
        let running = trial_running(store, b);
        let admission = b.admit(run, policy, running, Some(Starter::me()), store.now());
        (*b != before, admission)
    })
}

/// Reports a finished job's outcome to the breaker its record names (if
/// any). Called before the status is written, so that a loop which sees
/// the status also sees the breaker's updated state.
pub fn record_job(store: &dyn Store, record: &JobRecord) -> Result<(), BreakerError> {
    let (Some(key), Some(outcome)) = (&record.breaker, record.outcome) else {
        return Ok(());
    };
    let key = BreakerKey::parse(key).map_err(|detail| BreakerError::Malformed {
        key: key.clone(),
        doc: format!("{}.job.json", record.name),
        detail: detail.to_string(),
    })?;
    let run = RunRef {
        job: record.name.clone(),
        job_id: record.job_id.clone(),
    };
    record_event(
        store,
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
            b.count(
                Event::Failure,
                Some(&run(n)),
                Some(Outcome::Failed),
                SystemTime::now(),
            );
            assert_eq!(b.state, State::Closed);
        }
        b.count(
            Event::Success,
            Some(&run(2)),
            Some(Outcome::Success),
            SystemTime::now(),
        );
        for n in 3..5 {
            b.count(
                Event::Failure,
                Some(&run(n)),
                Some(Outcome::Hung),
                SystemTime::now(),
            );
        }
        assert_eq!(b.state, State::Closed, "a success reset the count");
        b.count(
            Event::Failure,
            Some(&run(5)),
            Some(Outcome::Lost),
            SystemTime::now(),
        );
        assert_eq!(b.state, State::Open);
        assert!(!b.view(false, SystemTime::now()).admits);
    }

    #[test]
    fn a_run_is_counted_once() {
        let mut b = breaker(2, None);
        assert!(b.count(Event::Failure, Some(&run(1)), None, SystemTime::now()));
        assert!(!b.count(Event::Failure, Some(&run(1)), None, SystemTime::now()));
        assert_eq!((b.consecutive_failures, b.state), (1, State::Closed));
    }

    #[test]
    fn the_cooldown_admits_a_trial_whose_failure_reopens() {
        let mut b = breaker(1, Some(1000));
        b.count(Event::Failure, Some(&run(1)), None, SystemTime::now());
        let opened = UNIX_EPOCH + Duration::from_millis(b.opened_unix_ms.unwrap());
        let early = b.view(false, opened + Duration::from_millis(999));
        assert_eq!((early.state.as_str(), early.admits), ("open", false));
        assert_eq!(early.trial_in_ms, Some(1));
        let due = b.view(false, opened + Duration::from_millis(1000));
        assert_eq!((due.state.as_str(), due.admits), ("half-open", true));
        admit_trial(&mut b, 2);
        assert!(
            !b.view(true, SystemTime::now()).admits,
            "one trial at a time"
        );
        b.count(Event::Failure, Some(&run(2)), None, SystemTime::now());
        assert_eq!(b.state, State::Open);
        assert!(b.trial.is_none());
    }

    #[test]
    fn only_the_trial_decides_a_half_open_breaker() {
        let mut b = breaker(1, Some(0));
        b.count(Event::Failure, Some(&run(1)), None, SystemTime::now());
        admit_trial(&mut b, 2);
        b.count(
            Event::Failure,
            Some(&run(3)),
            Some(Outcome::Failed),
            SystemTime::now(),
        );
        assert_eq!(b.state, State::HalfOpen, "a late failure of another run");
        assert!(!b.view(true, SystemTime::now()).admits);
        b.count(
            Event::Success,
            Some(&run(2)),
            Some(Outcome::Success),
            SystemTime::now(),
        );
        assert_eq!((b.state, b.consecutive_failures), (State::Closed, 0));
    }

    #[test]
    fn a_killed_trial_leaves_room_for_another() {
        let mut b = breaker(1, Some(0));
        b.count(Event::Failure, Some(&run(1)), None, SystemTime::now());
        admit_trial(&mut b, 2);
        b.count(
            Event::Neutral,
            Some(&run(2)),
            Some(Outcome::Killed),
            SystemTime::now(),
        );
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

    #[test]
    fn a_breaker_counts_through_the_store_and_admits_one_trial_after_its_cooldown() {
        use crate::store::memory::MemoryStore;
        use crate::store::{DocKind, Store};

        let store = MemoryStore::new();
        let key = BreakerKey::parse("deploy").unwrap();
        let policy = PolicyUpdate {
            max_failures: Some(2),
            cooldown: Some(Duration::from_secs(60)),
        };
        for n in 1..=2 {
            record_event(
                &store,
                &key,
                Event::Failure,
                Some(Outcome::Failed),
                Some(&run(n)),
                policy,
            )
            .unwrap();
        }
        // Counted once, however many report the run.
        let view = record_event(&store, &key, Event::Failure, None, Some(&run(2)), policy).unwrap();
        assert_eq!((view.state, view.admits), (ViewState::Open, false));
        assert_eq!(view.consecutive_failures, 2);
        assert_eq!(view.trial_in_ms, Some(60_000));
        assert!(
            refusal(&store, &key, PolicyUpdate::default())
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            admit(&store, &key, &run(3), PolicyUpdate::default()).unwrap(),
            Admission::Refused(_)
        ));
        store.advance(Duration::from_secs(60));
        assert_eq!(
            admit(&store, &key, &run(3), PolicyUpdate::default()).unwrap(),
            Admission::Trial
        );
        let stored: Breaker = serde_json::from_slice(
            &store
                .docs()
                .read(DocKind::Breaker, "deploy")
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(stored.state, State::HalfOpen);
        assert_eq!(stored.trial.unwrap().run.job_id, "id-3");
        // The trial has no record yet, and the process that admitted it
        // (this one) lives: it is still starting, so no second trial.
        assert!(matches!(
            admit(&store, &key, &run(4), PolicyUpdate::default()).unwrap(),
            Admission::Refused(_)
        ));
        let view = record_event(
            &store,
            &key,
            Event::Success,
            Some(Outcome::Success),
            Some(&run(3)),
            policy,
        )
        .unwrap();
        assert_eq!(
            (view.state, view.admits, view.consecutive_failures),
            (ViewState::Closed, true, 0)
        );
    }

    #[test]
    fn a_damaged_breaker_is_an_error_until_a_reset_repairs_it() {
        use crate::store::DocKind;
        use crate::store::memory::MemoryStore;

        let store = MemoryStore::new();
        let key = BreakerKey::parse("k").unwrap();
        store.memory_docs().put(DocKind::Breaker, "k", b"{not json");
        let err = status(&store, &key).unwrap_err().to_string();
        assert!(
            err.starts_with("breaker k: malformed memory:breakers/k: "),
            "{err}"
        );
        assert!(
            record_event(
                &store,
                &key,
                Event::Success,
                None,
                None,
                PolicyUpdate::default()
            )
            .is_err()
        );
        let view = reset(&store, &key).unwrap();
        assert_eq!((view.state, view.admits), (ViewState::Closed, true));
        assert!(status(&store, &key).is_ok());
    }

    #[test]
    fn a_breaker_key_error_is_said_of_a_key() {
        let e = BreakerKey::parse("-x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid breaker key \"-x\": it must start with a letter or digit"
        );
        assert!(matches!(BreakerKey::parse(""), Err(KeyError::Empty)));
    }
}
