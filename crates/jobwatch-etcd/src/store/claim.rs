//! Claiming a name on etcd, and everything only the claim's holder may do.
//!
//! A claim is the key `jobs/NAME/claim`, created only if absent and
//! attached to the holder's own lease, which a [`LeaseKeeper`] renews
//! unconditionally: if the holder (or its host) dies, the lease expires and
//! the key goes with it. Every write the holder makes is a transaction that
//! first compares the claim key still holds *its* value (a unique token),
//! so a holder that lost its claim can never write over its successor.
//!
//! A claim starts as a short holder's (lease [`policy::HOLDER_TTL`]). When
//! its holder writes the record of a new run, it becomes that run's
//! wrapper: one transaction moves the key to a lease whose TTL follows the
//! run's settings ([`policy::lease_ttl`]) and names the run, and writes
//! the record. From then on the key existing *is* the wrapper being alive.
//!
//! A wrapper's claim runs two threads: a monitor, which watches the name's
//! keys from that revision on (kill requests and other hosts' beats; a
//! request made while the watch reconnects is still delivered) and fences
//! the wrapper when the keepalive has failed for too long
//! ([`policy::hold_verdict`]); and a publisher, which writes the progress
//! mark (with the output's tail) at most once per heartbeat interval. The
//! wrapper's event loop never waits on the network: [`Claim::hold`],
//! [`Claim::kill_request`], [`Claim::beat`] and [`Claim::last_beat`] only
//! touch memory, and [`Claim::wake_fd`] wakes it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};

use jobwatch_core::logs::LocalLogs;
use jobwatch_core::model::{EventKind, JobEvent, JobName, JobRecord, KillRequest, unix_ms};
use jobwatch_core::store::{
    Claim, ClaimError, Commit, Hold, Invalid, RunAt, Snapshot, Store, StoreError,
};
use jobwatch_core::sys::proc;

use super::keys::{self, Part};
use super::local::runs_here;
use super::policy::{self, CommitVerdict, Conflict};
use super::values::{BeatValue, ClaimValue, Role, StatusValue, parse};
use super::{EtcdStore, etcd_err};
use crate::kv::{Compare, CreateOutcome, Op, OpResult};
use crate::{EtcdClient, LeaseKeeper, WatchEvent, WatchMessage, WatchScope};

/// A held claim on a name of an [`EtcdStore`].
pub struct EtcdClaim<'s> {
    store: &'s EtcdStore,
    name: JobName,
    claim_key: Vec<u8>,
    token: String,
    /// The claim key's value as we last wrote it: every write compares it.
    value: Vec<u8>,
    keeper: Arc<LeaseKeeper>,
    /// The record we last wrote, as stored (commit checks it is final).
    written: Option<(Vec<u8>, JobRecord)>,
    wrapper: Option<Wrapper>,
}

/// What a wrapper's claim runs beside its event loop.
struct Wrapper {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// State shared by a wrapper's claim and its two threads.
struct Shared {
    /// Readable when `hold` or `kill` may have changed.
    wake: OwnedFd,
    /// Readable when the threads must stop.
    stop_fd: OwnedFd,
    stopping: AtomicBool,
    state: Mutex<WrapperState>,
    /// Wakes the publisher.
    publish: Condvar,
}

#[derive(Default)]
struct WrapperState {
    kill: Option<KillRequest>,
    losing: Option<Hold>,
    own_mark: Option<SystemTime>,
    /// Beats written by others (another host's `jobwatch beat`), dated
    /// when the monitor saw them, on this host's clock.
    explicit: Option<SystemTime>,
    pending: Option<SystemTime>,
    published: Option<SystemTime>,
    /// Set once the run is committed: nothing more to publish.
    done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WrapperState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

fn new_eventfd() -> Result<OwnedFd, StoreError> {
    eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|e| StoreError::Io {
        context: "cannot create an eventfd".to_owned(),
        source: e.into(),
    })
}

fn claim_lost(name: &JobName, url: &str) -> StoreError {
    StoreError::Io {
        context: format!("job {name} in {url}"),
        source: std::io::Error::other(
            "this process no longer holds the name's claim (its etcd lease expired, or it was cut off from the cluster for too long)",
        ),
    }
}

impl<'s> EtcdClaim<'s> {
    /// Takes the name, waiting until `patience` for a short holder; a live
    /// wrapper's name is refused at once.
    pub(crate) fn acquire(
        store: &'s EtcdStore,
        name: &JobName,
        patience: Option<Instant>,
    ) -> Result<Self, ClaimError> {
        let client = &store.client;
        let claim_key = keys::job(name, Part::Claim);
        let token = proc::random_id();
        let value = ClaimValue {
            token: token.clone(),
            role: Role::Holder,
            host: proc::hostname().to_owned(),
            pid: std::process::id() as i32,
            self_fence: false,
        }
        .to_bytes();
        let context = || format!("cannot claim job {name} in {}", store.url);
        let lease = client
            .lease_grant(policy::HOLDER_TTL)
            .map_err(|e| etcd_err(context(), e))?;
        let keeper = client.keep_alive(lease, policy::HOLDER_TTL);
        let give_up = |keeper: LeaseKeeper, e: ClaimError| {
            let _ = keeper.revoke();
            Err(e)
        };
        let mut ended_dead_lease = false;
        loop {
            let existing = match client.create(&claim_key, &value, Some(lease)) {
                Ok(CreateOutcome::Created { .. }) => break,
                Ok(CreateOutcome::Exists(kv)) => kv,
                Err(e) => return give_up(keeper, etcd_err(context(), e).into()),
            };
            let (keys, revision) = match store.read_job(name) {
                Ok(read) => read,
                Err(e) => return give_up(keeper, e.into()),
            };
            let record = keys.record().ok().flatten();
            let holder = parse::<ClaimValue>(&existing.key, &existing.value).ok();
            // A wrapper of this host that is gone (SIGKILLed) holds the name
            // until its lease runs out: end the lease now, and look again.
            if let (Some(h), Some(r)) = (&holder, &record)
                && h.wrapper_of() == Some(r.job_id.as_str())
                && existing.lease != 0
                && !ended_dead_lease
                && super::wrapper_died_here(r)
            {
                ended_dead_lease = true;
                let _ = client.lease_revoke(existing.lease);
                continue;
            }
            match policy::conflict(holder.as_ref(), record.as_ref(), keys.status.is_some()) {
                Conflict::AlreadyRunning { pid } => {
                    return give_up(
                        keeper,
                        ClaimError::AlreadyRunning {
                            name: name.clone(),
                            pid,
                        },
                    );
                }
                Conflict::Held => {}
            }
            let Some(until) = patience.filter(|p| Instant::now() < *p) else {
                return give_up(keeper, ClaimError::Held { name: name.clone() });
            };
            // Woken by the key's deletion (a short holder's revoke), or
            // looks again after a while.
            let left = until.saturating_duration_since(Instant::now());
            if let Ok(watch) = client.watch(&claim_key, WatchScope::Key, revision + 1) {
                watch.recv_timeout(left.min(super::CLAIM_RETRY * 8));
            } else {
                std::thread::sleep(left.min(super::CLAIM_RETRY));
            }
        }
        Ok(Self {
            store,
            name: name.clone(),
            claim_key,
            token,
            value,
            keeper: Arc::new(keeper),
            written: None,
            wrapper: None,
        })
    }

    fn client(&self) -> &EtcdClient {
        &self.store.client
    }

    /// Writes the record, and `also` in the same fenced transaction (a
    /// run's `started` event). A new run's first record makes this claim
    /// its wrapper instead ([`Self::become_wrapper`]; `also` follows it).
    fn write_record_with(&mut self, record: &JobRecord, also: Vec<Op>) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        let is_new_run = record.outcome.is_none()
            && self.wrapper.is_none()
            && self
                .written
                .as_ref()
                .is_none_or(|(_, r)| r.job_id != record.job_id)
            && self
                .store
                .current_job_id(&self.name)
                .is_none_or(|id| id != record.job_id);
        if is_new_run {
            self.become_wrapper(record, bytes)?;
            if !also.is_empty() && !self.fenced(vec![], also, "write the started event")? {
                return Err(self.lost());
            }
            return Ok(());
        }
        let key = keys::job(&self.name, Part::Record);
        let mut then = vec![Op::put(key, bytes.clone())];
        then.extend(also);
        if !self.fenced(vec![], then, "write the record")? {
            return Err(self.lost());
        }
        self.written = Some((bytes, record.clone()));
        Ok(())
    }

    /// Runs a transaction fenced by our claim: `then` only if the claim key
    /// still holds our value. `Ok(false)`: the claim is no longer ours.
    fn fenced(&self, extra: Vec<Compare>, then: Vec<Op>, what: &str) -> Result<bool, StoreError> {
        let mut compares = vec![Compare::Value(self.claim_key.clone(), self.value.clone())];
        compares.extend(extra);
        let outcome = self.client().txn(&compares, &then, &[]).map_err(|e| {
            etcd_err(
                format!("cannot {what} of job {} in {}", self.name, self.store.url),
                e,
            )
        })?;
        Ok(outcome.succeeded)
    }

    fn lost(&self) -> StoreError {
        claim_lost(&self.name, &self.store.url)
    }

    /// Makes this claim the live wrapper of `record`'s run and writes the
    /// record, in one transaction (see the module docs); then starts the
    /// monitor and the publisher.
    fn become_wrapper(&mut self, record: &JobRecord, bytes: Vec<u8>) -> Result<(), StoreError> {
        let context = || format!("cannot start job {} in {}", self.name, self.store.url);
        let ttl = policy::lease_ttl(&record.settings);
        let client = self.client().clone();
        let lease = client
            .lease_grant(ttl)
            .map_err(|e| etcd_err(context(), e))?;
        let self_fence = self.store.options.self_fence;
        let value = ClaimValue {
            token: self.token.clone(),
            role: Role::Wrapper {
                job_id: record.job_id.clone(),
            },
            host: proc::hostname().to_owned(),
            pid: std::process::id() as i32,
            self_fence,
        }
        .to_bytes();
        let record_key = keys::job(&self.name, Part::Record);
        let outcome = client
            .txn(
                &[Compare::Value(self.claim_key.clone(), self.value.clone())],
                &[
                    Op::Put {
                        key: self.claim_key.clone(),
                        value: value.clone(),
                        lease: Some(lease),
                    },
                    Op::put(record_key, bytes.clone()),
                ],
                &[Op::Get(self.claim_key.clone())],
            )
            .map_err(|e| etcd_err(context(), e));
        let revision = match outcome {
            Ok(o) if o.succeeded => o.revision,
            // A lost reply of our own success: the key holds our new value.
            Ok(o) if first_value(&o.results).as_deref() == Some(value.as_slice()) => o.revision,
            other => {
                let _ = client.lease_revoke(lease);
                return Err(other.err().unwrap_or_else(|| self.lost()));
            }
        };
        let keeper = Arc::new(client.keep_alive(lease, ttl));
        let old = std::mem::replace(&mut self.keeper, keeper);
        // The key now hangs on the new lease: revoking the old one deletes
        // nothing of ours.
        let _ = client.lease_revoke(old.id());
        drop(old);
        self.value = value;
        self.written = Some((bytes, record.clone()));
        if let Err(e) = self.file_leftover_logs() {
            jobwatch_core::sys::stdio::notice(format_args!(
                "{}: an earlier run's log here could not be put into history: {e}",
                self.name
            ));
        }
        self.wrapper = Some(self.start_threads(record, ttl, self_fence, revision)?);
        Ok(())
    }

    /// A log left here by an earlier run of this host that another host
    /// archived (it could not move the file) is filed under that run's
    /// label now, before the new run's log is created.
    fn file_leftover_logs(&self) -> std::io::Result<()> {
        let files = &self.store.files;
        if !files.has_current(&self.name) {
            return Ok(());
        }
        let mut labels: Vec<String> = self
            .client()
            .get_prefix(&keys::history_prefix(&self.name), 0)
            .map(|range| {
                range
                    .kvs
                    .iter()
                    .filter_map(|kv| {
                        let (_, label, part) = keys::parse_history_key(&kv.key)?;
                        let record: JobRecord = parse(&kv.key, &kv.value).ok()?;
                        (part == Part::Record && runs_here(&record)).then_some(label)
                    })
                    .collect()
            })
            .unwrap_or_default();
        labels.sort();
        let label = labels
            .into_iter()
            .rev()
            .find(|l| !files.history(&self.name, l).exists())
            .unwrap_or_else(|| format!("orphan-{}", unix_ms(SystemTime::now())));
        files.archive(&self.name, &label)
    }

    fn start_threads(
        &self,
        record: &JobRecord,
        ttl: Duration,
        self_fence: bool,
        revision: i64,
    ) -> Result<Wrapper, StoreError> {
        let client = self.client().clone();
        let watch = client
            .watch(
                &keys::job_prefix(&self.name),
                WatchScope::Prefix,
                revision + 1,
            )
            .map_err(|e| {
                etcd_err(
                    format!("cannot watch job {} in {}", self.name, self.store.url),
                    e,
                )
            })?;
        let shared = Arc::new(Shared {
            wake: new_eventfd()?,
            stop_fd: new_eventfd()?,
            stopping: AtomicBool::new(false),
            state: Mutex::new(WrapperState {
                own_mark: Some(SystemTime::now()),
                ..WrapperState::default()
            }),
            publish: Condvar::new(),
        });
        let monitor = Monitor {
            client: client.clone(),
            name: self.name.clone(),
            token: self.token.clone(),
            claim_value: self.value.clone(),
            keeper: Arc::clone(&self.keeper),
            ttl,
            self_fence,
            shared: Arc::clone(&shared),
        };
        let publisher = Publisher {
            client,
            name: self.name.clone(),
            token: self.token.clone(),
            claim_key: self.claim_key.clone(),
            claim_value: self.value.clone(),
            logs: self.store.logs.clone(),
            log: self.store.files.log(&self.name).display().to_string(),
            min_interval: record.settings.heartbeat().max(MIN_PUBLISH_INTERVAL),
            shared: Arc::clone(&shared),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
                .map_err(|source| StoreError::Io {
                    context: "cannot start a thread".to_owned(),
                    source,
                })
        };
        let threads = vec![
            spawn("jobwatch-fence", Box::new(move || monitor.run(watch)))?,
            spawn("jobwatch-beat", Box::new(move || publisher.run()))?,
        ];
        Ok(Wrapper { shared, threads })
    }

    /// One attempt at archiving: `Ok(false)` when the keys changed
    /// between the read and the transaction while the claim still holds.
    fn try_archive(&mut self, label: &str) -> Result<bool, StoreError> {
        let (keys, _) = self.store.read_job(&self.name)?;
        if !keys.any_state() {
            return Ok(true);
        }
        let taken = self.store.archived(&self.name);
        let label = policy::unique_label(label, &taken);
        let mut compares = vec![Compare::Absent(keys::history(
            &self.name,
            &label,
            Part::Record,
        ))];
        let mut then = Vec::new();
        if let Some(kv) = &keys.beat {
            then.push(Op::put(
                keys::history(&self.name, &label, Part::Beat),
                kv.value.clone(),
            ));
        }
        for (kv, part) in [(&keys.record, Part::Record), (&keys.status, Part::Status)] {
            if let Some(kv) = kv {
                compares.push(Compare::ModRevision(kv.key.clone(), kv.mod_revision));
                then.push(Op::put(
                    keys::history(&self.name, &label, part),
                    kv.value.clone(),
                ));
            }
        }
        let tail = EtcdStore::published_tail(&keys);
        if !tail.is_empty() {
            then.push(Op::put(
                keys::history(&self.name, &label, Part::Tail),
                serde_json::to_vec(&tail).expect("a tail serializes"),
            ));
        }
        for part in [
            Part::Beat,
            Part::Kill,
            Part::Tail,
            Part::Record,
            Part::Status,
        ] {
            then.push(Op::Delete(keys::job(&self.name, part)));
        }
        if !self.fenced(compares, then, "archive the run")? {
            let claim = self
                .store
                .client
                .get(&self.claim_key)
                .ok()
                .and_then(|g| g.kv);
            if claim.map(|kv| kv.value).as_deref() != Some(self.value.as_slice()) {
                return Err(self.lost());
            }
            return Ok(false);
        }
        if let Ok(Some(record)) = keys.record()
            && runs_here(&record)
        {
            self.store
                .files
                .archive(&self.name, &label)
                .map_err(|source| StoreError::Io {
                    context: format!(
                        "cannot move the logs of job {} into {}",
                        self.name,
                        self.store.files.history(&self.name, &label).display()
                    ),
                    source,
                })?;
        }
        Ok(true)
    }

    /// The local tail of a run here, else the one its last beat published.
    fn final_tail(&self, record: &JobRecord) -> Vec<String> {
        if runs_here(record) {
            let tail = self
                .store
                .logs
                .tail(&self.name, &RunAt::Current, policy::TAIL_LINES);
            if !tail.is_empty() {
                return policy::bounded_tail(tail);
            }
        }
        self.store
            .read_job(&self.name)
            .map(|(k, _)| EtcdStore::published_tail(&k))
            .unwrap_or_default()
    }
}

fn first_value(results: &[OpResult]) -> Option<Vec<u8>> {
    results.iter().find_map(|r| match r {
        OpResult::Get(kvs) => kvs.first().map(|kv| kv.value.clone()),
        _ => None,
    })
}

/// The shortest interval between two published beats, whatever the
/// heartbeat (a run with a 100 ms heartbeat must not cost 10 writes a
/// second).
const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

impl Claim for EtcdClaim<'_> {
    fn name(&self) -> &JobName {
        &self.name
    }

    fn snapshot(&self) -> Snapshot {
        self.store.snapshot(&self.name)
    }

    fn write_record(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        self.write_record_with(record, Vec::new())
    }

    fn mark_spawned(&mut self, record: &JobRecord) -> Result<(), StoreError> {
        // A retry's spawn is the same run: one `started` per run, in the
        // transaction that makes the spawn known (rule 8: never without it).
        let started = (record.attempt <= 1).then(|| {
            Op::put(
                keys::event(&record.job_id, EventKind::Started),
                event_bytes(&JobEvent::started(record)),
            )
        });
        self.write_record_with(record, started.into_iter().collect())
    }

    fn reset_beat(&mut self) -> Result<(), StoreError> {
        let now = self.store.now();
        let beat = BeatValue {
            token: Some(self.token.clone()),
            at_ms: unix_ms(now),
            tail: Vec::new(),
            log: Some(self.store.files.log(&self.name).display().to_string()),
        };
        let key = keys::job(&self.name, Part::Beat);
        let bytes = serde_json::to_vec(&beat).expect("a beat serializes");
        if !self.fenced(vec![], vec![Op::put(key, bytes)], "write the progress mark")? {
            return Err(self.lost());
        }
        if self.written.as_ref().is_some_and(|(_, r)| runs_here(r)) {
            let files = &self.store.files;
            files
                .reset_heartbeat(&self.name)
                .map_err(|source| StoreError::Io {
                    context: format!("cannot create {}", files.heartbeat(&self.name).display()),
                    source,
                })?;
        }
        if let Some(w) = &self.wrapper {
            // The fresh heartbeat file is this mark, not progress to publish.
            let mark = Some(now).max(self.store.files.heartbeat_mtime(&self.name));
            let mut st = w.shared.lock();
            st.own_mark = mark;
            st.published = mark;
        }
        Ok(())
    }

    fn beat(&self, at: SystemTime) -> Result<(), StoreError> {
        let Some(w) = &self.wrapper else {
            return Ok(());
        };
        let mut st = w.shared.lock();
        if st.own_mark.is_some_and(|m| m >= at) {
            return Ok(());
        }
        st.own_mark = Some(at);
        st.pending = st.pending.max(Some(at));
        w.shared.publish.notify_one();
        Ok(())
    }

    fn last_beat(&self) -> Option<SystemTime> {
        let Some(w) = &self.wrapper else {
            return self.store.snapshot(&self.name).last_beat;
        };
        let touched = self.store.files.heartbeat_mtime(&self.name);
        let mut st = w.shared.lock();
        // A beat by the job itself (`touch $JOBWATCH_HEARTBEAT`, or
        // `jobwatch beat` here) is published like the wrapper's own.
        if let Some(t) = touched
            && st.own_mark.is_none_or(|m| t > m)
        {
            st.own_mark = Some(t);
            st.pending = st.pending.max(Some(t));
            w.shared.publish.notify_one();
        }
        st.own_mark.max(st.explicit)
    }

    fn kill_request(&self) -> Option<KillRequest> {
        if let Some(w) = &self.wrapper {
            return w.shared.lock().kill.clone();
        }
        self.store.kill_request(&self.name).ok().flatten()
    }

    fn finished(&self) -> bool {
        matches!(
            self.client().get(&keys::job(&self.name, Part::Status)),
            Ok(got) if got.kv.is_some()
        )
    }

    fn commit(&mut self, final_record: &JobRecord) -> Result<Commit, StoreError> {
        let Some(outcome) = final_record.outcome else {
            return Err(Invalid(format!(
                "{}: a record without an outcome cannot be committed",
                self.name
            ))
            .into());
        };
        let written = match &self.written {
            Some((bytes, record)) if record == final_record => bytes.clone(),
            _ => {
                return Err(Invalid(format!(
                    "{}: commit before the final record was written",
                    self.name
                ))
                .into());
            }
        };
        let status = StatusValue {
            word: outcome.status_word().as_str().to_owned(),
            outcome,
            job_id: final_record.job_id.clone(),
            token: self.token.clone(),
        };
        let tail = self.final_tail(final_record);
        let status_key = keys::job(&self.name, Part::Status);
        let compares = [
            Compare::Value(self.claim_key.clone(), self.value.clone()),
            Compare::Absent(status_key.clone()),
            Compare::Value(keys::job(&self.name, Part::Record), written),
        ];
        let then = [
            Op::put(
                status_key.clone(),
                serde_json::to_vec(&status).expect("a status serializes"),
            ),
            Op::put(
                keys::job(&self.name, Part::Tail),
                serde_json::to_vec(&tail).expect("a tail serializes"),
            ),
            // The `ended` event is created with the status: no status
            // without its event, and never a second one.
            Op::put(
                keys::event(&final_record.job_id, EventKind::Ended),
                event_bytes(&JobEvent::ended_with(final_record, outcome)),
            ),
        ];
        let otherwise = [Op::Get(status_key), Op::Get(self.claim_key.clone())];
        let outcome_txn = self
            .client()
            .txn(&compares, &then, &otherwise)
            .map_err(|e| {
                etcd_err(
                    format!(
                        "cannot commit the outcome of job {} in {}",
                        self.name, self.store.url
                    ),
                    e,
                )
            })?;
        let (stored, claim) = read_commit_otherwise(&outcome_txn.results);
        let verdict = policy::commit_verdict(
            outcome_txn.succeeded,
            stored.as_ref(),
            &self.token,
            claim.as_deref() == Some(self.value.as_slice()),
        );
        if let Some(w) = &self.wrapper {
            w.shared.lock().done = true;
        }
        match verdict {
            CommitVerdict::Committed => Ok(Commit::Committed),
            CommitVerdict::AlreadyFinished => Ok(Commit::AlreadyFinished),
            CommitVerdict::ClaimLost => Err(self.lost()),
            CommitVerdict::RecordNotFinal => Err(Invalid(format!(
                "{}: commit before the final record was written",
                self.name
            ))
            .into()),
        }
    }

    fn archive_current(&mut self, label: &str) -> Result<(), StoreError> {
        // Only the claim's holder changes what is compared, so a second
        // failure means the claim is gone; a third is not tried.
        for _ in 0..2 {
            if self.try_archive(label)? {
                return Ok(());
            }
        }
        Err(self.lost())
    }

    fn remove_current(&mut self) -> Result<(), StoreError> {
        let (keys, _) = self.store.read_job(&self.name)?;
        let then = [
            Part::Beat,
            Part::Kill,
            Part::Tail,
            Part::Record,
            Part::Status,
        ]
        .into_iter()
        .map(|p| Op::Delete(keys::job(&self.name, p)))
        .collect();
        if !self.fenced(vec![], then, "remove the run")? {
            return Err(self.lost());
        }
        if let Ok(Some(record)) = keys.record()
            && runs_here(&record)
        {
            let _ = self.store.files.remove_current(&self.name);
        }
        Ok(())
    }

    fn remove_kill_request(&mut self) -> Result<(), StoreError> {
        let key = keys::job(&self.name, Part::Kill);
        if !self.fenced(vec![], vec![Op::Delete(key)], "remove the kill request")? {
            return Err(self.lost());
        }
        Ok(())
    }

    fn hold(&self) -> Hold {
        let Some(w) = &self.wrapper else {
            return Hold::Held;
        };
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&w.shared.wake, &mut buf);
        w.shared.lock().losing.clone().unwrap_or(Hold::Held)
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wrapper.as_ref().map(|w| w.shared.wake.as_fd())
    }
}

/// An event as the journal stores it: its line, without the newline.
pub(crate) fn event_bytes(event: &JobEvent) -> Vec<u8> {
    let mut line = event.to_line();
    line.pop();
    line
}

/// The status and claim read by a commit's `otherwise` branch.
fn read_commit_otherwise(results: &[OpResult]) -> (Option<StatusValue>, Option<Vec<u8>>) {
    let mut gets = results.iter().filter_map(|r| match r {
        OpResult::Get(kvs) => Some(kvs.first()),
        _ => None,
    });
    let status = gets
        .next()
        .flatten()
        .and_then(|kv| parse::<StatusValue>(&kv.key, &kv.value).ok());
    let claim = gets.next().flatten().map(|kv| kv.value.clone());
    (status, claim)
}

impl Drop for EtcdClaim<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.wrapper.take() {
            w.shared.stopping.store(true, Ordering::SeqCst);
            let _ = rustix::io::write(&w.shared.stop_fd, &1u64.to_ne_bytes());
            w.shared.publish.notify_all();
            for t in w.threads {
                let _ = t.join();
            }
        }
        // Deletes the claim key (whatever lease it hangs on is ours); a
        // holder that cannot reach the cluster leaves it to expire.
        let _ = self.client().lease_revoke(self.keeper.id());
    }
}

/// The monitor of a wrapper's claim (see the module docs).
struct Monitor {
    client: EtcdClient,
    name: JobName,
    token: String,
    claim_value: Vec<u8>,
    keeper: Arc<LeaseKeeper>,
    ttl: Duration,
    self_fence: bool,
    shared: Arc<Shared>,
}

/// How long the monitor sleeps at most: kill requests arrive by the watch,
/// so this only bounds a fallback re-read after the watch failed.
const MONITOR_TICK: Duration = Duration::from_secs(1);

impl Monitor {
    fn run(self, watch: crate::Watch) {
        let mut watch_failed = false;
        loop {
            if self.shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            let until_fence = self.check_fence();
            let timeout = until_fence.min(MONITOR_TICK).max(Duration::from_millis(5));
            let ts = rustix::event::Timespec {
                tv_sec: timeout.as_secs() as i64,
                tv_nsec: timeout.subsec_nanos() as _,
            };
            let mut fds = [
                PollFd::new(&watch, PollFlags::IN),
                PollFd::new(&self.shared.stop_fd, PollFlags::IN),
            ];
            let _ = poll(&mut fds, Some(&ts));
            while let Some(message) = watch.try_recv() {
                match message {
                    WatchMessage::Events(events) => events.iter().for_each(|e| self.on_event(e)),
                    WatchMessage::ReReadNeeded { .. } => self.reread_kill(),
                    WatchMessage::Failed(_) => watch_failed = true,
                }
            }
            if watch_failed {
                self.reread_kill();
            }
        }
    }

    /// Fences the wrapper once the keepalive has failed for too long;
    /// returns how long until the next look is due.
    fn check_fence(&self) -> Duration {
        if !self.self_fence || self.shared.lock().losing.is_some() {
            return MONITOR_TICK;
        }
        let since = self.keeper.since_last_keepalive();
        match policy::hold_verdict(since, self.keeper.is_expired(), self.ttl) {
            Hold::Held => policy::fence_after(self.ttl).saturating_sub(since),
            losing => {
                self.shared.lock().losing = Some(losing);
                self.shared.wake();
                MONITOR_TICK
            }
        }
    }

    fn on_event(&self, event: &WatchEvent) {
        let Some((_, part)) = keys::parse_job_key(event.key()) else {
            return;
        };
        match (part, event) {
            (Part::Kill, WatchEvent::Put(kv)) => {
                if let Ok(req) = parse::<KillRequest>(&kv.key, &kv.value) {
                    self.shared.lock().kill = Some(req);
                    self.shared.wake();
                }
            }
            (Part::Kill, WatchEvent::Delete { .. }) => self.shared.lock().kill = None,
            (Part::Beat, WatchEvent::Put(kv)) => {
                let theirs = parse::<BeatValue>(&kv.key, &kv.value)
                    .map_or(true, |b| b.token.as_deref() != Some(self.token.as_str()));
                if theirs {
                    self.shared.lock().explicit = Some(SystemTime::now());
                }
            }
            // Our claim key deleted or replaced: the cluster no longer
            // knows us as this run's wrapper. Stop at once.
            (Part::Claim, WatchEvent::Delete { .. }) => self.lose_claim(),
            (Part::Claim, WatchEvent::Put(kv)) if kv.value != self.claim_value => self.lose_claim(),
            _ => {}
        }
    }

    fn lose_claim(&self) {
        if !self.self_fence || self.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut st = self.shared.lock();
        if st.losing.is_none() {
            st.losing = Some(Hold::Losing {
                reason: "its claim on the name is gone from the etcd cluster (its lease expired)"
                    .to_owned(),
                within: Duration::ZERO,
            });
            drop(st);
            self.shared.wake();
        }
    }

    fn reread_kill(&self) {
        let Ok(got) = self.client.get(&keys::job(&self.name, Part::Kill)) else {
            return;
        };
        let kill = got
            .kv
            .and_then(|kv| parse::<KillRequest>(&kv.key, &kv.value).ok());
        let changed = {
            let mut st = self.shared.lock();
            let changed = st.kill != kill;
            st.kill = kill;
            changed
        };
        if changed {
            self.shared.wake();
        }
    }
}

/// The publisher of a wrapper's beats (see the module docs).
struct Publisher {
    client: EtcdClient,
    name: JobName,
    token: String,
    claim_key: Vec<u8>,
    claim_value: Vec<u8>,
    logs: LocalLogs,
    log: String,
    min_interval: Duration,
    shared: Arc<Shared>,
}

impl Publisher {
    fn run(self) {
        let mut last: Option<Instant> = None;
        loop {
            let at = {
                let mut st = self.shared.lock();
                loop {
                    if self.shared.stopping.load(Ordering::SeqCst) || st.done {
                        return;
                    }
                    let wait = match (st.pending, last) {
                        (None, _) => None,
                        (Some(_), None) => Some(Duration::ZERO),
                        (Some(_), Some(t)) => Some(self.min_interval.saturating_sub(t.elapsed())),
                    };
                    match wait {
                        Some(w) if w.is_zero() => break,
                        Some(w) => {
                            st = self
                                .shared
                                .publish
                                .wait_timeout(st, w)
                                .unwrap_or_else(|p| p.into_inner())
                                .0
                        }
                        None => {
                            st = self
                                .shared
                                .publish
                                .wait(st)
                                .unwrap_or_else(|p| p.into_inner())
                        }
                    }
                }
                let at = st.pending.take().expect("pending");
                if st.published.is_some_and(|p| p >= at) {
                    continue;
                }
                at
            };
            last = Some(Instant::now());
            let tail = policy::bounded_tail(self.logs.tail(
                &self.name,
                &RunAt::Current,
                policy::TAIL_LINES,
            ));
            let beat = BeatValue {
                token: Some(self.token.clone()),
                at_ms: unix_ms(at),
                tail,
                log: Some(self.log.clone()),
            };
            let bytes = serde_json::to_vec(&beat).expect("a beat serializes");
            let written = self.client.txn(
                &[Compare::Value(
                    self.claim_key.clone(),
                    self.claim_value.clone(),
                )],
                &[Op::put(keys::job(&self.name, Part::Beat), bytes)],
                &[],
            );
            if matches!(written, Ok(o) if o.succeeded) {
                let mut st = self.shared.lock();
                st.published = st.published.max(Some(at));
            }
        }
    }
}

/// `jobwatch beat NAME` for a run on another host: moves its progress mark
/// (compare-and-swap, so the wrapper's tail is kept), which every observer
/// and the wrapper itself see change.
pub(crate) fn explicit_remote_beat(
    client: &EtcdClient,
    name: &JobName,
    at: SystemTime,
) -> Result<(), StoreError> {
    let key = keys::job(name, Part::Beat);
    let context = || format!("cannot beat job {name}");
    for _ in 0..10 {
        let got = client.get(&key).map_err(|e| etcd_err(context(), e))?;
        let Some(kv) = got.kv else {
            return Err(StoreError::Io {
                context: context(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "it is not running"),
            });
        };
        let old: BeatValue = parse(&kv.key, &kv.value).unwrap_or_default();
        let new = BeatValue {
            token: None,
            at_ms: unix_ms(at),
            ..old
        };
        let bytes = serde_json::to_vec(&new).expect("a beat serializes");
        match client.compare_and_swap(&key, kv.mod_revision, &bytes, None) {
            Ok(o) if o.swapped() => return Ok(()),
            Ok(_) => continue,
            Err(e) => return Err(etcd_err(context(), e)),
        }
    }
    Err(StoreError::Busy {
        what: format!("the progress mark of job {name}"),
        waited: Duration::from_secs(0),
    })
}
