//! `NAME.lock`: an advisory `flock` held by the live wrapper for the job's
//! whole life. Whoever holds it may change the job's files; the kernel drops
//! it when the holder dies, however it dies, so "I got the lock" also proves
//! the previous wrapper is gone.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

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

    /// Takes the lock, waiting at most `patience` for the holder to release
    /// it: a holder that is stuck (stopped, or blocked on a dead disk) must
    /// not hold up a caller whose work does not depend on the lock forever.
    /// [`LockError::Held`] when the time runs out.
    ///
    /// The blocking `flock` runs on a helper thread, so waiters still queue
    /// in the kernel (no polling, no starving). If the caller has given up
    /// by the time that thread gets the lock, the thread releases it at once.
    pub fn acquire_within(path: &Path, patience: Duration) -> Result<Self, LockError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("jobwatch-lock".into())
            .spawn(move || {
                // A send to a caller that gave up fails and drops the lock.
                let _ = tx.send(Self::acquire(&owned));
            })
            .map_err(|source| LockError::Io {
                path: path.to_owned(),
                source,
            })?;
        match rx.recv_timeout(patience) {
            Ok(result) => result,
            Err(_) => Err(LockError::Held),
        }
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

/// Takes `operation` (a blocking shared or exclusive `flock`) on `file`,
/// waiting at most `patience` for holders of a conflicting lock; `Ok(false)`
/// when the time runs out. As [`JobLock::acquire_within`], the blocking
/// call runs on a helper thread (waiters queue in the kernel), on a
/// duplicate of the descriptor: the lock belongs to the open file both
/// share, so it is the caller's once taken, and it goes when both are
/// closed (a helper that gets it after the caller gave up drops its copy).
pub fn flock_within(
    file: &File,
    operation: FlockOperation,
    patience: Duration,
) -> io::Result<bool> {
    let try_now = match operation {
        FlockOperation::LockShared => FlockOperation::NonBlockingLockShared,
        FlockOperation::LockExclusive => FlockOperation::NonBlockingLockExclusive,
        other => other,
    };
    match flock(file, try_now) {
        Ok(()) => return Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
        Err(e) => return Err(e.into()),
    }
    let copy = file.try_clone()?;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("jobwatch-flock".into())
        .spawn(move || {
            let got = flock(&copy, operation).map_err(io::Error::from);
            // A caller that gave up no longer reads: the copy is dropped,
            // and with the caller's own close the lock goes.
            let _ = tx.send(got);
        })?;
    match rx.recv_timeout(patience) {
        Ok(got) => got.map(|()| true),
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_file_lock_waits_for_a_holder_and_gives_up_on_a_stuck_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        std::fs::write(&p, b"").unwrap();
        let (a, b, c) = (
            File::open(&p).unwrap(),
            File::open(&p).unwrap(),
            File::open(&p).unwrap(),
        );
        let patience = Duration::from_millis(50);
        assert!(flock_within(&a, FlockOperation::LockShared, patience).unwrap());
        assert!(flock_within(&b, FlockOperation::LockShared, patience).unwrap());
        assert!(!flock_within(&c, FlockOperation::LockExclusive, patience).unwrap());
        drop((a, b, c));
        let d = File::open(&p).unwrap();
        assert!(flock_within(&d, FlockOperation::LockExclusive, Duration::from_secs(20)).unwrap());
    }

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let first = JobLock::try_acquire(&p).unwrap();
        assert!(matches!(JobLock::try_acquire(&p), Err(LockError::Held)));
        drop(first);
        assert!(JobLock::try_acquire(&p).is_ok());
    }

    #[test]
    fn a_bounded_wait_gives_up_on_a_holder_and_leaves_no_lock_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let first = JobLock::try_acquire(&p).unwrap();
        assert!(matches!(
            JobLock::acquire_within(&p, Duration::from_millis(50)),
            Err(LockError::Held)
        ));
        drop(first);
        // The abandoned waiter takes the lock and drops it: it is free again.
        let again = JobLock::acquire_within(&p, Duration::from_secs(20));
        assert!(again.is_ok());
        drop(again);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while JobLock::try_acquire(&p).is_err() {
            assert!(std::time::Instant::now() < deadline, "the lock stayed held");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
