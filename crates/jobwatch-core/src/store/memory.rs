//! An in-memory [`Store`]: the test double the deciding code (classify, the
//! waiter's verdicts, breakers, gc planning, the finisher) is unit-tested
//! on, without processes, files or sleeping.
//!
//! The test controls what only the outside world decides for the file
//! store: the clock ([`MemoryStore::set_now`]), whether a run's wrapper is
//! alive ([`MemoryStore::set_holder`]), whether its command has exited, and
//! writes by other processes ([`MemoryStore::put_record`] and friends). It
//! keeps the contract of every store: a status is created once, only after
//! the final record; a second claim of a name is refused; and every change
//! wakes the watches that care, through a pipe, so a waiter's `poll(2)`
//! wakes deterministically. Its event journal is a vector (cursors
//! `mem:INDEX`); a test can make appends go missing
//! ([`MemoryStore::lose_event_appends`]), as a crash between a commit and
//! its append would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::pipe::{PipeFlags, pipe_with};

use super::{
    Archived, ArchivedItem, Claim, ClaimError, ClaimWait, Commit, Cursor, DocKind, DocRead,
    DocStore, EVENT_BATCH, EventLog, EventRead, EventTrim, Folder, GcItem, GcStore, Holder,
    Invalid, Inventory, Positioned, RunAt, Since, Snapshot, Store, StoreError, Wake, Watch,
    WatchFor,
};
use crate::logs::LocalLogs;
use crate::model::{JobEvent, JobName, JobRecord, KillRequest, StatusWord};

/// What one name holds.
#[derive(Debug, Clone, Default)]
struct Job {
    record: Option<JobRecord>,
    record_invalid: Option<String>,
    status: Option<StatusWord>,
    status_invalid: Option<String>,
    last_beat: Option<SystemTime>,
    last_output: Option<SystemTime>,
    kill: Option<KillRequest>,
    tail: Vec<String>,
    archived: Vec<ArchivedRun>,
}

impl Job {
    fn has_current(&self) -> bool {
        self.record.is_some()
            || self.record_invalid.is_some()
            || self.status.is_some()
            || self.status_invalid.is_some()
            || self.last_beat.is_some()
            || self.last_output.is_some()
            || self.kill.is_some()
    }

    fn clear_current(&mut self) {
        let archived = std::mem::take(&mut self.archived);
        *self = Job {
            archived,
            ..Job::default()
        };
    }
}

#[derive(Debug, Clone)]
struct ArchivedRun {
    label: String,
    record: Option<JobRecord>,
    status: Option<StatusWord>,
    archived_at: SystemTime,
}

#[derive(Debug)]
struct State {
    now: SystemTime,
    jobs: BTreeMap<JobName, Job>,
    holders: HashMap<String, Holder>,
    exited: HashSet<String>,
    claimed: HashSet<JobName>,
}

/// The write end of a watch's pipe and what it waits for.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    names: Vec<JobName>,
    what: WatchFor,
    /// The store's count of threads asleep in a watch's `wait`.
    sleepers: Arc<AtomicUsize>,
    /// An event journal reader's watch: every name, and every append.
    journal: bool,
}

/// The event journal of a [`MemoryStore`].
#[derive(Debug, Default)]
struct Journal {
    events: Vec<JobEvent>,
    /// Appends still to lose (a test's crash between commit and append).
    to_lose: usize,
}

/// A store in memory. See the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    watchers: Mutex<Vec<Weak<Pipe>>>,
    /// Threads asleep in [`Watch::wait`] on one of this store's watches.
    sleepers: Arc<AtomicUsize>,
    docs: MemoryDocs,
    logs: LocalLogs,
    journal: Mutex<Journal>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a memory store's logs would be: nowhere (nothing is ever there).
const NO_LOGS: &str = "/nonexistent/jobwatch-memory-store";

impl MemoryStore {
    /// An empty store whose clock reads 2033-05-18 (a fixed, round time).
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                now: UNIX_EPOCH + Duration::from_secs(2_000_000_000),
                jobs: BTreeMap::new(),
                holders: HashMap::new(),
                exited: HashSet::new(),
                claimed: HashSet::new(),
            }),
            watchers: Mutex::new(Vec::new()),
            sleepers: Arc::new(AtomicUsize::new(0)),
            docs: MemoryDocs::default(),
            logs: LocalLogs::new(Path::new(NO_LOGS)),
            journal: Mutex::new(Journal::default()),
        }
    }

    fn journal_lock(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses the next `n` event appends of claims, as a claim holder that
    /// died between its commit (or spawn) and its append would.
    pub fn lose_event_appends(&self, n: usize) {
        self.journal_lock().to_lose = n;
    }

    /// Every event in the journal, oldest first.
    pub fn journal(&self) -> Vec<JobEvent> {
        self.journal_lock().events.clone()
    }

    /// Appends an event as another writer would.
    pub fn put_event(&self, event: JobEvent) {
        self.journal_lock().events.push(event);
        self.wake_if(Wake::State, |p| p.journal);
    }

    /// A claim's append (rule 8), unless the test asked to lose it.
    fn append_event(&self, event: JobEvent) {
        {
            let mut journal = self.journal_lock();
            if journal.to_lose > 0 {
                journal.to_lose -= 1;
                return;
            }
            journal.events.push(event);
        }
        self.wake_if(Wake::State, |p| p.journal);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the clock.
    pub fn set_now(&self, now: SystemTime) {
        self.lock().now = now;
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.lock().now += by;
    }

    /// Says whether the wrapper of run `job_id` is alive (default: dead).
    pub fn set_holder(&self, job_id: &str, holder: Holder) {
        self.lock().holders.insert(job_id.to_owned(), holder);
        self.notify_all(Wake::State);
    }

    /// Says that the command of run `job_id` has exited (its wrapper has
    /// not recorded it yet).
    pub fn set_command_exited(&self, job_id: &str) {
        self.lock().exited.insert(job_id.to_owned());
    }

    /// Writes a record as another process would (a wrapper elsewhere).
    pub fn put_record(&self, name: &JobName, record: JobRecord) {
        self.change(name, Wake::State, |j| {
            j.record = Some(record);
            j.record_invalid = None;
        });
    }

    /// Writes a status as another process would (a plain writer, §12).
    pub fn put_status(&self, name: &JobName, word: StatusWord) {
        self.change(name, Wake::State, |j| j.status = Some(word));
    }

    /// Makes the name's record unusable, with this reason.
    pub fn damage_record(&self, name: &JobName, reason: &str) {
        self.change(name, Wake::State, |j| {
            j.record = None;
            j.record_invalid = Some(reason.to_owned());
        });
    }

    /// Makes the name's status unusable, with this reason.
    pub fn damage_status(&self, name: &JobName, reason: &str) {
        self.change(name, Wake::State, |j| {
            j.status_invalid = Some(reason.to_owned())
        });
    }

    /// Records output by the job at `at`, with the lines a tail shows.
    pub fn put_output(&self, name: &JobName, at: SystemTime, tail: &[&str]) {
        self.change(name, Wake::Log, |j| {
            j.last_output = Some(at);
            j.tail = tail.iter().map(|s| (*s).to_owned()).collect();
        });
    }

    /// Adds an archived run as an earlier `run` of the name would have.
    pub fn put_archived(&self, name: &JobName, label: &str, record: JobRecord) {
        let now = self.now();
        let status = record.outcome.map(|o| o.status_word());
        self.change(name, Wake::State, |j| {
            j.archived.push(ArchivedRun {
                label: label.to_owned(),
                record: Some(record),
                status,
                archived_at: now,
            })
        });
    }

    /// The name's current record.
    pub fn record(&self, name: &JobName) -> Option<JobRecord> {
        self.lock().jobs.get(name)?.record.clone()
    }

    /// The name's current status.
    pub fn status(&self, name: &JobName) -> Option<StatusWord> {
        self.lock().jobs.get(name)?.status
    }

    /// Whether a claim on the name is held.
    pub fn is_claimed(&self, name: &JobName) -> bool {
        self.lock().claimed.contains(name)
    }

    /// How many threads sleep in a watch's [`Watch::wait`] now: a test
    /// tells a waiter that sleeps on the store's wake-ups from one that
    /// re-reads on a timer.
    pub fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::SeqCst)
    }

    /// The memory store's documents, for a test to look into.
    pub fn memory_docs(&self) -> &MemoryDocs {
        &self.docs
    }

    fn change(&self, name: &JobName, wake: Wake, f: impl FnOnce(&mut Job)) {
        {
            let mut state = self.lock();
            f(state.jobs.entry(name.clone()).or_default());
        }
        self.notify(name, wake);
    }

    /// Wakes every live watch of `name` that cares about `wake` (a journal
    /// reader's cares about every name).
    fn notify(&self, name: &JobName, wake: Wake) {
        self.wake_if(wake, |p| p.journal || p.names.contains(name));
    }

    fn notify_all(&self, wake: Wake) {
        self.wake_if(wake, |_| true);
    }

    fn wake_if(&self, wake: Wake, concerned: impl Fn(&Pipe) -> bool) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        watchers.retain(|w| w.strong_count() > 0);
        for pipe in watchers.iter().filter_map(Weak::upgrade) {
            let wanted = match wake {
                Wake::State => true,
                Wake::Log => pipe.what.log_writes,
                Wake::KillRequest => pipe.what.kill_requests,
            };
            if wanted && concerned(&pipe) {
                // A full pipe already holds a wake-up: nothing is lost.
                let _ = rustix::io::write(&pipe.write, &[wake_code(wake)]);
            }
        }
    }

    fn holder_in(state: &State, record: &JobRecord) -> Holder {
        state
            .holders
            .get(&record.job_id)
            .copied()
            .unwrap_or(Holder::Dead)
    }

    fn snapshot_in(state: &State, name: &JobName) -> Snapshot {
        let Some(job) = state.jobs.get(name) else {
            return Snapshot::missing();
        };
        let record = match (&job.record_invalid, &job.record) {
            (Some(reason), _) => Err(Invalid(reason.clone())),
            (None, r) => Ok(r.clone()),
        };
        let status = match (&job.status_invalid, job.status) {
            (Some(reason), _) => Err(Invalid(reason.clone())),
            (None, s) => Ok(s),
        };
        let over = !matches!(status, Ok(None));
        let holder = match (&record, over) {
            (Ok(Some(r)), false) => Self::holder_in(state, r),
            _ => Holder::Unknown,
        };
        let command_exited = holder == Holder::Alive
            && matches!(&record, Ok(Some(r)) if r.outcome.is_none() && state.exited.contains(&r.job_id));
        Snapshot {
            any_state: job.has_current(),
            record,
            holder,
            status,
            last_beat: job.last_beat.filter(|_| !over),
            last_output: job.last_output.filter(|_| !over),
            command_exited,
        }
    }
}

fn wake_code(wake: Wake) -> u8 {
    match wake {
        Wake::Log => 0,
        Wake::KillRequest => 1,
        Wake::State => 2,
    }
}

fn wake_of(code: u8) -> Wake {
    match code {
        0 => Wake::Log,
        1 => Wake::KillRequest,
        _ => Wake::State,
    }
}

fn not_found(what: String) -> StoreError {
    StoreError::Io {
        context: what,
        source: std::io::ErrorKind::NotFound.into(),
    }
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory store".to_owned()
    }

    fn now(&self) -> SystemTime {
        self.lock().now
    }

    fn list(&self) -> Result<Vec<JobName>, StoreError> {
        let state = self.lock();
        Ok(state
            .jobs
            .iter()
            .filter(|(_, j)| j.has_current())
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn snapshot(&self, name: &JobName) -> Snapshot {
        Self::snapshot_in(&self.lock(), name)
    }

    fn holder(&self, record: &JobRecord) -> Holder {
        Self::holder_in(&self.lock(), record)
    }

    fn current_job_id(&self, name: &JobName) -> Option<String> {
        Some(self.lock().jobs.get(name)?.record.as_ref()?.job_id.clone())
    }

    fn claim(&self, name: &JobName, wait: ClaimWait) -> Result<Box<dyn Claim + '_>, ClaimError> {
        let mut state = self.lock();
        if state.claimed.contains(name) {
            // Another holder in this process: waiting cannot change that
            // without another thread, and tests do not sleep. A live
            // wrapper's claim is "already running" for `run`.
            let live = state
                .jobs
                .get(name)
                .and_then(|j| j.record.as_ref())
                .filter(|r| r.outcome.is_none() && Self::holder_in(&state, r) == Holder::Alive);
            return Err(match (wait, live) {
                (ClaimWait::Briefly(_), Some(r)) => ClaimError::AlreadyRunning {
                    name: name.clone(),
                    pid: Some(r.wrapper_pid),
                },
                _ => ClaimError::Held { name: name.clone() },
            });
        }
        state.claimed.insert(name.clone());
        Ok(Box::new(MemoryClaim {
            store: self,
            name: name.clone(),
        }))
    }

    fn request_kill(&self, name: &JobName, req: &KillRequest) -> Result<(), StoreError> {
        let req = req.clone();
        self.change(name, Wake::KillRequest, |j| j.kill = Some(req));
        Ok(())
    }

    fn kill_request(&self, name: &JobName) -> Result<Option<KillRequest>, StoreError> {
        Ok(self.lock().jobs.get(name).and_then(|j| j.kill.clone()))
    }

    fn beat(&self, name: &JobName, at: SystemTime) -> Result<(), StoreError> {
        let mut state = self.lock();
        match state.jobs.get_mut(name) {
            Some(job) if job.last_beat.is_some() => {
                job.last_beat = Some(at);
                Ok(())
            }
            _ => Err(not_found(format!("cannot beat job {name}"))),
        }
    }

    fn archived(&self, name: &JobName) -> Vec<String> {
        let state = self.lock();
        let mut labels: Vec<String> = state
            .jobs
            .get(name)
            .map(|j| j.archived.iter().map(|a| a.label.clone()).collect())
            .unwrap_or_default();
        labels.sort_unstable_by(|a, b| b.cmp(a));
        labels
    }

    fn archived_run(&self, name: &JobName, job_id: &str) -> Option<Archived> {
        let state = self.lock();
        let run = state
            .jobs
            .get(name)?
            .archived
            .iter()
            .find(|a| a.record.as_ref().is_some_and(|r| r.job_id == job_id))?;
        let record = run.record.clone()?;
        let over = run.status.is_some();
        let holder = if over {
            Holder::Unknown
        } else {
            Self::holder_in(&state, &record)
        };
        Some(Archived {
            at: RunAt::Archived(run.label.clone()),
            snapshot: Snapshot {
                record: Ok(Some(record.clone())),
                holder,
                status: Ok(run.status),
                last_beat: None,
                last_output: None,
                command_exited: false,
                any_state: true,
            },
            record,
        })
    }

    fn watch(&self, names: &[JobName], what: WatchFor) -> Box<dyn Watch> {
        self.new_watch(names, what, false)
    }

    fn docs(&self) -> &dyn DocStore {
        &self.docs
    }

    fn logs(&self) -> &LocalLogs {
        &self.logs
    }

    fn job_env(&self, _name: &JobName) -> Vec<(&'static str, OsString)> {
        Vec::new()
    }

    fn tail(&self, name: &JobName, at: &RunAt, lines: usize) -> Vec<String> {
        if *at != RunAt::Current {
            return Vec::new();
        }
        let state = self.lock();
        let tail = state
            .jobs
            .get(name)
            .map(|j| j.tail.as_slice())
            .unwrap_or_default();
        tail[tail.len().saturating_sub(lines)..].to_vec()
    }

    fn result_path(&self, _name: &JobName, _at: &RunAt) -> Option<PathBuf> {
        None
    }

    fn gc(&self) -> &dyn GcStore {
        self
    }

    fn events(&self) -> &dyn EventLog {
        self
    }
}

impl MemoryStore {
    fn new_watch(&self, names: &[JobName], what: WatchFor, journal: bool) -> Box<dyn Watch> {
        let (read, write) =
            pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).expect("a pipe for a memory watch");
        let pipe = Arc::new(Pipe {
            read,
            write,
            names: names.to_vec(),
            what,
            sleepers: Arc::clone(&self.sleepers),
            journal,
        });
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&pipe));
        Box::new(MemoryWatch(pipe))
    }
}

fn memory_cursor(index: usize) -> Cursor {
    Cursor::new(format!("mem:{index}"))
}

fn parse_memory_cursor(c: &Cursor) -> Result<usize, StoreError> {
    c.as_str()
        .strip_prefix("mem:")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| {
            Invalid(format!(
                "invalid cursor {:?}: this store's cursors look like mem:3",
                c.as_str()
            ))
            .into()
        })
}

impl EventLog for MemoryStore {
    fn describe_events(&self) -> String {
        "memory:events".to_owned()
    }

    fn read_events(&self, since: &Since) -> Result<EventRead, StoreError> {
        let journal = self.journal_lock();
        let len = journal.events.len();
        let mut notes = Vec::new();
        let from = match since {
            Since::Start => 0,
            Since::Now => len,
            Since::After(c) => {
                let index = parse_memory_cursor(c)?;
                if index > len {
                    notes.push(format!(
                        "cursor {c}: the journal is not that long; reading from the oldest event kept"
                    ));
                    0
                } else {
                    index
                }
            }
        };
        let to = len.min(from + EVENT_BATCH);
        let events = journal.events[from..to]
            .iter()
            .enumerate()
            .map(|(i, e)| Positioned {
                event: e.clone(),
                cursor: memory_cursor(from + i + 1),
            })
            .collect();
        Ok(EventRead {
            events,
            next: Since::After(memory_cursor(to)),
            more: to < len,
            notes,
        })
    }

    fn watch_events(&self, what: WatchFor) -> Box<dyn Watch> {
        self.new_watch(&[], what, true)
    }

    fn append_missing_end(&self, ended: &JobEvent, after: &Cursor) -> Result<bool, StoreError> {
        let from = parse_memory_cursor(after)?;
        {
            let mut journal = self.journal_lock();
            let from = from.min(journal.events.len());
            if journal.events[from..].iter().any(|e| e.ends(&ended.job_id)) {
                return Ok(false);
            }
            journal.events.push(ended.clone());
        }
        self.wake_if(Wake::State, |p| p.journal);
        Ok(true)
    }

    fn trim_events(&self, _dry_run: bool) -> Result<Option<EventTrim>, StoreError> {
        Ok(None)
    }
}

/// A held claim on a name of a [`MemoryStore`].
struct MemoryClaim<'s> {
    store: &'s MemoryStore,
    name: JobName,
}

impl Drop for MemoryClaim<'_> {
    fn drop(&mut self) {
        self.store.lock().claimed.remove(&self.name);
        // As a file store's lock close does: waiters look again.
        self.store.notify(&self.name, Wake::State);
    }
}

impl MemoryClaim<'_> {
    fn job(&self, f: impl FnOnce(&mut Job)) {
        self.store.change(&self.name, Wake::State, f);
    }
}

impl Claim for MemoryClaim<'_> {
    fn name(&self) -> &JobName {
        &self.name
    }

    fn snapshot(&self) -> Snapshot {
        self.store.snapshot(&self.name)
    }

    fn write_record(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.job(|j| {
            j.record = Some(record);
            j.record_invalid = None;
        });
        Ok(())
    }

    fn mark_spawned(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        self.write_record(record)?;
        if record.attempt <= 1 {
            self.store.append_event(JobEvent::started(record));
        }
        Ok(())
    }

    fn reset_beat(&mut self) -> Result<(), StoreError> {
        let now = self.store.now();
        self.job(|j| j.last_beat = Some(now));
        Ok(())
    }

    fn beat(&self, at: SystemTime) -> Result<(), StoreError> {
        self.job(|j| j.last_beat = j.last_beat.max(Some(at)));
        Ok(())
    }

    fn last_beat(&self) -> Option<SystemTime> {
        self.store.lock().jobs.get(&self.name)?.last_beat
    }

    fn kill_request(&self) -> Option<KillRequest> {
        self.store.lock().jobs.get(&self.name)?.kill.clone()
    }

    fn finished(&self) -> bool {
        let state = self.store.lock();
        state
            .jobs
            .get(&self.name)
            .is_some_and(|j| j.status.is_some() || j.status_invalid.is_some())
    }

    fn commit(&mut self, final_record: &JobRecord) -> Result<Commit, StoreError> {
        let Some(outcome) = final_record.outcome else {
            return Err(Invalid(format!(
                "{}: a record without an outcome cannot be committed",
                self.name
            ))
            .into());
        };
        let mut state = self.store.lock();
        let job = state.jobs.entry(self.name.clone()).or_default();
        if job.status.is_some() || job.status_invalid.is_some() {
            return Ok(Commit::AlreadyFinished);
        }
        // Rule 3: the final record is visible before the status.
        if job.record.as_ref() != Some(final_record) {
            return Err(Invalid(format!(
                "{}: commit before the final record was written",
                self.name
            ))
            .into());
        }
        job.status = Some(outcome.status_word());
        drop(state);
        self.store.notify(&self.name, Wake::State);
        // After the status, from the commit that created it only (rule 8).
        if let Some(ended) = JobEvent::ended(final_record) {
            self.store.append_event(ended);
        }
        Ok(Commit::Committed)
    }

    fn archive_current(&mut self, label: &str) -> Result<(), StoreError> {
        let now = self.store.now();
        self.job(|j| {
            if !j.has_current() {
                return;
            }
            let mut unique = label.to_owned();
            let mut n = 0;
            while j.archived.iter().any(|a| a.label == unique) {
                n += 1;
                unique = format!("{label}.{n}");
            }
            j.archived.push(ArchivedRun {
                label: unique,
                record: j.record.clone(),
                status: j.status,
                archived_at: now,
            });
            j.clear_current();
        });
        Ok(())
    }

    fn remove_current(&mut self) -> Result<(), StoreError> {
        self.job(Job::clear_current);
        Ok(())
    }

    fn remove_kill_request(&mut self) -> Result<(), StoreError> {
        self.job(|j| j.kill = None);
        Ok(())
    }
}

/// A watch on a [`MemoryStore`]: a pipe the store writes a byte into at
/// every relevant change.
struct MemoryWatch(Arc<Pipe>);

impl Watch for MemoryWatch {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0.read.as_fd())
    }

    fn drain(&self) -> Option<Wake> {
        let mut buf = [0u8; 64];
        let mut wake = None;
        while let Ok(n) = rustix::io::read(&self.0.read, &mut buf) {
            if n == 0 {
                break;
            }
            wake = buf[..n].iter().map(|c| wake_of(*c)).max().max(wake);
        }
        wake
    }

    fn wait(&self, max: Duration) -> Wake {
        let ts = Timespec {
            tv_sec: max.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: max.subsec_nanos() as i64,
        };
        let _asleep = Asleep::count(&self.0.sleepers);
        loop {
            let mut fds = [PollFd::new(&self.0.read, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Wake::State,
                Ok(_) => {
                    if let Some(wake) = self.drain() {
                        return wake;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Wake::State,
            }
        }
    }
}

/// Counts a thread asleep in a watch for as long as it lives.
struct Asleep<'a>(&'a AtomicUsize);

impl<'a> Asleep<'a> {
    fn count(sleepers: &'a AtomicUsize) -> Self {
        sleepers.fetch_add(1, Ordering::SeqCst);
        Self(sleepers)
    }
}

impl Drop for Asleep<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A memory store's documents.
#[derive(Debug, Default)]
pub struct MemoryDocs {
    docs: Mutex<BTreeMap<(u8, String), Vec<u8>>>,
    /// Held for a whole update (the file store's document lock), while
    /// `docs` is held only to read or write: an update's closure may read
    /// other documents (a queue's decision reads queued jobs).
    updating: Mutex<()>,
}

fn kind_code(kind: DocKind) -> u8 {
    match kind {
        DocKind::Breaker => 0,
        DocKind::Session => 1,
        DocKind::QueuedJob => 2,
        DocKind::Queue => 3,
    }
}

impl MemoryDocs {
    /// Replaces a document's bytes, as another process (or damage) would.
    pub fn put(&self, kind: DocKind, key: &str, bytes: &[u8]) {
        self.docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((kind_code(kind), key.to_owned()), bytes.to_vec());
    }
}

impl DocStore for MemoryDocs {
    fn describe(&self, kind: DocKind, key: &str) -> String {
        match kind {
            DocKind::Breaker => format!("memory:breakers/{key}"),
            DocKind::Session => format!("memory:sessions/{key}"),
            DocKind::QueuedJob => format!("memory:queued/{key}"),
            DocKind::Queue => format!("memory:queues/{key}"),
        }
    }

    fn read(&self, kind: DocKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(docs.get(&(kind_code(kind), key.to_owned())).cloned())
    }

    fn update(
        &self,
        kind: DocKind,
        key: &str,
        f: &mut dyn FnMut(DocRead<'_>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let _updating = self.updating.lock().unwrap_or_else(|p| p.into_inner());
        let k = (kind_code(kind), key.to_owned());
        let current = self
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
            .cloned();
        if let Some(new) = f(Ok(current.as_deref())) {
            self.docs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(k, new);
        }
        Ok(())
    }

    fn list(&self, kind: DocKind) -> Result<Vec<String>, StoreError> {
        let docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(docs
            .keys()
            .filter(|(k, _)| *k == kind_code(kind))
            .map(|(_, key)| key.clone())
            .collect())
    }

    fn replace(&self, kind: DocKind, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put(kind, key, bytes);
        Ok(())
    }

    fn remove(&self, kind: DocKind, key: &str) -> Result<bool, StoreError> {
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(docs.remove(&(kind_code(kind), key.to_owned())).is_some())
    }
}

impl GcStore for MemoryStore {
    fn debris(&self, _now: SystemTime, _min_age: Duration) -> Vec<GcItem> {
        Vec::new()
    }

    fn names(&self) -> Result<Vec<JobName>, StoreError> {
        let state = self.lock();
        Ok(state
            .jobs
            .iter()
            .filter(|(_, j)| j.has_current() || !j.archived.is_empty())
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn inventory(&self, name: &JobName) -> Inventory {
        let state = self.lock();
        let Some(job) = state.jobs.get(name) else {
            return Inventory::default();
        };
        let item = |path: String| GcItem {
            paths: vec![PathBuf::from(path)],
            bytes: 0,
        };
        Inventory {
            current: job.has_current().then(|| item(name.to_string())),
            status_time: None,
            kill: job
                .kill
                .as_ref()
                .map(|k| (item(format!("{name}.kill")), Some(k.job_id.clone()))),
            archived: job
                .archived
                .iter()
                .map(|a| ArchivedItem {
                    label: a.label.clone(),
                    ended: a
                        .record
                        .as_ref()
                        .and_then(|r| r.ended_at.as_deref())
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                        .unwrap_or(a.archived_at),
                    changed: Some(a.archived_at),
                    item: item(format!("history/{name}/{}", a.label)),
                })
                .collect(),
            folders: vec![Folder {
                item: item(format!("history/{name}")),
                entries: job.archived.len(),
                of_current_run: false,
            }],
            warnings: Vec::new(),
        }
    }

    fn remove_archived(&self, name: &JobName, item: &GcItem) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(job) = state.jobs.get_mut(name) else {
            return Ok(false);
        };
        let before = job.archived.len();
        job.archived.retain(|a| {
            item.paths.first() != Some(&PathBuf::from(format!("history/{name}/{}", a.label)))
        });
        Ok(job.archived.len() < before)
    }

    fn remove_debris(&self, _item: &GcItem) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn remove_empty(&self, _claim: &mut dyn Claim, _folder: &GcItem) -> Result<bool, StoreError> {
        // A memory store has no folders: an empty history is no history.
        Ok(false)
    }
}

/// Records for tests over a [`MemoryStore`].
#[cfg(test)]
pub(crate) mod fixture {
    use std::time::{Duration, SystemTime};

    use crate::model::{JobName, JobRecord, LivenessMode, Outcome, RECORD_VERSION, Settings};
    use crate::model::{rfc3339, unix_ms};

    /// A job name.
    pub fn name(s: &str) -> JobName {
        JobName::parse(s).unwrap()
    }

    /// The record of run `job_id` of `name`, started at `started` on
    /// another host with PIDs no process has (nothing here ever signals
    /// one), output liveness, stale 10 s, heartbeat 1 s.
    pub fn record(name: &str, job_id: &str, started: SystemTime) -> JobRecord {
        JobRecord {
            version: RECORD_VERSION,
            name: name.into(),
            job_id: job_id.into(),
            command: vec!["true".into()],
            cwd: "/".into(),
            host: "elsewhere.invalid".into(),
            boot_id: "b".into(),
            // Beyond any pid_max: no process is ever these.
            wrapper_pid: 999_999_999,
            wrapper_start_time: 1,
            child_pid: Some(999_999_998),
            child_start_time: Some(2),
            pgid: Some(999_999_998),
            settings: Settings {
                heartbeat_ms: 1_000,
                stale_ms: 10_000,
                timeout_ms: None,
                grace_ms: 0,
                liveness: LivenessMode::Output,
                retries: 0,
                backoff_ms: 0,
                backoff_max_ms: 0,
            },
            started_at: rfc3339(started),
            started_unix_ms: unix_ms(started),
            ended_at: None,
            exit_code: None,
            signal: None,
            outcome: None,
            duration_ms: None,
            reason: None,
            finalized_by: None,
            breaker: None,
            attempt: 1,
            max_attempts: 1,
            attempts: Vec::new(),
            pid_ns: None,
        }
    }

    /// `record` ended at `ended` with `outcome`.
    pub fn ended(mut record: JobRecord, outcome: Outcome, ended: SystemTime) -> JobRecord {
        record.outcome = Some(outcome);
        record.exit_code = Some(if outcome == Outcome::Success { 0 } else { 1 });
        record.ended_at = Some(rfc3339(ended));
        record.duration_ms = Some(
            ended
                .duration_since(record.started())
                .unwrap_or(Duration::ZERO)
                .as_millis() as u64,
        );
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_name_refuses_a_second_holder_until_the_first_lets_go() {
        let store = MemoryStore::new();
        let name = JobName::parse("j").unwrap();
        let first = store.claim(&name, ClaimWait::No).unwrap();
        assert!(matches!(
            store.claim(&name, ClaimWait::No),
            Err(ClaimError::Held { .. })
        ));
        drop(first);
        assert!(store.claim(&name, ClaimWait::No).is_ok());
    }

    #[test]
    fn a_name_held_by_a_live_wrapper_is_already_running_and_by_anyone_else_held() {
        let store = MemoryStore::new();
        let j = fixture::name("j");
        let wrapper = store.claim(&j, ClaimWait::No).unwrap();
        let brief = ClaimWait::Briefly(Duration::from_secs(2));
        assert!(matches!(
            store.claim(&j, brief),
            Err(ClaimError::Held { .. })
        ));
        store.put_record(&j, fixture::record("j", "r1", store.now()));
        store.set_holder("r1", Holder::Alive);
        match store.claim(&j, brief) {
            Err(e @ ClaimError::AlreadyRunning { .. }) => {
                assert_eq!(
                    e.to_string(),
                    "job j is already running (wrapper pid 999999999)"
                );
            }
            other => panic!("{:?}", other.err()),
        }
        drop(wrapper);
        assert!(!store.is_claimed(&j));
    }

    #[test]
    fn a_commit_is_create_once_and_only_after_the_final_record() {
        let store = MemoryStore::new();
        let j = fixture::name("j");
        let t0 = store.now();
        let mut claim = store.claim(&j, ClaimWait::No).unwrap();
        claim.write_record(&fixture::record("j", "r1", t0)).unwrap();
        let done = fixture::ended(
            fixture::record("j", "r1", t0),
            crate::model::Outcome::Success,
            t0,
        );
        assert!(
            claim.commit(&done).is_err(),
            "the final record was not written"
        );
        assert_eq!(store.status(&j), None);
        claim.write_record(&done).unwrap();
        assert_eq!(claim.commit(&done).unwrap(), Commit::Committed);
        let other = fixture::ended(
            fixture::record("j", "r1", t0),
            crate::model::Outcome::Failed,
            t0,
        );
        claim.write_record(&other).unwrap();
        assert_eq!(claim.commit(&other).unwrap(), Commit::AlreadyFinished);
        assert_eq!(
            store.status(&j),
            Some(StatusWord::Success),
            "never replaced"
        );
    }

    #[test]
    fn a_watch_wakes_for_its_names_only_and_never_loses_a_change() {
        let store = MemoryStore::new();
        let (a, b) = (JobName::parse("a").unwrap(), JobName::parse("b").unwrap());
        let watch = store.watch(std::slice::from_ref(&a), WatchFor::default());
        store.put_status(&b, StatusWord::Success);
        assert_eq!(watch.drain(), None, "another name's change");
        store.put_output(&a, store.now(), &["x"]);
        assert_eq!(watch.drain(), None, "log writes were not asked for");
        store.put_status(&a, StatusWord::Failed);
        // The change happened before the wait: the wait still sees it.
        assert_eq!(watch.wait(Duration::from_secs(3600)), Wake::State);
    }
}
