//! Queued jobs, daemonless: `run NAME --after OTHER[:success|:done]`
//! (dependencies) and `run NAME --slot GROUP[:N]` (at most N jobs of GROUP
//! at once, across every caller), with no process waiting for them.
//!
//! # Theory of operation
//!
//! A queued job is state only, in two kinds of store documents
//! ([`DocKind`]):
//! - its own, [`QueuedJob`] (key: its name): the typed run spec to start it
//!   with, its starter's environment, its dependencies and its queue. It is
//!   written (and removed) only by a holder of the name's claim, so the
//!   file store keeps no lock file per job;
//! - its queue's, [`QueueDoc`] (key: the slot group, or [`AFTER_ONLY`] for
//!   a job that waits for dependencies only): the size, the runs holding
//!   its turns (`holders`) and the jobs waiting, first come first
//!   (`waiting`), changed only by the store's atomic read-modify-write
//!   ([`DocStore::update`]: a lock in the file store, a compare-and-swap
//!   in a distributed one).
//!
//! A job's `job_id` is fixed when it is queued: a waiter binds to it at
//! once, and its wrapper runs it as that run.
//!
//! **Dispatch.** Whoever ends a run (its wrapper right after its commit, a
//! finisher, `kill`) and whoever queues one (`run`) runs [`dispatch`]:
//! for each queue, one update that decides ([`decide::decide`], pure) which
//! turns are free again and which waiting jobs get them, recording each
//! grant as a holder entry *in the same update*. Only the process whose
//! update made a grant starts that job (its detached wrapper, from the
//! stored spec), so a job is started once however many dispatch at once.
//! What needs a name's claim (ending a job that can never run as
//! `skipped`, finishing a lost run that holds a turn, killing a hung one)
//! is done after the update, and the next look sees its effect.
//!
//! **Tickets.** The started wrapper carries a [`Ticket`] (the `job_id` and
//! the queue). Under the name's claim, before anything else, it checks
//! ([`admit`]) that its turn is still recorded and that no run of that
//! `job_id` exists; once its start record is written it removes the
//! queued document ([`started`]). A turn whose starter died before the
//! job started is taken back only under the name's claim, by ending the
//! run `lost` ([`end_unstarted`]): a late wrapper then finds its run ended
//! and refuses. So at most N runs of a group ever hold its turns.
//!
//! **Reclaiming.** A turn is held until its run has an outcome. A run
//! whose wrapper died is finished by the next dispatcher (the finisher's
//! rules: `lost`, or its recorded outcome), one observers call hung is
//! killed (`hung`); either frees its turn.

pub mod decide;
pub mod facts;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::breaker::Starter;
use crate::classify::{JobState, classify};
use crate::model::{Finalizer, JobEnd, JobName, JobRecord, Outcome, rfc3339, unix_ms};
use crate::recover::{WRAPPER_VANISHED, claim_and_finish_lost, kill_run};
use crate::report::Started;
use crate::spec::{RunSpec, SpecError, Ticket};
use crate::store::{Claim, ClaimError, ClaimWait, DocKind, Store, StoreError};
use crate::sys::proc;
use crate::sys::stdio::warn;
use decide::{Ending, Plan, RunFact};
use facts::StoreFacts;

/// The queue of jobs that wait for dependencies only (no slot group): no
/// limit on how many run. Not a valid group name, so never one.
pub const AFTER_ONLY: &str = "_after";

/// The most jobs one queue holds waiting; more are refused.
pub const MAX_WAITING: usize = 100_000;

/// The largest slot group.
pub const MAX_SLOTS: u32 = 100_000;

/// How long a turn taken by a process on another host (which cannot be
/// checked from here) may go without its job starting before the job is
/// ended `lost`.
pub const START_PATIENCE: Duration = Duration::from_secs(60);

/// The version of the queue documents this build writes and reads.
pub const QUEUE_VERSION: u32 = 1;

/// How long `run` waits for a short holder of the name's claim.
const BRIEF_HOLDER_WAIT: Duration = Duration::from_secs(2);

/// At most this many looks at one queue per dispatch (each after acting on
/// what the previous one found: a chain of skipped dependents ends one
/// link per look).
const MAX_ROUNDS: usize = 64;

/// What a dependency waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterWhen {
    /// The dependency must succeed; else the job ends `skipped`.
    Success,
    /// The dependency must end, however.
    Done,
}

/// `--after NAME[:success|:done]`, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// The job waited for.
    pub name: JobName,
    /// What it must do.
    pub when: AfterWhen,
}

impl std::str::FromStr for After {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, when) = match s.rsplit_once(':') {
            Some((n, "success")) => (n, AfterWhen::Success),
            Some((n, "done")) => (n, AfterWhen::Done),
            Some((_, other)) => {
                return Err(format!(
                    "invalid dependency {s:?}: {other:?} is not success or done (use NAME, NAME:success or NAME:done)"
                ));
            }
            None => (s, AfterWhen::Success),
        };
        let name = JobName::parse(name).map_err(|e| format!("invalid dependency {s:?}: {e}"))?;
        Ok(After { name, when })
    }
}

/// `--slot GROUP[:N]`, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    /// The group (job-name syntax).
    pub group: JobName,
    /// Its size; `None`: the group's (1 for a new one).
    pub size: Option<u32>,
}

impl std::str::FromStr for SlotRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "use GROUP or GROUP:N, GROUP as a job name, N from 1";
        let (group, size) = match s.split_once(':') {
            Some((g, n)) => {
                let n: u32 = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_SLOTS).contains(n))
                    .ok_or_else(|| {
                        format!("invalid slot {s:?}: {n:?} is not a size from 1 to {MAX_SLOTS} ({usage})")
                    })?;
                (g, Some(n))
            }
            None => (s, None),
        };
        let group =
            JobName::parse(group).map_err(|e| format!("invalid slot {s:?}: {e} ({usage})"))?;
        Ok(SlotRequest { group, size })
    }
}

/// A dependency as stored: bound, when its job was queued, to the run of
/// that name it means (the queued or running one, else the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dep {
    /// The job.
    pub name: JobName,
    /// Its run; `None` for a run that left a status and no record.
    #[serde(default)]
    pub job_id: Option<String>,
    /// What it must do.
    pub when: AfterWhen,
}

/// A job waiting in a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The job.
    pub name: JobName,
    /// Its run.
    pub job_id: String,
    /// What it waits for besides a turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dep>,
    /// A foreground `run` waiting in its own process to run it: it is
    /// granted its turn, never started by a dispatcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreground: Option<Starter>,
}

/// A run holding one of a queue's turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// The job.
    pub name: JobName,
    /// Its run.
    pub job_id: String,
    /// When it was granted (ms since the Unix epoch).
    pub granted_unix_ms: u64,
    /// The process that starts it: until the run exists, its being alive
    /// is what says the job is still starting.
    pub starter: Starter,
}

/// A queue (`queues/KEY.json` in the file store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDoc {
    /// [`QUEUE_VERSION`].
    pub version: u32,
    /// The group, or [`AFTER_ONLY`].
    pub key: String,
    /// How many runs may hold a turn at once; `None`: no limit.
    #[serde(default)]
    pub size: Option<u32>,
    /// The runs holding a turn.
    #[serde(default)]
    pub holders: Vec<Holding>,
    /// The jobs waiting, first come first.
    #[serde(default)]
    pub waiting: Vec<Waiting>,
}

impl QueueDoc {
    fn new(key: &str) -> QueueDoc {
        QueueDoc {
            version: QUEUE_VERSION,
            key: key.to_owned(),
            size: None,
            holders: Vec::new(),
            waiting: Vec::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.waiting.is_empty()
    }
}

/// An environment, as stored (any bytes but NUL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Env(#[serde(with = "crate::spec::os::pairs")] pub Vec<(OsString, OsString)>);

/// A queued job (`queued/NAME.json` in the file store), until it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// [`QUEUE_VERSION`].
    pub version: u32,
    /// The job.
    pub name: JobName,
    /// Its run.
    pub job_id: String,
    /// Its queue's key.
    pub queue: String,
    /// When it was queued (RFC 3339, UTC).
    pub queued_at: String,
    /// When it was queued, ms since the Unix epoch.
    pub queued_unix_ms: u64,
    /// Its dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dep>,
    /// The spec its wrapper is handed (its ticket set).
    pub spec: RunSpec,
    /// The environment of the process that queued it: its wrapper gets
    /// this one, not its dispatcher's. `None` for a foreground job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Env>,
    /// Queued by a foreground `run`, which runs it itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreground: bool,
}

/// Queuing a job failed; nothing was queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The spec breaks a rule.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The working directory is not a directory.
    #[error("cwd {} is not a directory", .0.display())]
    Cwd(PathBuf),
    /// A live wrapper runs the name.
    #[error("job {name} is already running{}", pid.map(|p| format!(" (wrapper pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// The job.
        name: JobName,
        /// Its wrapper.
        pid: Option<i32>,
    },
    /// Another jobwatch process held the name for too long.
    #[error("job {0} is being finished or cleaned up by another jobwatch process; try again")]
    Busy(JobName),
    /// The name already has a queued run.
    #[error("job {name} is already queued ({where_}); `jobwatch kill {name}` removes it")]
    AlreadyQueued {
        /// The job.
        name: JobName,
        /// Where it waits.
        where_: String,
    },
    /// A dependency names no job.
    #[error(
        "job {name}: --after {dep}: no job named {dep} (it has no run and none is queued); start it first, or drop --after {dep}"
    )]
    Unknown {
        /// The job.
        name: JobName,
        /// The dependency.
        dep: JobName,
    },
    /// A dependency's state cannot be trusted.
    #[error("job {name}: --after {dep}: {reason}")]
    DepInvalid {
        /// The job.
        name: JobName,
        /// The dependency.
        dep: JobName,
        /// Why.
        reason: String,
    },
    /// The dependencies would close a cycle.
    #[error("job {name}: dependency cycle {}; drop one of these --after", path.iter().map(JobName::as_str).collect::<Vec<_>>().join(" -> "))]
    Cycle {
        /// The job.
        name: JobName,
        /// The cycle, from the job back to it.
        path: Vec<JobName>,
    },
    /// The slot group exists with another size.
    #[error(
        "slot group {group} has size {size} while it has jobs; use --slot {group} or --slot {group}:{size}"
    )]
    SlotSize {
        /// The group.
        group: String,
        /// Its size.
        size: u32,
    },
    /// The queue is full.
    #[error(
        "queue {0} holds {MAX_WAITING} waiting jobs, the most it takes; try again once some have run"
    )]
    Full(String),
    /// A queue document cannot be used.
    #[error("cannot use {doc}: {detail}; remove it to start the queue afresh")]
    Malformed {
        /// The document.
        doc: String,
        /// What is wrong.
        detail: String,
    },
    /// The previous run of the name could not be retired.
    #[error("job {name}: cannot retire the previous run: {reason}")]
    Previous {
        /// The job.
        name: JobName,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a wrapper may not start a job (checked under the name's claim).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A plain run of a name that has a queued run.
    #[error("job {name} is queued ({where_}); `jobwatch kill {name}` removes it, or wait for it")]
    Queued {
        /// The job.
        name: String,
        /// Where it waits.
        where_: String,
    },
    /// The ticket's turn is no longer recorded, or its run exists already.
    #[error("job {name}: its queue turn ({queue}) was taken back before it started: {why}")]
    TurnTaken {
        /// The job.
        name: String,
        /// The queue.
        queue: String,
        /// What was found.
        why: String,
    },
}

/// A queued job could not be started by its dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnFailure {
    /// The name is busy (a run of it holds its claim): it waits again.
    Busy(String),
    /// It was refused, and will not start: why.
    Refused(String),
}

/// How a dispatcher starts a queued detached job: the operations layer's
/// detached start (`jobwatch __wrapper`, handed the spec), or a test's.
pub trait Spawn: Send + Sync {
    /// Starts `spec`'s wrapper with environment `env` (the queuing
    /// process's; `None`: this one's); returns once the job has started.
    fn spawn(
        &self,
        store: &dyn Store,
        spec: &RunSpec,
        env: Option<&Env>,
    ) -> Result<Started, SpawnFailure>;
}

static SPAWNER: OnceLock<Box<dyn Spawn>> = OnceLock::new();

/// Sets how this process starts queued detached jobs (the binary installs
/// its own `__wrapper` at startup). Without it, a dispatch grants turns
/// only to foreground jobs and leaves detached ones waiting.
pub fn install(spawner: Box<dyn Spawn>) {
    let _ = SPAWNER.set(spawner);
}

fn spawner() -> Option<&'static dyn Spawn> {
    SPAWNER.get().map(|b| b.as_ref())
}

/// Checks a ticket's shape (the spec's rules).
pub(crate) fn check_ticket(t: &Ticket) -> Result<(), SpecError> {
    let id_ok = !t.job_id.is_empty()
        && t.job_id.len() <= 128
        && t.job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err(SpecError::Ticket(format!("job_id {:?}", t.job_id)));
    }
    if t.queue != AFTER_ONLY && JobName::parse(&t.queue).is_err() {
        return Err(SpecError::Ticket(format!("queue {:?}", t.queue)));
    }
    Ok(())
}

fn parse_doc<T: serde::de::DeserializeOwned + Versioned>(
    store: &dyn Store,
    kind: DocKind,
    key: &str,
    bytes: &[u8],
) -> Result<T, QueueError> {
    let malformed = |detail: String| QueueError::Malformed {
        doc: store.docs().describe(kind, key),
        detail,
    };
    let doc: T = serde_json::from_slice(bytes).map_err(|e| malformed(format!("malformed: {e}")))?;
    if doc.version() > QUEUE_VERSION {
        return Err(malformed(format!(
            "version {} is newer than this jobwatch understands ({QUEUE_VERSION})",
            doc.version()
        )));
    }
    Ok(doc)
}

trait Versioned {
    fn version(&self) -> u32;
}

impl Versioned for QueueDoc {
    fn version(&self) -> u32 {
        self.version
    }
}

impl Versioned for QueuedJob {
    fn version(&self) -> u32 {
        self.version
    }
}

/// The queued document of `name`, if one is stored and usable.
pub fn read_queued(store: &dyn Store, name: &JobName) -> Result<Option<QueuedJob>, QueueError> {
    match store.docs().read(DocKind::QueuedJob, name.as_str())? {
        None => Ok(None),
        Some(bytes) => parse_doc(store, DocKind::QueuedJob, name.as_str(), &bytes).map(Some),
    }
}

/// Queue `key`, as stored (an empty one when none is).
pub fn read_queue(store: &dyn Store, key: &str) -> Result<QueueDoc, QueueError> {
    match store.docs().read(DocKind::Queue, key)? {
        None => Ok(QueueDoc::new(key)),
        Some(bytes) => parse_doc(store, DocKind::Queue, key, &bytes),
    }
}

/// A job waiting in a queue (or holding a turn, not yet started).
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its queued document.
    pub job: QueuedJob,
    /// Its place: 0 once granted its turn, else from 1.
    pub position: usize,
    /// How many wait in its queue.
    pub waiting: usize,
    /// What it waits for, in a few words.
    pub waiting_for: String,
}

/// Reads queues once each for many lookups (`status` of every job).
#[derive(Default)]
pub struct QueueCache {
    docs: std::collections::HashMap<String, Option<QueueDoc>>,
}

impl QueueCache {
    fn get(&mut self, store: &dyn Store, key: &str) -> Option<&QueueDoc> {
        self.docs
            .entry(key.to_owned())
            .or_insert_with(|| read_queue(store, key).ok())
            .as_ref()
    }
}

/// `name`'s queued run, if it has one that has not started: its document
/// is stored, its queue lists it, and no run of its `job_id` exists.
pub fn pending(store: &dyn Store, name: &JobName) -> Option<Pending> {
    pending_in(store, name, &mut QueueCache::default())
}

/// [`pending`], reading each queue once for many names.
pub fn pending_in(store: &dyn Store, name: &JobName, cache: &mut QueueCache) -> Option<Pending> {
    let job = read_queued(store, name).ok().flatten()?;
    if store.current_job_id(name).as_deref() == Some(job.job_id.as_str()) {
        return None;
    }
    let doc = cache.get(store, &job.queue)?;
    let position = decide::position(doc, &job.job_id)?;
    let waiting = doc.waiting.len();
    let waiting_for = match doc.waiting.iter().find(|w| w.job_id == job.job_id) {
        Some(w) => decide::waiting_for(doc, w, &mut StoreFacts::new(store)),
        None => "its wrapper to start it".to_owned(),
    };
    Some(Pending {
        job,
        position,
        waiting,
        waiting_for,
    })
}

/// Where a queued job waits, in a few words: `3rd of 9 in slot gpu`.
pub fn describe(p: &Pending) -> String {
    match (p.position, p.job.queue == AFTER_ONLY) {
        (0, _) => "its turn has come, starting".to_owned(),
        (_, true) => format!("waiting for {}", p.waiting_for),
        (n, false) => format!(
            "{n} of {} in slot {}, waiting for {}",
            p.waiting, p.job.queue, p.waiting_for
        ),
    }
}

/// The names of every queued job (their documents), sorted.
pub fn queued_names(store: &dyn Store) -> Vec<JobName> {
    store
        .docs()
        .list(DocKind::QueuedJob)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|k| JobName::parse(&k).ok())
        .collect()
}

/// What queuing a job asks for.
#[derive(Debug, Clone)]
pub struct Submit {
    /// The job (its ticket is set here).
    pub spec: RunSpec,
    /// Its dependencies.
    pub after: Vec<After>,
    /// Its slot group.
    pub slot: Option<SlotRequest>,
    /// A foreground `run` that runs it itself once granted.
    pub foreground: bool,
    /// The environment its wrapper gets (a detached job's: the queuing
    /// process's own, captured now).
    pub env: Option<Env>,
}

/// What became of a queued job at once.
#[derive(Debug)]
pub enum Submitted {
    /// Its turn came at once and it was started (a detached job).
    Started {
        /// What started.
        started: Started,
        /// Its spec (with its ticket).
        spec: Box<RunSpec>,
    },
    /// Its turn came at once; the foreground caller runs it now.
    Granted {
        /// Its spec (with its ticket).
        spec: Box<RunSpec>,
    },
    /// It waits.
    Queued(Box<Pending>),
    /// It ended at once without running (a dependency had failed).
    Ended {
        /// Its spec (with its ticket).
        spec: Box<RunSpec>,
    },
}

/// This process's environment, as a queued job's wrapper gets it: without
/// the variables that mark a wrapper or a job (its starter adds those).
pub fn this_environment() -> Env {
    Env(std::env::vars_os()
        .filter(|(k, _)| k != crate::kill::JOB_ID_ENV && k != crate::kill::DETACHED_WRAPPER_ENV)
        .collect())
}

/// Queues a job: checks it, binds its dependencies, refuses a cycle, then
/// records it and dispatches its queue (so it starts at once when it can).
pub fn submit(store: &dyn Store, req: Submit) -> Result<Submitted, QueueError> {
    let mut spec = req.spec;
    spec.ticket = None;
    spec.validate()?;
    if !spec.cwd.is_dir() {
        return Err(QueueError::Cwd(spec.cwd.clone()));
    }
    let name = spec.name.clone();
    let mut after: Vec<After> = Vec::new();
    for a in req.after {
        if !after.iter().any(|b| b.name == a.name) {
            after.push(a);
        }
    }
    if after.iter().any(|a| a.name == name) {
        return Err(QueueError::Cycle {
            path: vec![name.clone(), name.clone()],
            name,
        });
    }
    let key = req
        .slot
        .as_ref()
        .map_or_else(|| AFTER_ONLY.to_owned(), |s| s.group.to_string());
    let claim = claim_name(store, &name)?;
    if let Some(p) = pending(store, &name) {
        return Err(QueueError::AlreadyQueued {
            where_: describe(&p),
            name,
        });
    }
    let deps = bind_dependencies(store, &name, &after)?;
    let job_id = proc::random_id();
    spec.ticket = Some(Ticket {
        job_id: job_id.clone(),
        queue: key.clone(),
    });
    let now = store.now();
    let me = Starter::me();
    let job = QueuedJob {
        version: QUEUE_VERSION,
        name: name.clone(),
        job_id: job_id.clone(),
        queue: key.clone(),
        queued_at: rfc3339(now),
        queued_unix_ms: unix_ms(now),
        after: deps.clone(),
        spec: spec.clone(),
        env: if req.foreground { None } else { req.env },
        foreground: req.foreground,
    };
    let bytes = serde_json::to_vec_pretty(&job).expect("a queued job serializes");
    store
        .docs()
        .replace(DocKind::QueuedJob, name.as_str(), &bytes)?;
    let entry = Waiting {
        name: name.clone(),
        job_id: job_id.clone(),
        after: deps,
        foreground: req.foreground.then_some(me),
    };
    let size = req.slot.as_ref().map(|s| s.size.unwrap_or(0));
    let plan = match look(store, &key, Some((entry, size)), spawner().is_some()) {
        Ok(plan) => plan,
        Err(e) => {
            let _ = store.docs().remove(DocKind::QueuedJob, name.as_str());
            return Err(e);
        }
    };
    // Its wrapper claims the name: let go of it before starting anything.
    drop(claim);
    let started = carry_out(store, &key, plan).started;
    if let Some(s) = started.into_iter().find(|s| s.name == name.as_str()) {
        return Ok(Submitted::Started {
            started: s,
            spec: Box::new(spec),
        });
    }
    // Other queues may be waiting for what this look settled.
    dispatch(store);
    if let Some(p) = pending(store, &name) {
        if p.position == 0 && req.foreground {
            return Ok(Submitted::Granted {
                spec: Box::new(spec),
            });
        }
        return Ok(Submitted::Queued(Box::new(p)));
    }
    Ok(Submitted::Ended {
        spec: Box::new(spec),
    })
}

fn claim_name<'s>(store: &'s dyn Store, name: &JobName) -> Result<Box<dyn Claim + 's>, QueueError> {
    store
        .claim(name, ClaimWait::Briefly(BRIEF_HOLDER_WAIT))
        .map_err(|e| match e {
            ClaimError::AlreadyRunning { name, pid } => QueueError::AlreadyRunning { name, pid },
            ClaimError::Held { name } => QueueError::Busy(name),
            ClaimError::Store(e) => QueueError::Store(e),
        })
}

/// Binds each dependency to the run of its name it means: the queued one,
/// else the current one (running or ended); refuses an unknown name and a
/// dependency cycle.
fn bind_dependencies(
    store: &dyn Store,
    name: &JobName,
    after: &[After],
) -> Result<Vec<Dep>, QueueError> {
    let mut deps = Vec::with_capacity(after.len());
    for a in after {
        if let Some(p) = pending(store, &a.name) {
            deps.push(Dep {
                name: a.name.clone(),
                job_id: Some(p.job.job_id),
                when: a.when,
            });
            continue;
        }
        let job_id = match classify(store.snapshot(&a.name), store.now(), None) {
            JobState::Missing => {
                return Err(QueueError::Unknown {
                    name: name.clone(),
                    dep: a.name.clone(),
                });
            }
            JobState::Invalid { reason } => {
                return Err(QueueError::DepInvalid {
                    name: name.clone(),
                    dep: a.name.clone(),
                    reason,
                });
            }
            state => state.record().map(|r| r.job_id.clone()),
        };
        deps.push(Dep {
            name: a.name.clone(),
            job_id,
            when: a.when,
        });
    }
    let names: Vec<JobName> = deps.iter().map(|d| d.name.clone()).collect();
    if let Some(path) = decide::find_cycle(name, &names, &queued_edges(store, &names)) {
        return Err(QueueError::Cycle {
            name: name.clone(),
            path,
        });
    }
    Ok(deps)
}

/// The dependencies (by name) of the queued jobs reachable from `from`.
fn queued_edges(
    store: &dyn Store,
    from: &[JobName],
) -> std::collections::HashMap<JobName, Vec<JobName>> {
    let mut edges = std::collections::HashMap::new();
    let mut todo: Vec<JobName> = from.to_vec();
    while let Some(n) = todo.pop() {
        if edges.contains_key(&n) {
            continue;
        }
        let next: Vec<JobName> = pending(store, &n)
            .map(|p| p.job.after.iter().map(|d| d.name.clone()).collect())
            .unwrap_or_default();
        todo.extend(next.iter().cloned());
        edges.insert(n, next);
    }
    edges
}

/// One look at queue `key` (appending `append` first, with the group's
/// `size`: 0 for "whatever it is"): the decision, with the document
/// written as it says.
fn look(
    store: &dyn Store,
    key: &str,
    append: Option<(Waiting, Option<u32>)>,
    can_start: bool,
) -> Result<Plan, QueueError> {
    let me = Starter::me();
    let now = unix_ms(store.now());
    let mut facts = StoreFacts::new(store);
    let mut plan = Plan::default();
    let mut refusal: Option<QueueError> = None;
    store.docs().update(DocKind::Queue, key, &mut |current| {
        plan = Plan::default();
        refusal = None;
        let mut doc = match current {
            Ok(None) => QueueDoc::new(key),
            Ok(Some(bytes)) => match parse_doc(store, DocKind::Queue, key, bytes) {
                Ok(d) => d,
                Err(e) => {
                    refusal = Some(e);
                    return None;
                }
            },
            Err(_) => return None,
        };
        if let Some((w, size)) = &append {
            if let Err(e) = set_size(&mut doc, *size) {
                refusal = Some(e);
                return None;
            }
            if doc.waiting.len() >= MAX_WAITING {
                refusal = Some(QueueError::Full(key.to_owned()));
                return None;
            }
            doc.waiting.push(w.clone());
        }
        plan = decide::decide(&doc, &mut facts, &me, now, can_start);
        let new = plan.doc.take().or_else(|| append.is_some().then_some(doc));
        new.map(|d| serde_json::to_vec(&d).expect("a queue serializes"))
    })?;
    match refusal {
        Some(e) => Err(e),
        None => Ok(plan),
    }
}

/// Sets a group's size as asked (`Some(0)`: the group's own, 1 for a new
/// one; `None`: no limit, the dependencies-only queue). A group that has
/// jobs keeps its size: another one is refused.
fn set_size(doc: &mut QueueDoc, asked: Option<u32>) -> Result<(), QueueError> {
    let Some(asked) = asked else {
        doc.size = None;
        return Ok(());
    };
    match (doc.size, asked) {
        (Some(size), 0) if !doc.is_idle() => doc.size = Some(size),
        (Some(size), n) if !doc.is_idle() && size != n => {
            return Err(QueueError::SlotSize {
                group: doc.key.clone(),
                size,
            });
        }
        (Some(size), 0) => doc.size = Some(size),
        (_, 0) => doc.size = Some(1),
        (_, n) => doc.size = Some(n),
    }
    Ok(())
}

/// What carrying out a plan did.
#[derive(Debug, Default)]
struct Done {
    started: Vec<Started>,
    /// Something changed that the next look must see.
    progress: bool,
}

/// Carries out a look's plan: starts the jobs granted to this process,
/// finishes and kills runs that hold turns, ends jobs that cannot run.
fn carry_out(store: &dyn Store, key: &str, plan: Plan) -> Done {
    let mut done = Done::default();
    for (name, job_id) in &plan.finish {
        let grace = grace_of(store, name);
        match claim_and_finish_lost(store, name, grace, WRAPPER_VANISHED) {
            Ok(_) => done.progress = true,
            Err(e) => warn(format_args!(
                "queue {key}: cannot finish {name} ({job_id}): {e}"
            )),
        }
    }
    for (name, job_id) in &plan.kill_hung {
        let grace = grace_of(store, name);
        let why = "no progress past its stale threshold and its wrapper did not act (found by a queue dispatch)";
        match kill_run(store, name, Some(job_id), Outcome::Hung, why, grace) {
            Ok(_) => done.progress = true,
            Err(e) => warn(format_args!("queue {key}: cannot kill {name}: {e}")),
        }
    }
    for e in &plan.end {
        match end_unstarted(store, key, e) {
            Ok(true) => done.progress = true,
            Ok(false) => {}
            Err(err) => warn(format_args!("queue {key}: cannot end {}: {err}", e.name)),
        }
    }
    for h in &plan.start {
        match start_granted(store, key, h) {
            Ok(Some(s)) => done.started.push(s),
            Ok(None) => done.progress = true,
            Err(err) => warn(format_args!("queue {key}: cannot start {}: {err}", h.name)),
        }
    }
    done
}

fn grace_of(store: &dyn Store, name: &JobName) -> Duration {
    store
        .snapshot(name)
        .record
        .ok()
        .flatten()
        .map_or(crate::spec::DEFAULT_GRACE, |r| r.settings.grace())
}

/// Starts a job granted to this process from its stored spec. `Ok(None)`:
/// it did not start (it waits again, or it was ended).
fn start_granted(store: &dyn Store, key: &str, h: &Holding) -> Result<Option<Started>, QueueError> {
    let Some(spawner) = spawner() else {
        return Ok(None);
    };
    let job = match read_queued(store, &h.name) {
        Ok(Some(job)) if job.job_id == h.job_id => job,
        _ => {
            let why = "its queued run spec is gone or unreadable";
            end_unstarted(store, key, &ending(h, Outcome::Lost, why.into()))?;
            return Ok(None);
        }
    };
    match spawner.spawn(store, &job.spec, job.env.as_ref()) {
        Ok(s) => Ok(Some(s)),
        Err(SpawnFailure::Busy(_)) => {
            give_back(store, key, &job)?;
            Ok(None)
        }
        Err(SpawnFailure::Refused(why)) => {
            // A run that got as far as its record ended with an outcome of
            // its own (a command not found is `failed`, 127).
            if store.current_job_id(&h.name).as_deref() != Some(h.job_id.as_str()) {
                let why = format!("not started: {why}");
                end_unstarted(store, key, &ending(h, Outcome::Skipped, why))?;
            }
            Ok(None)
        }
    }
}

fn ending(h: &Holding, outcome: Outcome, reason: String) -> Ending {
    Ending {
        name: h.name.clone(),
        job_id: h.job_id.clone(),
        outcome,
        reason,
    }
}

/// A granted job that found its name busy waits again, at the head of its
/// queue.
fn give_back(store: &dyn Store, key: &str, job: &QueuedJob) -> Result<(), QueueError> {
    change(store, key, |doc| {
        doc.holders.retain(|h| h.job_id != job.job_id);
        if !doc.waiting.iter().any(|w| w.job_id == job.job_id) {
            doc.waiting.insert(
                0,
                Waiting {
                    name: job.name.clone(),
                    job_id: job.job_id.clone(),
                    after: job.after.clone(),
                    foreground: None,
                },
            );
        }
    })
}

/// Changes queue `key` with `f` (an atomic read-modify-write).
fn change(
    store: &dyn Store,
    key: &str,
    mut f: impl FnMut(&mut QueueDoc),
) -> Result<(), QueueError> {
    let mut refusal = None;
    store.docs().update(DocKind::Queue, key, &mut |current| {
        refusal = None;
        let mut doc = match current {
            Ok(Some(bytes)) => match parse_doc::<QueueDoc>(store, DocKind::Queue, key, bytes) {
                Ok(d) => d,
                Err(e) => {
                    refusal = Some(e);
                    return None;
                }
            },
            Ok(None) | Err(_) => return None,
        };
        let before = doc.clone();
        f(&mut doc);
        (doc != before).then(|| serde_json::to_vec(&doc).expect("a queue serializes"))
    })?;
    refusal.map_or(Ok(()), Err)
}

/// Ends a queued job without running it (skipped, killed, lost, timeout):
/// under its name's claim, unless its run exists already, retires the
/// previous run, writes its record (no command ever ran) and commits it;
/// then takes it off its queue. `Ok(false)`: not done now (its name is
/// held: its wrapper starts it, or another process ends it).
pub fn end_unstarted(store: &dyn Store, key: &str, e: &Ending) -> Result<bool, QueueError> {
    let mut claim = match store.claim(&e.name, ClaimWait::Briefly(BRIEF_HOLDER_WAIT)) {
        Ok(c) => c,
        Err(ClaimError::AlreadyRunning { .. } | ClaimError::Held { .. }) => return Ok(false),
        Err(ClaimError::Store(err)) => return Err(err.into()),
    };
    let current = claim.snapshot().record.ok().flatten().map(|r| r.job_id);
    if current.as_deref() != Some(e.job_id.as_str()) {
        let job = read_queued(store, &e.name).ok().flatten();
        let job = job.filter(|j| j.job_id == e.job_id);
        let grace = job
            .as_ref()
            .map_or(crate::spec::DEFAULT_GRACE, |j| j.spec.settings.grace());
        crate::supervise::retire_previous(store, claim.as_mut(), grace).map_err(|err| {
            QueueError::Previous {
                name: e.name.clone(),
                reason: err.to_string(),
            }
        })?;
        let record = unstarted_record(job.as_ref(), e, store.now());
        claim.write_record(&record)?;
        claim.commit(&record)?;
    }
    if read_queued(store, &e.name)
        .ok()
        .flatten()
        .is_some_and(|j| j.job_id == e.job_id)
    {
        store.docs().remove(DocKind::QueuedJob, e.name.as_str())?;
    }
    drop(claim);
    change(store, key, |doc| {
        doc.waiting.retain(|w| w.job_id != e.job_id);
        doc.holders.retain(|h| h.job_id != e.job_id);
    })?;
    Ok(true)
}

/// The record of a job that never ran: the ending process's identity in
/// place of a wrapper's, no command, started and ended now, attempt 0.
fn unstarted_record(job: Option<&QueuedJob>, e: &Ending, now: SystemTime) -> JobRecord {
    let mut record = crate::supervise::record_held_by(
        &e.name,
        e.job_id.clone(),
        job.map(|j| &j.spec),
        proc::myself(),
        now,
    );
    let end = JobEnd {
        outcome: e.outcome,
        exit_code: None,
        signal: None,
        reason: Some(e.reason.clone()),
    };
    record.finish(&end, Finalizer::Waiter, now);
    record
}

/// Runs one dispatch step on every queue (see the module docs): turns of
/// runs that ended are freed, and the jobs that may now start are started
/// (by this process, with the installed [`Spawn`]). Never fails its
/// caller: what goes wrong is said on stderr. Returns what it started.
pub fn dispatch(store: &dyn Store) -> Vec<Started> {
    let keys = match store.docs().list(DocKind::Queue) {
        Ok(keys) => keys,
        Err(e) => {
            warn(format_args!("cannot list the queues: {e}"));
            return Vec::new();
        }
    };
    let mut started = Vec::new();
    for key in keys {
        started.extend(dispatch_queue(store, &key));
    }
    started
}

/// [`dispatch`] by a reader that looks (a waiter), as a safety net: at most
/// once per [`crate::store::SAFETY_RECHECK`] in this process, whoever
/// asks (the runs that end dispatch themselves; this only moves on a queue
/// whose committer died before it could). Returns whether it dispatched.
pub fn dispatch_as_safety_net(store: &dyn Store) -> bool {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < crate::store::SAFETY_RECHECK) {
            return false;
        }
        *last = Some(std::time::Instant::now());
    }
    dispatch(store);
    true
}

/// One dispatch step on queue `key`.
pub fn dispatch_queue(store: &dyn Store, key: &str) -> Vec<Started> {
    let mut started = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let plan = match look(store, key, None, spawner().is_some()) {
            Ok(plan) => plan,
            Err(e) => {
                warn(format_args!("queue {key}: {e}"));
                break;
            }
        };
        if !plan.acts() {
            break;
        }
        let done = carry_out(store, key, plan);
        let more = done.progress;
        started.extend(done.started);
        if !more {
            break;
        }
    }
    started
}

/// Under `spec.name`'s claim, before a wrapper touches anything else: a
/// queued job's turn must still be recorded and its run must not exist
/// yet; a plain run is refused while the name has a queued run.
pub fn admit(store: &dyn Store, claim: &dyn Claim, spec: &RunSpec) -> Result<(), Refusal> {
    let name = &spec.name;
    let current = claim.snapshot().record.ok().flatten().map(|r| r.job_id);
    let Some(ticket) = &spec.ticket else {
        if let Some(p) = pending(store, name)
            && current.as_deref() != Some(p.job.job_id.as_str())
        {
            return Err(Refusal::Queued {
                name: name.to_string(),
                where_: describe(&p),
            });
        }
        return Ok(());
    };
    let taken = |why: &str| Refusal::TurnTaken {
        name: name.to_string(),
        queue: ticket.queue.clone(),
        why: why.to_owned(),
    };
    if current.as_deref() == Some(ticket.job_id.as_str()) {
        return Err(taken("its run exists already"));
    }
    let doc = read_queue(store, &ticket.queue).map_err(|e| taken(&e.to_string()))?;
    if !doc
        .holders
        .iter()
        .any(|h| h.job_id == ticket.job_id && &h.name == name)
    {
        return Err(taken("the queue does not list it as holding a turn"));
    }
    Ok(())
}

/// Once a queued job's start record is written (under its claim): its
/// queued document goes, since the run now stands for it.
pub fn started(store: &dyn Store, spec: &RunSpec) {
    let Some(ticket) = &spec.ticket else {
        return;
    };
    let ours = read_queued(store, &spec.name)
        .ok()
        .flatten()
        .is_some_and(|j| j.job_id == ticket.job_id);
    if ours && let Err(e) = store.docs().remove(DocKind::QueuedJob, spec.name.as_str()) {
        warn(format_args!("{}: {e}", spec.name));
    }
}

/// What a foreground job waiting for its turn sees on one look.
#[derive(Debug)]
pub enum Turn {
    /// Its turn has come: run it now.
    Granted,
    /// It still waits.
    Waiting(Box<Pending>),
    /// It ended without running (its record says how).
    Ended,
}

/// One look at foreground job `spec` (queued by this process): a dispatch
/// step on its queue (which may grant it its turn), then where it stands.
pub fn foreground_turn(store: &dyn Store, spec: &RunSpec) -> Turn {
    let Some(ticket) = &spec.ticket else {
        return Turn::Granted;
    };
    dispatch_queue(store, &ticket.queue);
    match pending(store, &spec.name) {
        Some(p) if p.job.job_id == ticket.job_id && p.position == 0 => Turn::Granted,
        Some(p) if p.job.job_id == ticket.job_id => Turn::Waiting(Box::new(p)),
        _ => Turn::Ended,
    }
}

/// The names whose change may change what `spec` (a queued job) waits for:
/// its dependencies, and the runs holding its queue's turns.
pub fn wakers(store: &dyn Store, spec: &RunSpec) -> Vec<JobName> {
    let mut names = vec![spec.name.clone()];
    let Some(ticket) = &spec.ticket else {
        return names;
    };
    if let Ok(Some(job)) = read_queued(store, &spec.name) {
        names.extend(job.after.iter().map(|d| d.name.clone()));
    }
    if let Ok(doc) = read_queue(store, &ticket.queue) {
        names.extend(doc.holders.iter().map(|h| h.name.clone()));
    }
    names.sort();
    names.dedup();
    names
}

/// Whether run `job_id` of `name` is still queued (its document holds it).
pub(crate) fn is_queued(store: &dyn Store, name: &JobName, job_id: &str) -> bool {
    read_queued(store, name)
        .ok()
        .flatten()
        .is_some_and(|j| j.job_id == job_id)
}

/// The fact about run `job_id` of `name` (for a waiter deciding whether a
/// bound run is still queued).
pub fn run_fact(store: &dyn Store, name: &JobName, job_id: &str) -> RunFact {
    use decide::Facts;
    StoreFacts::new(store).run(name, Some(job_id))
}

#[cfg(test)]
mod tests;
