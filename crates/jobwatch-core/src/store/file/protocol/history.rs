//! Moving a finished job's files out of the way before its name is reused,
//! so that no earlier result is ever overwritten.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::open::create_dirs_within;
use super::paths::{ATTEMPTS_DIR, FileKind, JobPaths};

/// A run's files (every kind but the lock, which belongs to the name), in
/// the order they are moved into history or removed: the completion flag
/// goes last, so a reader never sees `.status` beside the wrong record, and
/// never a record without its status (which would read as `lost`).
pub const RUN_FILES: [FileKind; 7] = [
    FileKind::Pid,
    FileKind::Heartbeat,
    FileKind::Log,
    FileKind::Result,
    FileKind::KillRequest,
    FileKind::Record,
    FileKind::Status,
];

/// Archiving failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot move {from} into history: {source}")]
pub struct ArchiveError {
    /// The file being moved.
    pub from: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Moves every existing file of the job into `history_root/<id>/`, where
/// `id` is made unique, and `attempts/NAME/` (earlier attempts' logs) to
/// `history_root/<id>/attempts/`; returns that folder, or `None` if nothing
/// existed. The lock file stays: it belongs to the name, not to one run.
pub fn archive(
    job: &JobPaths,
    history_root: &Path,
    label: &str,
) -> Result<Option<PathBuf>, ArchiveError> {
    let present: Vec<FileKind> = RUN_FILES
        .into_iter()
        .filter(|k| job.file(*k).symlink_metadata().is_ok())
        .collect();
    let attempts = job.attempts();
    let has_attempts = attempts.symlink_metadata().is_ok();
    if present.is_empty() && !has_attempts {
        return Ok(None);
    }
    let dest = unique_folder(job.dir(), history_root, label).map_err(|source| ArchiveError {
        from: history_root.to_owned(),
        source,
    })?;
    for kind in present {
        // Earlier attempts' logs go before the record and status, which
        // mark the run as complete in its new place.
        if kind == FileKind::Record && has_attempts {
            move_if_present(&attempts, &dest.join(ATTEMPTS_DIR))?;
        }
        let from = job.file(kind);
        move_if_present(
            &from,
            &dest.join(from.file_name().expect("job files have names")),
        )?;
    }
    if has_attempts {
        move_if_present(&attempts, &dest.join(ATTEMPTS_DIR))?;
    }
    Ok(Some(dest))
}

fn move_if_present(from: &Path, to: &Path) -> Result<(), ArchiveError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ArchiveError {
            from: from.to_owned(),
            source,
        }),
    }
}

/// A new folder `root/label` (or `label.N`). `root` and its parents below
/// the jobs directory must be real folders: a symlinked `history/` would
/// carry the run's files out of the jobs directory (§3).
fn unique_folder(jobs_dir: &Path, root: &Path, label: &str) -> io::Result<PathBuf> {
    if root.starts_with(jobs_dir) {
        create_dirs_within(jobs_dir, root)?;
    } else {
        DirBuilder::new().recursive(true).mode(0o700).create(root)?;
    }
    for n in 0u32.. {
        let candidate = if n == 0 {
            root.join(label)
        } else {
            root.join(format!("{label}.{n}"))
        };
        match DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 range exhausted")
}

/// The labels of the run folders in `history` (a name's history folder),
/// newest first (labels sort by start time); nothing of the runs is read,
/// and a folder that is a symlink is not listed.
pub fn archived_labels(history: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(history) else {
        return Vec::new();
    };
    let mut labels: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    labels.sort_unstable_by(|a, b| b.cmp(a));
    labels
}

/// A sortable folder label for a run that started at `t`:
/// `20261124T081500.123Z`.
pub use crate::model::archive_label as history_label;
