//! The store seam: everything the rest of jobwatch needs from wherever job
//! state lives, and nothing more.
//!
//! A [`Store`] keeps, per job name, the current run's record and status,
//! the liveness of the wrapper that runs it, its progress mark, kill
//! requests, archived runs, and small documents (circuit breakers). Two
//! implementations exist: [`file::FileStore`], the jobs directory of
//! protocol v1 (docs/protocol.md), and [`memory::MemoryStore`], the test
//! double the deciding code is unit-tested on. A distributed store (etcd,
//! issue 11) is a third. Logs are not state: they stay on the host that
//! runs the job, behind [`LocalLogs`].
//!
//! The traits are object-safe and used as `&dyn Store`: the store is chosen
//! at run time. A held claim on a name is a value ([`Claim`], nextest's
//! lock-as-a-type): every operation that needs the name's lock (start,
//! retire, finish, remove a run) exists only on it, so "call this with the
//! lock held" is checked by the compiler.
//!
//! # The contract (docs/architecture.md, "rules of the seam")
//! 1. **Create-once outcome**: [`Claim::commit`] never replaces a status; a
//!    second commit reports [`Commit::AlreadyFinished`].
//! 2. **Atomic record**: a reader sees the old record or the new one, never
//!    a torn one.
//! 3. **Record before status**: the final record is visible before the
//!    status ([`Claim::commit`] requires it written first); a snapshot that
//!    sees a status beside an unfinished record reads the record again.
//! 4. **Holder alive** means the wrapper that wrote the record still runs
//!    ([`Holder`]); a dead holder's claim is released by the store itself
//!    (kernel flock, etcd lease), however the holder died.
//! 5. **Snapshots never block** and never panic on hostile data: what
//!    cannot be used is [`Invalid`], with a one-line reason.
//! 6. **Watches never lose a change**: at worst they wake spuriously, or
//!    at the safety recheck.
//! 7. **Claims are exclusive**: a second claim of a held name is refused
//!    ([`ClaimError::Held`], or [`ClaimError::AlreadyRunning`]).
//! 8. **Events once** ([`EventLog`]): a run's `started` is journaled when
//!    its first attempt is spawned ([`Claim::mark_spawned`]), its `ended`
//!    when [`Claim::commit`] creates its status (never for
//!    [`Commit::AlreadyFinished`]), each after the change it reports is
//!    durable; an append that fails is reported and never fails that
//!    change. A reader repairs an `ended` lost to a crash between the two
//!    ([`EventLog::append_missing_end`]).

pub mod file;
pub mod memory;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::logs::LocalLogs;
use crate::model::{JobEvent, JobName, JobRecord, KillRequest, StatusWord};

pub use crate::logs::RunAt;

/// Where job state lives. See the module docs for the contract.
pub trait Store: Send + Sync + fmt::Debug {
    /// One line naming where state lives, for errors: `jobs directory /x`.
    fn describe(&self) -> String;

    /// The time on this host's clock, as the store judges it (a test
    /// double controls it).
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Every name with a current run (or any state of one), sorted: the one
    /// listing behind `ls`, `status` and gc.
    fn list(&self) -> Result<Vec<JobName>, StoreError>;

    /// One consistent look at the name's current run. Never blocks on
    /// hostile data and never fails: what cannot be used is [`Invalid`].
    fn snapshot(&self, name: &JobName) -> Snapshot;

    /// The liveness of the wrapper that wrote `record` (rule 4).
    fn holder(&self, record: &JobRecord) -> Holder;

    /// How long after a wrapper died this store may still report it
    /// [`Holder::Alive`]: zero where liveness is checked directly (PIDs);
    /// a lease-based store reports a dead host only once its lease expires.
    /// A killer waits this long (beyond the kill itself) for the status.
    fn holder_expiry(&self, _record: &JobRecord) -> Duration {
        Duration::ZERO
    }

    /// The `job_id` of the name's current run, read cheaply (no liveness
    /// check): what a waiter bound to a run compares with.
    fn current_job_id(&self, name: &JobName) -> Option<String>;

    /// Takes the name. The claim is the lock: only its holder may start,
    /// retire, finish or remove a run. [`ClaimWait::No`] for finishers and
    /// gc; [`ClaimWait::Briefly`] for `run`, which outlives short holders
    /// (gc, a finisher) but refuses at once when a live wrapper holds the
    /// name ([`ClaimError::AlreadyRunning`]).
    fn claim(&self, name: &JobName, wait: ClaimWait) -> Result<Box<dyn Claim + '_>, ClaimError>;

    /// Writes a kill request for run `req.job_id`, before any signal: the
    /// owning wrapper carries it out (and records its outcome) even if the
    /// requester goes away.
    fn request_kill(&self, name: &JobName, req: &KillRequest) -> Result<(), StoreError>;

    /// The kill request stored for the name, if any (it may name another
    /// run: a wrapper ignores a request for another `job_id`).
    fn kill_request(&self, name: &JobName) -> Result<Option<KillRequest>, StoreError>;

    /// An explicit beat of a running job (`jobwatch beat`), at `at`. A
    /// progress mark that is not the wrapper's own is refused, not replaced.
    fn beat(&self, name: &JobName, at: SystemTime) -> Result<(), StoreError>;

    /// The labels of the name's archived runs, newest first (labels sort
    /// by start time). Cheap: nothing of the runs is read.
    fn archived(&self, name: &JobName) -> Vec<String>;

    /// How many archived runs each of `names` has (`archived(name).len()`,
    /// in the same order). A store that can answer for many names in one
    /// pass overrides it: `status` over thousands of jobs asks this once
    /// instead of looking for each name's history.
    fn archived_counts(&self, names: &[JobName]) -> Vec<usize> {
        names.iter().map(|n| self.archived(n).len()).collect()
    }

    /// Archived run `job_id` of the name, if it is in history: where it is
    /// and a snapshot of it (for a waiter bound to a run that was replaced).
    fn archived_run(&self, name: &JobName, job_id: &str) -> Option<Archived>;

    /// Wake-ups on changes of `names`' state (and what `what` adds).
    fn watch(&self, names: &[JobName], what: WatchFor) -> Box<dyn Watch>;

    /// Atomic read-modify-write documents (circuit breakers).
    fn docs(&self) -> &dyn DocStore;

    /// This host's logs (and result files) of this store's jobs.
    fn logs(&self) -> &LocalLogs;

    /// The variables that tell a job where its own state is
    /// (`JOBWATCH_DIR`, `JOBWATCH_RESULT`, `JOBWATCH_HEARTBEAT`).
    fn job_env(&self, name: &JobName) -> Vec<(&'static str, OsString)>;

    /// The last `lines` lines of a run's output, bounded (each cut at
    /// [`crate::report::MAX_TAIL_LINE`]); empty when there is none here.
    fn tail(&self, name: &JobName, at: &RunAt, lines: usize) -> Vec<String> {
        self.logs().tail(name, at, lines)
    }

    /// Where a run's log is, to name it in a report.
    fn log_path(&self, name: &JobName, at: &RunAt) -> PathBuf {
        self.logs().log_path(name, at)
    }

    /// The run's own result file, if it wrote one and it is readable here.
    fn result_path(&self, name: &JobName, at: &RunAt) -> Option<PathBuf> {
        self.logs().result_path(name, at)
    }

    /// Housekeeping: what the store holds beyond the current runs (archived
    /// runs, debris) and removing it.
    fn gc(&self) -> &dyn GcStore;

    /// How another process (a detached wrapper) opens this same store;
    /// `None` for a store that lives in this process only (the memory
    /// store), whose jobs cannot be detached.
    fn spec(&self) -> Option<crate::spec::StoreSpec> {
        None
    }
    /// The event journal: every run's `started` and `ended`, in the order
    /// they happened, for `jobwatch events`.
    fn events(&self) -> &dyn EventLog;
}

/// A held claim on a name: the lock is held for as long as the value
/// lives, and released when it is dropped (or its holder dies).
pub trait Claim: Send {
    /// The name claimed.
    fn name(&self) -> &JobName;

    /// A snapshot of the name's current run, taken under the claim.
    fn snapshot(&self) -> Snapshot;

    /// Replaces the current run's record atomically (the start record,
    /// attempts, a final record before [`Claim::commit`]).
    fn write_record(&mut self, record: &JobRecord) -> Result<(), StoreError>;

    /// Writes a start's first record, before the command is spawned:
    /// visible to readers at once like [`Claim::write_record`], but it need
    /// not survive a crash, because [`Claim::mark_spawned`] rewrites it
    /// durably before the start is acknowledged (a store may skip a sync
    /// here; the file store does: protocol §6.1).
    fn write_start_record(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        self.write_record(record)
    }

    /// The start commit point: the record naming the spawned command (and
    /// its PID), made durable; from here on a reader can find and judge it.
    fn mark_spawned(&mut self, record: &JobRecord) -> Result<(), StoreError>;

    /// A fresh progress mark at the store's now: the start of a run or of
    /// an attempt. Replaces a mark that is not the wrapper's own.
    fn reset_beat(&mut self) -> Result<(), StoreError>;

    /// Moves the progress mark to `at`, never backwards (an explicit beat
    /// may be newer). A mark that is not the wrapper's own is replaced.
    fn beat(&self, at: SystemTime) -> Result<(), StoreError>;

    /// The latest progress mark, explicit beats included.
    fn last_beat(&self) -> Option<SystemTime>;

    /// The kill request stored for the name, if a usable one is (it may
    /// name another run: the caller compares `job_id`s).
    fn kill_request(&self) -> Option<KillRequest>;

    /// Whether the current run has a status (someone committed it).
    fn finished(&self) -> bool;

    /// Commits the run's outcome: creates its status from `final_record`,
    /// exactly once. The stored record must already be `final_record`
    /// ([`Claim::write_record`] first: rule 3); whoever sees the status
    /// sees the final record. Never replaces a status: a second commit is
    /// [`Commit::AlreadyFinished`].
    fn commit(&mut self, final_record: &JobRecord) -> Result<Commit, StoreError>;

    /// Moves the current run (its logs with it) into history as `label`
    /// (made unique by the store); the name is then free of a run.
    fn archive_current(&mut self, label: &str) -> Result<(), StoreError>;

    /// Removes the finished current run, status last (gc --older-than): a
    /// reader sees the old outcome, then nothing, never a lost run.
    fn remove_current(&mut self) -> Result<(), StoreError>;

    /// Removes the kill request stored for the name (it can never be used).
    fn remove_kill_request(&mut self) -> Result<(), StoreError>;

    /// Whether the claim is still safely held: a store that can lose a
    /// claim while its holder lives (a distributed store cut off from its
    /// holder, whose lease will expire) says so early enough for the
    /// holder to stop its work first. A kernel lock cannot be lost: held.
    fn hold(&self) -> Hold {
        Hold::Held
    }

    /// A descriptor that becomes readable when [`Claim::hold`] or
    /// [`Claim::kill_request`] may have changed, for the holder's `poll(2)`
    /// loop; [`Claim::hold`] consumes the wake-up. `None` where the holder
    /// is woken otherwise (the file store's killers send SIGURG).
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// What [`Claim::hold`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Held: no one else can take the name.
    Held,
    /// The store can no longer vouch for the claim: soon another process
    /// may take the name and report the run `lost`. The holder must have
    /// stopped its work (SIGKILL included) within `within`.
    Losing {
        /// One line on why (`no etcd keepalive succeeded for 12s`).
        reason: String,
        /// How long the holder has to stop its work.
        within: Duration,
    },
}

/// Wake-ups for a waiter.
pub trait Watch: Send + Sync {
    /// A descriptor that becomes readable when something may have changed,
    /// for a `poll(2)` loop that sleeps on more than this; `None` for a
    /// watch that polls on a timer.
    fn fd(&self) -> Option<BorrowedFd<'_>>;

    /// Consumes what is pending: the strongest reason to look, or `None`
    /// when nothing relevant changed.
    fn drain(&self) -> Option<Wake>;

    /// Sleeps until a relevant change or `max` passes; says which. Never
    /// longer than the safety recheck ([`SAFETY_RECHECK`]) when events are
    /// used, so a lost event costs at most that.
    fn wait(&self, max: Duration) -> Wake;
}

/// With events, the state is still re-read this often: a safety net for a
/// lost event, never the normal path.
pub const SAFETY_RECHECK: Duration = Duration::from_secs(2);

/// Poll interval used where events are unavailable and none was given.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// Why a [`Watch`] woke; ordered by how much it asks to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// Only a watched job's log changed (with [`WatchFor::log_writes`]):
    /// its new bytes are worth reading, its state need not be re-read.
    Log,
    /// A kill request was written (with [`WatchFor::kill_requests`]).
    KillRequest,
    /// Anything else: something that can change a verdict, a poll tick, or
    /// the time given ran out. Look at everything.
    State,
}

/// What a watch wakes for besides state changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchFor {
    /// Writes to the jobs' logs ([`Wake::Log`]).
    pub log_writes: bool,
    /// Kill requests ([`Wake::KillRequest`]).
    pub kill_requests: bool,
    /// Poll at this interval instead of using events (`wait --poll`).
    pub poll: Option<Duration>,
    /// The calling process exits right after the wait (the CLI): a store
    /// may move the slow teardown of its events off that exit path.
    pub exits_after: bool,
}

/// How long [`Store::claim`] waits for a holder that is not a live wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimWait {
    /// Not at all: a held name is [`ClaimError::Held`] at once.
    No,
    /// Up to this long, for short holders (gc, a finisher).
    Briefly(Duration),
}

/// What [`Claim::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The status now exists and says this outcome.
    Committed,
    /// A status already existed; it was left as it is.
    AlreadyFinished,
}

/// One consistent look at a name's current run (what the file store reads
/// from `NAME.*`; `classify` turns it into a state).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The run's record.
    pub record: Result<Option<JobRecord>, Invalid>,
    /// The liveness of the record's wrapper, judged after the record was
    /// read and before the status (`Unknown` once a status exists: it no
    /// longer matters).
    pub holder: Holder,
    /// The run's status.
    pub status: Result<Option<StatusWord>, Invalid>,
    /// The progress mark, on this host's clock (not read once a status
    /// exists).
    pub last_beat: Option<SystemTime>,
    /// The last output, on this host's clock (not read once a status
    /// exists).
    pub last_output: Option<SystemTime>,
    /// Whether the recorded command has exited while its wrapper lives
    /// (only checked when the wrapper is alive and no status exists).
    pub command_exited: bool,
    /// Whether any state of the name exists (tells `missing` from
    /// `invalid`).
    pub any_state: bool,
}

impl Snapshot {
    /// Nothing at all for the name.
    pub fn missing() -> Self {
        Self {
            record: Ok(None),
            holder: Holder::Unknown,
            status: Ok(None),
            last_beat: None,
            last_output: None,
            command_exited: false,
            any_state: false,
        }
    }
}

/// An archived run found by [`Store::archived_run`].
#[derive(Debug, Clone)]
pub struct Archived {
    /// Where it is (its history label).
    pub at: RunAt,
    /// Its record (the one whose `job_id` was asked for).
    pub record: JobRecord,
    /// A look at it, as at a current run.
    pub snapshot: Snapshot,
}

/// Whether the wrapper of a run is still there (rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Alive: for the file store, same PID, start time and boot, not a
    /// zombie.
    Alive,
    /// Gone, or its PID now belongs to another process.
    Dead,
    /// It runs on another host: it cannot be checked from here.
    Elsewhere,
    /// No record to tell.
    Unknown,
}

/// Stored data that cannot be used: one line naming it and the problem,
/// e.g. `cannot use …/zz.status: it is a FIFO, not a regular file; remove
/// it`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A store operation failed; the message names what and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O failure: `context` says what was being done to what
    /// (`cannot write /x/a.job.json`).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file or key.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A lock (a claim's, a document's) could not be taken for a reason
    /// other than its being held.
    #[error("cannot lock {what}: {source}")]
    Lock {
        /// The lock (a file, a key).
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The place data goes (a folder) cannot be made or used.
    #[error("cannot use {}: {source}", path.display())]
    Folder {
        /// The place.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Stored data that cannot be used (malformed, or not what it must be).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Another process held what was needed (a document's lock) for longer
    /// than anyone waits for it: it is stuck.
    #[error("{what} was held by another process for more than {}s", waited.as_secs())]
    Busy {
        /// What was held (a lock file, a key).
        what: String,
        /// How long this process waited.
        waited: Duration,
    },
}

/// [`Store::claim`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A live wrapper runs the name.
    #[error("job {name} is already running{}", pid.map(|p| format!(" (wrapper pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// The name.
        name: JobName,
        /// The wrapper's PID, if its record tells.
        pid: Option<i32>,
    },
    /// Another holder (a finisher, gc, a run starting) has the name, and
    /// the wait (if any) ran out.
    #[error("job {name} is being finished or cleaned up by another jobwatch process; try again")]
    Held {
        /// The name.
        name: JobName,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The kinds of [`DocStore`] documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// A circuit breaker (`breakers/KEY.json` in the file store).
    Breaker,
    /// An agent session's tracked jobs (`sessions/ID.json` in the file
    /// store, protocol §17); updaters wait for each other without a bound.
    Session,
    /// A queued job (key: its name): its run spec, dependencies and slot
    /// group, until it starts (`queued/NAME.json` in the file store,
    /// protocol §19). Written with [`DocStore::replace`] and
    /// [`DocStore::remove`] only by a holder of the name's claim.
    QueuedJob,
    /// A queue (key: a slot group, or [`crate::queue::AFTER_ONLY`] for jobs
    /// that wait only for dependencies): its size, the runs holding its
    /// slots and the jobs waiting, first come first (`queues/KEY.json`).
    /// Changed only by [`DocStore::update`].
    Queue,
}

/// What a [`DocStore::update`] closure sees: the current bytes (`None`:
/// absent), or why they cannot be read.
pub type DocRead<'a> = Result<Option<&'a [u8]>, &'a StoreError>;

/// Small documents changed by atomic read-modify-write: concurrent updaters
/// never lose a change, readers never see a torn document.
pub trait DocStore: Send + Sync {
    /// Names one document for errors (`/x/breakers/KEY.json`).
    fn describe(&self, kind: DocKind, key: &str) -> String;

    /// The document's bytes; `None` when it does not exist.
    fn read(&self, kind: DocKind, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Atomic read-modify-write: `f` sees the current bytes and returns the
    /// new ones (`None`: leave unchanged). It may be called more than once
    /// (a compare-and-swap store retries): keep it free of side effects
    /// beyond what it returns. When the current bytes cannot be read and
    /// `f` returns `None`, the read error is returned. Updaters wait for
    /// each other a bounded time ([`StoreError::Busy`] after it). `f` may
    /// read other documents and jobs' state (a queue's decision does), but
    /// never update a document itself.
    fn update(
        &self,
        kind: DocKind,
        key: &str,
        f: &mut dyn FnMut(DocRead<'_>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError>;

    /// Every key of a kind, sorted.
    fn list(&self, kind: DocKind) -> Result<Vec<String>, StoreError>;

    /// Replaces the document atomically, without the document's lock: for
    /// a kind whose writers are serialized by something else (a queued
    /// job's document is written only under its name's claim).
    fn replace(&self, kind: DocKind, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.update(kind, key, &mut |_| Some(bytes.to_vec()))
    }

    /// Removes the document, without the document's lock (as for
    /// [`DocStore::replace`]). `Ok(false)`: it did not exist.
    fn remove(&self, kind: DocKind, key: &str) -> Result<bool, StoreError>;
}

/// What gc may remove beyond current runs, and removing it. What goes is
/// decided by the pure [`crate::gc::PrunePlan`]; the store takes stock and
/// removes. The current run and its kill request are removed through the
/// name's [`Claim`]; empty folders need it too (as a witness).
pub trait GcStore: Send + Sync {
    /// Debris of the store itself, not of any run (a crashed writer's temp
    /// files), changed longer than `min_age` before `now`.
    fn debris(&self, now: SystemTime, min_age: Duration) -> Vec<GcItem>;

    /// Every name with anything stored (a current run, archived runs,
    /// earlier attempts' logs), sorted.
    fn names(&self) -> Result<Vec<JobName>, StoreError>;

    /// What the name holds besides its current run's record and status.
    fn inventory(&self, name: &JobName) -> Inventory;

    /// Removes an archived run, whole. `Ok(false)`: it was already gone.
    fn remove_archived(&self, name: &JobName, item: &GcItem) -> Result<bool, StoreError>;

    /// Removes a piece of debris. `Ok(false)`: it was already gone.
    fn remove_debris(&self, item: &GcItem) -> Result<bool, StoreError>;

    /// Removes one of the name's folders if it is still empty (`Ok(false)`:
    /// something arrived meanwhile). Only the name's claim holder may: an
    /// archive may be about to fill it.
    fn remove_empty(&self, claim: &mut dyn Claim, folder: &GcItem) -> Result<bool, StoreError>;
}

/// One thing gc may remove, as the store names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcItem {
    /// The paths (or keys) it is made of, relative to the store's root, in
    /// the order they are removed.
    pub paths: Vec<PathBuf>,
    /// Its size in bytes (file sizes, not blocks).
    pub bytes: u64,
}

/// What a name holds besides its current run's record and status, for
/// gc's plan.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The current run's pieces (its files and earlier attempts' logs,
    /// status last), when it has any.
    pub current: Option<GcItem>,
    /// When the current run's status was written (its end, when its record
    /// does not say).
    pub status_time: Option<SystemTime>,
    /// The stored kill request, with the run it names (`None`: malformed).
    pub kill: Option<(GcItem, Option<String>)>,
    /// Archived runs, in no particular order.
    pub archived: Vec<ArchivedItem>,
    /// The name's folders and how many entries each holds.
    pub folders: Vec<Folder>,
    /// Warnings met while taking stock (a malformed archived record).
    pub warnings: Vec<String>,
}

/// An archived run, as gc sees it.
#[derive(Debug, Clone)]
pub struct ArchivedItem {
    /// Its label (sorts by start time).
    pub label: String,
    /// When it ended: its record's `ended_at`, else its status's time, else
    /// when it was archived.
    pub ended: SystemTime,
    /// When it last changed (an archive still filling it changes it).
    pub changed: Option<SystemTime>,
    /// Its pieces.
    pub item: GcItem,
}

/// A folder of a name (`history/NAME/`, `attempts/NAME/` in the file store).
#[derive(Debug, Clone)]
pub struct Folder {
    /// The folder.
    pub item: GcItem,
    /// Entries in it.
    pub entries: usize,
    /// Whether it belongs to the current run (goes with it), rather than to
    /// the archived runs.
    pub of_current_run: bool,
}

/// A position in a store's event journal, just after one event: what
/// `jobwatch events` prints with each event and takes back with `--since`.
/// Opaque: each store writes and reads its own (the file store's is
/// `JOURNAL_ID:BYTE_OFFSET`, the memory store's `mem:INDEX`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

/// The most characters of a cursor.
const MAX_CURSOR: usize = 200;

impl Cursor {
    /// A cursor as a store writes it.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// A cursor given by a user: non-empty, at most 200 characters of
    /// printable ASCII without blanks. Whether the store knows it is for
    /// [`EventLog::read_events`] to say.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let printable = s.bytes().all(|b| b.is_ascii_graphic());
        if s.is_empty() || s.len() > MAX_CURSOR || !printable {
            return Err(Invalid(format!(
                "invalid cursor {s:?}: give the \"cursor\" of an event `jobwatch events` printed, or `now`"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The cursor as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a read of the event journal starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// The oldest event the journal keeps.
    Start,
    /// Just after the event this cursor came with.
    After(Cursor),
    /// The journal's end as it is now: only events appended later.
    Now,
}

/// An event and the cursor just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positioned {
    /// The event.
    pub event: JobEvent,
    /// Where a read that should not see it again starts.
    pub cursor: Cursor,
}

/// What one [`EventLog::read_events`] found.
#[derive(Debug, Clone)]
pub struct EventRead {
    /// The events, oldest first.
    pub events: Vec<Positioned>,
    /// Where the next read starts: after the last event returned, or where
    /// the journal ends now (never [`Since::Now`]).
    pub next: Since,
    /// Whether events were left for the next read: one read returns a
    /// bounded batch.
    pub more: bool,
    /// One line each on what the reader should know: a cursor the journal
    /// no longer holds (rotated away: the read restarted at the oldest
    /// event kept), lines skipped as malformed.
    pub notes: Vec<String>,
}

/// The most events one read returns.
pub const EVENT_BATCH: usize = 4096;

/// A store's event journal (rule 8). Appends are the store's own, made by
/// its claims; readers read from a cursor and sleep on a watch.
pub trait EventLog: Send + Sync {
    /// Names the journal for messages (`/x/jobs/events.jsonl`).
    fn describe_events(&self) -> String;

    /// The events after `since`, at most [`EVENT_BATCH`]. A cursor the
    /// store no longer holds restarts the read at the oldest event kept,
    /// with a note (so nothing kept is skipped); a cursor that is not one
    /// of this store's is [`StoreError::Invalid`]. A torn or malformed line
    /// is skipped, never fatal.
    fn read_events(&self, since: &Since) -> Result<EventRead, StoreError>;

    /// Wakes when an event may have been appended, or a run may have ended
    /// without one (a claim released: its holder may have died between its
    /// commit and the append).
    fn watch_events(&self, what: WatchFor) -> Box<dyn Watch>;

    /// The repair of rule 8: appends `ended` unless the journal already
    /// holds the `ended` event of its run after `after` (the cursor of the
    /// run's `started`). Exclusive with every other repair. The caller
    /// makes sure the run's committer is gone: it holds the name's claim,
    /// or the run was archived. Returns whether it appended.
    fn append_missing_end(&self, ended: &JobEvent, after: &Cursor) -> Result<bool, StoreError>;

    /// Bounds the journal (gc): drops its oldest part once it is large;
    /// with `dry_run` only says what would go. `None`: nothing to trim.
    fn trim_events(&self, dry_run: bool) -> Result<Option<EventTrim>, StoreError>;
}

/// What [`EventLog::trim_events`] dropped (or would).
#[derive(Debug, Clone)]
pub struct EventTrim {
    /// The part of the journal removed (may have no paths: nothing old yet
    /// to remove, the journal only moved aside).
    pub item: GcItem,
    /// One line on why and what moved.
    pub why: String,
}
