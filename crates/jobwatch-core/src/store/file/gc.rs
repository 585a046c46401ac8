//! Housekeeping in a jobs directory: taking stock of what gc may remove
//! (protocol §16) and removing it. What goes is decided by the pure plan in
//! [`crate::gc`]; this only lists, measures and removes, never following a
//! symlink and never listing anything outside the jobs directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::FileStore;
use super::protocol::JobPaths;
use super::protocol::history::RUN_FILES;
use super::protocol::paths::ATTEMPTS_DIR;
use super::protocol::record::{read_json, read_record};
use crate::model::{JobName, KillRequest};
use crate::store::{ArchivedItem, Claim, Folder, GcItem, GcStore, Inventory, Store, StoreError};

const HISTORY: &str = "history";

impl FileStore {
    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(self.path()).unwrap_or(path).to_owned()
    }

    fn item(&self, paths: &[PathBuf]) -> GcItem {
        GcItem {
            paths: paths.iter().map(|p| self.relative(p)).collect(),
            bytes: paths.iter().map(|p| tree_size(p)).sum(),
        }
    }

    /// When an archived run ended: its record's `ended_at`, else its
    /// status's mtime, else the folder's mtime (the archive's time, never
    /// earlier than the end). A malformed record is a warning, not fatal.
    fn archived_end(&self, name: &JobName, run: &Path, warnings: &mut Vec<String>) -> SystemTime {
        let paths = JobPaths::new(run, name);
        let from_record = match read_record(&paths.record()) {
            Ok(r) => r.and_then(|r| r.ended_at),
            Err(e) => {
                warnings.push(format!("{e}; using file times for its age"));
                None
            }
        };
        from_record
            .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
            .or_else(|| mtime(&paths.status()))
            .or_else(|| mtime(run))
            .unwrap_or_else(SystemTime::now)
    }
}

impl GcStore for FileStore {
    fn debris(&self, now: SystemTime, min_age: Duration) -> Vec<GcItem> {
        let Ok(entries) = fs::read_dir(self.path()) else {
            return Vec::new();
        };
        let mut temps: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|s| s.starts_with(".tmp-"))
            })
            .map(|e| e.path())
            .collect();
        temps.sort();
        temps
            .into_iter()
            .filter_map(|path| {
                let meta = fs::symlink_metadata(&path).ok()?;
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= min_age);
                (meta.is_file() && old).then(|| GcItem {
                    paths: vec![self.relative(&path)],
                    bytes: meta.len(),
                })
            })
            .collect()
    }

    fn names(&self) -> Result<Vec<JobName>, StoreError> {
        // The names with a current run (the one listing, `Store::list`),
        // and those with only archived runs or attempts' logs left.
        let mut names: std::collections::BTreeSet<JobName> =
            Store::list(self)?.into_iter().collect();
        for sub in [HISTORY, ATTEMPTS_DIR] {
            for (name, _) in real_subdirs(&self.path().join(sub)) {
                if let Ok(name) = JobName::parse(&name) {
                    names.insert(name);
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn inventory(&self, name: &JobName) -> Inventory {
        let job = self.dir().job(name);
        let mut warnings = Vec::new();
        let mut current: Vec<PathBuf> = RUN_FILES
            .iter()
            .map(|k| job.file(*k))
            .filter(|p| fs::symlink_metadata(p).is_ok())
            .collect();
        let attempts = job.attempts();
        if is_real_dir(&attempts) {
            current.push(attempts.clone());
        }
        let kill_path = job.kill_request();
        let kill = fs::symlink_metadata(&kill_path).ok().map(|meta| {
            let request: Option<KillRequest> = read_json(&kill_path).ok().flatten();
            (
                GcItem {
                    paths: vec![self.relative(&kill_path)],
                    bytes: meta.len(),
                },
                request.map(|k| k.job_id),
            )
        });
        let history = self.dir().history_of(name);
        let archived = real_subdirs(&history)
            .into_iter()
            .map(|(label, path)| ArchivedItem {
                ended: self.archived_end(name, &path, &mut warnings),
                changed: mtime(&path),
                item: self.item(std::slice::from_ref(&path)),
                label,
            })
            .collect();
        let folders = [(history, false), (attempts, true)]
            .into_iter()
            .filter_map(|(dir, of_current_run)| {
                Some(Folder {
                    entries: entry_count(&dir)?,
                    item: GcItem {
                        paths: vec![self.relative(&dir)],
                        bytes: 0,
                    },
                    of_current_run,
                })
            })
            .collect();
        Inventory {
            current: (!current.is_empty()).then(|| self.item(&current)),
            status_time: mtime(&job.status()),
            kill,
            archived,
            folders,
            warnings,
        }
    }

    fn remove_archived(&self, _name: &JobName, item: &GcItem) -> Result<bool, StoreError> {
        self.remove_debris(item)
    }

    fn remove_debris(&self, item: &GcItem) -> Result<bool, StoreError> {
        let mut removed = false;
        for rel in &item.paths {
            let path = self.path().join(rel);
            removed |= fs::symlink_metadata(&path).is_ok();
            remove_path(&path)?;
        }
        Ok(removed)
    }

    fn remove_empty(&self, _claim: &mut dyn Claim, folder: &GcItem) -> Result<bool, StoreError> {
        let Some(rel) = folder.paths.first() else {
            return Ok(false);
        };
        let dir = self.path().join(rel);
        match fs::remove_dir(&dir) {
            Ok(()) => Ok(true),
            // Not empty after all: something arrived meanwhile.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
            Err(source) => Err(StoreError::Io {
                context: format!("cannot remove {}", dir.display()),
                source,
            }),
        }
    }
}

/// Removes a file, or a folder and everything in it (never following a
/// symlink inside it); one already gone is fine.
pub(super) fn remove_path(path: &Path) -> Result<(), StoreError> {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let result = if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io {
            context: format!("cannot remove {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The real (not symlinked) folders inside `dir`, which must itself be a
/// real folder: nothing outside the jobs directory is ever listed.
fn real_subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
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
