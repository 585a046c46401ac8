//! Housekeeping: removing what finished runs leave behind, within limits the
//! caller chooses, without ever touching a running job.
//!
//! What may go (docs/protocol.md §16 is the contract for scripts):
//! - a name's **current run**, only with `older_than`: it has a status, its
//!   wrapper is gone (we hold `NAME.lock` while removing), and it ended
//!   longer ago than the limit. Its `attempts/NAME/` folder goes with it;
//! - **archived runs** in `history/NAME/<label>/` beyond the newest `keep`,
//!   or that ended longer ago than `older_than`;
//! - **temp files** `.tmp-*` in the jobs directory older than a minute (a
//!   crash mid-write left them; a live writer renames its own within ms);
//! - **orphaned `NAME.kill`** files: beside no run, or naming another run
//!   than the finished current one;
//! - **empty** `history/NAME/` and `attempts/NAME/` folders.
//!
//! Never removed: `NAME.lock` (it belongs to the name, and another process
//! may be about to lock the same inode; unlinking it would let two holders
//! lock different inodes of one path), `breakers/`, anything reached
//! through a symlink, anything of a name whose lock is held other than
//! archived runs older than a minute.
//!
//! Archiving happens under the name's lock, so the lock is taken before
//! touching a folder an archive may still be filling (one changed in the
//! last minute), before rmdir-ing `history/NAME/` (an archive may be about
//! to create a run folder in it) and before removing current files. Old
//! archived runs are removed without the lock, so pruning history never
//! makes a `run` of that name fail with "already running".

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::classify::{JobState, WrapperState, classify, observe, wrapper_state};
use crate::model::JobName;
use crate::model::{KillRequest, rfc3339};
use crate::protocol::history::RUN_FILES;
use crate::protocol::lock::{JobLock, LockError};
use crate::protocol::paths::ATTEMPTS_DIR;
use crate::protocol::record::{read_json, read_record};
use crate::protocol::{FileKind, JobPaths, JobsDir};

/// Archived runs kept per name when no limit is given.
pub const DEFAULT_KEEP: usize = 10;

/// Temp files younger than this may belong to a writer still at work.
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(60);

/// An archived run's folder changed more recently than this may still be
/// filled by an archive in progress: it is removed only under the lock.
pub const FRESH_ARCHIVE: Duration = Duration::from_secs(60);

const HISTORY: &str = "history";
/// What to remove besides the always-removed leftovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Remove finished runs (current and archived) that ended longer ago.
    pub older_than: Option<Duration>,
    /// Keep at most this many archived runs per name, the newest.
    pub keep: Option<usize>,
}

impl Policy {
    /// The policy for the given limits; with neither, keep
    /// [`DEFAULT_KEEP`] archived runs per name and remove nothing current.
    pub fn new(older_than: Option<Duration>, keep: Option<usize>) -> Self {
        let keep = match (older_than, keep) {
            (None, None) => Some(DEFAULT_KEEP),
            (_, keep) => keep,
        };
        Self { older_than, keep }
    }

    fn too_old(&self, ended: SystemTime, now: SystemTime) -> bool {
        self.older_than
            .is_some_and(|d| now.duration_since(ended).is_ok_and(|age| age > d))
    }
}

/// What kind of thing a [`Removal`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A finished current run: `NAME.*` (but the lock) and `attempts/NAME/`.
    Run,
    /// A folder `history/NAME/<label>/`.
    ArchivedRun,
    /// A stray `.tmp-*` file.
    TempFile,
    /// An orphaned `NAME.kill`.
    KillRequest,
    /// An empty `history/NAME/` or `attempts/NAME/`.
    EmptyDir,
}

/// One thing removed (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// What it is.
    pub kind: ItemKind,
    /// The job it belonged to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The paths removed, relative to the jobs directory.
    pub paths: Vec<PathBuf>,
    /// Bytes freed (file sizes, not blocks).
    pub bytes: u64,
    /// When the run ended, for runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Why it goes.
    pub why: String,
}

/// The result of one collection.
#[derive(Debug, Default)]
pub struct Report {
    /// What was removed (or would be, in a dry run), in order.
    pub removed: Vec<Removal>,
    /// One line each: files that could not be read or removed, names
    /// skipped because their lock was held. None of them stops the run.
    pub warnings: Vec<String>,
}

impl Report {
    /// Total bytes freed.
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|r| r.bytes).sum()
    }
}

/// The jobs directory could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list {path}: {source}")]
pub struct GcError {
    /// The directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Removes (or with `dry_run` only lists) what `policy` allows, as of `now`.
pub fn collect(
    dir: &JobsDir,
    policy: &Policy,
    dry_run: bool,
    now: SystemTime,
) -> Result<Report, GcError> {
    let mut gc = Collector {
        root: dir.path().to_owned(),
        policy: *policy,
        dry_run,
        now,
        report: Report::default(),
    };
    let top = gc.scan_top()?;
    for tmp in top.temps {
        gc.temp_file(&tmp);
    }
    for name in top.names {
        gc.name(&dir.job(&name));
    }
    // A name's history is read again under its lock: say each thing once.
    let mut seen = BTreeSet::new();
    gc.report.warnings.retain(|w| seen.insert(w.clone()));
    Ok(gc.report)
}

struct TopLevel {
    names: BTreeSet<JobName>,
    temps: Vec<PathBuf>,
}

/// One archived run folder and when it ended.
struct Archived {
    path: PathBuf,
    ended: SystemTime,
    fresh: bool,
}

/// What one name would lose, decided either under its lock or without it.
#[derive(Default)]
struct NamePlan {
    current: Option<Removal>,
    kill: Option<Removal>,
    archived: Vec<Removal>,
    empty_dirs: Vec<PathBuf>,
}

impl NamePlan {
    fn is_empty(&self) -> bool {
        self.current.is_none()
            && self.kill.is_none()
            && self.archived.is_empty()
            && self.empty_dirs.is_empty()
    }
}

struct Collector {
    root: PathBuf,
    policy: Policy,
    dry_run: bool,
    now: SystemTime,
    report: Report,
}

impl Collector {
    /// Job names (from job files, history and attempts folders) and temp
    /// files, from one listing of each folder.
    fn scan_top(&mut self) -> Result<TopLevel, GcError> {
        let entries = fs::read_dir(&self.root).map_err(|source| GcError {
            path: self.root.clone(),
            source,
        })?;
        let mut top = TopLevel {
            names: BTreeSet::new(),
            temps: Vec::new(),
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(s) = file_name.to_str() else {
                continue;
            };
            if s.starts_with(".tmp-") {
                top.temps.push(entry.path());
            } else if let Some((name, kind)) = FileKind::parse_file_name(s)
                && kind != FileKind::Lock
            {
                top.names.insert(name);
            }
        }
        for sub in [HISTORY, ATTEMPTS_DIR] {
            for (name, _) in self.real_subdirs(&self.root.join(sub)) {
                if let Ok(name) = JobName::parse(&name) {
                    top.names.insert(name);
                }
            }
        }
        Ok(top)
    }

    /// The real (not symlinked) folders inside `dir`, which must itself be
    /// a real folder: nothing outside the jobs directory is ever listed.
    fn real_subdirs(&self, dir: &Path) -> Vec<(String, PathBuf)> {
        if !is_real_dir(dir) {
            return Vec::new();
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
            .collect();
        out.sort();
        out
    }

    fn temp_file(&mut self, path: &Path) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if !meta.is_file() || !self.older(meta.modified().ok(), TEMP_MIN_AGE) {
            return;
        }
        let removal = Removal {
            kind: ItemKind::TempFile,
            name: None,
            paths: vec![self.relative(path)],
            bytes: meta.len(),
            ended_at: None,
            why: "left by an interrupted atomic write".into(),
        };
        if self.dry_run || self.remove_file(path) {
            self.report.removed.push(removal);
        }
    }

    fn name(&mut self, job: &JobPaths) {
        let state = classify(observe(job), self.now, None);
        let running = matches!(state, JobState::Running { .. } | JobState::Hung { .. });
        let history = self.root.join(HISTORY).join(job.name().as_str());
        let runs = self.archived_runs(job.name(), &history);
        // The plan if we could hold the lock; when nothing in it needs the
        // lock, there is no reason to take it (and delay a `run`).
        let locked = self.plan(job, &state, &runs, true);
        let unlocked = self.plan(job, &state, &runs, false);
        let needs_lock = locked.current.is_some()
            || locked.kill.is_some()
            || !locked.empty_dirs.is_empty()
            || locked.archived.len() > unlocked.archived.len();
        if !needs_lock {
            return self.execute(job, unlocked);
        }
        if self.dry_run {
            // A running job's wrapper holds the lock: the real run would
            // fall back to what needs no lock.
            let plan = if running { unlocked } else { locked };
            return self.execute(job, plan);
        }
        match JobLock::try_acquire(&job.lock()) {
            Ok(_lock) => {
                // The name may have moved on before we got the lock (a run
                // started, finished and archived): decide again. Its history
                // cannot change while we hold the lock.
                let state = classify(observe(job), SystemTime::now(), None);
                let runs = self.archived_runs(job.name(), &history);
                let plan = self.plan(job, &state, &runs, true);
                self.execute(job, plan);
            }
            Err(LockError::Held) => {
                if locked.current.is_some() {
                    self.report.warnings.push(format!(
                        "skipped the current run of {}: its lock is held (a run is starting or being finished); left for the next gc",
                        job.name()
                    ));
                }
                self.execute(job, unlocked);
            }
            Err(e) => {
                self.report.warnings.push(e.to_string());
                self.execute(job, unlocked);
            }
        }
    }

    fn plan(&self, job: &JobPaths, state: &JobState, runs: &[Archived], locked: bool) -> NamePlan {
        let mut plan = NamePlan::default();
        if locked {
            plan.current = self.current_run(job, state);
            if plan.current.is_none() {
                plan.kill = self.orphan_kill(job, state);
            }
        }
        plan.archived = self.archived_to_remove(job.name(), runs, locked);
        if locked {
            let history = self.root.join(HISTORY).join(job.name().as_str());
            let left = entry_count(&history).map(|n| n.saturating_sub(plan.archived.len()));
            if left == Some(0) {
                plan.empty_dirs.push(history);
            }
            let attempts = self.attempts_dir(job);
            if plan.current.is_none() && entry_count(&attempts) == Some(0) {
                plan.empty_dirs.push(attempts);
            }
        }
        plan
    }

    /// The current run, if it is finished, its wrapper gone and it ended
    /// before the `older_than` limit.
    fn current_run(&self, job: &JobPaths, state: &JobState) -> Option<Removal> {
        self.policy.older_than?;
        let JobState::Finished { record, .. } = state else {
            return None;
        };
        if let Some(r) = record
            && wrapper_state(r) == WrapperState::Alive
        {
            return None;
        }
        let ended = record
            .as_ref()
            .and_then(|r| r.ended_at.as_deref())
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .or_else(|| mtime(&job.status()))?;
        if !self.policy.too_old(ended, self.now) {
            return None;
        }
        let mut paths: Vec<PathBuf> = RUN_FILES
            .iter()
            .map(|k| job.file(*k))
            .filter(|p| fs::symlink_metadata(p).is_ok())
            .collect();
        let attempts = self.attempts_dir(job);
        if is_real_dir(&attempts) {
            paths.push(attempts);
        }
        let bytes = paths.iter().map(|p| tree_size(p)).sum();
        Some(Removal {
            kind: ItemKind::Run,
            name: Some(job.name().to_string()),
            paths: paths.iter().map(|p| self.relative(p)).collect(),
            bytes,
            ended_at: Some(rfc3339(ended)),
            why: self.age_reason(ended),
        })
    }

    /// `NAME.kill` beside no run, or naming another run than the finished
    /// current one (a request for a run that is over can never be used).
    fn orphan_kill(&self, job: &JobPaths, state: &JobState) -> Option<Removal> {
        let path = job.kill_request();
        let meta = fs::symlink_metadata(&path).ok()?;
        let orphan = match state {
            JobState::Missing => true,
            JobState::Finished { record, .. } => {
                let request: Option<KillRequest> = read_json(&path).ok().flatten();
                match (request, record) {
                    (Some(k), Some(r)) => k.job_id != r.job_id,
                    _ => true,
                }
            }
            _ => false,
        };
        orphan.then(|| Removal {
            kind: ItemKind::KillRequest,
            name: Some(job.name().to_string()),
            paths: vec![self.relative(&path)],
            bytes: meta.len(),
            ended_at: None,
            why: "a kill request for a run that is over".into(),
        })
    }

    /// The archived runs of a name, newest first.
    fn archived_runs(&mut self, name: &JobName, history: &Path) -> Vec<Archived> {
        let mut runs: Vec<(Archived, String)> = self
            .real_subdirs(history)
            .into_iter()
            .map(|(label, path)| {
                let ended = self.archived_end(name, &path);
                let fresh = !self.older(mtime(&path), FRESH_ARCHIVE);
                (Archived { path, ended, fresh }, label)
            })
            .collect();
        runs.sort_by(|(a, la), (b, lb)| b.ended.cmp(&a.ended).then_with(|| lb.cmp(la)));
        runs.into_iter().map(|(a, _)| a).collect()
    }

    /// When an archived run ended: its record's `ended_at`, else its
    /// status's mtime, else the folder's mtime (the archive's time, never
    /// earlier than the end). A malformed record is reported, not fatal.
    fn archived_end(&mut self, name: &JobName, run: &Path) -> SystemTime {
        let record = run.join(format!("{name}{}", FileKind::Record.suffix()));
        let status = run.join(format!("{name}{}", FileKind::Status.suffix()));
        let from_record = match read_record(&record) {
            Ok(r) => r.and_then(|r| r.ended_at),
            Err(e) => {
                self.report
                    .warnings
                    .push(format!("{e}; using file times for its age"));
                None
            }
        };
        from_record
            .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
            .or_else(|| mtime(&status))
            .or_else(|| mtime(run))
            .unwrap_or(self.now)
    }

    fn archived_to_remove(&self, name: &JobName, runs: &[Archived], locked: bool) -> Vec<Removal> {
        let keep = self.policy.keep.unwrap_or(usize::MAX);
        runs.iter()
            .enumerate()
            .filter(|(_, run)| locked || !run.fresh)
            .filter_map(|(i, run)| {
                let why = if i >= keep {
                    format!("more than {keep} archived runs")
                } else if self.policy.too_old(run.ended, self.now) {
                    self.age_reason(run.ended)
                } else {
                    return None;
                };
                Some(Removal {
                    kind: ItemKind::ArchivedRun,
                    name: Some(name.to_string()),
                    paths: vec![self.relative(&run.path)],
                    bytes: tree_size(&run.path),
                    ended_at: Some(rfc3339(run.ended)),
                    why,
                })
            })
            .collect()
    }

    fn execute(&mut self, job: &JobPaths, plan: NamePlan) {
        if plan.is_empty() {
            return;
        }
        let items = [plan.current, plan.kill]
            .into_iter()
            .flatten()
            .chain(plan.archived);
        for removal in items {
            if self.dry_run || self.remove_all(&removal) {
                self.report.removed.push(removal);
            }
        }
        for dir in plan.empty_dirs {
            let removal = Removal {
                kind: ItemKind::EmptyDir,
                name: Some(job.name().to_string()),
                paths: vec![self.relative(&dir)],
                bytes: 0,
                ended_at: None,
                why: "empty".into(),
            };
            if self.dry_run {
                self.report.removed.push(removal);
                continue;
            }
            match fs::remove_dir(&dir) {
                Ok(()) => self.report.removed.push(removal),
                // Not empty after all: something arrived meanwhile.
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => self
                    .report
                    .warnings
                    .push(format!("cannot remove {}: {e}", dir.display())),
            }
        }
    }

    /// Removes every path of a removal, in order; false (with a warning)
    /// when one could not be removed.
    fn remove_all(&mut self, removal: &Removal) -> bool {
        let mut ok = true;
        for rel in &removal.paths {
            let path = self.root.join(rel);
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            // remove_dir_all never follows symlinks inside the tree.
            let result = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    ok = false;
                    self.report
                        .warnings
                        .push(format!("cannot remove {}: {e}", path.display()));
                }
            }
        }
        ok
    }

    fn remove_file(&mut self, path: &Path) -> bool {
        match fs::remove_file(path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                self.report
                    .warnings
                    .push(format!("cannot remove {}: {e}", path.display()));
                false
            }
        }
    }

    fn attempts_dir(&self, job: &JobPaths) -> PathBuf {
        job.attempts()
    }

    fn older(&self, t: Option<SystemTime>, limit: Duration) -> bool {
        t.and_then(|t| self.now.duration_since(t).ok())
            .is_some_and(|age| age >= limit)
    }

    fn age_reason(&self, ended: SystemTime) -> String {
        let age = self.now.duration_since(ended).unwrap_or_default();
        format!(
            "ended {} ago",
            humantime::format_duration(Duration::from_secs(age.as_secs()))
        )
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_owned()
    }
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::symlink_metadata(path).ok()?.modified().ok()
}

/// Entries in a real folder; `None` when it is missing or not a folder.
fn entry_count(dir: &Path) -> Option<usize> {
    if !is_real_dir(dir) {
        return None;
    }
    Some(fs::read_dir(dir).ok()?.count())
}

/// The bytes of a file, or of every file under a folder; symlinks count as
/// themselves and are never followed.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|e| tree_size(&e.path())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_means_keep_ten_and_an_age_limit_alone_keeps_any_number() {
        assert_eq!(
            Policy::new(None, None),
            Policy {
                older_than: None,
                keep: Some(DEFAULT_KEEP)
            }
        );
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(Policy::new(Some(week), None).keep, None);
        assert_eq!(Policy::new(Some(week), Some(3)).keep, Some(3));
    }

    #[test]
    fn too_old_means_strictly_longer_ago_than_the_limit() {
        let p = Policy::new(Some(Duration::from_secs(60)), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(p.too_old(now - Duration::from_secs(61), now));
        assert!(!p.too_old(now - Duration::from_secs(60), now));
        assert!(!p.too_old(now + Duration::from_secs(5), now), "clock skew");
        assert!(!Policy::new(None, Some(1)).too_old(SystemTime::UNIX_EPOCH, now));
    }

    #[test]
    fn tree_size_counts_files_below_and_not_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        fs::create_dir_all(run.join("attempts")).unwrap();
        fs::write(run.join("a.log"), b"12345").unwrap();
        fs::write(run.join("attempts/1.log"), b"123").unwrap();
        let big = dir.path().join("big");
        fs::write(&big, vec![0u8; 10_000]).unwrap();
        std::os::unix::fs::symlink(&big, run.join("link")).unwrap();
        let link_len = fs::symlink_metadata(run.join("link")).unwrap().len();
        assert_eq!(tree_size(&run), 8 + link_len);
    }
}
