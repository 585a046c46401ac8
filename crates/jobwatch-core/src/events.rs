//! Following the event journal (`jobwatch events`): every run's `started`
//! and `ended` from a cursor on, the history first, then, with `follow`,
//! each new event as it is appended, woken by the store's
//! [`EventLog::watch_events`] (inotify on a local jobs directory: no
//! polling).
//!
//! **No gap between replay and live**: the watch is taken before the first
//! read, so an event appended after a read wakes the next one; every read
//! starts where the previous one ended, so nothing is read twice.
//!
//! **No run left without its end** (protocol §18): the follower keeps the
//! runs it saw start and not end (from the whole kept journal, also when
//! it starts at a later cursor). When it wakes (a journal append, a lock
//! released: a holder may have died) and at least every
//! [`SAFETY_RECHECK`], it looks at those runs in the store:
//! - finished, but no `ended` in the journal and nobody holds the name (the
//!   committer died between its status and its append, or the append
//!   failed): it appends the `ended` itself under the name's claim
//!   ([`EventLog::append_missing_end`]: once, whoever else repairs);
//! - its wrapper gone without a status (`lost`, or an outcome recorded but
//!   not committed): it finishes the run as `wait` does
//!   ([`claim_and_finish_lost`], on a thread of its own so the stream never waits
//!   for a kill), and the commit appends the `ended`.
//!
//! It never kills a live job: a hung job is its wrapper's to kill (or a
//! waiter's, `wait`). The looks cost a snapshot per open run; they are
//! spaced so that they take at most 1/20 of the follower's time.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Mutex;
use std::thread::Scope;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::classify::{JobState, classify};
use crate::model::{EventKind, JobEvent, JobName, JobRecord, Outcome, StatusWord};
use crate::recover::{WRAPPER_VANISHED, claim_and_finish_lost};
use crate::store::{
    ClaimError, ClaimWait, Cursor, DEFAULT_POLL, EventLog, EventRead, Holder, Positioned,
    SAFETY_RECHECK, Since, Store, StoreError, Watch, WatchFor,
};

/// What to follow, and how.
#[derive(Debug, Clone)]
pub struct FollowSpec<'a> {
    /// Where to start.
    pub since: Since,
    /// Go on with new events once the history is out (else return then).
    pub follow: bool,
    /// Poll at this interval instead of using the store's events.
    pub poll: Option<Duration>,
    /// The process exits right after (the CLI): see [`WatchFor`].
    pub exits_after: bool,
    /// A descriptor whose hang-up ends the follow (the CLI's stdout: a
    /// reader that went away is noticed even when no event comes).
    pub hangup: Option<BorrowedFd<'a>>,
}

/// Where the events go.
pub trait EventSink {
    /// One event; an error of kind `BrokenPipe` ends the follow quietly,
    /// any other fails it.
    fn event(&mut self, event: &Positioned) -> io::Result<()>;

    /// One line for the reader to know (a gap, skipped lines, a repair).
    fn note(&mut self, note: &str);
}

/// How a follow ended (other than by an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// The history is out (without `follow`).
    CaughtUp,
    /// The hang-up descriptor hung up.
    Hangup,
    /// The sink's reader went away (`BrokenPipe`).
    Closed,
}

/// Following failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The journal could not be read (or the cursor is not one of its).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sink failed for a reason other than its reader leaving.
    #[error("cannot write an event: {0}")]
    Output(io::Error),
}

/// Follows the store's event journal per `spec` into `sink`.
pub fn follow(
    store: &dyn Store,
    spec: &FollowSpec<'_>,
    sink: &mut dyn EventSink,
) -> Result<FollowEnd, EventsError> {
    // Before any read: whatever is appended after a read wakes this watch.
    let watch = spec.follow.then(|| {
        store.events().watch_events(WatchFor {
            poll: spec.poll,
            exits_after: spec.exits_after,
            ..WatchFor::default()
        })
    });
    let mut follower = Follower::new(store, &spec.since, spec.follow)?;
    if let Some(end) = follower.read_all(sink)? {
        return Ok(end);
    }
    follower.runs.forget_ended();
    let Some(watch) = watch else {
        return Ok(FollowEnd::CaughtUp);
    };
    let interval = spec.poll.unwrap_or(DEFAULT_POLL);
    let shared = Mutex::new(Shared::default());
    std::thread::scope(|scope| {
        let wake = Wakes {
            watch: watch.as_ref(),
            hangup: spec.hangup,
            interval,
        };
        follower.live(scope, &shared, &wake, sink)
    })
}

/// What the live part sleeps on.
struct Wakes<'a> {
    watch: &'a dyn Watch,
    hangup: Option<BorrowedFd<'a>>,
    interval: Duration,
}

/// The runs seen to start and not (yet) to end.
#[derive(Debug, Default)]
struct Runs {
    /// By `job_id`: the name and the cursor of the `started`.
    open: BTreeMap<String, (JobName, Cursor)>,
    /// Runs seen to end while the history is read (a run may be read
    /// twice then: once to learn, once to replay); emptied once live.
    ended: HashSet<String>,
}

impl Runs {
    fn note(&mut self, p: &Positioned) {
        match p.event.event {
            EventKind::Started => {
                if let Some(name) = p.event.job_name()
                    && !self.ended.contains(&p.event.job_id)
                {
                    self.open
                        .entry(p.event.job_id.clone())
                        .or_insert((name, p.cursor.clone()));
                }
            }
            EventKind::Ended => {
                self.open.remove(&p.event.job_id);
                self.ended.insert(p.event.job_id.clone());
            }
        }
    }

    fn forget_ended(&mut self) {
        self.ended = HashSet::new();
    }
}

/// What the finishing threads tell the follower.
#[derive(Debug, Default)]
struct Shared {
    /// Runs a thread is finishing now.
    finishing: HashSet<String>,
    /// Notes for the sink.
    notes: Vec<String>,
}

struct Follower<'s> {
    store: &'s dyn Store,
    log: &'s dyn EventLog,
    next: Since,
    runs: Runs,
    /// Runs whose repair failed, reported once each.
    reported: HashSet<String>,
    /// Open runs found in no place, since when.
    gone: BTreeMap<String, Instant>,
    /// How long an open run must stay gone to be forgotten.
    gone_after: Duration,
}

/// An open run found neither current nor archived this long is forgotten.
const GONE_AFTER: Duration = SAFETY_RECHECK;

impl<'s> Follower<'s> {
    /// A follower at `since`; one that will `live` learns the open runs of
    /// the whole kept journal (read quietly up to `since`, unless that is
    /// the start: then the replay teaches them).
    fn new(store: &'s dyn Store, since: &Since, live: bool) -> Result<Self, StoreError> {
        let log = store.events();
        let mut runs = Runs::default();
        if live && *since != Since::Start {
            let mut at = Since::Start;
            loop {
                let read = log.read_events(&at)?;
                read.events.iter().for_each(|p| runs.note(p));
                at = read.next;
                if !read.more {
                    break;
                }
            }
        }
        Ok(Self {
            store,
            log,
            next: since.clone(),
            runs,
            reported: HashSet::new(),
            gone: BTreeMap::new(),
            gone_after: GONE_AFTER,
        })
    }

    /// Reads and emits everything there is now; `Some` when the sink's
    /// reader went away.
    fn read_all(&mut self, sink: &mut dyn EventSink) -> Result<Option<FollowEnd>, EventsError> {
        loop {
            let read: EventRead = self.log.read_events(&self.next)?;
            for note in &read.notes {
                sink.note(note);
            }
            for p in &read.events {
                self.runs.note(p);
                match sink.event(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        return Ok(Some(FollowEnd::Closed));
                    }
                    Err(e) => return Err(EventsError::Output(e)),
                }
            }
            self.next = read.next;
            if !read.more {
                return Ok(None);
            }
        }
    }

    /// The live part: read, look at the open runs when due, sleep.
    fn live<'scope>(
        &mut self,
        scope: &'scope Scope<'scope, '_>,
        shared: &'scope Mutex<Shared>,
        wake: &Wakes<'_>,
        sink: &mut dyn EventSink,
    ) -> Result<FollowEnd, EventsError>
    where
        's: 'scope,
    {
        let mut due = true;
        let mut not_before = Instant::now();
        loop {
            if let Some(end) = self.read_all(sink)? {
                return Ok(end);
            }
            let notes = std::mem::take(&mut lock(shared).notes);
            for note in &notes {
                sink.note(note);
            }
            if due && Instant::now() >= not_before {
                let began = Instant::now();
                self.look(scope, shared, sink);
                // At most 1/20 of the time on looks, however many runs.
                not_before = Instant::now() + (began.elapsed() * 20).min(SAFETY_RECHECK);
                due = false;
            }
            let timeout = if due {
                not_before.saturating_duration_since(Instant::now())
            } else {
                SAFETY_RECHECK
            };
            if sleep(wake, timeout) == Slept::HungUp {
                return Ok(FollowEnd::Hangup);
            }
            due = true;
        }
    }

    /// Looks at every open run in the store (see the module docs).
    fn look<'scope>(
        &mut self,
        scope: &'scope Scope<'scope, '_>,
        shared: &'scope Mutex<Shared>,
        sink: &mut dyn EventSink,
    ) where
        's: 'scope,
    {
        let open: Vec<(String, JobName, Cursor)> = self
            .runs
            .open
            .iter()
            .map(|(id, (name, at))| (id.clone(), name.clone(), at.clone()))
            .collect();
        for (job_id, name, started) in open {
            if lock(shared).finishing.contains(&job_id) {
                continue;
            }
            let state = classify(self.store.snapshot(&name), self.store.now(), None);
            if state.record().is_some_and(|r| r.job_id == job_id) {
                self.gone.remove(&job_id);
                match &state {
                    JobState::Finished {
                        outcome,
                        record: Some(record),
                    } => {
                        let ended = JobEvent::ended_with(record, *outcome);
                        self.repair_current(&name, &job_id, &ended, &started, sink);
                    }
                    JobState::Lost { record } | JobState::Recorded { record }
                        if self.store.holder(record) != Holder::Elsewhere =>
                    {
                        self.finish(scope, shared, &name, record);
                    }
                    // Running or hung: its wrapper's (or a waiter's) to end;
                    // another host's: its own host's to finish.
                    _ => {}
                }
                continue;
            }
            if matches!(state, JobState::Invalid { .. }) {
                continue;
            }
            match self.store.archived_run(&name, &job_id) {
                // Archived: its committer let the name go long ago.
                Some(archived) => {
                    self.gone.remove(&job_id);
                    if let Ok(Some(word)) = archived.snapshot.status {
                        let outcome = archived.record.outcome.unwrap_or(match word {
                            StatusWord::Success => Outcome::Success,
                            StatusWord::Failed => Outcome::Failed,
                        });
                        let ended = JobEvent::ended_with(&archived.record, outcome);
                        self.repair(&job_id, &ended, &started, sink);
                    }
                }
                None => self.forget_if_gone(&job_id),
            }
        }
    }

    /// Forgets an open run that is neither the name's current run nor
    /// archived (gc removed it): nothing is left to tell. An archive in
    /// progress may have it in neither place for a moment (it moves the
    /// files under the name's claim, in milliseconds), so only a run gone
    /// at two looks [`GONE_AFTER`] apart is forgotten. (Taking the name's
    /// claim to be sure would create a lock file for a name that may never
    /// have been a job here: a foreign journal line names any.)
    fn forget_if_gone(&mut self, job_id: &str) {
        let now = Instant::now();
        let since = *self.gone.entry(job_id.to_owned()).or_insert(now);
        if now.duration_since(since) >= self.gone_after {
            self.gone.remove(job_id);
            self.runs.open.remove(job_id);
        }
    }

    /// Repairs the `ended` of the name's current, finished run, under the
    /// name's claim: whoever committed it is gone then. A held name is left
    /// for the next look (its release wakes the follower).
    fn repair_current(
        &mut self,
        name: &JobName,
        job_id: &str,
        ended: &JobEvent,
        started: &Cursor,
        sink: &mut dyn EventSink,
    ) {
        let claim = match self.store.claim(name, ClaimWait::No) {
            Ok(claim) => claim,
            Err(ClaimError::Held { .. } | ClaimError::AlreadyRunning { .. }) => return,
            Err(e) => {
                self.report(job_id, &e.to_string(), sink);
                return;
            }
        };
        // Under the claim: still this run, still finished.
        let state = classify(claim.snapshot(), self.store.now(), None);
        if matches!(&state, JobState::Finished { record: Some(r), .. } if r.job_id == job_id) {
            self.repair(job_id, ended, started, sink);
        }
        drop(claim);
    }

    fn repair(
        &mut self,
        job_id: &str,
        ended: &JobEvent,
        started: &Cursor,
        sink: &mut dyn EventSink,
    ) {
        match self.log.append_missing_end(ended, started) {
            Ok(true) => sink.note(&format!(
                "{}: appended the missing ended event of run {job_id} (its committer stopped between its status and the event)",
                ended.name
            )),
            Ok(false) => {}
            Err(e) => self.report(job_id, &e.to_string(), sink),
        }
    }

    fn report(&mut self, job_id: &str, why: &str, sink: &mut dyn EventSink) {
        if self.reported.insert(job_id.to_owned()) {
            sink.note(&format!(
                "cannot repair the ended event of run {job_id}: {why}"
            ));
        }
    }

    /// Finishes a run whose wrapper is gone, on a thread of its own.
    fn finish<'scope>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        shared: &'scope Mutex<Shared>,
        name: &JobName,
        record: &JobRecord,
    ) where
        's: 'scope,
    {
        let job_id = record.job_id.clone();
        lock(shared).finishing.insert(job_id.clone());
        let (store, name, grace) = (self.store, name.clone(), record.settings.grace());
        scope.spawn(move || {
            let result = claim_and_finish_lost(store, &name, grace, WRAPPER_VANISHED);
            let mut shared = lock(shared);
            if let Err(e) = result {
                shared.notes.push(format!("cannot finish {name}: {e}"));
            }
            shared.finishing.remove(&job_id);
        });
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, PartialEq, Eq)]
enum Slept {
    Woken,
    HungUp,
}

/// Sleeps until the watch wakes, `timeout` passes or the hang-up
/// descriptor hangs up.
fn sleep(wake: &Wakes<'_>, timeout: Duration) -> Slept {
    let watch = wake.watch;
    let timeout = match watch.fd() {
        Some(_) => timeout,
        // A timer watch: the poll interval is the longest sleep.
        None => timeout.min(wake.interval),
    };
    let ts = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    let watch_fd = watch.fd();
    let mut fds = Vec::with_capacity(2);
    if let Some(fd) = &watch_fd {
        fds.push(PollFd::new(fd, PollFlags::IN));
    }
    let hangup_at = fds.len();
    if let Some(h) = &wake.hangup {
        // No events asked: a hang-up or an error is always reported.
        fds.push(PollFd::new(h, PollFlags::empty()));
    }
    match poll(&mut fds, Some(&ts)) {
        Ok(n) if n > 0 => {
            let hung = fds
                .get(hangup_at)
                .is_some_and(|f| f.revents().intersects(PollFlags::ERR | PollFlags::HUP));
            if hung {
                return Slept::HungUp;
            }
            watch.drain();
            Slept::Woken
        }
        _ => Slept::Woken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Finalizer, JobEnd, Outcome};
    use crate::store::Commit;
    use crate::store::memory::MemoryStore;
    use crate::store::memory::fixture::{name, record};

    /// Collects what a follow emits.
    #[derive(Default)]
    struct Collect {
        events: Vec<Positioned>,
        notes: Vec<String>,
        /// Close the "pipe" after this many events.
        close_after: Option<usize>,
    }

    impl EventSink for Collect {
        fn event(&mut self, event: &Positioned) -> io::Result<()> {
            if self.close_after.is_some_and(|n| self.events.len() >= n) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.events.push(event.clone());
            Ok(())
        }
        fn note(&mut self, note: &str) {
            self.notes.push(note.to_owned());
        }
    }

    impl Collect {
        fn lines(&self) -> Vec<String> {
            self.events
                .iter()
                .map(|p| {
                    let e = &p.event;
                    match e.outcome {
                        Some(o) => format!("{} {} {o}", e.event.as_str(), e.name),
                        None => format!("{} {}", e.event.as_str(), e.name),
                    }
                })
                .collect()
        }
    }

    fn history(store: &MemoryStore, since: Since) -> Collect {
        let mut sink = Collect::default();
        let spec = FollowSpec {
            since,
            follow: false,
            poll: None,
            exits_after: false,
            hangup: None,
        };
        assert_eq!(
            follow(store, &spec, &mut sink).unwrap(),
            FollowEnd::CaughtUp
        );
        sink
    }

    /// A run of `n` through the claim as a wrapper does it: start (spawn),
    /// then, with `end`, the final record and the commit.
    fn run(store: &MemoryStore, n: &str, id: &str, end: Option<Outcome>) {
        let j = name(n);
        let mut claim = store.claim(&j, ClaimWait::No).unwrap();
        let mut r = record(n, id, store.now());
        claim.write_record(&r).unwrap();
        claim.mark_spawned(&r).unwrap();
        if let Some(outcome) = end {
            let code = (outcome == Outcome::Success).then_some(0).or(Some(1));
            r.finish(
                &JobEnd {
                    outcome,
                    exit_code: code,
                    signal: None,
                    reason: None,
                },
                Finalizer::Wrapper,
                store.now(),
            );
            claim.write_record(&r).unwrap();
            assert_eq!(claim.commit(&r).unwrap(), Commit::Committed);
        }
    }

    #[test]
    fn every_run_has_one_started_and_one_ended_in_the_order_they_happened() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", Some(Outcome::Success));
        run(&store, "b", "r2", None);
        run(&store, "c", "r3", Some(Outcome::Failed));
        let seen = history(&store, Since::Start);
        assert_eq!(
            seen.lines(),
            [
                "started a",
                "ended a success",
                "started b",
                "started c",
                "ended c failed"
            ]
        );
        assert!(seen.notes.is_empty(), "{:?}", seen.notes);
    }

    #[test]
    fn a_second_commit_adds_no_event_and_a_retry_is_not_a_new_start() {
        let store = MemoryStore::new();
        let j = name("a");
        let mut claim = store.claim(&j, ClaimWait::No).unwrap();
        let mut r = record("a", "r1", store.now());
        claim.write_record(&r).unwrap();
        claim.mark_spawned(&r).unwrap();
        r.attempt = 2;
        claim.mark_spawned(&r).unwrap();
        r.finish(
            &JobEnd {
                outcome: Outcome::Failed,
                exit_code: Some(1),
                signal: None,
                reason: None,
            },
            Finalizer::Wrapper,
            store.now(),
        );
        claim.write_record(&r).unwrap();
        claim.commit(&r).unwrap();
        assert_eq!(claim.commit(&r).unwrap(), Commit::AlreadyFinished);
        assert_eq!(
            history(&store, Since::Start).lines(),
            ["started a", "ended a failed"]
        );
    }

    #[test]
    fn a_cursor_resumes_right_after_its_event_and_now_skips_the_history() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", Some(Outcome::Success));
        run(&store, "b", "r2", Some(Outcome::Killed));
        let all = history(&store, Since::Start);
        let rest = history(&store, Since::After(all.events[1].cursor.clone()));
        assert_eq!(rest.lines(), ["started b", "ended b killed"]);
        assert!(history(&store, Since::Now).events.is_empty());
        let last = all.events.last().unwrap().cursor.clone();
        assert!(history(&store, Since::After(last)).events.is_empty());
    }

    #[test]
    fn a_closed_output_ends_the_follow_quietly() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", Some(Outcome::Success));
        let mut sink = Collect {
            close_after: Some(1),
            ..Collect::default()
        };
        let spec = FollowSpec {
            since: Since::Start,
            follow: true,
            poll: None,
            exits_after: false,
            hangup: None,
        };
        assert_eq!(follow(&store, &spec, &mut sink).unwrap(), FollowEnd::Closed);
        assert_eq!(sink.lines(), ["started a"]);
    }

    #[test]
    fn an_unknown_cursor_is_an_error_naming_what_cursors_look_like() {
        let store = MemoryStore::new();
        let spec = FollowSpec {
            since: Since::After(Cursor::new("0123456789abcdef:12")),
            follow: false,
            poll: None,
            exits_after: false,
            hangup: None,
        };
        let err = follow(&store, &spec, &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("mem:3"), "{err}");
    }

    /// A follower that looks at its open runs once, as the live loop does
    /// on a wake.
    fn look_once(follower: &mut Follower<'_>, sink: &mut Collect) {
        let shared = Mutex::new(Shared::default());
        std::thread::scope(|scope| follower.look(scope, &shared, sink));
        for note in &shared.into_inner().unwrap().notes {
            sink.note(note);
        }
    }

    #[test]
    fn an_end_lost_between_the_status_and_the_append_is_appended_once_by_a_reader() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", None);
        // The wrapper commits, then dies before its append.
        store.lose_event_appends(1);
        let j = name("a");
        let mut claim = store.claim(&j, ClaimWait::No).unwrap();
        let mut r = store.record(&j).unwrap();
        r.finish(
            &JobEnd {
                outcome: Outcome::Timeout,
                exit_code: None,
                signal: Some(15),
                reason: Some("ran past 1m".into()),
            },
            Finalizer::Wrapper,
            store.now(),
        );
        claim.write_record(&r).unwrap();
        claim.commit(&r).unwrap();
        assert_eq!(history(&store, Since::Start).lines(), ["started a"]);

        let mut sink = Collect::default();
        let mut follower = Follower::new(&store, &Since::Now, true).unwrap();
        follower.read_all(&mut Collect::default()).unwrap();
        // While the committer holds the name, nothing is appended: it may
        // still be about to append.
        look_once(&mut follower, &mut sink);
        assert_eq!(store.journal().len(), 1, "appended under a live committer");
        drop(claim);
        look_once(&mut follower, &mut sink);
        follower.read_all(&mut sink).unwrap();
        assert_eq!(sink.lines(), ["ended a timeout"]);
        assert!(
            sink.notes[0].contains("missing ended event"),
            "{:?}",
            sink.notes
        );
        // A second reader, or the same one again, appends nothing more.
        let mut again = Follower::new(&store, &Since::Start, true).unwrap();
        again.read_all(&mut Collect::default()).unwrap();
        look_once(&mut again, &mut Collect::default());
        look_once(&mut follower, &mut Collect::default());
        assert_eq!(
            history(&store, Since::Start).lines(),
            ["started a", "ended a timeout"]
        );
    }

    #[test]
    fn an_end_lost_before_the_run_was_archived_is_appended_from_history() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", None);
        store.lose_event_appends(1);
        let j = name("a");
        {
            let mut claim = store.claim(&j, ClaimWait::No).unwrap();
            let mut r = store.record(&j).unwrap();
            r.finish(
                &JobEnd {
                    outcome: Outcome::Success,
                    exit_code: Some(0),
                    signal: None,
                    reason: None,
                },
                Finalizer::Wrapper,
                store.now(),
            );
            claim.write_record(&r).unwrap();
            claim.commit(&r).unwrap();
            // A new run of the name retires it before anyone looked.
            claim.archive_current("20330518T033320.000Z").unwrap();
        }
        store.set_holder("r2", Holder::Alive);
        run(&store, "a", "r2", None);
        let mut sink = Collect::default();
        let mut follower = Follower::new(&store, &Since::Now, true).unwrap();
        follower.read_all(&mut Collect::default()).unwrap();
        look_once(&mut follower, &mut sink);
        follower.read_all(&mut sink).unwrap();
        assert_eq!(sink.lines(), ["ended a success"]);
        assert_eq!(sink.events[0].event.job_id, "r1");
    }

    #[test]
    fn a_run_whose_wrapper_vanished_is_finished_as_lost_and_its_end_streamed() {
        let store = MemoryStore::new();
        // Started by a wrapper that then vanished (the memory store's
        // holders are dead unless set alive).
        run(&store, "a", "r1", None);
        let mut sink = Collect::default();
        let mut follower = Follower::new(&store, &Since::Now, true).unwrap();
        follower.read_all(&mut Collect::default()).unwrap();
        look_once(&mut follower, &mut sink);
        follower.read_all(&mut sink).unwrap();
        assert_eq!(sink.lines(), ["ended a lost"]);
        assert_eq!(sink.events[0].event.finalized_by, Some(Finalizer::Waiter));
    }

    #[test]
    fn a_live_run_is_left_alone() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", None);
        store.set_holder("r1", Holder::Alive);
        let mut sink = Collect::default();
        let mut follower = Follower::new(&store, &Since::Now, true).unwrap();
        follower.read_all(&mut Collect::default()).unwrap();
        look_once(&mut follower, &mut sink);
        follower.read_all(&mut sink).unwrap();
        assert!(sink.events.is_empty() && sink.notes.is_empty());
        assert_eq!(store.status(&name("a")), None);
    }

    #[test]
    fn a_run_removed_before_its_end_was_journaled_is_forgotten() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", None);
        {
            let mut claim = store.claim(&name("a"), ClaimWait::No).unwrap();
            claim.remove_current().unwrap();
        }
        let mut follower = Follower::new(&store, &Since::Now, true).unwrap();
        follower.read_all(&mut Collect::default()).unwrap();
        assert_eq!(follower.runs.open.len(), 1);
        follower.gone_after = Duration::ZERO;
        look_once(&mut follower, &mut Collect::default());
        assert!(follower.runs.open.is_empty());
        assert!(!store.is_claimed(&name("a")) && store.journal().len() == 1);
    }

    /// A sink that, on its `at`-th event (the last of the history), has
    /// more runs start and end: they must follow, none lost between the
    /// replay and the live part, none twice.
    struct Switching<'a> {
        store: &'a MemoryStore,
        seen: Vec<String>,
        at: usize,
        want: usize,
    }

    impl EventSink for Switching<'_> {
        fn event(&mut self, p: &Positioned) -> io::Result<()> {
            self.seen
                .push(format!("{} {}", p.event.event.as_str(), p.event.name));
            if self.seen.len() == self.at {
                for (n, id) in [("b", "r2"), ("c", "r3")] {
                    run(self.store, n, id, Some(Outcome::Success));
                }
            }
            if self.seen.len() >= self.want {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        }
        fn note(&mut self, note: &str) {
            panic!("{note}");
        }
    }

    #[test]
    fn events_appended_while_the_history_is_replayed_follow_it_live_once_each() {
        let store = MemoryStore::new();
        run(&store, "a", "r1", Some(Outcome::Success));
        let mut sink = Switching {
            store: &store,
            seen: Vec::new(),
            at: 2,
            want: 6,
        };
        let spec = FollowSpec {
            since: Since::Start,
            follow: true,
            poll: None,
            exits_after: false,
            hangup: None,
        };
        assert_eq!(follow(&store, &spec, &mut sink).unwrap(), FollowEnd::Closed);
        assert_eq!(
            sink.seen,
            [
                "started a",
                "ended a",
                "started b",
                "ended b",
                "started c",
                "ended c"
            ]
        );
    }
}
