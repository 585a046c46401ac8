//! Atomic file writes: a reader sees the old content or the new, never a
//! half-written file, and a crash leaves no torn file behind.
//!
//! Each write goes to a temp file in the same directory (names starting
//! with `.`, which no job file does), is fsynced, then renamed over the
//! target. The directory is fsynced at commit points only ([`create_once`],
//! or an explicit [`sync_parent`]): one directory fsync makes every earlier
//! rename in it durable too, and each fsync costs a millisecond or more on
//! the critical path from a job's exit to its waiter.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A failed atomic write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    /// The file that was being written.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// What [`create_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOnce {
    /// The file did not exist and now holds the content.
    Created,
    /// The file already existed; it was left untouched.
    AlreadyExists,
}

/// Replaces `path` with `content` atomically (content durable, the rename
/// durable at the directory's next fsync).
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let tmp = write_temp_sibling(path, content).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Creates `path` with `content` atomically unless it already exists; an
/// existing file is never overwritten (`renameat2(RENAME_NOREPLACE)` or a
/// hard link, both failing on `EEXIST`). The directory is fsynced: this is a
/// commit point, and it makes every earlier rename in the directory durable.
pub fn create_once(path: &Path, content: &[u8]) -> Result<CreateOnce, WriteError> {
    let err = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let tmp = write_temp_sibling(path, content).map_err(err)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            sync_parent(path).map_err(err)?;
            Ok(CreateOnce::Created)
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(CreateOnce::AlreadyExists),
        Err(e) => Err(err(e.error)),
    }
}

fn write_temp_sibling(path: &Path, content: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent_of(path);
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes the directory entry changes under `path`'s parent durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent_of(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_once_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.status");
        assert_eq!(create_once(&p, b"SUCCESS\n").unwrap(), CreateOnce::Created);
        assert_eq!(
            create_once(&p, b"FAILED\n").unwrap(),
            CreateOnce::AlreadyExists
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"SUCCESS\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp files must not be left behind");
    }

    #[test]
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.job.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
    }
}
