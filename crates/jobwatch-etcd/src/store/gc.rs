//! Housekeeping on an etcd store: what a name holds beyond its current
//! run (archived runs, a kill request), and removing it. Archived runs'
//! logs are removed where they are, when gc runs on their host.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use jobwatch_core::model::{JobName, JobRecord, KillRequest};
use jobwatch_core::store::{ArchivedItem, Claim, GcItem, GcStore, Inventory, StoreError};

use super::keys::{self, Part};
use super::values::parse;
use super::{EtcdStore, etcd_err};

/// An archived run's keys, their size, and when it ended.
type RunKeys = (Vec<Vec<u8>>, u64, Option<SystemTime>);

fn item(keys: Vec<Vec<u8>>, bytes: u64) -> GcItem {
    GcItem {
        paths: keys.iter().map(|k| PathBuf::from(keys::show(k))).collect(),
        bytes,
    }
}

impl GcStore for EtcdStore {
    fn debris(&self, _now: SystemTime, _min_age: Duration) -> Vec<GcItem> {
        // Every write is one transaction: etcd leaves no half-written key.
        Vec::new()
    }

    fn names(&self) -> Result<Vec<JobName>, StoreError> {
        let mut names = jobwatch_core::store::Store::list(self)?;
        let history = self
            .client
            .get_prefix_keys(keys::HISTORY.as_bytes())
            .map_err(|e| etcd_err(format!("cannot list history in {}", self.url), e))?;
        names.extend(
            history
                .kvs
                .iter()
                .filter_map(|kv| keys::parse_history_key(&kv.key))
                .map(|(name, _, _)| name),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn inventory(&self, name: &JobName) -> Inventory {
        let mut inv = Inventory::default();
        match self.read_job(name) {
            Ok((keys, _)) => {
                let present: Vec<_> = [&keys.record, &keys.beat, &keys.tail, &keys.status]
                    .into_iter()
                    .flatten()
                    .collect();
                if !present.is_empty() {
                    let bytes = present.iter().map(|kv| kv.value.len() as u64).sum();
                    inv.current = Some(item(
                        present.iter().map(|kv| kv.key.clone()).collect(),
                        bytes,
                    ));
                }
                if let Some(kv) = &keys.kill {
                    let job = parse::<KillRequest>(&kv.key, &kv.value)
                        .ok()
                        .map(|k| k.job_id);
                    inv.kill = Some((item(vec![kv.key.clone()], kv.value.len() as u64), job));
                }
            }
            Err(e) => inv.warnings.push(e.to_string()),
        }
        let history = match self.client.get_prefix(&keys::history_prefix(name), 0) {
            Ok(range) => range.kvs,
            Err(e) => {
                inv.warnings
                    .push(etcd_err("cannot read history", e).to_string());
                return inv;
            }
        };
        let mut runs: std::collections::BTreeMap<String, RunKeys> = Default::default();
        for kv in &history {
            let Some((_, label, part)) = keys::parse_history_key(&kv.key) else {
                continue;
            };
            let run = runs.entry(label).or_default();
            run.0.push(kv.key.clone());
            run.1 += kv.value.len() as u64;
            if part == Part::Record {
                match parse::<JobRecord>(&kv.key, &kv.value) {
                    Ok(r) => {
                        run.2 = r
                            .ended_at
                            .as_deref()
                            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                            .or(Some(r.started()));
                    }
                    Err(e) => inv.warnings.push(e),
                }
            }
        }
        for (label, (keys, bytes, ended)) in runs {
            inv.archived.push(ArchivedItem {
                ended: ended.unwrap_or(SystemTime::UNIX_EPOCH),
                changed: None,
                item: item(keys, bytes),
                label,
            });
        }
        inv
    }

    fn remove_archived(&self, name: &JobName, item: &GcItem) -> Result<bool, StoreError> {
        let Some(label) = item
            .paths
            .first()
            .and_then(|p| keys::parse_history_key(p.to_string_lossy().as_bytes()))
            .map(|(_, label, _)| label)
        else {
            return Ok(false);
        };
        let deleted = self
            .client
            .delete_prefix(&keys::history_run(name, &label))
            .map_err(|e| etcd_err(format!("cannot remove run {label} of job {name}"), e))?;
        let _ = self.files.remove_archived(name, &label);
        Ok(deleted > 0)
    }

    fn remove_debris(&self, _item: &GcItem) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn remove_empty(&self, _claim: &mut dyn Claim, _folder: &GcItem) -> Result<bool, StoreError> {
        // Keys have no folders.
        Ok(false)
    }
}
