//! A watch that survives member failures: it resumes from the revision
//! after the last one delivered, so events are neither missed nor
//! duplicated; it reports compaction as "re-read needed"; and it wakes a
//! synchronous poll(2) loop through an eventfd.
//!
//! Every watch stream carries etcd's `hasleader` requirement: a member that
//! loses its leader cancels the watch (after about three election
//! timeouts), and the watch moves to another member instead of silently
//! waiting on one that cannot see new writes. A member that stops answering
//! altogether is found by HTTP/2 pings (5 s interval, 3 s timeout).
//!
//! Using it from a poll loop: put [`Watch`]'s fd (`AsFd`) in the poll set
//! for `POLLIN`; when it is readable, call [`Watch::try_recv`] until it
//! returns `None`. `try_recv` clears the eventfd only after finding the
//! channel empty, so no message can be left behind without a wake-up.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse};
use rustix::event::{EventfdFlags, eventfd};

use crate::client::{Backoff, EtcdClient, Shared, header_revision};
use crate::error::{Disposition, Error, Failure, Result, classify};
use crate::kv::{KeyValue, prefix_range_end};

/// What a watch covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchScope {
    /// Exactly the key.
    Key,
    /// Every key that starts with the key.
    Prefix,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed; here is its new state.
    Put(KeyValue),
    /// A key was deleted (or its lease expired or was revoked) at `revision`.
    Delete {
        /// The key, relative to the namespace.
        key: Vec<u8>,
        /// Revision of the deletion.
        revision: i64,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes in revision order, each revision at most once.
    Events(Vec<WatchEvent>),
    /// The revisions the watch needed were compacted away: some changes can
    /// no longer be delivered. Re-read the state at `revision` (e.g.
    /// [`EtcdClient::get_prefix`] with that revision); the watch goes on
    /// from `revision + 1` by itself. If that read fails with
    /// [`Error::Compacted`] too, drop this watch, read the latest state at
    /// R and start a new watch from R + 1.
    ReReadNeeded {
        /// The oldest revision etcd still has.
        compact_revision: i64,
        /// The store's revision when the compaction was detected.
        revision: i64,
    },
    /// The watch stopped for good (permission denied, ...); one line.
    Failed(String),
}

/// A resilient watch. Dropping it stops the background task.
pub struct Watch {
    // Keeps the runtime (and so the task) alive while the watch exists.
    _client: EtcdClient,
    rx: mpsc::Receiver<WatchMessage>,
    wake: Arc<OwnedFd>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// What the watch task needs to know about its target.
struct Target {
    key: Vec<u8>,
    range_end: Option<Vec<u8>>,
}

impl Watch {
    pub(crate) fn start(
        client: EtcdClient,
        key: &[u8],
        scope: WatchScope,
        from_revision: i64,
    ) -> Result<Self> {
        let shared = Arc::clone(client.shared());
        let full = shared.full_key(key);
        let target = Target {
            range_end: (scope == WatchScope::Prefix).then(|| prefix_range_end(&full)),
            key: full,
        };
        let wake = Arc::new(
            eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .map_err(|e| Error::Rejected(format!("cannot create an eventfd: {e}")))?,
        );
        let (tx, rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
        let sink = Sink {
            tx,
            wake: Arc::clone(&wake),
        };
        let task = run(shared, target, from_revision, sink, ready_tx);
        client.runtime().spawn(async move {
            tokio::select! {
                _ = task => {}
                _ = stopped => {}
            }
        });
        let bound = client.config().operation_timeout + Duration::from_secs(1);
        match ready_rx.recv_timeout(bound) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::RuntimeGone),
        }
        Ok(Watch {
            _client: client,
            rx,
            wake,
            _stop: stop,
        })
    }

    /// The next message if one is waiting. After the fd polled readable,
    /// call this until it returns `None`.
    pub fn try_recv(&self) -> Option<WatchMessage> {
        if let Ok(m) = self.rx.try_recv() {
            return Some(m);
        }
        // Clear the wake-up first, then look again: a message sent after the
        // clear writes the eventfd again, so none is left without one.
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&*self.wake, &mut buf);
        self.rx.try_recv().ok()
    }

    /// Waits up to `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchMessage> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl AsFd for Watch {
    /// An eventfd that is readable while messages may be waiting.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

/// Where the task delivers: the channel, then a write to the eventfd.
struct Sink {
    tx: mpsc::Sender<WatchMessage>,
    wake: Arc<OwnedFd>,
}

impl Sink {
    /// Delivers; `false` when the watch was dropped.
    fn send(&self, message: WatchMessage) -> bool {
        if self.tx.send(message).is_err() {
            return false;
        }
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        true
    }
}

/// Why a stream ended.
enum Ended {
    /// Re-open (on the next member, after a backoff).
    Retry,
    /// The revisions needed were compacted up to this one.
    Compacted(i64),
    /// Stop for good.
    Stop,
}

/// Learns the current revision (etcd's compaction notice carries none),
/// tells the owner to re-read at it, and returns it; `None` when the watch
/// is dropped or the cluster cannot be read.
async fn report_compaction(
    shared: &Shared,
    target: &Target,
    compact_revision: i64,
    sink: &Sink,
) -> Option<i64> {
    let read = shared
        .run(|mut c| {
            let key = target.key.clone();
            async move {
                c.get(key, Some(etcd_client::GetOptions::new().with_count_only()))
                    .await
            }
        })
        .await;
    match read {
        Ok(done) => {
            let revision = header_revision(done.value.header());
            sink.send(WatchMessage::ReReadNeeded {
                compact_revision,
                revision,
            })
            .then_some(revision)
        }
        Err(e) => {
            sink.send(WatchMessage::Failed(e.to_string()));
            None
        }
    }
}

/// The watch task: open, deliver, and resume from `next` after any end.
async fn run(
    shared: Arc<Shared>,
    target: Target,
    from_revision: i64,
    sink: Sink,
    ready: std::sync::mpsc::SyncSender<Result<()>>,
) {
    // The first revision not yet delivered (0: "from now", fixed by the
    // first stream's header).
    let mut next = from_revision.max(0);
    let mut ready = Some(ready);
    let n = shared.member_count();
    let mut idx = shared.preferred();
    let mut backoff = Backoff::new();
    let started = tokio::time::Instant::now();
    loop {
        let opened = tokio::time::timeout(
            shared.config.request_timeout,
            open(&shared, idx, &target, next),
        )
        .await;
        let failure = match opened {
            Ok(Ok(stream)) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                shared.prefer(idx);
                backoff = Backoff::new();
                match follow(&shared, stream, &mut next, &sink).await {
                    Ended::Stop => return,
                    Ended::Compacted(compact_revision) => {
                        match report_compaction(&shared, &target, compact_revision, &sink).await {
                            Some(revision) => {
                                next = revision + 1;
                                continue;
                            }
                            None => return,
                        }
                    }
                    Ended::Retry => None,
                }
            }
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        };
        if let Some(Failure {
            disposition: Disposition::Fatal(kind),
            message,
        }) = failure
        {
            let error = shared.fatal(kind, message);
            match ready.take() {
                Some(ready) => {
                    let _ = ready.send(Err(error));
                }
                None => {
                    sink.send(WatchMessage::Failed(error.to_string()));
                }
            }
            return;
        }
        // Establishing the watch is bounded like any call.
        if ready.is_some() && started.elapsed() >= shared.config.operation_timeout {
            let _ = ready.take().map(|r| {
                r.send(Err(Error::Unavailable {
                    endpoints: shared.config.endpoints_display(),
                    last_error: "could not open a watch".to_string(),
                    attempts: 0,
                    elapsed: started.elapsed(),
                }))
            });
            return;
        }
        idx = (idx + 1) % n;
        tokio::time::sleep(backoff.next_pause()).await;
    }
}

type Stream = (etcd_client::WatchStream, i64);

/// Opens a watch stream at member `idx` from revision `next` and waits for
/// etcd to confirm it. Returns the stream and, for a watch "from now", the
/// revision it starts after.
async fn open(
    shared: &Shared,
    idx: usize,
    target: &Target,
    next: i64,
) -> std::result::Result<Stream, Failure> {
    let mut client = shared.member_client(idx).await?;
    let mut options = WatchOptions::new();
    if next > 0 {
        options = options.with_start_revision(next);
    }
    if let Some(end) = &target.range_end {
        options = options.with_range(end.clone());
    }
    let unconfirmed = |what: &str| classify(&etcd_client::Error::WatchError(what.to_string()));
    let mut stream = client
        .watch(target.key.clone(), Some(options))
        .await
        .map_err(|e| classify(&e))?;
    // The first message confirms the watch (or cancels it at once).
    let first = stream
        .message()
        .await
        .map_err(|e| classify(&e))?
        .ok_or_else(|| unconfirmed("watch stream closed"))?;
    if !first.created() {
        return Err(unconfirmed("watch not confirmed"));
    }
    let revision = header_revision(first.header());
    Ok((stream, revision))
}

/// Delivers a stream's events until it ends; keeps `next` one past the last
/// delivered revision.
async fn follow(shared: &Shared, stream: Stream, next: &mut i64, sink: &Sink) -> Ended {
    let (mut stream, created_at) = stream;
    if *next == 0 {
        *next = created_at + 1;
    }
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) | Err(_) => return Ended::Retry,
        };
        if resp.canceled() {
            return cancelled(&resp, sink);
        }
        let events = convert(shared, &resp, *next);
        if let Some(last) = events.last() {
            *next = last.revision() + 1;
            if !sink.send(WatchMessage::Events(events)) {
                return Ended::Stop;
            }
        }
    }
}

/// Handles a cancellation: compaction, no leader, or a refusal.
fn cancelled(resp: &WatchResponse, sink: &Sink) -> Ended {
    if resp.compact_revision() > 0 {
        return Ended::Compacted(resp.compact_revision());
    }
    let reason = resp.cancel_reason();
    if reason.contains("permission denied") {
        sink.send(WatchMessage::Failed(format!(
            "etcd cancelled the watch: {reason}"
        )));
        return Ended::Stop;
    }
    Ended::Retry
}

/// Converts a response's events, dropping any below `next` (already
/// delivered before a resume).
fn convert(shared: &Shared, resp: &WatchResponse, next: i64) -> Vec<WatchEvent> {
    resp.events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            if kv.mod_revision() < next {
                return None;
            }
            Some(match event.event_type() {
                EventType::Put => WatchEvent::Put(shared.key_value(kv)),
                EventType::Delete => WatchEvent::Delete {
                    key: shared.key_value(kv).key,
                    revision: kv.mod_revision(),
                },
            })
        })
        .collect()
}

/// The first change of `key` after `revision`, read from the watch history
/// (`None` if it has not changed since): used to learn whether a lost
/// compare-and-swap was applied.
pub(crate) async fn first_change_after(
    shared: &Shared,
    key: &[u8],
    revision: i64,
) -> Result<Option<KeyValue>> {
    let full = shared.full_key(key);
    let current = shared
        .run(|mut c| {
            let full = full.clone();
            async move { c.get(full, None).await }
        })
        .await?
        .value;
    match current.kvs().first() {
        Some(kv) if kv.mod_revision() <= revision => return Ok(None),
        _ => {}
    }
    let target = Target {
        key: full,
        range_end: None,
    };
    let found = shared
        .run(|c| first_event(shared, c, &target, revision + 1))
        .await?
        .value;
    match found {
        FirstEvent::Change(kv) => Ok(kv),
        FirstEvent::Compacted(compact_revision) => Err(Error::Compacted {
            requested: revision + 1,
            compact_revision,
        }),
    }
}

enum FirstEvent {
    /// The first event: a put (Some) or a delete (None).
    Change(Option<KeyValue>),
    Compacted(i64),
}

async fn first_event(
    shared: &Shared,
    mut client: etcd_client::Client,
    target: &Target,
    from: i64,
) -> std::result::Result<FirstEvent, etcd_client::Error> {
    let options = WatchOptions::new().with_start_revision(from);
    let mut stream = client.watch(target.key.clone(), Some(options)).await?;
    loop {
        let Some(resp) = stream.message().await? else {
            return Err(etcd_client::Error::WatchError("watch stream closed".into()));
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return Ok(FirstEvent::Compacted(resp.compact_revision()));
            }
            return Err(etcd_client::Error::WatchError(format!(
                "watch cancelled: {}",
                resp.cancel_reason()
            )));
        }
        if let Some(event) = resp.events().first() {
            let kv = event.kv().map(|kv| shared.key_value(kv));
            return Ok(FirstEvent::Change(match event.event_type() {
                EventType::Put => kv,
                EventType::Delete => None,
            }));
        }
    }
}
