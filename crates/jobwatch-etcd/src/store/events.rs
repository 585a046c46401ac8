//! The event journal of an etcd store ([`EventLog`], rule 8 of the seam):
//! every run's `started` and `ended`, shared by every host of the
//! namespace.
//!
//! Each event is one key, `events/JOB_ID/started` or `events/JOB_ID/ended`
//! (the event's JSON line), created in the same transaction as the change
//! it reports: the `started` with the record naming the spawned command
//! ([`Claim::mark_spawned`](jobwatch_core::store::Claim::mark_spawned)),
//! the `ended` with the status ([`Claim::commit`](jobwatch_core::store::Claim::commit)).
//! So there is never a status without its `ended` event, and never two:
//! the status is created once, and with it its event.
//!
//! **The cursor is the etcd revision** that created the event's key
//! (`etcd:REVISION`). Revisions are assigned in commit order and reads are
//! linearizable: once a read at revision R has returned, no key created at
//! or before R can appear later. A read after cursor C asks the cluster
//! for the keys under `events/` created after C (`min_create_revision`),
//! sorted by creation; a follower that reads again after each wake-up sees
//! each event exactly once, whichever member answers and however often it
//! fails over. Compaction does not matter: the keys themselves are read,
//! not the history.
//!
//! Wake-ups come from one etcd watch on the namespace, resumed by the
//! access layer after any failure (rule 6), that wakes a follower for an
//! event key created and for a claim key deleted (a holder gone: the
//! follower looks at its open runs).
//!
//! The journal is bounded by gc ([`EventLog::trim_events`]): beyond
//! [`EVENTS_KEPT`] events, the oldest are deleted.

use std::path::PathBuf;

use jobwatch_core::model::{EventKind, JobEvent};
use jobwatch_core::store::{
    Cursor, EVENT_BATCH, EventLog, EventRead, EventTrim, GcItem, Invalid, Positioned, Since,
    StoreError, Watch, WatchFor,
};

use super::watch::EtcdWatch;
use super::{EtcdStore, etcd_err, keys};
use crate::{KeyValue, Op};

/// The most events gc keeps (the file store's journal keeps about as many:
/// it rotates at 1 MiB).
pub const EVENTS_KEPT: usize = 10_000;

/// Keys deleted per transaction when trimming (etcd's default limit on a
/// transaction's operations is 128).
const TRIM_BATCH: usize = 100;

/// What a cursor of this store looks like: `etcd:REVISION`.
const CURSOR_PREFIX: &str = "etcd:";

/// The cursor just after the event created at `revision`.
pub fn cursor(revision: i64) -> Cursor {
    Cursor::new(format!("{CURSOR_PREFIX}{revision}"))
}

/// The revision a cursor of this store names; anything else is not one of
/// its cursors.
pub fn revision_of(c: &Cursor) -> Result<i64, Invalid> {
    c.as_str()
        .strip_prefix(CURSOR_PREFIX)
        .and_then(|r| r.parse::<i64>().ok())
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            Invalid(format!(
                "cursor {c} is not one of an etcd store (etcd:REVISION): give one `jobwatch events` printed with this --store"
            ))
        })
}

/// What one read of the journal found.
#[derive(Debug)]
pub struct Batch {
    /// The events, in journal order.
    pub events: Vec<Positioned>,
    /// Whether keys were left for the next read.
    pub more: bool,
    /// One line on each value that is not its key's event (skipped).
    pub notes: Vec<String>,
    /// The create revision of the last key taken (event or not).
    pub last: Option<i64>,
}

/// The events of `kvs` (keys under `events/` created after a cursor), in
/// journal order, at most [`EVENT_BATCH`] keys; values that are not events
/// are skipped with a note, never fatal.
pub fn events_of(mut kvs: Vec<KeyValue>) -> Batch {
    kvs.sort_by_key(|kv| kv.create_revision);
    let more = kvs.len() > EVENT_BATCH;
    kvs.truncate(EVENT_BATCH);
    let last = kvs.last().map(|kv| kv.create_revision);
    let mut notes = Vec::new();
    let events = kvs
        .iter()
        .filter_map(|kv| match JobEvent::from_line(&kv.value) {
            Some(event) if key_matches(&kv.key, &event) => Some(Positioned {
                event,
                cursor: cursor(kv.create_revision),
            }),
            _ => {
                notes.push(format!(
                    "skipped {}: not a job event",
                    String::from_utf8_lossy(&kv.key)
                ));
                None
            }
        })
        .collect();
    Batch {
        events,
        more,
        notes,
        last,
    }
}

/// Whether an event is the one its key says (`events/JOB_ID/KIND`).
fn key_matches(key: &[u8], event: &JobEvent) -> bool {
    key == keys::event(&event.job_id, event.event).as_slice()
}

impl EventLog for EtcdStore {
    fn describe_events(&self) -> String {
        format!("the event journal of {} ({})", self.url, keys::EVENTS)
    }

    fn read_events(&self, since: &Since) -> Result<EventRead, StoreError> {
        let after = match since {
            Since::Start => 0,
            Since::After(c) => revision_of(c)?,
            Since::Now => {
                // Where the journal ends now: the cluster's revision.
                let got = self
                    .client
                    .get(keys::EVENTS.as_bytes())
                    .map_err(|e| etcd_err(format!("cannot read {}", self.describe_events()), e))?;
                return Ok(EventRead {
                    events: Vec::new(),
                    next: Since::After(cursor(got.revision)),
                    more: false,
                    notes: Vec::new(),
                });
            }
        };
        let range = self
            .client
            .get_prefix_created_after(keys::EVENTS.as_bytes(), after)
            .map_err(|e| etcd_err(format!("cannot read {}", self.describe_events()), e))?;
        let Batch {
            events,
            more,
            notes,
            last,
        } = events_of(range.kvs);
        // More left: the next read starts after the last key of this batch;
        // else where this one looked (the revision it was read at), never
        // before the cursor it was given.
        let next = match last {
            Some(last) if more => cursor(last),
            _ => cursor(range.revision.max(after)),
        };
        let next = Since::After(next);
        Ok(EventRead {
            events,
            next,
            more,
            notes,
        })
    }

    fn watch_events(&self, what: WatchFor) -> Box<dyn Watch> {
        Box::new(EtcdWatch::events(self, what))
    }

    fn append_missing_end(&self, ended: &JobEvent, _after: &Cursor) -> Result<bool, StoreError> {
        // Created with its status, the `ended` event is only ever missing
        // for a run committed without one (an older jobwatch): created once,
        // whoever else repairs.
        let key = keys::event(&ended.job_id, EventKind::Ended);
        let value = super::claim::event_bytes(ended);
        let created = self
            .client
            .create(&key, &value, None)
            .map_err(|e| etcd_err(format!("cannot append to {}", self.describe_events()), e))?;
        Ok(matches!(created, crate::CreateOutcome::Created { .. }))
    }

    fn trim_events(&self, dry_run: bool) -> Result<Option<EventTrim>, StoreError> {
        let context = || format!("cannot trim {}", self.describe_events());
        let range = self
            .client
            .get_prefix_keys(keys::EVENTS.as_bytes())
            .map_err(|e| etcd_err(context(), e))?;
        let mut kvs = range.kvs;
        if kvs.len() <= EVENTS_KEPT {
            return Ok(None);
        }
        kvs.sort_by_key(|kv| kv.create_revision);
        let old: Vec<Vec<u8>> = kvs[..kvs.len() - EVENTS_KEPT]
            .iter()
            .map(|kv| kv.key.clone())
            .collect();
        let trim = EventTrim {
            item: GcItem {
                paths: old
                    .iter()
                    .map(|k| PathBuf::from(String::from_utf8_lossy(k).into_owned()))
                    .collect(),
                bytes: 0,
            },
            why: format!(
                "the event journal holds {} events (gc keeps the newest {EVENTS_KEPT}): the {} oldest go",
                kvs.len(),
                old.len()
            ),
        };
        if !dry_run {
            for batch in old.chunks(TRIM_BATCH) {
                let ops: Vec<Op> = batch.iter().cloned().map(Op::Delete).collect();
                self.client
                    .txn(&[], &ops, &[])
                    .map_err(|e| etcd_err(context(), e))?;
            }
        }
        Ok(Some(trim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(job_id: &str, kind: EventKind, revision: i64) -> KeyValue {
        let event = JobEvent {
            event: kind,
            name: "build".into(),
            job_id: job_id.into(),
            at: "2026-11-27T19:00:00Z".into(),
            host: "h1".into(),
            outcome: None,
            exit_code: None,
            signal: None,
            duration_ms: None,
            reason: None,
            finalized_by: None,
        };
        KeyValue {
            key: keys::event(job_id, kind),
            value: super::super::claim::event_bytes(&event),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn events_come_in_the_order_of_their_revisions_each_with_its_own_as_cursor() {
        let kvs = vec![
            kv("r2", EventKind::Started, 30),
            kv("r1", EventKind::Ended, 20),
            kv("r1", EventKind::Started, 10),
        ];
        let Batch {
            events,
            more,
            notes,
            last,
        } = events_of(kvs);
        assert_eq!(last, Some(30));
        let order: Vec<_> = events
            .iter()
            .map(|p| (p.event.job_id.as_str(), p.event.event, p.cursor.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("r1", EventKind::Started, "etcd:10"),
                ("r1", EventKind::Ended, "etcd:20"),
                ("r2", EventKind::Started, "etcd:30"),
            ]
        );
        assert!(!more && notes.is_empty());
    }

    #[test]
    fn a_value_that_is_not_its_keys_event_is_skipped_with_a_note() {
        let mut forged = kv("r1", EventKind::Started, 10);
        forged.key = keys::event("r9", EventKind::Started);
        let mut garbage = kv("r2", EventKind::Started, 11);
        garbage.value = b"not json".to_vec();
        let Batch { events, notes, .. } =
            events_of(vec![forged, garbage, kv("r3", EventKind::Ended, 12)]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.job_id, "r3");
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn a_read_returns_a_bounded_batch_and_says_more_are_left() {
        let kvs = (0..EVENT_BATCH as i64 + 5)
            .map(|i| kv(&format!("r{i}"), EventKind::Started, i + 1))
            .collect();
        let batch = events_of(kvs);
        assert_eq!(batch.events.len(), EVENT_BATCH);
        assert!(batch.more);
        assert_eq!(batch.last, Some(EVENT_BATCH as i64));
    }

    #[test]
    fn only_this_stores_cursors_are_taken() {
        assert_eq!(revision_of(&cursor(42)).unwrap(), 42);
        for bad in ["42", "etcd:", "etcd:-1", "abc:42", "etcd:4x"] {
            let e = revision_of(&Cursor::new(bad)).unwrap_err();
            assert!(e.0.contains("etcd:REVISION"), "{bad}: {e}");
        }
    }
}
