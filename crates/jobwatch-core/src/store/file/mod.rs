//! The file store: the jobs directory of protocol v1 (docs/protocol.md is
//! its normative description). This module is the only code that knows job
//! file names, `flock`, inotify, `statfs`, `O_NOFOLLOW` reads, temp files
//! and history folders; [`crate::logs`] alone knows where logs are, with
//! the same safe opening ([`protocol::open`]).
//!
//! A [`FileStore`] keeps each name's current run as `NAME.*` files, claims a
//! name with an `flock` on `NAME.lock` (the kernel releases it however its
//! holder dies), judges a wrapper alive by its PID, start time and boot id
//! (another host's cannot be checked: [`Holder::Elsewhere`]), and watches
//! the directory with inotify (polling on network filesystems). Its claims
//! append every run's `started` and `ended` to the event journal
//! ([`journal`], `events.jsonl`).

mod docs;
mod gc;
pub mod journal;
pub mod protocol;
pub mod watch;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use protocol::atomic::ReplacedFiles;
use protocol::history::{archive, archived_labels};
use protocol::lock::{JobLock, LockError};
use protocol::open::{entry, mtime, touch};
use protocol::record::{
    RecordError, read_json, read_record, write_kill_request, write_record_keeping,
};
use protocol::status_file::{StatusError, is_written, read_status, write_status_once};
use protocol::{FileKind, JobPaths, JobsDir};

use crate::logs::LocalLogs;
use crate::model::{JobEvent, JobName, JobRecord, KillRequest};
use crate::store::{
    Archived, Claim, ClaimError, ClaimWait, Commit, Cursor, DocStore, EventLog, EventRead,
    EventTrim, GcStore, Holder, Invalid, RunAt, Since, Snapshot, Store, StoreError, Watch,
    WatchFor,
};
use crate::sys::proc::{self, ProcessId};
use crate::sys::stdio::notice;

pub use docs::{FileDocs, LOCK_PATIENCE};
pub use journal::Journal;
pub use protocol::dir::{DIR_ENV, DirError};
pub use watch::FileWatch;

/// A jobs directory as a [`Store`].
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: JobsDir,
    logs: LocalLogs,
    docs: FileDocs,
    journal: Journal,
}

impl FileStore {
    /// The store of an opened, checked jobs directory.
    pub fn new(dir: JobsDir) -> Self {
        Self {
            logs: LocalLogs::new(dir.path()),
            docs: FileDocs::new(&dir),
            journal: Journal::new(dir.path()),
            dir,
        }
    }

    /// Opens the jobs directory at `path` (the first of `--dir`,
    /// `$JOBWATCH_DIR`, `$XDG_STATE_HOME/jobwatch`, `~/.local/state/jobwatch`
    /// when `None`), creating it private and refusing an unsafe one (§1).
    pub fn open(path: Option<&Path>) -> Result<Self, DirError> {
        let path = match path {
            Some(p) => p.to_owned(),
            None => JobsDir::default_path()?,
        };
        Ok(Self::new(JobsDir::open_or_create(&path)?))
    }

    /// The store of a jobs directory opened and checked before (a path
    /// recorded by an earlier command of this user).
    pub fn already_checked(path: &Path) -> Self {
        Self::new(JobsDir::already_checked(path))
    }

    /// The jobs directory.
    pub fn dir(&self) -> &JobsDir {
        &self.dir
    }

    /// The jobs directory's path (canonical).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn job(&self, name: &JobName) -> JobPaths {
        self.dir.job(name)
    }
}

fn write_err(e: protocol::atomic::WriteError) -> StoreError {
    StoreError::Io {
        context: format!("cannot write {}", e.path.display()),
        source: e.source,
    }
}

fn record_err(e: RecordError) -> StoreError {
    match e {
        RecordError::Io { path, source } => StoreError::Io {
            context: format!("cannot read {path}"),
            source,
        },
        other => StoreError::Invalid(Invalid(other.to_string())),
    }
}

/// Reads a job's files into a [`Snapshot`]. The order matters: the wrapper
/// is checked before the status is read, so "wrapper dead and no status"
/// can never be a status written between the two reads.
///
/// A job whose status already exists is over: its wrapper and progress no
/// longer matter, so they are not read (this is most of the cost of
/// `status` over many finished jobs). Otherwise the status is read again
/// after the wrapper check, and that second read is the one that counts.
pub fn observe(paths: &JobPaths) -> Snapshot {
    let record = read_record(&paths.record());
    let (holder, status) = match read_status(&paths.status()) {
        Ok(None) => {
            let holder = match &record {
                Ok(Some(r)) => wrapper_holder(r),
                _ => Holder::Unknown,
            };
            (holder, read_status(&paths.status()))
        }
        present_or_unreadable => (Holder::Unknown, present_or_unreadable),
    };
    // The job may have finished between the two reads: the status then sits
    // beside the start record. The final record precedes the status, so a
    // second read sees it.
    let record = match (&status, record) {
        (Ok(Some(_)), Ok(Some(r))) if r.outcome.is_none() => read_record(&paths.record()),
        (_, record) => record,
    };
    let over = !matches!(status, Ok(None));
    let last_beat = if over {
        None
    } else {
        mtime(&paths.heartbeat())
    };
    let last_output = if over { None } else { mtime(&paths.log()) };
    let command_exited = holder == Holder::Alive
        && matches!(&record, Ok(Some(r)) if r.outcome.is_none() && crate::kill::command_exited(r));
    let any_state = matches!(record, Ok(Some(_)) | Err(_))
        || over
        || last_beat.is_some()
        || last_output.is_some()
        || entry(&paths.file(FileKind::Pid)).is_some();
    Snapshot {
        record: record.map_err(|e: RecordError| Invalid(e.to_string())),
        holder,
        status: status.map_err(|e: StatusError| Invalid(e.to_string())),
        last_beat,
        last_output,
        command_exited,
        any_state,
    }
}

/// Checks the wrapper named by a record: on this host (and boot, and PID
/// namespace), by its PID and start time.
pub fn wrapper_holder(record: &JobRecord) -> Holder {
    match proc::place_of_record(record) {
        proc::Place::Elsewhere => return Holder::Elsewhere,
        proc::Place::EarlierBoot => return Holder::Dead,
        proc::Place::Here => {}
    }
    let id = ProcessId {
        pid: record.wrapper_pid,
        start_time: record.wrapper_start_time,
    };
    if proc::is_alive(id) {
        Holder::Alive
    } else {
        Holder::Dead
    }
}

/// How often a claim that waits tries the lock again.
const CLAIM_RETRY: Duration = Duration::from_millis(10);

impl Store for FileStore {
    fn spec(&self) -> Option<crate::spec::StoreSpec> {
        Some(crate::spec::StoreSpec::File {
            dir: self.path().to_owned(),
        })
    }

    fn describe(&self) -> String {
        format!("jobs directory {}", self.dir.path().display())
    }

    fn list(&self) -> Result<Vec<JobName>, StoreError> {
        let entries = std::fs::read_dir(self.dir.path()).map_err(|source| StoreError::Io {
            context: format!("cannot list {}", self.dir.path().display()),
            source,
        })?;
        let names: std::collections::BTreeSet<JobName> = entries
            .flatten()
            .filter_map(|e| FileKind::parse_file_name(e.file_name().to_str()?))
            .filter(|(_, kind)| *kind != FileKind::Lock)
            .map(|(name, _)| name)
            .collect();
        Ok(names.into_iter().collect())
    }

    fn snapshot(&self, name: &JobName) -> Snapshot {
        observe(&self.job(name))
    }

    fn holder(&self, record: &JobRecord) -> Holder {
        wrapper_holder(record)
    }

    fn current_job_id(&self, name: &JobName) -> Option<String> {
        read_record(&self.job(name).record())
            .ok()
            .flatten()
            .map(|r| r.job_id)
    }

    fn claim(&self, name: &JobName, wait: ClaimWait) -> Result<Box<dyn Claim + '_>, ClaimError> {
        let paths = self.job(name);
        let patience = match wait {
            ClaimWait::No => None,
            ClaimWait::Briefly(d) => Some(Instant::now() + d),
        };
        loop {
            match JobLock::try_acquire(&paths.lock()) {
                Ok(lock) => {
                    return Ok(Box::new(FileClaim {
                        name: name.clone(),
                        paths,
                        journal: &self.journal,
                        _lock: lock,
                        replaced: ReplacedFiles::default(),
                    }));
                }
                Err(LockError::Held) => {
                    let Some(patience) = patience else {
                        return Err(ClaimError::Held { name: name.clone() });
                    };
                    // A live wrapper holds the lock for its job's whole
                    // life: that is "already running". Anyone else (gc, a
                    // finisher) holds it briefly: wait a moment for them.
                    let record = read_record(&paths.record()).ok().flatten();
                    let wrapper_alive = record
                        .as_ref()
                        .is_some_and(|r| r.outcome.is_none() && wrapper_holder(r) == Holder::Alive);
                    if wrapper_alive {
                        return Err(ClaimError::AlreadyRunning {
                            name: name.clone(),
                            pid: record.map(|r| r.wrapper_pid),
                        });
                    }
                    if Instant::now() >= patience {
                        return Err(ClaimError::Held { name: name.clone() });
                    }
                    std::thread::sleep(CLAIM_RETRY);
                }
                Err(LockError::Io { path, source }) => {
                    return Err(StoreError::Lock {
                        what: path.display().to_string(),
                        source,
                    }
                    .into());
                }
            }
        }
    }

    fn request_kill(&self, name: &JobName, req: &KillRequest) -> Result<(), StoreError> {
        write_kill_request(&self.job(name).kill_request(), req).map_err(write_err)
    }

    fn kill_request(&self, name: &JobName) -> Result<Option<KillRequest>, StoreError> {
        read_json(&self.job(name).kill_request()).map_err(record_err)
    }

    fn beat(&self, name: &JobName, at: SystemTime) -> Result<(), StoreError> {
        // Never through a symlink, never blocking (protocol §3): a heartbeat
        // that is not the wrapper's own file is refused, its target untouched.
        let hb = self.job(name).heartbeat();
        touch(&hb, at, false).map_err(|source| StoreError::Io {
            context: format!("cannot touch {}", hb.display()),
            source,
        })
    }

    fn archived(&self, name: &JobName) -> Vec<String> {
        archived_labels(&self.dir.history_of(name))
    }

    /// Lists `history/` once: a name without an entry there has no
    /// archived run (its own `read_dir` would fail just the same), so only
    /// the names that have one are looked into, each as [`Store::archived`]
    /// does. If `history/` cannot be listed for any reason but its absence,
    /// every name is looked into alone, as before.
    fn archived_counts(&self, names: &[JobName]) -> Vec<usize> {
        let with_history = match std::fs::read_dir(self.dir.path().join("history")) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name())
                .collect::<std::collections::HashSet<OsString>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(_) => return names.iter().map(|n| self.archived(n).len()).collect(),
        };
        names
            .iter()
            .map(|n| {
                if with_history.contains(std::ffi::OsStr::new(n.as_str())) {
                    self.archived(n).len()
                } else {
                    0
                }
            })
            .collect()
    }

    fn archived_run(&self, name: &JobName, job_id: &str) -> Option<Archived> {
        let history = self.dir.history_of(name);
        archived_labels(&history).into_iter().find_map(|label| {
            let paths = JobPaths::new(&history.join(&label), name);
            let record = read_record(&paths.record()).ok().flatten()?;
            (record.job_id == job_id).then(|| Archived {
                at: RunAt::Archived(label),
                snapshot: observe(&paths),
                record,
            })
        })
    }

    fn watch(&self, names: &[JobName], what: WatchFor) -> Box<dyn Watch> {
        Box::new(FileWatch::new(self.dir.path(), names, what))
    }

    fn docs(&self) -> &dyn DocStore {
        &self.docs
    }

    fn logs(&self) -> &LocalLogs {
        &self.logs
    }

    fn job_env(&self, name: &JobName) -> Vec<(&'static str, OsString)> {
        let paths = self.job(name);
        vec![
            ("JOBWATCH_DIR", self.dir.path().as_os_str().to_owned()),
            ("JOBWATCH_RESULT", paths.result().into_os_string()),
            ("JOBWATCH_HEARTBEAT", paths.heartbeat().into_os_string()),
        ]
    }

    fn gc(&self) -> &dyn GcStore {
        self
    }

    fn events(&self) -> &dyn EventLog {
        self
    }
}

impl EventLog for FileStore {
    fn describe_events(&self) -> String {
        self.journal.path().display().to_string()
    }

    fn read_events(&self, since: &Since) -> Result<EventRead, StoreError> {
        self.journal.read(since)
    }

    fn watch_events(&self, what: WatchFor) -> Box<dyn Watch> {
        Box::new(FileWatch::journal(self.dir.path(), what))
    }

    fn append_missing_end(&self, ended: &JobEvent, after: &Cursor) -> Result<bool, StoreError> {
        self.journal.append_missing(ended, after)
    }

    fn trim_events(&self, dry_run: bool) -> Result<Option<EventTrim>, StoreError> {
        self.journal.rotate(dry_run)
    }
}

/// A held `NAME.lock`.
struct FileClaim<'s> {
    name: JobName,
    paths: JobPaths,
    journal: &'s Journal,
    _lock: JobLock,
    /// The records this claim replaced, freed after the lock is let go
    /// (fields drop in order): a replaced record's blocks are freed off the
    /// path from a job's exit to its status.
    replaced: ReplacedFiles,
}

impl FileClaim<'_> {
    /// Appends an event after the change it reports is durable (rule 8): a
    /// failure is reported (without blocking on stderr) and never undoes
    /// or fails that change. A missing event is repaired by a reader.
    fn journal(&self, event: &JobEvent) {
        if let Err(e) = self.journal.append(event) {
            notice(format_args!(
                "{}: the {} event is not in the event journal: {e}",
                self.name,
                event.event.as_str()
            ));
        }
    }
}

impl Claim for FileClaim<'_> {
    fn name(&self) -> &JobName {
        &self.name
    }

    fn snapshot(&self) -> Snapshot {
        observe(&self.paths)
    }

    fn write_record(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        write_record_keeping(&self.paths.record(), record, &mut self.replaced).map_err(write_err)
    }

    fn write_start_record(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        protocol::record::write_start_record(&self.paths.record(), record, &mut self.replaced)
            .map_err(write_err)
    }

    fn mark_spawned(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        self.write_record(record)?;
        let pid = record.child_pid.unwrap_or_default();
        // Its content is not synced (protocol §6.1): after a crash its PID
        // names nothing, and only its existence is read.
        protocol::atomic::write_atomic_unsynced(
            &self.paths.pid(),
            format!("{pid}\n").as_bytes(),
            &mut self.replaced,
        )
        .map_err(write_err)?;
        // The start's commit point: one directory fsync makes the record's
        // and the PID file's renames durable.
        protocol::atomic::sync_parent(&self.paths.pid()).map_err(|source| StoreError::Io {
            context: format!("cannot write {}", self.paths.dir().display()),
            source,
        })?;
        // A retry's spawn is the same run: one `started` per run.
        if record.attempt <= 1 {
            self.journal(&JobEvent::started(record));
        }
        Ok(())
    }

    fn reset_beat(&mut self) -> Result<(), StoreError> {
        protocol::atomic::write_atomic(&self.paths.heartbeat(), b"").map_err(write_err)
    }

    fn beat(&self, at: SystemTime) -> Result<(), StoreError> {
        if self.last_beat().is_some_and(|hb| hb >= at) {
            return Ok(());
        }
        let hb = self.paths.heartbeat();
        protocol::heartbeat::beat(&hb, at).map_err(|source| StoreError::Io {
            context: format!("cannot touch {}", hb.display()),
            source,
        })
    }

    fn last_beat(&self) -> Option<SystemTime> {
        mtime(&self.paths.heartbeat())
    }

    fn kill_request(&self) -> Option<KillRequest> {
        read_json::<KillRequest>(&self.paths.kill_request())
            .ok()
            .flatten()
    }

    fn finished(&self) -> bool {
        is_written(&self.paths.status())
    }

    fn commit(&mut self, final_record: &JobRecord) -> Result<Commit, StoreError> {
        let outcome = final_record
            .outcome
            .unwrap_or(crate::model::Outcome::Failed);
        match write_status_once(&self.paths.status(), final_record, outcome).map_err(write_err)? {
            protocol::atomic::CreateOnce::Created => {
                // The status is durable (its directory fsynced): the event
                // comes after it, from the commit that created it only.
                self.journal(&JobEvent::ended_with(final_record, outcome));
                Ok(Commit::Committed)
            }
            protocol::atomic::CreateOnce::AlreadyExists => Ok(Commit::AlreadyFinished),
        }
    }

    fn archive_current(&mut self, label: &str) -> Result<(), StoreError> {
        let history = self.paths.dir().join("history").join(self.name.as_str());
        archive(&self.paths, &history, label).map_err(|e| StoreError::Io {
            context: format!("cannot move {} into history", e.from.display()),
            source: e.source,
        })?;
        Ok(())
    }

    fn remove_current(&mut self) -> Result<(), StoreError> {
        let mut first_error = None;
        let mut paths: Vec<PathBuf> = protocol::history::RUN_FILES
            .iter()
            .map(|k| self.paths.file(*k))
            .collect();
        paths.push(self.paths.attempts());
        for path in paths {
            if let Err(e) = gc::remove_path(&path)
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn remove_kill_request(&mut self) -> Result<(), StoreError> {
        gc::remove_path(&self.paths.kill_request())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, rfc3339};
    use crate::store::memory::fixture::{ended, record};
    use protocol::record::write_record;

    /// A wrapper of another PID namespace (a container, or a host the tests
    /// simulate) on this host and boot may be alive: its PID means nothing
    /// here, so it is judged elsewhere, never dead or alive by our /proc.
    #[test]
    fn a_wrapper_of_another_pid_namespace_is_elsewhere() {
        let mut r = record("j", "r1", SystemTime::now());
        r.host = proc::hostname().to_owned();
        r.boot_id = proc::boot_id().to_owned();
        r.wrapper_pid = std::process::id() as i32;
        r.wrapper_start_time = proc::myself().start_time;
        r.pid_ns = proc::pid_namespace();
        assert_eq!(wrapper_holder(&r), Holder::Alive, "this very process");
        r.pid_ns = r.pid_ns.map(|n| n + 1);
        assert_eq!(wrapper_holder(&r), Holder::Elsewhere);
    }

    /// Protocol §16: a symlink in `history/` is neither followed nor
    /// removed; a run found through one would be another folder's record.
    #[test]
    fn an_archived_run_is_never_found_through_a_symlink_in_history() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(Some(&tmp.path().join("jobs"))).unwrap();
        let name = JobName::parse("j").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let now = SystemTime::now();
        let foreign = ended(record("j", "r1", now), Outcome::Success, now);
        write_record(&outside.join("j.job.json"), &foreign).unwrap();
        let history = store.dir().history_of(&name);
        std::fs::create_dir_all(&history).unwrap();
        std::os::unix::fs::symlink(&outside, history.join(rfc3339(now))).unwrap();
        assert!(store.archived_run(&name, "r1").is_none());
        assert!(store.archived(&name).is_empty(), "not a run of the name");
        // A real folder with the same record is found.
        let real = history.join("20330101T000000.000Z");
        std::fs::create_dir(&real).unwrap();
        write_record(&real.join("j.job.json"), &foreign).unwrap();
        let found = store.archived_run(&name, "r1").unwrap();
        assert_eq!(found.at, RunAt::Archived("20330101T000000.000Z".into()));
    }

    /// `status` counts every name's runs from one listing of `history/`;
    /// the counts are those of looking at each name alone, whatever
    /// `history/` holds (nothing, a name's folder, a symlink, a stray file).
    #[test]
    fn archived_counts_from_one_listing_equal_each_names_own_count() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(Some(&tmp.path().join("jobs"))).unwrap();
        let names: Vec<JobName> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|n| JobName::parse(n).unwrap())
            .collect();
        let each = |store: &FileStore| -> Vec<usize> {
            names.iter().map(|n| store.archived(n).len()).collect()
        };
        // No history/ at all.
        assert_eq!(store.archived_counts(&names), vec![0; 5]);
        let history = store.path().join("history");
        for label in ["20330101T000000.000Z", "20330102T000000.000Z"] {
            std::fs::create_dir_all(history.join("a").join(label)).unwrap();
        }
        std::fs::create_dir_all(history.join("b").join("20330101T000000.000Z")).unwrap();
        // A symlinked name folder is read as the name's own read is.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("20330101T000000.000Z")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, history.join("c")).unwrap();
        std::fs::write(history.join("d"), b"not a folder").unwrap();
        let counts = store.archived_counts(&names);
        assert_eq!(counts, each(&store));
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[4], 0);
    }
}
