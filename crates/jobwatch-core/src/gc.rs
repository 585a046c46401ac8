//! Housekeeping: removing what finished runs leave behind, within limits the
//! caller chooses, without ever touching a running job.
//!
//! What may go (docs/protocol.md §16 is the contract for scripts):
//! - a name's **current run**, only with `older_than`: it has a status, its
//!   wrapper is gone (we hold `NAME.lock` while removing), and it ended
//!   longer ago than the limit. Its `attempts/NAME/` folder goes with it;
//! - **archived runs** in `history/NAME/<label>/` beyond the newest `keep`,
//!   or that ended longer ago than `older_than`;
//! - **temp files** `.tmp-*` in the jobs directory older than a minute (a
//!   crash mid-write left them; a live writer renames its own within ms);
//! - **orphaned `NAME.kill`** files: beside no run, or naming another run
//!   than the finished current one;
//! - **empty** `history/NAME/` and `attempts/NAME/` folders;
//! - the oldest part of the **event journal**, once it is large (the store
//!   decides: the file store rotates `events.jsonl` past 1 MiB, keeping one
//!   older file).
//!
//! Never removed: `NAME.lock` (it belongs to the name, and another process
//! may be about to lock the same inode; unlinking it would let two holders
//! lock different inodes of one path), `breakers/`, anything reached
//! through a symlink, anything of a name whose lock is held other than
//! archived runs older than a minute.
//!
//! Archiving happens under the name's lock, so the lock is taken before
//! touching a folder an archive may still be filling (one changed in the
//! last minute), before rmdir-ing `history/NAME/` (an archive may be about
//! to create a run folder in it) and before removing current files. Old
//! archived runs are removed without the lock, so pruning history never
//! makes a `run` of that name fail with "already running".

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::classify::{JobState, classify};
use crate::model::{JobName, rfc3339};
use crate::store::{
    ArchivedItem, Claim, ClaimError, ClaimWait, GcItem, Holder, Inventory, Snapshot, Store,
    StoreError,
};

/// Archived runs kept per name when no limit is given.
pub const DEFAULT_KEEP: usize = 10;

/// Temp files younger than this may belong to a writer still at work.
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(60);

/// An archived run's folder changed more recently than this may still be
/// filled by an archive in progress: it is removed only under the lock.
pub const FRESH_ARCHIVE: Duration = Duration::from_secs(60);

/// What to remove besides the always-removed leftovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Remove finished runs (current and archived) that ended longer ago.
    pub older_than: Option<Duration>,
    /// Keep at most this many archived runs per name, the newest.
    pub keep: Option<usize>,
}

impl Policy {
    /// The policy for the given limits; with neither, keep
    /// [`DEFAULT_KEEP`] archived runs per name and remove nothing current.
    pub fn new(older_than: Option<Duration>, keep: Option<usize>) -> Self {
        let keep = match (older_than, keep) {
            (None, None) => Some(DEFAULT_KEEP),
            (_, keep) => keep,
        };
        Self { older_than, keep }
    }

    fn too_old(&self, ended: SystemTime, now: SystemTime) -> bool {
        self.older_than
            .is_some_and(|d| now.duration_since(ended).is_ok_and(|age| age > d))
    }
}

/// What kind of thing a [`Removal`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A finished current run: `NAME.*` (but the lock) and `attempts/NAME/`.
    Run,
    /// A folder `history/NAME/<label>/`.
    ArchivedRun,
    /// A stray `.tmp-*` file.
    TempFile,
    /// An orphaned `NAME.kill`.
    KillRequest,
    /// An empty `history/NAME/` or `attempts/NAME/`.
    EmptyDir,
    /// The oldest part of the event journal (`events.1.jsonl`), replaced
    /// by the journal that grew past the rotation size.
    EventJournal,
}

/// One thing removed (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// What it is.
    pub kind: ItemKind,
    /// The job it belonged to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The paths removed, relative to the jobs directory.
    pub paths: Vec<PathBuf>,
    /// Bytes freed (file sizes, not blocks).
    pub bytes: u64,
    /// When the run ended, for runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Why it goes.
    pub why: String,
}

/// The result of one collection.
#[derive(Debug, Default)]
pub struct Report {
    /// What was removed (or would be, in a dry run), in order.
    pub removed: Vec<Removal>,
    /// One line each: files that could not be read or removed, names
    /// skipped because their lock was held. None of them stops the run.
    pub warnings: Vec<String>,
}

impl Report {
    /// Total bytes freed.
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|r| r.bytes).sum()
    }
}

/// The store could not be listed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct GcError(#[from] pub StoreError);

/// Removes (or with `dry_run` only lists) what `policy` allows, as of `now`.
pub fn collect(
    store: &dyn Store,
    policy: &Policy,
    dry_run: bool,
    now: SystemTime,
) -> Result<Report, GcError> {
    let mut gc = Collector {
        store,
        policy: *policy,
        dry_run,
        now,
        report: Report::default(),
    };
    let names = store.gc().names()?;
    for debris in store.gc().debris(now, TEMP_MIN_AGE) {
        gc.debris(debris);
    }
    for name in names {
        gc.name(&name);
    }
    gc.events();
    // A name's inventory is taken again under its lock: say each thing once.
    let mut seen = BTreeSet::new();
    gc.report.warnings.retain(|w| seen.insert(w.clone()));
    Ok(gc.report)
}

impl Collector<'_> {
    /// Bounds the event journal (the store's own rule, see
    /// [`crate::store::EventLog::trim_events`]).
    fn events(&mut self) {
        match self.store.events().trim_events(self.dry_run) {
            Ok(Some(trim)) => self.report.removed.push(Removal {
                kind: ItemKind::EventJournal,
                name: None,
                paths: trim.item.paths,
                bytes: trim.item.bytes,
                ended_at: None,
                why: trim.why,
            }),
            Ok(None) => {}
            Err(e) => self.report.warnings.push(e.to_string()),
        }
    }
}

/// What one name would lose: the pure part of gc, decided from what the
/// store holds, the name's state and the policy, either as if its claim
/// were held (`locked`) or without it.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// The finished current run.
    pub current: Option<Removal>,
    /// An orphaned kill request.
    pub kill: Option<Removal>,
    /// Archived runs, each with the store's item.
    pub archived: Vec<(Removal, GcItem)>,
    /// Empty folders, each with the store's item.
    pub empty: Vec<(Removal, GcItem)>,
}

/// What [`PrunePlan::compute`] looks at for one name.
#[derive(Debug, Clone, Copy)]
pub struct NameFacts<'a> {
    /// The name.
    pub name: &'a JobName,
    /// Its current run's state.
    pub state: &'a JobState,
    /// The liveness of the wrapper of its current run's record.
    pub holder: Holder,
    /// What the store holds besides the current run's state.
    pub inventory: &'a Inventory,
}

impl PrunePlan {
    /// Decides what of one name goes under `policy` as of `now`; with
    /// `locked`, as if its claim were held (only then may the current run,
    /// a kill request, empty folders and recently changed archived runs go).
    pub fn compute(facts: NameFacts<'_>, policy: &Policy, now: SystemTime, locked: bool) -> Self {
        let mut plan = PrunePlan::default();
        if locked {
            plan.current = current_run(facts, policy, now);
            if plan.current.is_none() {
                plan.kill = orphan_kill(facts);
            }
        }
        plan.archived = archived_to_remove(facts, policy, now, locked);
        if locked {
            for folder in &facts.inventory.folders {
                let empty = if folder.of_current_run {
                    plan.current.is_none() && folder.entries == 0
                } else {
                    folder.entries.saturating_sub(plan.archived.len()) == 0
                };
                if empty {
                    let removal = Removal {
                        kind: ItemKind::EmptyDir,
                        name: Some(facts.name.to_string()),
                        paths: folder.item.paths.clone(),
                        bytes: 0,
                        ended_at: None,
                        why: "empty".into(),
                    };
                    plan.empty.push((removal, folder.item.clone()));
                }
            }
        }
        plan
    }

    fn is_empty(&self) -> bool {
        self.current.is_none()
            && self.kill.is_none()
            && self.archived.is_empty()
            && self.empty.is_empty()
    }

    /// Whether any of it needs the name's claim, compared with the plan
    /// without it.
    fn needs_claim(&self, unlocked: &PrunePlan) -> bool {
        self.current.is_some()
            || self.kill.is_some()
            || !self.empty.is_empty()
            || self.archived.len() > unlocked.archived.len()
    }
}

/// The current run, if it is finished, its wrapper gone and it ended
/// before the `older_than` limit.
fn current_run(facts: NameFacts<'_>, policy: &Policy, now: SystemTime) -> Option<Removal> {
    policy.older_than?;
    let JobState::Finished { record, .. } = facts.state else {
        return None;
    };
    if record.is_some() && facts.holder == Holder::Alive {
        return None;
    }
    let ended = record
        .as_ref()
        .and_then(|r| r.ended_at.as_deref())
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .or(facts.inventory.status_time)?;
    if !policy.too_old(ended, now) {
        return None;
    }
    let item = facts.inventory.current.as_ref()?;
    Some(Removal {
        kind: ItemKind::Run,
        name: Some(facts.name.to_string()),
        paths: item.paths.clone(),
        bytes: item.bytes,
        ended_at: Some(rfc3339(ended)),
        why: age_reason(ended, now),
    })
}

/// A kill request beside no run, or naming another run than the finished
/// current one (a request for a run that is over can never be used).
fn orphan_kill(facts: NameFacts<'_>) -> Option<Removal> {
    let (item, job_id) = facts.inventory.kill.as_ref()?;
    let orphan = match facts.state {
        JobState::Missing => true,
        JobState::Finished { record, .. } => match (job_id, record) {
            (Some(k), Some(r)) => *k != r.job_id,
            _ => true,
        },
        _ => false,
    };
    orphan.then(|| Removal {
        kind: ItemKind::KillRequest,
        name: Some(facts.name.to_string()),
        paths: item.paths.clone(),
        bytes: item.bytes,
        ended_at: None,
        why: "a kill request for a run that is over".into(),
    })
}

/// Archived runs beyond the newest `keep`, or that ended too long ago;
/// without the claim, only those not changed in the last minute.
fn archived_to_remove(
    facts: NameFacts<'_>,
    policy: &Policy,
    now: SystemTime,
    locked: bool,
) -> Vec<(Removal, GcItem)> {
    // Newest first: latest end, then highest label.
    let mut runs: Vec<&ArchivedItem> = facts.inventory.archived.iter().collect();
    runs.sort_by(|a, b| b.ended.cmp(&a.ended).then_with(|| b.label.cmp(&a.label)));
    let keep = policy.keep.unwrap_or(usize::MAX);
    runs.iter()
        .enumerate()
        .filter(|(_, run)| locked || older(run.changed, FRESH_ARCHIVE, now))
        .filter_map(|(i, run)| {
            let why = if i >= keep {
                format!("more than {keep} archived runs")
            } else if policy.too_old(run.ended, now) {
                age_reason(run.ended, now)
            } else {
                return None;
            };
            let removal = Removal {
                kind: ItemKind::ArchivedRun,
                name: Some(facts.name.to_string()),
                paths: run.item.paths.clone(),
                bytes: run.item.bytes,
                ended_at: Some(rfc3339(run.ended)),
                why,
            };
            Some((removal, run.item.clone()))
        })
        .collect()
}

fn older(t: Option<SystemTime>, limit: Duration, now: SystemTime) -> bool {
    t.and_then(|t| now.duration_since(t).ok())
        .is_some_and(|age| age >= limit)
}

fn age_reason(ended: SystemTime, now: SystemTime) -> String {
    let age = now.duration_since(ended).unwrap_or_default();
    format!(
        "ended {} ago",
        humantime::format_duration(Duration::from_secs(age.as_secs()))
    )
}

struct Collector<'s> {
    store: &'s dyn Store,
    policy: Policy,
    dry_run: bool,
    now: SystemTime,
    report: Report,
}

impl Collector<'_> {
    fn debris(&mut self, item: GcItem) {
        let removal = Removal {
            kind: ItemKind::TempFile,
            name: None,
            paths: item.paths.clone(),
            bytes: item.bytes,
            ended_at: None,
            why: "left by an interrupted atomic write".into(),
        };
        let removed = self.dry_run
            || match self.store.gc().remove_debris(&item) {
                Ok(removed) => removed,
                Err(e) => {
                    self.report.warnings.push(e.to_string());
                    false
                }
            };
        if removed {
            self.report.removed.push(removal);
        }
    }

    /// A name's state and the liveness of its record's wrapper.
    fn judge(&self, snapshot: Snapshot, now: SystemTime) -> (JobState, Holder) {
        let state = classify(snapshot, now, None);
        let holder = state
            .record()
            .map_or(Holder::Unknown, |r| self.store.holder(r));
        (state, holder)
    }

    fn name(&mut self, name: &JobName) {
        let (state, holder) = self.judge(self.store.snapshot(name), self.now);
        let inventory = self.take_stock(name);
        let running = matches!(state, JobState::Running { .. } | JobState::Hung { .. });
        let facts = NameFacts {
            name,
            state: &state,
            holder,
            inventory: &inventory,
        };
        // The plan if we could hold the claim; when nothing in it needs the
        // claim, there is no reason to take it (and delay a `run`).
        let locked = PrunePlan::compute(facts, &self.policy, self.now, true);
        let unlocked = PrunePlan::compute(facts, &self.policy, self.now, false);
        if !locked.needs_claim(&unlocked) {
            return self.execute(name, unlocked, None);
        }
        if self.dry_run {
            // A running job's wrapper holds the claim: the real run would
            // fall back to what needs no claim.
            let plan = if running { unlocked } else { locked };
            return self.execute(name, plan, None);
        }
        match self.store.claim(name, ClaimWait::No) {
            Ok(mut claim) => {
                // The name may have moved on before we got the claim (a run
                // started, finished and archived): decide again. Its
                // history cannot change while we hold the claim.
                let (state, holder) = self.judge(claim.snapshot(), SystemTime::now());
                let inventory = self.take_stock(name);
                let facts = NameFacts {
                    name,
                    state: &state,
                    holder,
                    inventory: &inventory,
                };
                let plan = PrunePlan::compute(facts, &self.policy, self.now, true);
                self.execute(name, plan, Some(claim.as_mut()));
            }
            Err(ClaimError::Held { .. } | ClaimError::AlreadyRunning { .. }) => {
                if locked.current.is_some() {
                    self.report.warnings.push(format!(
                        "skipped the current run of {name}: its lock is held (a run is starting or being finished); left for the next gc"
                    ));
                }
                self.execute(name, unlocked, None);
            }
            Err(e) => {
                self.report.warnings.push(e.to_string());
                self.execute(name, unlocked, None);
            }
        }
    }

    fn take_stock(&mut self, name: &JobName) -> Inventory {
        let mut inventory = self.store.gc().inventory(name);
        self.report.warnings.append(&mut inventory.warnings);
        inventory
    }

    fn execute(&mut self, name: &JobName, plan: PrunePlan, mut claim: Option<&mut dyn Claim>) {
        if plan.is_empty() {
            return;
        }
        let gc = self.store.gc();
        if let Some(removal) = plan.current {
            let done = match claim.as_deref_mut() {
                _ if self.dry_run => Ok(()),
                Some(claim) => claim.remove_current(),
                None => Ok(()),
            };
            self.note(removal, done);
        }
        if let Some(removal) = plan.kill {
            let done = match claim.as_deref_mut() {
                _ if self.dry_run => Ok(()),
                Some(claim) => claim.remove_kill_request(),
                None => Ok(()),
            };
            self.note(removal, done);
        }
        for (removal, item) in plan.archived {
            let done = if self.dry_run {
                Ok(())
            } else {
                gc.remove_archived(name, &item).map(drop)
            };
            self.note(removal, done);
        }
        for (removal, item) in plan.empty {
            if self.dry_run {
                self.report.removed.push(removal);
                continue;
            }
            let Some(claim) = claim.as_deref_mut() else {
                continue;
            };
            match gc.remove_empty(claim, &item) {
                Ok(true) => self.report.removed.push(removal),
                // Not empty after all: something arrived meanwhile.
                Ok(false) => {}
                Err(e) => self.report.warnings.push(e.to_string()),
            }
        }
    }

    /// Reports a removal done, or warns of one that failed.
    fn note(&mut self, removal: Removal, done: Result<(), StoreError>) {
        match done {
            Ok(()) => self.report.removed.push(removal),
            Err(e) => self.report.warnings.push(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_means_keep_ten_and_an_age_limit_alone_keeps_any_number() {
        assert_eq!(
            Policy::new(None, None),
            Policy {
                older_than: None,
                keep: Some(DEFAULT_KEEP)
            }
        );
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(Policy::new(Some(week), None).keep, None);
        assert_eq!(Policy::new(Some(week), Some(3)).keep, Some(3));
    }

    #[test]
    fn too_old_means_strictly_longer_ago_than_the_limit() {
        let p = Policy::new(Some(Duration::from_secs(60)), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(p.too_old(now - Duration::from_secs(61), now));
        assert!(!p.too_old(now - Duration::from_secs(60), now));
        assert!(!p.too_old(now + Duration::from_secs(5), now), "clock skew");
        assert!(!Policy::new(None, Some(1)).too_old(SystemTime::UNIX_EPOCH, now));
    }

    mod over_a_memory_store {
        use super::super::*;
        use crate::model::{KillRequest, Outcome, StatusWord};
        use crate::store::memory::MemoryStore;
        use crate::store::memory::fixture::{ended, name, record};

        const DAY: Duration = Duration::from_secs(86_400);

        /// A name with `archived` runs that ended a day apart (the newest a
        /// day ago), archived more than a minute ago.
        fn with_history(store: &MemoryStore, job: &str, archived: u32) -> JobName {
            let j = name(job);
            let now = store.now();
            for i in 0..archived {
                let end = now - DAY * (archived - i);
                let run = ended(record(job, &format!("old-{i}"), end), Outcome::Success, end);
                store.put_archived(&j, &format!("2033{i:04}"), run);
            }
            store.advance(Duration::from_secs(120));
            j
        }

        fn plan(store: &MemoryStore, j: &JobName, policy: &Policy, locked: bool) -> PrunePlan {
            let state = classify(store.snapshot(j), store.now(), None);
            let holder = state.record().map_or(Holder::Unknown, |r| store.holder(r));
            let inventory = store.gc().inventory(j);
            let facts = NameFacts {
                name: j,
                state: &state,
                holder,
                inventory: &inventory,
            };
            PrunePlan::compute(facts, policy, store.now(), locked)
        }

        #[test]
        fn the_plan_keeps_the_newest_runs_and_removes_an_old_finished_one() {
            let store = MemoryStore::new();
            let j = with_history(&store, "j", 5);
            let start = store.now() - 5 * DAY;
            let done = ended(record("j", "cur", start), Outcome::Failed, start + DAY);
            store.put_record(&j, done);
            store.put_status(&j, StatusWord::Failed);
            let policy = Policy::new(Some(3 * DAY), Some(2));
            let p = plan(&store, &j, &policy, true);
            let current = p.current.expect("ended four days ago, its wrapper gone");
            assert_eq!(current.why, "ended 4days ago");
            let why: Vec<&str> = p.archived.iter().map(|(r, _)| r.why.as_str()).collect();
            assert_eq!(
                why,
                [
                    "more than 2 archived runs",
                    "more than 2 archived runs",
                    "more than 2 archived runs"
                ]
            );
            assert_eq!(
                p.archived[0].0.paths,
                [PathBuf::from("history/j/20330002")],
                "newest first: the third newest goes first"
            );
            // Without the claim: the current run stays.
            assert!(plan(&store, &j, &policy, false).current.is_none());
        }

        #[test]
        fn a_running_job_loses_nothing_but_its_old_history() {
            let store = MemoryStore::new();
            let j = with_history(&store, "j", 3);
            store.put_record(&j, record("j", "live", store.now()));
            store.set_holder("live", Holder::Alive);
            store.put_output(&j, store.now(), &[]);
            let p = plan(
                &store,
                &j,
                &Policy::new(Some(Duration::ZERO), Some(1)),
                true,
            );
            assert!(p.current.is_none());
            assert!(p.kill.is_none());
            assert_eq!(p.archived.len(), 3, "every archived run is older than zero");
        }

        #[test]
        fn a_kill_request_for_a_run_that_is_over_is_an_orphan() {
            let store = MemoryStore::new();
            let j = name("j");
            let done = ended(
                record("j", "r2", store.now()),
                Outcome::Success,
                store.now(),
            );
            store.put_record(&j, done);
            store.put_status(&j, StatusWord::Success);
            let request = KillRequest {
                job_id: "r1".into(),
                outcome: Outcome::Killed,
                reason: "x".into(),
                at: String::new(),
                grace_ms: None,
                command_exited: false,
            };
            store.request_kill(&j, &request).unwrap();
            let p = plan(&store, &j, &Policy::new(None, None), true);
            assert_eq!(p.kill.unwrap().why, "a kill request for a run that is over");
        }

        #[test]
        fn collecting_removes_through_the_store_what_the_plan_says() {
            let store = MemoryStore::new();
            let j = with_history(&store, "j", 4);
            let report = collect(&store, &Policy::new(None, Some(1)), false, store.now()).unwrap();
            assert_eq!(report.removed.len(), 3);
            assert!(report.warnings.is_empty(), "{:?}", report.warnings);
            assert_eq!(store.archived(&j).len(), 1);
            let dry = collect(&store, &Policy::new(None, Some(0)), true, store.now()).unwrap();
            let kinds: Vec<ItemKind> = dry.removed.iter().map(|r| r.kind).collect();
            assert_eq!(
                kinds,
                [ItemKind::ArchivedRun, ItemKind::EmptyDir],
                "the last run, then its emptied history"
            );
            assert_eq!(store.archived(&j).len(), 1, "a dry run removes nothing");
        }
    }
}
