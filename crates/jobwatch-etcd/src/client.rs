//! The blocking client: one gRPC channel per member, failover and bounded
//! retries that are ours (etcd-client does none), every call bounded.
//!
//! How a call runs: an attempt goes to the member that last answered; a
//! failure that retrying can fix (connection refused, no leader, timeout,
//! broken stream) moves to the next member at once, and after a full round
//! of members the next round waits a bounded backoff (25 ms doubling to
//! 500 ms). Each attempt is bounded by `request_timeout`, the whole call by
//! `operation_timeout`; then the call fails with [`Error::Unavailable`]
//! naming the endpoints and the last failure. Failures that retrying cannot
//! fix (wrong password, permission, compaction, request too large) end the
//! call at once.
//!
//! Writes: a failure after the request may have reached raft is remembered
//! as *uncertain*. Puts and deletes are retried anyway (their end state is
//! the same; a watcher may see the put twice). Transactions are retried only
//! because ours compare on revision or absence, which their own success
//! invalidates, so a retry can never apply twice; [`create`] and
//! [`compare_and_swap`] then find out whether the lost attempt was theirs
//! (see their docs), and [`txn`] reports `uncertain` to the caller.
//!
//! [`create`]: EtcdClient::create
//! [`compare_and_swap`]: EtcdClient::compare_and_swap
//! [`txn`]: EtcdClient::txn

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare as PbCompare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::EtcdConfig;
use crate::error::{Disposition, Error, Failure, FatalKind, Result, classify, one_line};
use crate::kv::{
    CasOutcome, Compare, CreateOutcome, Get, KeyValue, LeaseId, Op, OpResult, Range, TxnOutcome,
    prefix_range_end,
};
use crate::lease::LeaseKeeper;
use crate::runtime::Runtime;
use crate::watch::{Watch, WatchScope};

/// Keys per page when reading a prefix: keeps each reply far below gRPC's
/// 4 MiB message limit even with 1.5 MiB values... of which a job store has
/// none; its records are a few KB.
const PAGE: i64 = 500;

/// How long earlier-listed members may take to answer the connect probe
/// after a later one did (see `Shared::probe`).
const PROBE_GRACE: Duration = Duration::from_millis(50);

/// The backoff between rounds of attempts over all members.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// 25 ms doubling to 500 ms: a leader election on etcd's defaults takes
    /// about 1–2 s, and a 500 ms cap keeps the resume within half a second
    /// of the cluster being ready again.
    pub fn new() -> Self {
        Backoff {
            next: Duration::from_millis(25),
            max: Duration::from_millis(500),
        }
    }

    /// The next pause.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

/// One member: its URL and its channel, made on first use.
struct Member {
    url: String,
    client: tokio::sync::Mutex<Option<Client>>,
}

/// A value obtained after retries, and whether a failed attempt before it
/// may have been applied.
pub(crate) struct Attempted<T> {
    pub value: T,
    pub uncertain: bool,
}

/// What the async side needs: configuration, members, the key prefix.
pub(crate) struct Shared {
    pub config: EtcdConfig,
    pub prefix: Vec<u8>,
    members: Vec<Member>,
    preferred: AtomicUsize,
    options: ConnectOptions,
    tls: Option<ClientTlsConfig>,
}

impl Shared {
    fn new(config: EtcdConfig) -> Result<Self> {
        let tls = if config.tls {
            Some(tls_config(&config)?)
        } else {
            None
        };
        // Every request requires a leader: a member cut off from the others
        // refuses at once instead of serving stale reads or hanging.
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_auto_token_refresh(true)
            .with_keep_alive_while_idle(false);
        if let Some(c) = &config.credentials {
            options = options.with_user(c.user.clone(), c.password.clone());
        }
        let members = config
            .endpoint_urls()
            .into_iter()
            .map(|url| Member {
                url,
                client: tokio::sync::Mutex::new(None),
            })
            .collect();
        Ok(Shared {
            prefix: config.key_prefix(),
            config,
            members,
            preferred: AtomicUsize::new(0),
            options,
            tls,
        })
    }

    /// The number of members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The member that answered last.
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed) % self.members.len()
    }

    /// Remembers the member that answered.
    pub fn prefer(&self, idx: usize) {
        self.preferred.store(idx, Ordering::Relaxed);
    }

    /// The client of member `idx`, made on first use. The channel is lazy:
    /// it connects on the first request and reconnects after a failure by
    /// itself; with auth, making the client authenticates (a request).
    pub async fn member_client(&self, idx: usize) -> std::result::Result<Client, Failure> {
        let member = &self.members[idx];
        let mut slot = member.client.lock().await;
        if let Some(client) = &*slot {
            return Ok(client.clone());
        }
        let mut endpoint = Endpoint::from_shared(member.url.clone())
            .map_err(|e| rejected(format!("bad endpoint {}: {e}", member.url)))?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            // HTTP/2 pings on open streams find a member that stopped
            // answering (SIGSTOP, partition) under a watch or keepalive
            // stream. etcd refuses pings more often than every 5 s.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(false);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| rejected(format!("TLS setup for {}: {}", member.url, one_line(&e))))?;
        }
        let channel = etcd_client::Channel::Tonic(endpoint.connect_lazy());
        let client = Client::from_channel(channel, Some(self.options.clone()))
            .await
            .map_err(|e| classify(&e))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `op` with failover and retries (see the module docs).
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<Attempted<T>>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let deadline = started + self.config.operation_timeout;
        let n = self.members.len();
        let mut idx = self.preferred();
        let mut backoff = Backoff::new();
        let mut attempts = 0u32;
        let mut tried_in_round = 0usize;
        let mut uncertain = false;
        loop {
            attempts += 1;
            // A retry gets a quarter of the bound: after a leader failure, a
            // request that a follower forwards to the dead leader (before it
            // noticed) hangs until the bound, so writes resume at the first
            // retry boundary after the election ends; a finer grain resumes
            // sooner. A retry is safe, so cutting it short is too.
            let bound = if attempts == 1 {
                self.config.request_timeout
            } else {
                self.config.request_timeout / 4
            };
            let budget = bound.min(deadline.saturating_duration_since(Instant::now()));
            let attempt = async {
                let client = self.member_client(idx).await?;
                op(client).await.map_err(|e| classify(&e))
            };
            let failure = match tokio::time::timeout(budget, attempt).await {
                Ok(Ok(value)) => {
                    self.prefer(idx);
                    return Ok(Attempted { value, uncertain });
                }
                Ok(Err(failure)) => failure,
                Err(_) => Failure::attempt_timed_out(budget),
            };
            match failure.disposition {
                Disposition::Fatal(kind) => return Err(self.fatal(kind, failure.message)),
                Disposition::Retry { maybe_applied } => uncertain |= maybe_applied,
            }
            let last_error = format!("{}: {}", self.members[idx].url, failure.message);
            idx = (idx + 1) % n;
            tried_in_round += 1;
            let pause = if tried_in_round >= n {
                tried_in_round = 0;
                backoff.next_pause()
            } else {
                Duration::ZERO
            };
            if Instant::now() + pause >= deadline {
                return Err(Error::Unavailable {
                    endpoints: self.config.endpoints_display(),
                    last_error,
                    attempts,
                    elapsed: started.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Maps a final failure to this layer's error.
    pub fn fatal(&self, kind: FatalKind, message: String) -> Error {
        let endpoints = self.config.endpoints_display();
        match kind {
            FatalKind::AuthFailed => Error::AuthFailed {
                endpoints,
                user: self
                    .config
                    .credentials
                    .as_ref()
                    .map(|c| c.user.clone())
                    .unwrap_or_default(),
                message,
            },
            FatalKind::PermissionDenied => Error::PermissionDenied { endpoints, message },
            FatalKind::Compacted { compact_revision } => Error::Compacted {
                requested: 0,
                compact_revision,
            },
            FatalKind::LeaseNotFound => Error::LeaseNotFound { id: 0 },
            FatalKind::Rejected => Error::Rejected(message),
        }
    }

    /// Checks that some member answers, trying all at once, each bounded by
    /// the connect and request timeouts. A member that answers with an etcd
    /// error ("no leader", "leader changed") counts as reachable: calls will
    /// wait for the election.
    async fn probe(self: &Arc<Self>) -> Result<()> {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for idx in 0..self.members.len() {
            let shared = Arc::clone(self);
            set.spawn(async move {
                let bound = shared.config.connect_timeout + shared.config.request_timeout;
                let attempt = async {
                    let mut client = shared.member_client(idx).await?;
                    let key = shared.prefix.clone();
                    client
                        .get(key, Some(GetOptions::new().with_count_only()))
                        .await
                        .map_err(|e| classify(&e))
                };
                let result = match tokio::time::timeout(bound, attempt).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(f)) => Err(f),
                    Err(_) => Err(Failure::attempt_timed_out(bound)),
                };
                (idx, result)
            });
        }
        let mut failures = Vec::new();
        let mut reachable = Vec::new();
        let mut answered = Vec::new();
        let mut pending: Vec<usize> = (0..self.members.len()).collect();
        // Once one member answered, earlier-listed members get a short grace
        // to answer too: the first listed healthy member is used first (the
        // operator's order), without waiting for one that hangs.
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            let joined = match grace {
                Some(until) => match tokio::time::timeout_at(until, set.join_next()).await {
                    Ok(joined) => joined,
                    Err(_) => break,
                },
                None => set.join_next().await,
            };
            let Some(joined) = joined else { break };
            let Ok((idx, result)) = joined else { continue };
            pending.retain(|&p| p != idx);
            match result {
                Ok(()) => {
                    answered.push(idx);
                    grace.get_or_insert_with(|| tokio::time::Instant::now() + PROBE_GRACE);
                }
                Err(f) => match f.disposition {
                    Disposition::Fatal(kind) => return Err(self.fatal(kind, f.message)),
                    // etcd itself answered (no leader, leader changed, ...):
                    // reachable; calls will wait out the election.
                    Disposition::Retry { .. } if f.message.contains("etcdserver:") => {
                        reachable.push(idx)
                    }
                    Disposition::Retry { .. } => {
                        failures.push((idx, format!("{}: {}", self.members[idx].url, f.message)))
                    }
                },
            }
            if let Some(&best) = answered.iter().min()
                && pending.iter().all(|&p| p > best)
            {
                break;
            }
        }
        if let Some(&idx) = answered.iter().min() {
            self.prefer(idx);
            return Ok(());
        }
        if let Some(&idx) = reachable.first() {
            self.prefer(idx);
            return Ok(());
        }
        failures.sort();
        Err(Error::Unavailable {
            endpoints: self.config.endpoints_display(),
            last_error: failures
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join("; "),
            attempts: self.members.len() as u32,
            elapsed: started.elapsed(),
        })
    }

    /// The full key for a namespace-relative key.
    pub fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key);
        full
    }

    /// Converts a key-value from etcd, stripping the namespace prefix.
    pub fn key_value(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        KeyValue {
            key: kv
                .key()
                .strip_prefix(self.prefix.as_slice())
                .unwrap_or(kv.key())
                .to_vec(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        }
    }

    async fn get(&self, key: &[u8]) -> Result<Get> {
        let full = self.full_key(key);
        let got = self
            .run(|mut c| {
                let full = full.clone();
                async move { c.get(full, None).await }
            })
            .await?
            .value;
        Ok(Get {
            kv: got.kvs().first().map(|kv| self.key_value(kv)),
            revision: header_revision(got.header()),
        })
    }

    async fn get_prefix(
        &self,
        prefix: &[u8],
        revision: i64,
        keys_only: bool,
        created_after: i64,
    ) -> Result<Range> {
        let full = self.full_key(prefix);
        let end = prefix_range_end(&full);
        let mut kvs = Vec::new();
        let mut from = full.clone();
        let mut at = revision;
        loop {
            let page = self
                .run(|mut c| {
                    let (from, end) = (from.clone(), end.clone());
                    async move {
                        let mut options = GetOptions::new().with_range(end).with_limit(PAGE);
                        if keys_only {
                            options = options.with_keys_only();
                        }
                        if at > 0 {
                            options = options.with_revision(at);
                        }
                        // The member filters before it pages (etcd fetches
                        // the whole range for a revision filter, then cuts).
                        if created_after > 0 {
                            options = options.with_min_create_revision(created_after + 1);
                        }
                        c.get(from, Some(options)).await
                    }
                })
                .await
                .map_err(|e| with_requested(e, at))?
                .value;
            // Every further page is read at the first page's revision so the
            // whole range is one consistent snapshot.
            if at == 0 {
                at = header_revision(page.header());
            }
            kvs.extend(page.kvs().iter().map(|kv| self.key_value(kv)));
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(Range { kvs, revision: at })
    }

    async fn put(&self, key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Result<i64> {
        let full = self.full_key(key);
        let put = self
            .run(|mut c| {
                let (full, value) = (full.clone(), value.to_vec());
                let options = lease.map(|l| PutOptions::new().with_lease(l));
                async move { c.put(full, value, options).await }
            })
            .await
            .map_err(|e| with_lease(e, lease))?;
        Ok(header_revision(put.value.header()))
    }

    async fn delete(&self, key: &[u8], prefix: bool) -> Result<i64> {
        let full = self.full_key(key);
        let deleted = self
            .run(|mut c| {
                let full = full.clone();
                let options =
                    prefix.then(|| DeleteOptions::new().with_range(prefix_range_end(&full)));
                async move { c.delete(full, options).await }
            })
            .await?;
        Ok(deleted.value.deleted())
    }

    pub(crate) async fn txn(
        &self,
        compares: &[Compare],
        then: &[Op],
        otherwise: &[Op],
    ) -> Result<TxnOutcome> {
        let txn = Txn::new()
            .when(compares.iter().map(|c| self.compare(c)).collect::<Vec<_>>())
            .and_then(then.iter().map(|o| self.op(o)).collect::<Vec<_>>())
            .or_else(otherwise.iter().map(|o| self.op(o)).collect::<Vec<_>>());
        let done = self
            .run(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let resp = done.value;
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: header_revision(resp.header()),
            results: resp
                .op_responses()
                .into_iter()
                .map(|r| match r {
                    TxnOpResponse::Put(_) => OpResult::Put,
                    TxnOpResponse::Delete(d) => OpResult::Delete(d.deleted()),
                    TxnOpResponse::Get(g) => {
                        OpResult::Get(g.kvs().iter().map(|kv| self.key_value(kv)).collect())
                    }
                    TxnOpResponse::Txn(_) => OpResult::Put,
                })
                .collect(),
            uncertain: done.uncertain,
        })
    }

    fn compare(&self, c: &Compare) -> PbCompare {
        match c {
            Compare::Absent(k) => PbCompare::create_revision(self.full_key(k), CompareOp::Equal, 0),
            Compare::ModRevision(k, r) => {
                PbCompare::mod_revision(self.full_key(k), CompareOp::Equal, *r)
            }
            Compare::Value(k, v) => PbCompare::value(self.full_key(k), CompareOp::Equal, v.clone()),
            Compare::Lease(k, l) => PbCompare::lease(self.full_key(k), CompareOp::Equal, *l),
        }
    }

    fn op(&self, o: &Op) -> TxnOp {
        match o {
            Op::Put { key, value, lease } => TxnOp::put(
                self.full_key(key),
                value.clone(),
                lease.map(|l| PutOptions::new().with_lease(l)),
            ),
            Op::Delete(k) => TxnOp::delete(self.full_key(k), None),
            Op::DeletePrefix(k) => {
                let full = self.full_key(k);
                let end = prefix_range_end(&full);
                TxnOp::delete(full, Some(DeleteOptions::new().with_range(end)))
            }
            Op::Get(k) => TxnOp::get(self.full_key(k), None),
            Op::GetPrefix(k) => {
                let full = self.full_key(k);
                let end = prefix_range_end(&full);
                TxnOp::get(full, Some(GetOptions::new().with_range(end)))
            }
        }
    }

    async fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<CreateOutcome> {
        let put = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
        };
        let outcome = self
            .txn(
                &[Compare::Absent(key.to_vec())],
                &[put],
                &[Op::Get(key.to_vec())],
            )
            .await
            .map_err(|e| with_lease(e, lease))?;
        if outcome.succeeded {
            return Ok(CreateOutcome::Created {
                revision: outcome.revision,
            });
        }
        let Some(current) = first_kv(&outcome.results) else {
            // Deleted between the compare and... impossible within one txn;
            // a txn that failed its compare read the key in the same revision.
            return Err(Error::Rejected(
                "create: the key existed but could not be read".to_string(),
            ));
        };
        // A lost reply of our own creation looks like "exists": it is ours if
        // it still holds our value and lease and was never changed since.
        if outcome.uncertain
            && current.value == value
            && current.lease == lease.unwrap_or(0)
            && current.version == 1
        {
            return Ok(CreateOutcome::Created {
                revision: current.mod_revision,
            });
        }
        Ok(CreateOutcome::Exists(current))
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: i64,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<CasOutcome> {
        if expected == 0 {
            return Ok(match self.create(key, value, lease).await? {
                CreateOutcome::Created { revision } => CasOutcome::Swapped { revision },
                CreateOutcome::Exists(kv) => CasOutcome::Conflict(Some(kv)),
            });
        }
        let put = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
        };
        let outcome = self
            .txn(
                &[Compare::ModRevision(key.to_vec(), expected)],
                &[put],
                &[Op::Get(key.to_vec())],
            )
            .await
            .map_err(|e| with_lease(e, lease))?;
        if outcome.succeeded {
            return Ok(CasOutcome::Swapped {
                revision: outcome.revision,
            });
        }
        let current = first_kv(&outcome.results);
        if outcome.uncertain {
            // Our lost attempt, if applied, was the first change after
            // `expected` (it compared on it): look at that change.
            if let Some(first) = crate::watch::first_change_after(self, key, expected).await?
                && first.value == value
                && first.lease == lease.unwrap_or(0)
            {
                return Ok(CasOutcome::Swapped {
                    revision: first.mod_revision,
                });
            }
        }
        Ok(CasOutcome::Conflict(current))
    }
}

/// The revision in a response header (0 if absent, which etcd never does).
pub(crate) fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map(|h| h.revision()).unwrap_or(0)
}

fn first_kv(results: &[OpResult]) -> Option<KeyValue> {
    results.iter().find_map(|r| match r {
        OpResult::Get(kvs) => kvs.first().cloned(),
        _ => None,
    })
}

fn rejected(message: String) -> Failure {
    Failure {
        disposition: Disposition::Fatal(FatalKind::Rejected),
        message,
    }
}

/// Fills in the lease id of a lease-not-found error.
fn with_lease(e: Error, lease: Option<LeaseId>) -> Error {
    match (e, lease) {
        (Error::LeaseNotFound { .. }, Some(id)) => Error::LeaseNotFound { id },
        (e, _) => e,
    }
}

/// Fills in the requested revision of a compaction error.
fn with_requested(e: Error, requested: i64) -> Error {
    match e {
        Error::Compacted {
            compact_revision, ..
        } => Error::Compacted {
            requested,
            compact_revision,
        },
        e => e,
    }
}

/// Builds the rustls configuration from the configured files.
fn tls_config(config: &EtcdConfig) -> Result<ClientTlsConfig> {
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::TlsFile {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    let files = &config.tls_files;
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
    } else {
        // Without a CA file, trust the system's roots.
        tls = tls.with_enabled_roots();
    }
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        tls = tls.identity(Identity::from_pem(
            read("client certificate", cert)?,
            read("client key", key)?,
        ));
    }
    Ok(tls)
}

/// A connection to one namespace of an etcd cluster, with a blocking API.
///
/// Cheap to clone (all clones share one background thread and one channel
/// per member). Every method blocks the calling thread for at most about
/// `operation_timeout` and must not be called from inside an async runtime
/// (use `spawn_blocking`). Keys are relative to the namespace.
#[derive(Clone)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    // Dropped after `shared`'s last user on this side: stops the tasks.
    runtime: Runtime,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.inner.shared.config.endpoints)
            .field("namespace", &self.inner.shared.config.namespace)
            .finish()
    }
}

impl EtcdClient {
    /// Connects: validates the configuration, reads the TLS files, and checks
    /// that at least one member answers (and accepts the credentials) within
    /// `connect_timeout + request_timeout`. A refused or unreachable cluster
    /// gives [`Error::Unavailable`] naming every endpoint and its failure.
    pub fn connect(config: EtcdConfig) -> Result<Self> {
        config.validate()?;
        let shared = Arc::new(Shared::new(config)?);
        let runtime = Runtime::start()
            .map_err(|e| Error::Rejected(format!("cannot start the etcd client thread: {e}")))?;
        let client = EtcdClient {
            inner: Arc::new(Inner { shared, runtime }),
        };
        let bound = client.config().connect_timeout + client.config().request_timeout;
        let shared = Arc::clone(&client.inner.shared);
        client
            .inner
            .runtime
            .block_on(bound + Duration::from_secs(1), async move {
                shared.probe().await
            })?;
        Ok(client)
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.shared.config
    }

    /// The namespace's key prefix (`jobwatch/NAMESPACE/`), for diagnostics.
    pub fn key_prefix(&self) -> &[u8] {
        &self.inner.shared.prefix
    }

    /// The URL of the member that answered last (where the next call goes
    /// first), for diagnostics.
    pub fn current_endpoint(&self) -> String {
        let shared = &self.inner.shared;
        shared.members[shared.preferred()].url.clone()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Runs an async operation on the shared state, blocking.
    fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let config = self.config();
        // The futures bound themselves by `operation_timeout`; this is a
        // backstop in case a bug leaves one pending.
        let bound = config.operation_timeout + config.request_timeout + Duration::from_secs(1);
        self.inner
            .runtime
            .block_on(bound, f(Arc::clone(&self.inner.shared)))
    }

    /// Reads one key (linearizable).
    pub fn get(&self, key: &[u8]) -> Result<Get> {
        let key = key.to_vec();
        self.call(|s| async move { s.get(&key).await })
    }

    /// Reads every key under `prefix` as one snapshot, at `revision` (0: the
    /// latest). Fails with [`Error::Compacted`] when `revision` is no longer
    /// kept.
    pub fn get_prefix(&self, prefix: &[u8], revision: i64) -> Result<Range> {
        let prefix = prefix.to_vec();
        self.call(move |s| async move { s.get_prefix(&prefix, revision, false, 0).await })
    }

    /// The keys under `prefix` (values left empty), as one snapshot at the
    /// latest revision: a listing that does not move the values.
    pub fn get_prefix_keys(&self, prefix: &[u8]) -> Result<Range> {
        let prefix = prefix.to_vec();
        self.call(move |s| async move { s.get_prefix(&prefix, 0, true, 0).await })
    }

    /// The keys under `prefix` created after revision `after` (0: all),
    /// with their values, as one snapshot at the latest revision: what an
    /// append-only prefix (the event journal) gained since a reader's
    /// cursor.
    pub fn get_prefix_created_after(&self, prefix: &[u8], after: i64) -> Result<Range> {
        let prefix = prefix.to_vec();
        self.call(move |s| async move { s.get_prefix(&prefix, 0, false, after).await })
    }

    /// Writes a key, attached to `lease` if given; returns the revision.
    /// Retried after a lost reply, so a watcher may see the same put twice.
    pub fn put(&self, key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Result<i64> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.call(move |s| async move { s.put(&key, &value, lease).await })
    }

    /// Deletes one key; returns how many keys the final attempt deleted (0
    /// also when a lost earlier attempt deleted it).
    pub fn delete(&self, key: &[u8]) -> Result<i64> {
        let key = key.to_vec();
        self.call(move |s| async move { s.delete(&key, false).await })
    }

    /// Deletes every key under `prefix`; returns how many the final attempt
    /// deleted.
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<i64> {
        let prefix = prefix.to_vec();
        self.call(move |s| async move { s.delete(&prefix, true).await })
    }

    /// Creates `key` only if it does not exist (attached to `lease` if
    /// given). Exactly one of several concurrent creators gets `Created`.
    ///
    /// If an attempt's reply was lost and the retry finds the key, the call
    /// reports `Created` when the key still holds this value and lease and
    /// was never changed since (version 1). To make that exact, make the
    /// value unique to the writer (a run id), or attach a lease (lease ids
    /// are unique).
    pub fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<CreateOutcome> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.call(move |s| async move { s.create(&key, &value, lease).await })
    }

    /// Writes `value` only if the key's last change was at
    /// `expected_mod_revision` (0: only if absent, as [`create`](Self::create)).
    ///
    /// If an attempt's reply was lost and the retry finds the key changed,
    /// the call looks at the first change after `expected_mod_revision`
    /// (from the watch history): if it wrote this value and lease, that was
    /// this call, and it reports `Swapped`. Two writers that could write
    /// byte-identical values must make them unique (a writer id) for this to
    /// be exact. If that history was compacted meanwhile, the call fails
    /// with [`Error::Compacted`] rather than guess.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        expected_mod_revision: i64,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<CasOutcome> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.call(move |s| async move {
            s.compare_and_swap(&key, expected_mod_revision, &value, lease)
                .await
        })
    }

    /// A transaction: if every compare holds, run `then`, else `otherwise`.
    ///
    /// It is retried after failures, including ones whose reply was lost:
    /// give it compares that its own success invalidates (a `ModRevision`
    /// or `Absent` compare on a key that `then` writes), so that a retry
    /// can never apply it twice, and check [`TxnOutcome::uncertain`] when it
    /// reports `succeeded == false`.
    pub fn txn(&self, compares: &[Compare], then: &[Op], otherwise: &[Op]) -> Result<TxnOutcome> {
        let (c, t, o) = (compares.to_vec(), then.to_vec(), otherwise.to_vec());
        self.call(move |s| async move { s.txn(&c, &t, &o).await })
    }

    /// Grants a lease of `ttl` (rounded up to whole seconds; etcd raises
    /// TTLs below its minimum, about 3 s with default election settings).
    /// A lost reply's retry grants a second lease; the first expires
    /// unused.
    pub fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = secs.max(1) as i64;
        self.call(move |s| async move {
            let granted = s
                .run(|mut c| async move { c.lease_grant(secs, None).await })
                .await?;
            Ok(granted.value.id())
        })
    }

    /// Revokes a lease, deleting its keys. Revoking a lease that is already
    /// gone (expired, or revoked by a lost earlier attempt) succeeds.
    pub fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.call(move |s| async move {
            match s.run(|mut c| async move { c.lease_revoke(id).await }).await {
                Ok(_) | Err(Error::LeaseNotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// The remaining time to live of a lease, or `None` if it is gone.
    pub fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<Duration>> {
        self.call(move |s| async move {
            let ttl = s
                .run(|mut c| async move { c.lease_time_to_live(id, None).await })
                .await?
                .value
                .ttl();
            Ok((ttl > 0).then(|| Duration::from_secs(ttl as u64)))
        })
    }

    /// Starts keeping `lease` alive in the background (see [`LeaseKeeper`]).
    /// `ttl` is the TTL it was granted with.
    pub fn keep_alive(&self, lease: LeaseId, ttl: Duration) -> LeaseKeeper {
        LeaseKeeper::start(self.clone(), lease, ttl)
    }

    /// Watches `key` (or every key under it, with [`WatchScope::Prefix`])
    /// from `from_revision` (0: from now) — see [`Watch`]. Returns once the
    /// watch is established, or fails like any call.
    pub fn watch(&self, key: &[u8], scope: WatchScope, from_revision: i64) -> Result<Watch> {
        Watch::start(self.clone(), key, scope, from_revision)
    }
}
