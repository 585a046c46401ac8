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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

use crate::model::JobName;
use crate::store::file::journal::{JOURNAL, OLD_JOURNAL};
use crate::store::file::protocol::FileKind;
use crate::store::{DEFAULT_POLL, SAFETY_RECHECK, Wake, Watch, WatchFor};
use crate::sys::child::hold_until_exit;

/// How a waiter on a jobs directory is woken.
pub enum FileWatch {
    /// inotify events on the directory, filtered to the jobs waited for.
    Events {
        /// The inotify descriptor.
        fd: OwnedFd,
        /// The job names whose files matter.
        names: HashSet<String>,
        /// What wakes besides state changes.
        what: WatchFor,
        /// Wake for the event journal instead of `names` (see
        /// [`FileWatch::journal`]).
        journal: bool,
    },
    /// A fixed interval.
    Poll(Duration),
}

impl FileWatch {
    /// Events on `dir` for `names`, unless `what.poll` is given or `dir` is
    /// on a network filesystem (or inotify fails): then polling. With
    /// `what.exits_after` (a process that exits right after the wait, the
    /// CLI), a helper takes the slow last close of the descriptor (see the
    /// module docs); a long-lived process has no exit to speed up.
    pub fn new(dir: &Path, names: &[JobName], what: WatchFor) -> Self {
        Self::build(dir, names, what, false)
    }

    /// Wake-ups for a reader of the event journal (protocol §18): a change
    /// of `events.jsonl` or `events.1.jsonl` (an append's close, a
    /// rotation), and any name's lock released (its holder may have died
    /// between its commit and its append). Polling as for [`FileWatch::new`].
    pub fn journal(dir: &Path, what: WatchFor) -> Self {
        Self::build(dir, &[], what, true)
    }

    fn build(dir: &Path, names: &[JobName], what: WatchFor, journal: bool) -> Self {
        if let Some(interval) = what.poll {
            return FileWatch::Poll(interval);
        }
        if is_network_fs(dir) {
            return FileWatch::Poll(DEFAULT_POLL);
        }
        match watch(dir, what.log_writes) {
            Ok(fd) => {
                if what.exits_after {
                    hold_until_exit(&fd);
                }
                FileWatch::Events {
                    fd,
                    names: names.iter().map(|n| n.to_string()).collect(),
                    what,
                    journal,
                }
            }
            Err(_) => FileWatch::Poll(DEFAULT_POLL),
        }
    }
}

impl Watch for FileWatch {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            FileWatch::Events { fd, .. } => Some(fd.as_fd()),
            FileWatch::Poll(_) => None,
        }
    }

    fn drain(&self) -> Option<Wake> {
        match self {
            FileWatch::Events {
                fd,
                names,
                what,
                journal,
            } => drain_events(fd, names, *what, *journal),
            FileWatch::Poll(_) => None,
        }
    }

    /// Sleeps until a relevant event or `max` passes; says which.
    fn wait(&self, max: Duration) -> Wake {
        match self {
            FileWatch::Events {
                fd,
                names,
                what,
                journal,
            } => wait_for_event(fd, names, *what, *journal, max.min(SAFETY_RECHECK)),
            FileWatch::Poll(interval) => {
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

fn wait_for_event(
    fd: &OwnedFd,
    names: &HashSet<String>,
    what: WatchFor,
    journal: bool,
    max: Duration,
) -> Wake {
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
                if let Some(wake) = drain_events(fd, names, what, journal) {
                    return wake;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Wake::State,
        }
    }
}

/// Reads every queued event; the strongest reason among them to wake.
fn drain_events(
    fd: &OwnedFd,
    names: &HashSet<String>,
    what: WatchFor,
    journal: bool,
) -> Option<Wake> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut reader = inotify::Reader::new(fd, &mut buf);
    let mut wake = None;
    while let Ok(event) = reader.next() {
        // Events without a name concern the directory itself or an
        // overflowed queue: look again.
        let this = match event.file_name().and_then(|n| n.to_str().ok()) {
            Some(file) if journal => journal_relevance(file),
            Some(file) => relevance(file, names, what),
            None => Some(Wake::State),
        };
        wake = wake.max(this);
    }
    wake
}

/// Only files that can change a verdict wake the waiter: the status (done),
/// the lock (its close is the wrapper's death) and the record (a restart);
/// and the log, for a waiter that reads it, and kill requests, for one
/// that carries them out.
fn relevance(file: &str, names: &HashSet<String>, what: WatchFor) -> Option<Wake> {
    let (name, kind) = FileKind::parse_file_name(file)?;
    if !names.contains(name.as_str()) {
        return None;
    }
    match kind {
        FileKind::Status | FileKind::Lock | FileKind::Record => Some(Wake::State),
        FileKind::Log if what.log_writes => Some(Wake::Log),
        FileKind::KillRequest if what.kill_requests => Some(Wake::KillRequest),
        _ => None,
    }
}

/// For a reader of the event journal: the journal's files, and every
/// name's lock (a close of one is a holder gone, perhaps between its
/// commit and its append).
fn journal_relevance(file: &str) -> Option<Wake> {
    if file == JOURNAL || file == OLD_JOURNAL {
        return Some(Wake::State);
    }
    match FileKind::parse_file_name(file)? {
        (_, FileKind::Lock) => Some(Wake::State),
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
        let logs = |log_writes| WatchFor {
            log_writes,
            ..WatchFor::default()
        };
        for what in [logs(false), logs(true)] {
            for file in ["a.status", "a.lock", "a.job.json"] {
                assert_eq!(relevance(file, &names, what), Some(Wake::State), "{file}");
            }
            for file in ["a.heartbeat", "b.status", "b.log", ".tmp-xyz", "a.kill"] {
                assert_eq!(relevance(file, &names, what), None, "{file}");
            }
        }
        assert_eq!(relevance("a.log", &names, logs(false)), None);
        assert_eq!(relevance("a.log", &names, logs(true)), Some(Wake::Log));
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
    fn a_journal_reader_wakes_for_the_journal_and_any_lock_only() {
        for file in ["events.jsonl", "events.1.jsonl", "a.lock", "zz.lock"] {
            assert_eq!(journal_relevance(file), Some(Wake::State), "{file}");
        }
        for file in [
            "a.status",
            "a.log",
            "a.job.json",
            ".tmp-xyz",
            "events.2.jsonl",
        ] {
            assert_eq!(journal_relevance(file), None, "{file}");
        }
    }

    #[test]
    fn a_state_change_outweighs_a_log_write() {
        assert!(Some(Wake::State) > Some(Wake::Log));
        assert!(Some(Wake::Log) > None);
    }
}
