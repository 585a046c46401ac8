//! The run a log-reading waiter is bound to, and where that run is now.
//!
//! `wait --until-log` and `logs --follow` are about one run of a name: the
//! one current when they began. If the name is started again meanwhile, the
//! previous run's files move to `history/NAME/<label>/` and the name's files
//! describe the new run. Its verdict must never be reported for the bound
//! run; the bound run's own verdict is then read from its archived files.

use std::time::{Duration, Instant};

use super::{VANISHED_LIMIT, Verdict};
use crate::classify::{JobState, classify};
use crate::logs::LogFollower;
use crate::model::{JobName, Outcome};
use crate::store::{SAFETY_RECHECK, Store, Wake};

/// What one look at the bound run's state found.
pub(super) enum Look {
    /// It ended: its own verdict.
    Ended(Box<Verdict>),
    /// Still running: look again within this long.
    Pending(Duration),
    /// Neither it nor its verdict is to be found right now.
    Vanished,
}

/// When a log-reading waiter next looks at its run's state (a log write
/// alone does not make it look), and since when the run has been missing: a
/// restart hides a run for a moment, [`VANISHED_LIMIT`] is not a moment.
pub(super) struct LookSchedule {
    next: Instant,
    vanished_since: Option<Instant>,
}

impl LookSchedule {
    /// The first look is due at once.
    pub(super) fn new() -> Self {
        Self {
            next: Instant::now(),
            vanished_since: None,
        }
    }

    /// Whether to look now: the run's files changed, or a recheck is due.
    pub(super) fn due(&self, wake: Wake) -> bool {
        wake == Wake::State || Instant::now() >= self.next
    }

    /// After a look that found the run still going.
    pub(super) fn pending(&mut self, recheck_in: Duration) {
        self.vanished_since = None;
        self.next = Instant::now() + recheck_in.min(SAFETY_RECHECK);
    }

    /// After a look that found nothing; `false` once the run has been
    /// missing for longer than [`VANISHED_LIMIT`].
    pub(super) fn vanished(&mut self) -> bool {
        let since = *self.vanished_since.get_or_insert_with(Instant::now);
        self.next = Instant::now() + Duration::from_millis(50);
        since.elapsed() < VANISHED_LIMIT
    }

    /// How long until the next look.
    pub(super) fn until_next(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }
}

/// What remembers the run a waiter is bound to: the log a log-reading
/// waiter follows, or (for a plain wait) just the run's `job_id`.
pub(super) trait RunBinding {
    /// The bound run, once bound.
    fn run(&self) -> Option<&str>;
    /// Binds to run `job_id`, unless already bound.
    fn bind(&mut self, job_id: &str);
}

impl RunBinding for LogFollower<'_> {
    fn run(&self) -> Option<&str> {
        LogFollower::run(self)
    }
    fn bind(&mut self, job_id: &str) {
        LogFollower::bind(self, job_id);
    }
}

impl RunBinding for Option<String> {
    fn run(&self) -> Option<&str> {
        self.as_deref()
    }
    fn bind(&mut self, job_id: &str) {
        if self.is_none() {
            *self = Some(job_id.to_owned());
        }
    }
}

/// Where the bound run is.
pub(super) enum Located {
    /// Still (or not yet known not to be) the name's current run.
    Current,
    /// Archived: the name moved on; this is the run's verdict from history.
    Archived(Box<Verdict>),
    /// Neither current nor found in history (someone removed it).
    Gone,
}

/// Where the run `log` is bound to is, binding it to the current run when
/// it is not bound yet.
pub(super) fn locate(store: &dyn Store, name: &JobName, log: &mut impl RunBinding) -> Located {
    let current = store.current_job_id(name);
    match (log.run(), current) {
        (Some(bound), Some(current)) if bound != current => {
            match archived_verdict(store, name, bound) {
                Some(v) => Located::Archived(Box::new(v)),
                None => Located::Gone,
            }
        }
        (None, Some(current)) => {
            log.bind(&current);
            Located::Current
        }
        _ => Located::Current,
    }
}

/// The bound run's verdict, given a verdict read from the name's current
/// state: that one if it is about the bound run; else the bound run's from
/// history. `None` when it cannot be told yet.
pub(super) fn own_verdict(
    store: &dyn Store,
    log: &mut impl RunBinding,
    v: Verdict,
) -> Option<Verdict> {
    let current = v.record.as_ref().map(|r| r.job_id.clone());
    match (log.run(), current) {
        (Some(bound), current) if current.as_deref() != Some(bound) => {
            match archived_verdict(store, &v.name, bound) {
                Some(archived) => Some(archived),
                // A status without a record: the bound run's own, seen while
                // it was being archived (the record moves first).
                None if current.is_none() => Some(v),
                None => None,
            }
        }
        (None, Some(current)) => {
            log.bind(&current);
            Some(v)
        }
        _ => Some(v),
    }
}

/// The verdict of run `job_id` of `name` from its archived state, if it is
/// in history. It says where the run is, so a report names the log where
/// it now is.
pub fn archived_verdict(store: &dyn Store, name: &JobName, job_id: &str) -> Option<Verdict> {
    let archived = store.archived_run(name, job_id)?;
    if let Some(outcome) = archived.record.outcome {
        return Some(Verdict::ended(
            name,
            archived.at,
            outcome,
            Some(archived.record),
        ));
    }
    Some(match classify(archived.snapshot, store.now(), None) {
        JobState::Finished { outcome, record } => {
            Verdict::ended(name, archived.at, outcome, record.map(|r| *r))
        }
        // A run is finished before it is archived; one that was not had
        // lost its wrapper.
        _ => Verdict::ended(name, archived.at, Outcome::Lost, Some(archived.record)),
    })
}
