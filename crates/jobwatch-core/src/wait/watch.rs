//! Wake-ups for the waiter: inotify on the jobs directory, or plain polling
//! where events cannot be trusted (network filesystems) or were not wanted
//! (`--poll`).
//!
//! inotify is used directly (through rustix) rather than through the
//! `notify` crate for two measured reasons: the waiter's own thread can
//! `poll` the descriptor (no watcher thread, no channel), and the waiter
//! controls when the descriptor is closed. Closing an inotify instance waits
//! for a kernel SRCU grace period, which took 0.5 to 12 ms here, and a
//! process's exit status is not visible to its parent until that is over;
//! [`crate::sys::child::hold_until_exit`] moves that wait off the path from
//! a job's end to the caller learning of it.

use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

use crate::model::JobName;
use crate::protocol::FileKind;
use crate::sys::child::hold_until_exit;

/// With events, the state is still re-read this often: a safety net for a
/// lost event, never the normal path.
pub const SAFETY_RECHECK: Duration = Duration::from_secs(2);

/// Poll interval used where events are unavailable and none was given.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// Why [`Wakeups::wait`] returned; ordered by how much it asks to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// Only a watched job's log changed (with [`Wakeups::with_log_writes`]):
    /// its new bytes are worth reading, its state need not be re-read.
    Log,
    /// Anything else: a file that can change a verdict, a poll tick, or the
    /// time given ran out. Look at everything.
    State,
}

/// How the waiter is woken.
pub enum Wakeups {
    /// inotify events on the directory, filtered to the jobs waited for.
    Events {
        /// The inotify descriptor.
        fd: OwnedFd,
        /// The job names whose files matter.
        names: HashSet<String>,
        /// Whether writes to the jobs' logs wake the waiter too.
        log_writes: bool,
    },
    /// A fixed interval.
    Poll(Duration),
}

impl Wakeups {
    /// Events on `dir` for `names`, unless `poll` is given or `dir` is on a
    /// network filesystem (or inotify fails): then polling.
    /// `close_off_exit_path` is for a process that exits right after the
    /// wait (the CLI): a helper then takes the slow last close of the
    /// descriptor (see the module docs); a long-lived process has no exit
    /// to speed up.
    pub fn new(
        dir: &Path,
        names: &[JobName],
        poll: Option<Duration>,
        close_off_exit_path: bool,
    ) -> Self {
        Self::build(dir, names, poll, close_off_exit_path, false)
    }

    /// Like [`Self::new`], and writes to the jobs' `NAME.log` (and its
    /// creation, rotation or truncation) wake the waiter too, with
    /// [`Wake::Log`]: for a waiter that reads the log as it grows.
    pub fn with_log_writes(
        dir: &Path,
        names: &[JobName],
        poll: Option<Duration>,
        close_off_exit_path: bool,
    ) -> Self {
        Self::build(dir, names, poll, close_off_exit_path, true)
    }

    fn build(
        dir: &Path,
        names: &[JobName],
        poll: Option<Duration>,
        close_off_exit_path: bool,
        log_writes: bool,
    ) -> Self {
        if let Some(interval) = poll {
            return Wakeups::Poll(interval);
        }
        if is_network_fs(dir) {
            return Wakeups::Poll(DEFAULT_POLL);
        }
        match watch(dir, log_writes) {
            Ok(fd) => {
                if close_off_exit_path {
                    hold_until_exit(&fd);
                }
                Wakeups::Events {
                    fd,
                    names: names.iter().map(|n| n.to_string()).collect(),
                    log_writes,
                }
            }
            Err(_) => Wakeups::Poll(DEFAULT_POLL),
        }
    }

    /// Sleeps until a relevant event or `max` passes; says which.
    pub fn wait(&self, max: Duration) -> Wake {
        match self {
            Wakeups::Events {
                fd,
                names,
                log_writes,
            } => wait_for_event(fd, names, *log_writes, max.min(SAFETY_RECHECK)),
            Wakeups::Poll(interval) => {
                std::thread::sleep(max.min(*interval));
                Wake::State
            }
        }
    }
}

fn watch(dir: &Path, log_writes: bool) -> rustix::io::Result<OwnedFd> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    // Only entry changes and the close of a file written to: opening and
    // reading (this waiter's own reads), heartbeat touches and log writes
    // never wake it. A waiter that reads the log adds writes (MODIFY, which
    // a truncation raises too); they are filtered to logs below.
    let modify = if log_writes {
        WatchFlags::MODIFY
    } else {
        WatchFlags::empty()
    };
    let flags = modify
        | WatchFlags::CREATE
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::DELETE
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF;
    inotify::add_watch(&fd, dir, flags)?;
    Ok(fd)
}

fn wait_for_event(fd: &OwnedFd, names: &HashSet<String>, logs: bool, max: Duration) -> Wake {
    let deadline = Instant::now() + max;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Wake::State;
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return Wake::State,
            Ok(_) => {
                if let Some(wake) = drain_events(fd, names, logs) {
                    return wake;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Wake::State,
        }
    }
}

/// Reads every queued event; the strongest reason among them to wake.
fn drain_events(fd: &OwnedFd, names: &HashSet<String>, logs: bool) -> Option<Wake> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut reader = inotify::Reader::new(fd, &mut buf);
    let mut wake = None;
    while let Ok(event) = reader.next() {
        // Events without a name concern the directory itself or an
        // overflowed queue: look again.
        let this = match event.file_name().and_then(|n| n.to_str().ok()) {
            Some(file) => relevance(file, names, logs),
            None => Some(Wake::State),
        };
        wake = wake.max(this);
    }
    wake
}

/// Only files that can change a verdict wake the waiter: the status (done),
/// the lock (its close is the wrapper's death) and the record (a restart);
/// and the log, for a waiter that reads it.
fn relevance(file: &str, names: &HashSet<String>, logs: bool) -> Option<Wake> {
    let (name, kind) = FileKind::parse_file_name(file)?;
    if !names.contains(name.as_str()) {
        return None;
    }
    match kind {
        FileKind::Status | FileKind::Lock | FileKind::Record => Some(Wake::State),
        FileKind::Log if logs => Some(Wake::Log),
        _ => None,
    }
}

/// Whether `dir` is on a filesystem whose changes inotify may never see
/// (changes made by other machines).
pub fn is_network_fs(dir: &Path) -> bool {
    const NETWORK_MAGICS: [u32; 8] = [
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x6573_5546, // FUSE (sshfs and the like)
        0x00C3_6400, // Ceph
        0x0102_1997, // 9p
        0x5346_414F, // AFS
    ];
    match rustix::fs::statfs(dir) {
        Ok(st) => NETWORK_MAGICS.contains(&((st.f_type as u64 & 0xffff_ffff) as u32)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_status_lock_and_record_of_watched_jobs_matter() {
        let names: HashSet<String> = ["a".to_owned()].into();
        for logs in [false, true] {
            for file in ["a.status", "a.lock", "a.job.json"] {
                assert_eq!(relevance(file, &names, logs), Some(Wake::State), "{file}");
            }
            for file in ["a.heartbeat", "b.status", "b.log", ".tmp-xyz"] {
                assert_eq!(relevance(file, &names, logs), None, "{file}");
            }
        }
        assert_eq!(relevance("a.log", &names, false), None);
        assert_eq!(relevance("a.log", &names, true), Some(Wake::Log));
    }

    /// Local filesystems keep inotify (a FUSE mount polls: see the
    /// integration test `a_waiter_on_a_fuse_jobs_directory_polls_instead_of_using_inotify`).
    #[test]
    fn local_filesystems_are_not_network_filesystems() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in [tmp.path(), Path::new("/proc")] {
            assert!(!is_network_fs(dir), "{}", dir.display());
        }
        // statfs fails: events are tried (and polling follows if they fail).
        assert!(!is_network_fs(Path::new("/nonexistent/jobs")));
    }

    #[test]
    fn a_state_change_outweighs_a_log_write() {
        assert!(Some(Wake::State) > Some(Wake::Log));
        assert!(Some(Wake::Log) > None);
    }
}
