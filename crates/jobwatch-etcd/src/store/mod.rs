//! [`EtcdStore`]: jobwatch's store seam ([`jobwatch_core::store::Store`])
//! on an etcd cluster, so that jobs on many hosts are started, waited for,
//! killed and counted from any of them with the guarantees jobwatch gives
//! on one (docs/multi-host.md is the user's description).
//!
//! How each rule of the seam is kept:
//! 1. **Create-once outcome**: the status is created by one transaction
//!    that requires it absent, our claim still ours, and the record the
//!    final record we wrote ([`claim`]).
//! 2. **Atomic record**: a key's value is replaced atomically.
//! 3. **Record before status**: the final record is written before the
//!    status, and a snapshot reads all of a name's keys at one revision.
//! 4. **Holder alive**: a wrapper holds the name with a key attached to its
//!    lease, which it keeps alive unconditionally; the key is gone when the
//!    lease expires, however the wrapper or its host died. A wrapper that
//!    cannot renew its lease fences itself ([`jobwatch_core::store::Hold`]).
//! 5. **Snapshots never block on hostile data**: values are parsed, never
//!    trusted; every call is bounded by the access layer.
//! 6. **Watches never lose a change**: etcd watches resume from the last
//!    revision they delivered, and a compaction makes the waiter re-read.
//!
//! Output is not state: logs stay on the job's host ([`local`]); the
//! wrapper publishes a bounded tail with its beats and its final status.

pub mod claim;
pub mod docs;
pub mod events;
pub mod gc;
pub mod keys;
pub mod local;
pub mod policy;
pub mod values;
pub mod watch;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use jobwatch_core::logs::LocalLogs;
use jobwatch_core::model::{JobName, JobRecord, KillRequest};
use jobwatch_core::spec::{EtcdSpec, Secret, StoreSpec};
use jobwatch_core::store::{
    Archived, Claim, ClaimError, ClaimWait, DocStore, EventLog, GcStore, Holder, RunAt, Snapshot,
    Store, StoreError, Watch, WatchFor,
};

use crate::{EtcdClient, EtcdConfig};
use keys::Part;
use local::{LocalFiles, runs_here};
use policy::{BeatClock, JobKeys};
use values::{BeatValue, parse};

/// The variable that selects a store for every jobwatch command (and that
/// a job's own `jobwatch beat` finds its store by).
pub const STORE_ENV: &str = "JOBWATCH_STORE";

/// How an etcd store behaves beyond where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A wrapper that loses touch with the cluster kills its job before its
    /// lease can expire (default). Off: the job runs on, and may still be
    /// running when another host reports it `lost` (availability over
    /// safety).
    pub self_fence: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { self_fence: true }
    }
}

/// Job state on an etcd cluster, output on this host. See the module docs.
pub struct EtcdStore {
    client: EtcdClient,
    url: String,
    jobs_dir: PathBuf,
    files: LocalFiles,
    logs: LocalLogs,
    docs: docs::EtcdDocs,
    beats: Mutex<BeatClock>,
    options: StoreOptions,
    /// How a detached wrapper opens this same store (its handover).
    spec: EtcdSpec,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("url", &self.url)
            .field("jobs_dir", &self.jobs_dir)
            .finish_non_exhaustive()
    }
}

/// Opening an etcd store failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The cluster could not be reached, or refused us (one line naming the
    /// endpoints).
    #[error(transparent)]
    Etcd(#[from] crate::Error),
    /// The URL or the TLS and credential settings are not usable.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The local folder for this namespace's logs cannot be made.
    #[error("cannot use {}: {source}", path.display())]
    Local {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl EtcdStore {
    /// Connects to the cluster of `url` (`etcd://…` or `etcds://…`, TLS
    /// files and credentials from `config`), keeping this host's logs under
    /// `jobs_dir/etcd/NAMESPACE/`. Fails within the connect bound, with one
    /// line naming the endpoints, when no member answers.
    pub fn open(
        config: EtcdConfig,
        jobs_dir: &Path,
        options: StoreOptions,
    ) -> Result<Self, OpenError> {
        let url = store_url(&config);
        let root = jobs_dir.join("etcd").join(&config.namespace);
        let spec = spec_of(&config, jobs_dir, options);
        let client = EtcdClient::connect(config)?;
        let files = LocalFiles::open(&root).map_err(|source| OpenError::Local {
            path: root.clone(),
            source,
        })?;
        Ok(Self {
            docs: docs::EtcdDocs::new(client.clone()),
            client,
            url,
            jobs_dir: jobs_dir.to_owned(),
            logs: LocalLogs::new(&root),
            files,
            beats: Mutex::new(BeatClock::default()),
            options,
            spec,
        })
    }

    /// Opens the store a handover names ([`EtcdSpec`]: the URL, the TLS
    /// files, the user and password, self-fencing), as [`EtcdStore::open`]
    /// does. Nothing is read from this process's environment: a wrapper
    /// opens exactly the store its starter resolved.
    pub fn open_spec(spec: &EtcdSpec) -> Result<Self, OpenError> {
        let mut config = EtcdConfig::parse(&spec.url)?;
        config.tls_files.ca = spec.ca.clone();
        config.tls_files.cert = spec.cert.clone();
        config.tls_files.key = spec.key.clone();
        config.credentials = match (&spec.user, &spec.password) {
            (Some(user), Some(password)) => Some(crate::Credentials {
                user: user.clone(),
                password: password.expose().to_owned(),
            }),
            (None, None) => None,
            _ => return Err(crate::ConfigError::UserWithoutPassword.into()),
        };
        config.validate()?;
        let options = StoreOptions {
            self_fence: spec.self_fence,
        };
        Self::open(config, &spec.dir, options)
    }

    /// The store URL (without credentials), as `--store` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The access layer's client.
    pub fn client(&self) -> &EtcdClient {
        &self.client
    }

    /// This host's files of the namespace.
    pub fn files(&self) -> &LocalFiles {
        &self.files
    }

    /// Reads all of a name's keys at one revision.
    fn read_job(&self, name: &JobName) -> Result<(JobKeys, i64), StoreError> {
        let range = self
            .client
            .get_prefix(&keys::job_prefix(name), 0)
            .map_err(|e| etcd_err(format!("cannot read job {name} from {}", self.url), e))?;
        Ok((JobKeys::from_kvs(range.kvs), range.revision))
    }

    /// A snapshot from keys read at one revision.
    fn snapshot_of(&self, name: &JobName, keys: &JobKeys) -> Snapshot {
        let now = self.now();
        let local = keys.record().ok().flatten().filter(runs_here);
        let local_output = local.as_ref().and_then(|_| self.logs.output_mark(name).1);
        let mut snapshot = policy::snapshot(
            keys,
            |rev| {
                self.beats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .date(name, rev, now)
            },
            local_output,
        );
        if snapshot.holder == Holder::Alive && local.as_ref().is_some_and(wrapper_died_here) {
            snapshot.holder = Holder::Dead;
        }
        snapshot
    }

    /// The run's published tail: the final one once it has a status, else
    /// the one with its last beat.
    fn published_tail(keys: &JobKeys) -> Vec<String> {
        if let Some(kv) = &keys.tail {
            return parse::<Vec<String>>(&kv.key, &kv.value).unwrap_or_default();
        }
        keys.beat
            .as_ref()
            .and_then(|kv| parse::<BeatValue>(&kv.key, &kv.value).ok())
            .map(|b| b.tail)
            .unwrap_or_default()
    }

    /// Whether the run `at` of `name` has its files on this host.
    fn local_run(&self, name: &JobName, at: &RunAt) -> Option<JobRecord> {
        let key = match at {
            RunAt::Current => keys::job(name, Part::Record),
            RunAt::Archived(label) => keys::history(name, label, Part::Record),
        };
        let kv = self.client.get(&key).ok()?.kv?;
        let record: JobRecord = parse(&kv.key, &kv.value).ok()?;
        runs_here(&record).then_some(record)
    }
}

/// Whether `record`'s wrapper ran on this host (and boot, and PID
/// namespace) and is gone: its lease still runs out its TTL, but here its
/// PID tells at once (a SIGKILLed wrapper is lost now, not in 10 s).
pub(crate) fn wrapper_died_here(record: &JobRecord) -> bool {
    runs_here(record)
        && !jobwatch_core::sys::proc::is_alive(jobwatch_core::sys::ProcessId {
            pid: record.wrapper_pid,
            start_time: record.wrapper_start_time,
        })
}

/// The handover of a store opened from `config`: what a detached wrapper
/// needs to open it too (the jobs directory made absolute: a wrapper runs
/// in its job's working directory).
fn spec_of(config: &EtcdConfig, jobs_dir: &Path, options: StoreOptions) -> EtcdSpec {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let files = &config.tls_files;
    EtcdSpec {
        url: store_url(config),
        dir: absolute(jobs_dir),
        ca: files.ca.as_deref().map(absolute),
        cert: files.cert.as_deref().map(absolute),
        key: files.key.as_deref().map(absolute),
        user: config.credentials.as_ref().map(|c| c.user.clone()),
        password: config
            .credentials
            .as_ref()
            .map(|c| Secret::new(c.password.clone())),
        self_fence: options.self_fence,
    }
}

/// The URL of a configuration, as `--store` takes it (never credentials:
/// those travel in the environment).
pub fn store_url(config: &EtcdConfig) -> String {
    let scheme = if config.tls { "etcds" } else { "etcd" };
    format!(
        "{scheme}://{}/{}",
        config.endpoints.join(","),
        config.namespace
    )
}

/// A store error from an access-layer error: one line, `context: why`.
pub fn etcd_err(context: impl Into<String>, e: crate::Error) -> StoreError {
    StoreError::Io {
        context: context.into(),
        source: io::Error::other(e.to_string()),
    }
}

impl Store for EtcdStore {
    fn describe(&self) -> String {
        format!("etcd store {}", self.url)
    }

    fn list(&self) -> Result<Vec<JobName>, StoreError> {
        let range = self
            .client
            .get_prefix_keys(keys::JOBS.as_bytes())
            .map_err(|e| etcd_err(format!("cannot list jobs in {}", self.url), e))?;
        let mut names: Vec<JobName> = range
            .kvs
            .iter()
            .filter_map(|kv| keys::parse_job_key(&kv.key))
            .filter(|(_, part)| *part != Part::Claim)
            .map(|(name, _)| name)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn snapshot(&self, name: &JobName) -> Snapshot {
        match self.read_job(name) {
            Ok((keys, _)) => self.snapshot_of(name, &keys),
            Err(e) => Snapshot {
                record: Err(jobwatch_core::store::Invalid(e.to_string())),
                any_state: true,
                ..Snapshot::missing()
            },
        }
    }

    fn holder(&self, record: &JobRecord) -> Holder {
        let Ok(name) = JobName::parse(&record.name) else {
            return Holder::Unknown;
        };
        match self.client.get(&keys::job(&name, Part::Claim)) {
            Ok(got) => match policy::holder_of(got.kv.as_ref(), record) {
                Holder::Alive if wrapper_died_here(record) => Holder::Dead,
                holder => holder,
            },
            Err(_) => Holder::Unknown,
        }
    }

    fn holder_expiry(&self, record: &JobRecord) -> Duration {
        policy::lost_bound(policy::lease_ttl(&record.settings))
    }

    fn current_job_id(&self, name: &JobName) -> Option<String> {
        let kv = self.client.get(&keys::job(name, Part::Record)).ok()?.kv?;
        parse::<JobRecord>(&kv.key, &kv.value)
            .ok()
            .map(|r| r.job_id)
    }

    fn claim(&self, name: &JobName, wait: ClaimWait) -> Result<Box<dyn Claim + '_>, ClaimError> {
        let patience = match wait {
            ClaimWait::No => None,
            ClaimWait::Briefly(d) => Some(Instant::now() + d),
        };
        claim::EtcdClaim::acquire(self, name, patience).map(|c| Box::new(c) as Box<dyn Claim>)
    }

    fn request_kill(&self, name: &JobName, req: &KillRequest) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(req).expect("a kill request serializes");
        self.client
            .put(&keys::job(name, Part::Kill), &bytes, None)
            .map(drop)
            .map_err(|e| etcd_err(format!("cannot write the kill request of job {name}"), e))
    }

    fn kill_request(&self, name: &JobName) -> Result<Option<KillRequest>, StoreError> {
        let got = self
            .client
            .get(&keys::job(name, Part::Kill))
            .map_err(|e| etcd_err(format!("cannot read the kill request of job {name}"), e))?;
        got.kv
            .map(|kv| {
                parse(&kv.key, &kv.value).map_err(|e| jobwatch_core::store::Invalid(e).into())
            })
            .transpose()
    }

    fn beat(&self, name: &JobName, at: SystemTime) -> Result<(), StoreError> {
        let (keys, _) = self.read_job(name)?;
        let not_running = || StoreError::Io {
            context: format!("cannot beat job {name}"),
            source: io::Error::new(io::ErrorKind::NotFound, "it is not running"),
        };
        let record = keys.record()?.ok_or_else(not_running)?;
        if keys.status.is_some() || keys.beat.is_none() {
            return Err(not_running());
        }
        if runs_here(&record) {
            // Its wrapper is here: it publishes the beat (at most once per
            // heartbeat interval, however often the job beats).
            return self
                .files
                .touch_heartbeat(name, at)
                .map_err(|source| StoreError::Io {
                    context: format!("cannot touch {}", self.files.heartbeat(name).display()),
                    source,
                });
        }
        claim::explicit_remote_beat(&self.client, name, at)
    }

    fn archived(&self, name: &JobName) -> Vec<String> {
        let Ok(range) = self.client.get_prefix_keys(&keys::history_prefix(name)) else {
            return Vec::new();
        };
        let mut labels: Vec<String> = range
            .kvs
            .iter()
            .filter_map(|kv| keys::parse_history_key(&kv.key))
            .map(|(_, label, _)| label)
            .collect();
        labels.sort_unstable_by(|a, b| b.cmp(a));
        labels.dedup();
        labels
    }

    fn archived_run(&self, name: &JobName, job_id: &str) -> Option<Archived> {
        let range = self
            .client
            .get_prefix(&keys::history_prefix(name), 0)
            .ok()?;
        let (label, record_kv) = range.kvs.iter().find_map(|kv| {
            let (_, label, part) = keys::parse_history_key(&kv.key)?;
            let record: JobRecord = parse(&kv.key, &kv.value).ok()?;
            (part == Part::Record && record.job_id == job_id).then_some((label, kv.clone()))
        })?;
        let record: JobRecord = parse(&record_kv.key, &record_kv.value).ok()?;
        let status_key = keys::history(name, &label, Part::Status);
        let status = range
            .kvs
            .iter()
            .find(|kv| kv.key == status_key)
            .map(|kv| {
                parse::<values::StatusValue>(&kv.key, &kv.value)
                    .map_err(jobwatch_core::store::Invalid)
                    .and_then(|s| policy::status_word(&s, Some(&record), &kv.key))
            })
            .transpose();
        let over = !matches!(status, Ok(None));
        Some(Archived {
            at: RunAt::Archived(label),
            snapshot: Snapshot {
                record: Ok(Some(record.clone())),
                holder: if over { Holder::Unknown } else { Holder::Dead },
                status,
                last_beat: None,
                last_output: None,
                command_exited: false,
                any_state: true,
            },
            record,
        })
    }

    fn watch(&self, names: &[JobName], what: WatchFor) -> Box<dyn Watch> {
        Box::new(watch::EtcdWatch::new(self, names, what))
    }

    fn docs(&self) -> &dyn DocStore {
        &self.docs
    }

    fn logs(&self) -> &LocalLogs {
        &self.logs
    }

    fn job_env(&self, name: &JobName) -> Vec<(&'static str, OsString)> {
        vec![
            (STORE_ENV, OsString::from(&self.url)),
            ("JOBWATCH_DIR", self.jobs_dir.as_os_str().to_owned()),
            ("JOBWATCH_RESULT", self.files.result(name).into_os_string()),
            (
                "JOBWATCH_HEARTBEAT",
                self.files.heartbeat(name).into_os_string(),
            ),
        ]
    }

    fn tail(&self, name: &JobName, at: &RunAt, lines: usize) -> Vec<String> {
        if self.local_run(name, at).is_some() {
            let tail = self.logs.tail(name, at, lines);
            if !tail.is_empty() {
                return tail;
            }
        }
        let published = match at {
            RunAt::Current => self.read_job(name).map(|(k, _)| Self::published_tail(&k)),
            RunAt::Archived(label) => self
                .client
                .get(&keys::history(name, label, Part::Tail))
                .map_err(|e| etcd_err("", e))
                .map(|got| {
                    got.kv
                        .and_then(|kv| parse::<Vec<String>>(&kv.key, &kv.value).ok())
                        .unwrap_or_default()
                }),
        };
        // Published by whoever could write the key: each one line, cut as
        // a local tail is.
        let mut tail: Vec<String> = published
            .unwrap_or_default()
            .iter()
            .map(|l| jobwatch_core::report::shorten(&l.replace(['\n', '\r'], " ")))
            .collect();
        let skip = tail.len().saturating_sub(lines);
        tail.split_off(skip)
    }

    /// This host's path of a run here (or of no run yet); for a run on
    /// another host, `HOST:PATH` with the path there: nothing here can be
    /// opened by that name, and it says where to look.
    fn log_path(&self, name: &JobName, at: &RunAt) -> PathBuf {
        let here = self.logs.log_path(name, at);
        let (record, beat) = match at {
            RunAt::Current => (keys::job(name, Part::Record), keys::job(name, Part::Beat)),
            RunAt::Archived(label) => (
                keys::history(name, label, Part::Record),
                keys::history(name, label, Part::Beat),
            ),
        };
        let Some(record) = self
            .client
            .get(&record)
            .ok()
            .and_then(|g| g.kv)
            .and_then(|kv| parse::<JobRecord>(&kv.key, &kv.value).ok())
        else {
            return here;
        };
        if runs_here(&record) {
            return here;
        }
        let there = self
            .client
            .get(&beat)
            .ok()
            .and_then(|g| g.kv)
            .and_then(|kv| parse::<BeatValue>(&kv.key, &kv.value).ok())
            .and_then(|b| b.log)
            .unwrap_or_else(|| format!("(its jobs directory)/etcd/…/{name}.log"));
        PathBuf::from(format!("{}:{there}", values::one_line(&record.host)))
    }

    fn result_path(&self, name: &JobName, at: &RunAt) -> Option<PathBuf> {
        self.local_run(name, at)?;
        self.logs.result_path(name, at)
    }

    fn gc(&self) -> &dyn GcStore {
        self
    }

    fn spec(&self) -> Option<StoreSpec> {
        Some(StoreSpec::Etcd(self.spec.clone()))
    }

    fn events(&self) -> &dyn EventLog {
        self
    }
}

/// How long claim waits between looks at a held name (it also wakes on the
/// claim key's deletion).
pub(crate) const CLAIM_RETRY: Duration = Duration::from_millis(250);
