//! `NAME.lock`: an advisory `flock` held by the live wrapper for the job's
//! whole life. Whoever holds it may change the job's files; the kernel drops
//! it when the holder dies, however it dies, so "I got the lock" also proves
//! the previous wrapper is gone.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::open::open_lock;

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error("held by another process")]
    Held,
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A held job lock; dropping it releases the lock.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes the lock without blocking.
    pub fn try_acquire(path: &Path) -> Result<Self, LockError> {
        Self::lock(path, FlockOperation::NonBlockingLockExclusive)
    }

    /// Takes the lock, waiting for the holder to release it. Only for locks
    /// held for a few milliseconds (a read-modify-write of a small file).
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        Self::lock(path, FlockOperation::LockExclusive)
    }

    fn lock(path: &Path, operation: FlockOperation) -> Result<Self, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        // Opened for writing so that its close (the holder's death) raises an
        // inotify close-write event, which wakes waiters at once; never
        // through a symlink, and only as a regular file (§3).
        let file = open_lock(path).map_err(io_err)?;
        match flock(&file, operation) {
            Ok(()) => Ok(Self { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LockError::Held),
            Err(e) => Err(io_err(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let first = JobLock::try_acquire(&p).unwrap();
        assert!(matches!(JobLock::try_acquire(&p), Err(LockError::Held)));
        drop(first);
        assert!(JobLock::try_acquire(&p).is_ok());
    }
}
