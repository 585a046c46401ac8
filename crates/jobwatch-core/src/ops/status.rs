//! `status` and `ls`: each job's state from what the store holds alone, so
//! the answer is the same after any crash of any monitor.

use std::collections::BTreeSet;

use crate::model::JobName;
use crate::queue::QueueCache;
use crate::report::StatusRow;
use crate::store::{Store, StoreError};

/// Which jobs to show.
#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    /// These jobs (each one reported, a missing one too); `None`: every job
    /// in the store.
    pub names: Option<Vec<JobName>>,
    /// With `names: None`, rows for at most this many jobs (the first by
    /// name); the rest are counted in [`Listing::more`].
    pub limit: Option<usize>,
}

/// The jobs' lines, in the order asked (or by name).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// One entry per job.
    pub entries: Vec<Entry>,
    /// Jobs left out by [`StatusRequest::limit`].
    pub more: usize,
}

/// One job's entry.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every entry is a row; boxing each would cost an allocation per job listed"
)]
pub enum Entry {
    /// Its row.
    Job(StatusRow),
    /// A job named in the request has no state at all.
    NoSuchJob(JobName),
}

impl Listing {
    /// The rows, without the names that have none.
    pub fn rows(&self) -> impl Iterator<Item = &StatusRow> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Job(row) => Some(row),
            Entry::NoSuchJob(_) => None,
        })
    }

    /// The names asked for that have no job.
    pub fn missing(&self) -> impl Iterator<Item = &JobName> {
        self.entries.iter().filter_map(|e| match e {
            Entry::NoSuchJob(name) => Some(name),
            Entry::Job(_) => None,
        })
    }
}

/// The store could not list its jobs.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StatusError(#[from] pub StoreError);

/// The lines of the jobs `req` asks for, as of the store's now: a queued
/// job that has not started is `queued`, with its place.
pub fn status(store: &dyn Store, req: &StatusRequest) -> Result<Listing, StatusError> {
    // Whoever looks dispatches: a queue that a crashed committer left
    // stranded moves on here (protocol §19).
    crate::queue::dispatch(store);
    let now = store.now();
    let queued: BTreeSet<JobName> = crate::queue::queued_names(store).into_iter().collect();
    let (names, named, more) = match &req.names {
        Some(names) => (names.clone(), true, 0),
        None => {
            let mut all = store.list()?;
            all.extend(queued.iter().cloned());
            all.sort();
            all.dedup();
            let limit = req.limit.unwrap_or(usize::MAX);
            let more = all.len().saturating_sub(limit);
            all.truncate(limit);
            (all, false, more)
        }
    };
    // One pass over the store's history for every name, not a look per name.
    let runs = store.archived_counts(&names);
    let jobs: Vec<(JobName, usize)> = names.into_iter().zip(runs).collect();
    let look = |chunk: &[(JobName, usize)]| -> Vec<Entry> {
        let mut queues = QueueCache::default();
        chunk
            .iter()
            .filter_map(|(name, runs)| {
                let pending = queued
                    .contains(name)
                    .then(|| crate::queue::pending_in(store, name, &mut queues))
                    .flatten();
                let row = match pending {
                    Some(p) => Some(StatusRow::queued(store, &p, now)),
                    None => StatusRow::read_counted(store, name, now, || *runs),
                };
                match row {
                    Some(row) => Some(Entry::Job(row)),
                    // Listed, then gone (removed meanwhile): nothing to show.
                    None if !named => None,
                    None => Some(Entry::NoSuchJob(name.clone())),
                }
            })
            .collect()
    };
    let entries = in_parallel(&jobs, look);
    Ok(Listing { entries, more })
}

/// Below this many jobs one thread reads them all: a thread's start costs
/// more than it saves.
const PARALLEL_FROM: usize = 512;

/// `look` over `jobs` in order, split across the machine's cores when there
/// are many: each row is a few small file reads and a parse (eight system
/// calls per job in the file store), so 10,000 jobs keep one core busy for
/// over 100 ms while the others idle.
fn in_parallel<T: Sync, R: Send>(jobs: &[T], look: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads < 2 || jobs.len() < PARALLEL_FROM {
        return look(jobs);
    }
    let per_thread = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per_thread)
            .map(|chunk| scope.spawn(|| look(chunk)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, StatusWord};
    use crate::store::Holder;
    use crate::store::memory::MemoryStore;
    use crate::store::memory::fixture::{ended, name, record};

    #[test]
    fn named_jobs_are_each_reported_and_a_listing_is_bounded() {
        let store = MemoryStore::new();
        let t0 = store.now();
        for (j, id) in [("a", "r1"), ("b", "r2"), ("c", "r3")] {
            store.put_record(&name(j), record(j, id, t0));
        }
        store.set_holder("r1", Holder::Alive);
        store.put_record(
            &name("b"),
            ended(record("b", "r2", t0), Outcome::Failed, t0),
        );
        store.put_status(&name("b"), StatusWord::Failed);
        store.damage_record(&name("c"), "malformed c.job.json: eof");

        let asked = StatusRequest {
            names: Some(vec![name("b"), name("nope"), name("a"), name("c")]),
            limit: None,
        };
        let l = status(&store, &asked).unwrap();
        let words: Vec<&str> = l.rows().map(|r| r.state).collect();
        assert_eq!(words, ["failed", "running", "invalid"]);
        assert_eq!(l.missing().collect::<Vec<_>>(), [&name("nope")]);
        let c = l.rows().last().unwrap();
        assert!(c.is_invalid() && !c.running);
        assert!(l.rows().nth(1).unwrap().running);

        let first_two = StatusRequest {
            names: None,
            limit: Some(2),
        };
        let l = status(&store, &first_two).unwrap();
        assert_eq!(l.rows().count(), 2);
        assert_eq!(l.more, 1);
    }

    #[test]
    fn rows_read_in_parallel_keep_the_order_asked_and_lose_none() {
        let jobs: Vec<usize> = (0..PARALLEL_FROM * 3 + 7).collect();
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        let looked = in_parallel(&jobs, |chunk| {
            threads.lock().unwrap().insert(std::thread::current().id());
            chunk.iter().map(|j| j * 2).collect()
        });
        assert_eq!(looked, jobs.iter().map(|j| j * 2).collect::<Vec<_>>());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads.lock().unwrap().len() > 1, cores > 1);

        let few: Vec<usize> = (0..PARALLEL_FROM - 1).collect();
        let on = std::sync::Mutex::new(Vec::new());
        in_parallel(&few, |chunk| {
            on.lock().unwrap().push(std::thread::current().id());
            chunk.to_vec()
        });
        assert_eq!(*on.lock().unwrap(), [std::thread::current().id()]);
    }
}
