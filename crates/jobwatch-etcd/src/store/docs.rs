//! Documents (circuit breakers, agent sessions, queued jobs and queues) on etcd: each one key, changed by
//! compare-and-swap on its revision and retried on a conflict, so that
//! breakers on many hosts count every run exactly once. The update
//! function is the breaker's own pure rule (it counts each `job_id` once,
//! whatever it sees), which makes a retry safe.

use std::time::{Duration, Instant};

use jobwatch_core::store::{DocKind, DocRead, DocStore, StoreError};

use super::etcd_err;
use super::keys;
use crate::{CasOutcome, EtcdClient};

/// How long updaters retry a contended document before giving up
/// ([`StoreError::Busy`]), as the file store waits for its lock.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The documents of one namespace.
pub struct EtcdDocs {
    client: EtcdClient,
}

impl EtcdDocs {
    /// The documents reached through `client`.
    pub fn new(client: EtcdClient) -> Self {
        Self { client }
    }
}

impl DocStore for EtcdDocs {
    fn describe(&self, kind: DocKind, key: &str) -> String {
        format!(
            "etcd key {}{}",
            String::from_utf8_lossy(self.client.key_prefix()),
            keys::show(&keys::doc(kind, key))
        )
    }

    fn read(&self, kind: DocKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let got = self
            .client
            .get(&keys::doc(kind, key))
            .map_err(|e| etcd_err(format!("cannot read {}", self.describe(kind, key)), e))?;
        Ok(got.kv.map(|kv| kv.value))
    }

    fn update(
        &self,
        kind: DocKind,
        key: &str,
        f: &mut dyn FnMut(DocRead<'_>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let k = keys::doc(kind, key);
        let started = Instant::now();
        loop {
            let got = self
                .client
                .get(&k)
                .map_err(|e| etcd_err(format!("cannot read {}", self.describe(kind, key)), e))?;
            let (current, revision) = match &got.kv {
                Some(kv) => (Some(kv.value.as_slice()), kv.mod_revision),
                None => (None, 0),
            };
            let Some(new) = f(Ok(current)) else {
                return Ok(());
            };
            let swapped = self
                .client
                .compare_and_swap(&k, revision, &new, None)
                .map_err(|e| etcd_err(format!("cannot write {}", self.describe(kind, key)), e))?;
            match swapped {
                CasOutcome::Swapped { .. } => return Ok(()),
                // Another host changed it since our read: apply the rule
                // again to what it wrote.
                // Sessions wait for each other without a bound (protocol §17).
                CasOutcome::Conflict(_)
                    if kind == DocKind::Session || started.elapsed() < PATIENCE => {}
                CasOutcome::Conflict(_) => {
                    return Err(StoreError::Busy {
                        what: self.describe(kind, key),
                        waited: started.elapsed(),
                    });
                }
            }
        }
    }

    fn list(&self, kind: DocKind) -> Result<Vec<String>, StoreError> {
        let prefix = keys::docs_prefix(kind);
        let range = self
            .client
            .get_prefix_keys(&prefix)
            .map_err(|e| etcd_err(format!("cannot list {}", self.describe(kind, "")), e))?;
        let mut list: Vec<String> = range
            .kvs
            .iter()
            .filter_map(|kv| keys::parse_doc_key(kind, &kv.key))
            .collect();
        list.sort();
        Ok(list)
    }

    fn replace(&self, kind: DocKind, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.client
            .put(&keys::doc(kind, key), bytes, None)
            .map(|_| ())
            .map_err(|e| etcd_err(format!("cannot write {}", self.describe(kind, key)), e))
    }

    fn remove(&self, kind: DocKind, key: &str) -> Result<bool, StoreError> {
        self.client
            .delete(&keys::doc(kind, key))
            .map(|deleted| deleted > 0)
            .map_err(|e| etcd_err(format!("cannot remove {}", self.describe(kind, key)), e))
    }
}
