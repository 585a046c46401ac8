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

use crate::protocol::{FileKind, JobName};
use crate::sys::child::hold_until_exit;

/// With events, the state is still re-read this often: a safety net for a
/// lost event, never the normal path.
const SAFETY_RECHECK: Duration = Duration::from_secs(2);

/// Poll interval used where events are unavailable and none was given.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// How the waiter is woken.
pub enum Wakeups {
    /// inotify events on the directory, filtered to the jobs waited for.
    Events {
        /// The inotify descriptor.
        fd: OwnedFd,
        /// The job names whose files matter.
        names: HashSet<String>,
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
        if let Some(interval) = poll {
            return Wakeups::Poll(interval);
        }
        if is_network_fs(dir) {
            return Wakeups::Poll(DEFAULT_POLL);
        }
        match watch(dir) {
            Ok(fd) => {
                if close_off_exit_path {
                    hold_until_exit(&fd);
                }
                Wakeups::Events {
                    fd,
                    names: names.iter().map(|n| n.to_string()).collect(),
                }
            }
            Err(_) => Wakeups::Poll(DEFAULT_POLL),
        }
    }

    /// Sleeps until a relevant event or `max` passes.
    pub fn wait(&self, max: Duration) {
        match self {
            Wakeups::Events { fd, names } => wait_for_event(fd, names, max.min(SAFETY_RECHECK)),
            Wakeups::Poll(interval) => std::thread::sleep(max.min(*interval)),
        }
    }
}

fn watch(dir: &Path) -> rustix::io::Result<OwnedFd> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    // Only entry changes and the close of a file written to: opening and
    // reading (this waiter's own reads), heartbeat touches and log writes
    // never wake it.
    let flags = WatchFlags::CREATE
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::DELETE
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF;
    inotify::add_watch(&fd, dir, flags)?;
    Ok(fd)
}

fn wait_for_event(fd: &OwnedFd, names: &HashSet<String>, max: Duration) {
    let deadline = Instant::now() + max;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return,
            Ok(_) => {
                if drain_events(fd, names) {
                    return;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Reads every queued event; whether any of them matters.
fn drain_events(fd: &OwnedFd, names: &HashSet<String>) -> bool {
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut reader = inotify::Reader::new(fd, &mut buf);
    let mut relevant = false;
    while let Ok(event) = reader.next() {
        // Events without a name concern the directory itself or an
        // overflowed queue: look again.
        relevant |= match event.file_name().and_then(|n| n.to_str().ok()) {
            Some(file) => is_relevant(file, names),
            None => true,
        };
    }
    relevant
}

/// Only files that can change a verdict wake the waiter: the status (done),
/// the lock (its close is the wrapper's death) and the record (a restart).
fn is_relevant(file: &str, names: &HashSet<String>) -> bool {
    match FileKind::parse_file_name(file) {
        Some((name, kind)) => {
            names.contains(name.as_str())
                && matches!(kind, FileKind::Status | FileKind::Lock | FileKind::Record)
        }
        None => false,
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
        assert!(is_relevant("a.status", &names));
        assert!(is_relevant("a.lock", &names));
        assert!(is_relevant("a.job.json", &names));
        assert!(!is_relevant("a.log", &names));
        assert!(!is_relevant("a.heartbeat", &names));
        assert!(!is_relevant("b.status", &names));
        assert!(!is_relevant(".tmp-xyz", &names));
    }
}
