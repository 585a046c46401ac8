//! What an etcd store keeps on the host that runs a job: its log, result
//! file and heartbeat file, under `JOBS_DIR/etcd/NAMESPACE/` (so that two
//! namespaces, or the file store in `JOBS_DIR`, never share a file), laid
//! out as the file store lays them out (`NAME.log`, `attempts/NAME/K.log`,
//! `history/NAME/LABEL/…`), which is where [`LocalLogs`] looks.
//!
//! A run's processes and files are only ever touched on its own host: a
//! record is "here" when its host name, boot id and PID namespace are
//! this process's.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{Mode, OFlags, Timespec, Timestamps};

use jobwatch_core::model::{JobName, JobRecord};
use jobwatch_core::sys::proc;

/// Whether `record`'s processes and files are on this host: its host name,
/// boot id and PID namespace are this process's. (PIDs of another host, of
/// another PID namespace, or of this host before a reboot, mean nothing
/// here.)
pub fn runs_here(record: &JobRecord) -> bool {
    proc::place_of_record(record) == proc::Place::Here
}

/// This host's files of a namespace.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    root: PathBuf,
}

impl LocalFiles {
    /// The files under `root` (created private when missing).
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The root (`JOBS_DIR/etcd/NAMESPACE`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `NAME.heartbeat`: a job on this host beats by touching it (or with
    /// `jobwatch beat`); its wrapper publishes the beat.
    pub fn heartbeat(&self, name: &JobName) -> PathBuf {
        self.root.join(format!("{name}.heartbeat"))
    }

    /// `NAME.log`.
    pub fn log(&self, name: &JobName) -> PathBuf {
        self.root.join(format!("{name}.log"))
    }

    /// `NAME.result`.
    pub fn result(&self, name: &JobName) -> PathBuf {
        self.root.join(format!("{name}.result"))
    }

    /// `attempts/NAME/`.
    pub fn attempts(&self, name: &JobName) -> PathBuf {
        self.root.join("attempts").join(name.as_str())
    }

    /// `history/NAME/LABEL/`.
    pub fn history(&self, name: &JobName, label: &str) -> PathBuf {
        self.root.join("history").join(name.as_str()).join(label)
    }

    /// Creates an empty heartbeat file for a run starting here (replacing
    /// an earlier run's).
    pub fn reset_heartbeat(&self, name: &JobName) -> io::Result<()> {
        let path = self.heartbeat(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let fd = rustix::fs::open(
            &path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        drop(fd);
        Ok(())
    }

    /// The heartbeat file's last change, if it is a regular file.
    pub fn heartbeat_mtime(&self, name: &JobName) -> Option<SystemTime> {
        let meta = fs::symlink_metadata(self.heartbeat(name)).ok()?;
        meta.is_file().then(|| meta.modified().ok()).flatten()
    }

    /// Moves the heartbeat file's time to `at` (never through a symlink,
    /// never blocking on a FIFO, never creating it: a heartbeat that is
    /// not the wrapper's own file is refused).
    pub fn touch_heartbeat(&self, name: &JobName, at: SystemTime) -> io::Result<()> {
        let fd = rustix::fs::open(
            self.heartbeat(name),
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the heartbeat is not a regular file",
            ));
        }
        let d = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let ts = Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as _,
        };
        rustix::fs::futimens(
            &fd,
            &Timestamps {
                last_access: ts,
                last_modification: ts,
            },
        )?;
        Ok(())
    }

    /// Whether a current run's files are here (its log).
    pub fn has_current(&self, name: &JobName) -> bool {
        fs::symlink_metadata(self.log(name)).is_ok()
            || fs::symlink_metadata(self.attempts(name)).is_ok()
    }

    /// Moves the current run's files (log, result, heartbeat, earlier
    /// attempts' logs) into `history/NAME/LABEL/`, as the file store
    /// archives them. Nothing there: nothing moved.
    pub fn archive(&self, name: &JobName, label: &str) -> io::Result<()> {
        let moves = [
            (self.log(name), format!("{name}.log")),
            (self.result(name), format!("{name}.result")),
            (self.heartbeat(name), format!("{name}.heartbeat")),
            (self.attempts(name), "attempts".to_owned()),
        ];
        let present: Vec<_> = moves
            .into_iter()
            .filter(|(from, _)| fs::symlink_metadata(from).is_ok())
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        let dest = self.history(name, label);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dest)?;
        for (from, to) in present {
            match fs::rename(&from, dest.join(to)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the current run's files here (gc of a finished run).
    pub fn remove_current(&self, name: &JobName) -> io::Result<()> {
        for f in [self.log(name), self.result(name), self.heartbeat(name)] {
            match fs::remove_file(&f) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match fs::remove_dir_all(self.attempts(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes an archived run's files here.
    pub fn remove_archived(&self, name: &JobName, label: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.history(name, label)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_that_is_a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::open(&dir.path().join("etcd/ns")).unwrap();
        let name = JobName::parse("a").unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"x").unwrap();
        let before = fs::metadata(&target).unwrap().modified().unwrap();
        std::os::unix::fs::symlink(&target, files.heartbeat(&name)).unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5);
        assert!(files.touch_heartbeat(&name, at).is_err());
        assert_eq!(fs::metadata(&target).unwrap().modified().unwrap(), before);
    }

    #[test]
    fn a_heartbeat_moves_to_the_time_given_and_archiving_moves_a_runs_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::open(dir.path()).unwrap();
        let name = JobName::parse("a").unwrap();
        files.reset_heartbeat(&name).unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        files.touch_heartbeat(&name, at).unwrap();
        assert_eq!(files.heartbeat_mtime(&name), Some(at));
        fs::write(files.log(&name), b"out\n").unwrap();
        files.archive(&name, "L").unwrap();
        assert!(!files.has_current(&name));
        assert_eq!(
            fs::read(files.history(&name, "L").join("a.log")).unwrap(),
            b"out\n"
        );
        assert!(files.history(&name, "L").join("a.heartbeat").exists());
    }
}
