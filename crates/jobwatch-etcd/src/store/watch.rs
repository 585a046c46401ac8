//! Wake-ups for a waiter on an etcd store: an etcd watch on the names'
//! keys (one name: `jobs/NAME/`; several: `jobs/`, filtered), resumed by
//! the access layer after any failure from the last revision it delivered,
//! so no change is missed; plus, for log followers, inotify on this host's
//! log folder. Both sit in one epoll descriptor, which is what
//! [`Watch::fd`] hands to a `poll(2)` loop.
//!
//! A waiter creates its watch before its first read, so every change after
//! that read reaches it (at worst as a spurious wake-up). A compaction of
//! the revisions it needed, or a watch that failed for good, wakes it to
//! re-read everything; a failed watch is then backed by the safety recheck.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify;

use jobwatch_core::model::JobName;
use jobwatch_core::store::{DEFAULT_POLL, SAFETY_RECHECK, Wake, Watch, WatchFor};

use super::EtcdStore;
use super::keys::{self, Part};
use crate::{WatchEvent, WatchMessage, WatchScope};

/// A watch on an [`EtcdStore`]'s names.
pub struct EtcdWatch {
    /// Readable when the etcd watch or the log folder has news; `None`:
    /// this watch polls on a timer.
    epoll: Option<OwnedFd>,
    etcd: Mutex<Option<crate::Watch>>,
    inotify: Option<OwnedFd>,
    names: Vec<JobName>,
    /// Events of other names arrive too (a `jobs/` watch): drop them.
    filter: bool,
    /// A watch of the event journal ([`EtcdWatch::events`]), not of names.
    journal: bool,
    what: WatchFor,
    poll_every: Duration,
}

impl EtcdWatch {
    /// Watches `names` on `store`. Never fails: without events (the
    /// cluster unreachable right now, or `what.poll`), it polls.
    pub fn new(store: &EtcdStore, names: &[JobName], what: WatchFor) -> Self {
        let polling = Self {
            epoll: None,
            etcd: Mutex::new(None),
            inotify: None,
            names: names.to_vec(),
            filter: names.len() != 1,
            journal: false,
            what,
            poll_every: what.poll.unwrap_or(DEFAULT_POLL),
        };
        let prefix = match names {
            [one] => keys::job_prefix(one),
            _ => keys::JOBS.as_bytes().to_vec(),
        };
        Self::on(store, polling, &prefix)
    }

    /// Watches the event journal: wakes when an event is appended
    /// (`events/…` created) or a claim goes (its holder may be gone: a
    /// follower looks at the runs it saw start). One etcd watch on the
    /// whole namespace, filtered here.
    pub fn events(store: &EtcdStore, what: WatchFor) -> Self {
        let polling = Self {
            epoll: None,
            etcd: Mutex::new(None),
            inotify: None,
            names: Vec::new(),
            filter: false,
            journal: true,
            what: WatchFor {
                log_writes: false,
                ..what
            },
            poll_every: what.poll.unwrap_or(DEFAULT_POLL),
        };
        Self::on(store, polling, b"")
    }

    /// `polling` with an etcd watch on `prefix` (and the log folder when
    /// asked), or `polling` itself where events cannot be had.
    fn on(store: &EtcdStore, polling: Self, prefix: &[u8]) -> Self {
        let what = polling.what;
        if what.poll.is_some() {
            return polling;
        }
        let Ok(etcd) = store.client.watch(prefix, WatchScope::Prefix, 0) else {
            return polling;
        };
        let Ok(ep) = epoll::create(epoll::CreateFlags::CLOEXEC) else {
            return polling;
        };
        if epoll::add(
            &ep,
            &etcd,
            epoll::EventData::new_u64(0),
            epoll::EventFlags::IN,
        )
        .is_err()
        {
            return polling;
        }
        let inotify = what
            .log_writes
            .then(|| log_folder_watch(store.files.root()))
            .flatten()
            .filter(|fd| {
                epoll::add(&ep, fd, epoll::EventData::new_u64(1), epoll::EventFlags::IN).is_ok()
            });
        Self {
            epoll: Some(ep),
            etcd: Mutex::new(Some(etcd)),
            inotify,
            ..polling
        }
    }

    /// What one change asks a waiter to look at, if anything.
    fn wake_for(&self, event: &WatchEvent) -> Option<Wake> {
        if self.journal {
            return journal_wake(event);
        }
        let (name, part) = keys::parse_job_key(event.key())?;
        if self.filter && !self.names.contains(&name) {
            return None;
        }
        wake_for(part, &self.what)
    }

    fn drain_etcd(&self) -> Option<Wake> {
        let guard = self.etcd.lock().unwrap_or_else(|p| p.into_inner());
        let watch = guard.as_ref()?;
        let mut wake = None;
        while let Some(message) = watch.try_recv() {
            let w = match message {
                WatchMessage::Events(events) => {
                    events.iter().filter_map(|e| self.wake_for(e)).max()
                }
                // Changes were compacted away, or the watch stopped for
                // good: look at everything (the safety recheck covers the
                // rest).
                WatchMessage::ReReadNeeded { .. } | WatchMessage::Failed(_) => Some(Wake::State),
            };
            wake = wake.max(w);
        }
        wake
    }

    fn drain_logs(&self) -> Option<Wake> {
        let fd = self.inotify.as_ref()?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        let mut wake = None;
        while let Ok(event) = reader.next() {
            let Some(file) = event.file_name().and_then(|f| f.to_str().ok()) else {
                continue;
            };
            let ours = file
                .strip_suffix(".log")
                .is_some_and(|stem| self.names.iter().any(|n| n.as_str() == stem));
            if ours {
                wake = Some(Wake::Log);
            }
        }
        wake
    }
}

/// What a change of one of a name's keys asks its waiter to look at.
pub fn wake_for(part: Part, what: &WatchFor) -> Option<Wake> {
    match part {
        Part::Kill if what.kill_requests => Some(Wake::KillRequest),
        Part::Kill => None,
        // A claim created or dropped, a record, a status, a beat: each can
        // change a verdict (a claim key deleted by its lease's expiry is how
        // a dead host shows).
        Part::Claim | Part::Record | Part::Status | Part::Beat | Part::Tail => Some(Wake::State),
    }
}

/// What a change in the namespace asks a journal follower to look at: an
/// event appended, or a claim gone (its holder may have died; the run's end
/// may need finishing).
pub fn journal_wake(event: &WatchEvent) -> Option<Wake> {
    let key = event.key();
    if key.starts_with(keys::EVENTS.as_bytes()) {
        return matches!(event, WatchEvent::Put(_)).then_some(Wake::State);
    }
    match (keys::parse_job_key(key), event) {
        (Some((_, Part::Claim)), WatchEvent::Delete { .. }) => Some(Wake::State),
        _ => None,
    }
}

/// inotify on the folder of this host's current logs (a log is written in
/// place: modifications and creations are what a follower needs).
fn log_folder_watch(root: &std::path::Path) -> Option<OwnedFd> {
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
    inotify::add_watch(
        &fd,
        root,
        inotify::WatchFlags::MODIFY
            | inotify::WatchFlags::CREATE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::CLOSE_WRITE,
    )
    .ok()?;
    Some(fd)
}

impl Watch for EtcdWatch {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.epoll.as_ref().map(|fd| fd.as_fd())
    }

    fn drain(&self) -> Option<Wake> {
        self.drain_etcd().max(self.drain_logs())
    }

    fn wait(&self, max: Duration) -> Wake {
        let deadline = Instant::now() + max;
        let Some(ep) = &self.epoll else {
            std::thread::sleep(max.min(self.poll_every));
            return Wake::State;
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let step = left.min(SAFETY_RECHECK);
            let ts = Timespec {
                tv_sec: step.as_secs() as i64,
                tv_nsec: step.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(ep, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Wake::State,
                Ok(_) => {
                    if let Some(wake) = self.drain() {
                        return wake;
                    }
                    if Instant::now() >= deadline {
                        return Wake::State;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Wake::State,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_going_wakes_a_waiter_and_kill_requests_only_those_who_ask() {
        let plain = WatchFor::default();
        assert_eq!(wake_for(Part::Claim, &plain), Some(Wake::State));
        assert_eq!(wake_for(Part::Status, &plain), Some(Wake::State));
        assert_eq!(wake_for(Part::Beat, &plain), Some(Wake::State));
        assert_eq!(wake_for(Part::Kill, &plain), None);
        let killers = WatchFor {
            kill_requests: true,
            ..WatchFor::default()
        };
        assert_eq!(wake_for(Part::Kill, &killers), Some(Wake::KillRequest));
    }

    #[test]
    fn a_journal_follower_wakes_for_an_event_appended_and_a_claim_gone_only() {
        let put = |key: &str| {
            WatchEvent::Put(crate::KeyValue {
                key: key.as_bytes().to_vec(),
                value: Vec::new(),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
                lease: 0,
            })
        };
        let delete = |key: &str| WatchEvent::Delete {
            key: key.as_bytes().to_vec(),
            revision: 2,
        };
        assert_eq!(journal_wake(&put("events/r1/ended")), Some(Wake::State));
        assert_eq!(journal_wake(&delete("jobs/a/claim")), Some(Wake::State));
        assert_eq!(journal_wake(&delete("events/r1/ended")), None, "a trim");
        assert_eq!(journal_wake(&put("jobs/a/beat")), None);
        assert_eq!(journal_wake(&put("jobs/a/claim")), None);
        assert_eq!(journal_wake(&put("docs/breaker/k")), None);
    }
}
