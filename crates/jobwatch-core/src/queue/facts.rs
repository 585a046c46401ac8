//! The queue's [`Facts`] over a store: a run is found as the name's
//! current run, as a queued one (its document), or in history; each is
//! read once per look.

use std::collections::HashMap;

use super::decide::{Facts, RunFact};
use super::{START_PATIENCE, is_queued};
use crate::breaker::Starter;
use crate::classify::{JobState, classify};
use crate::model::{JobName, unix_ms};
use crate::store::Store;
use crate::wait::archived_verdict;

/// Facts read from `store`, each at most once.
pub struct StoreFacts<'s> {
    store: &'s dyn Store,
    runs: HashMap<(JobName, Option<String>), RunFact>,
}

impl<'s> StoreFacts<'s> {
    /// Facts of `store`.
    pub fn new(store: &'s dyn Store) -> Self {
        Self {
            store,
            runs: HashMap::new(),
        }
    }

    fn read(&self, name: &JobName, job_id: Option<&str>) -> RunFact {
        let store = self.store;
        let state = classify(store.snapshot(name), store.now(), None);
        let current = state.record().map(|r| r.job_id.as_str());
        let ours = match job_id {
            // A run that left only a status is the name's current state.
            None => true,
            Some(id) => current == Some(id),
        };
        if ours {
            return match state {
                JobState::Finished { outcome, .. } => RunFact::Ended(outcome),
                JobState::Running { .. } => RunFact::Running,
                JobState::Hung { .. } => RunFact::Hung,
                JobState::Lost { .. } | JobState::Recorded { .. } => RunFact::Unfinished,
                JobState::Missing => RunFact::Absent,
                JobState::Invalid { reason } => RunFact::Invalid(reason),
            };
        }
        let Some(id) = job_id else {
            return RunFact::Absent;
        };
        if is_queued(store, name, id) {
            return RunFact::Queued;
        }
        match archived_verdict(store, name, id) {
            Some(v) => RunFact::Ended(v.outcome),
            None => RunFact::Absent,
        }
    }
}

impl Facts for StoreFacts<'_> {
    fn run(&mut self, name: &JobName, job_id: Option<&str>) -> RunFact {
        let key = (name.clone(), job_id.map(str::to_owned));
        if let Some(f) = self.runs.get(&key) {
            return f.clone();
        }
        let fact = self.read(name, job_id);
        self.runs.insert(key, fact.clone());
        fact
    }

    fn alive(&mut self, starter: &Starter, granted_unix_ms: u64) -> bool {
        if starter.is_here() {
            return starter.is_alive();
        }
        let age = unix_ms(self.store.now()).saturating_sub(granted_unix_ms);
        u128::from(age) < START_PATIENCE.as_millis()
    }
}
