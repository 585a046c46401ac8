//! Wake-ups for the waiter: inotify on the jobs directory (through
//! `notify`), or plain polling where events cannot be trusted (network
//! filesystems) or were not wanted (`--poll`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::protocol::{FileKind, JobName};

/// With events, the state is still re-read this often: a safety net for a
/// lost event (inotify queue overflow), never the normal path.
const SAFETY_RECHECK: Duration = Duration::from_secs(2);

/// Poll interval used where events are unavailable and none was given.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// How the waiter is woken.
pub enum Wakeups {
    /// inotify events on the directory.
    Events {
        /// Kept alive for as long as events are wanted.
        _watcher: RecommendedWatcher,
        /// One message per relevant event.
        rx: Receiver<()>,
    },
    /// A fixed interval.
    Poll(Duration),
}

impl Wakeups {
    /// Events on `dir` for `names`, unless `poll` is given or `dir` is on a
    /// network filesystem (or inotify fails): then polling.
    pub fn new(dir: &Path, names: &[JobName], poll: Option<Duration>) -> Self {
        if let Some(interval) = poll {
            return Wakeups::Poll(interval);
        }
        if is_network_fs(dir) {
            return Wakeups::Poll(DEFAULT_POLL);
        }
        match watch(dir, names) {
            Ok(w) => w,
            Err(_) => Wakeups::Poll(DEFAULT_POLL),
        }
    }

    /// Whether events (not polling) drive this waiter.
    pub fn is_event_driven(&self) -> bool {
        matches!(self, Wakeups::Events { .. })
    }

    /// Sleeps until a relevant event or `max` passes.
    pub fn wait(&self, max: Duration) {
        match self {
            Wakeups::Events { rx, .. } => {
                match rx.recv_timeout(max.min(SAFETY_RECHECK)) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    // The watcher thread died: fall back to sleeping.
                    Err(RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(max.min(DEFAULT_POLL))
                    }
                }
                while rx.try_recv().is_ok() {}
            }
            Wakeups::Poll(interval) => std::thread::sleep(max.min(*interval)),
        }
    }
}

fn watch(dir: &Path, names: &[JobName]) -> notify::Result<Wakeups> {
    let names: HashSet<String> = names.iter().map(|n| n.to_string()).collect();
    let (tx, rx) = channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let relevant = match res {
            // Errors (e.g. queue overflow) mean "look again".
            Err(_) => true,
            Ok(event) => {
                event.need_rescan()
                    || (is_change(&event.kind)
                        && event.paths.iter().any(|p| is_relevant(p, &names)))
            }
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(Wakeups::Events {
        _watcher: watcher,
        rx,
    })
}

/// Opening or reading a file (as this waiter does) changes nothing; a
/// close after writing does (the lock's close is the wrapper's death).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Only files that can change a verdict wake the waiter: the status (done),
/// the lock (its close is the wrapper's death) and the record (a restart).
/// Log writes and heartbeats are frequent and change nothing on their own.
fn is_relevant(path: &Path, names: &HashSet<String>) -> bool {
    let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
        return false;
    };
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
