//! Keeping a lease alive from a background task, unconditionally, every
//! TTL/3, and telling the owner how recently that last worked.
//!
//! The lease proves that the process holding it and its host are alive, so
//! the keeper renews it whatever the job does. A keepalive stream that
//! fails (member killed, leader change, partition) is re-opened on the next
//! member after a short pause — not after a full interval — so one failed
//! member costs at most a few hundred milliseconds of the TTL.
//!
//! The owner fences itself on [`LeaseKeeper::last_keepalive`]: the instant
//! the last *successful* keepalive request was *sent* (the server's TTL
//! restarted no earlier than that), so "no success for a fraction of the
//! TTL" is judged conservatively on the owner's own monotonic clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{Backoff, EtcdClient, Shared};
use crate::error::{Disposition, FatalKind, classify};
use crate::kv::LeaseId;

/// What the keeper task shares with its handle.
struct KeeperState {
    last_ok: Mutex<Instant>,
    expired: AtomicBool,
}

/// Keeps one lease alive until stopped or dropped (which does not revoke
/// it: call [`revoke`](Self::revoke) for that).
pub struct LeaseKeeper {
    client: EtcdClient,
    id: LeaseId,
    ttl: Duration,
    state: Arc<KeeperState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("id", &self.id)
            .field("ttl", &self.ttl)
            .field("expired", &self.is_expired())
            .finish()
    }
}

impl LeaseKeeper {
    pub(crate) fn start(client: EtcdClient, id: LeaseId, ttl: Duration) -> Self {
        let state = Arc::new(KeeperState {
            // The grant happened just before: count it as the last renewal.
            last_ok: Mutex::new(Instant::now()),
            expired: AtomicBool::new(false),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = keep(Arc::clone(client.shared()), id, ttl, Arc::clone(&state));
        client.runtime().spawn(async move {
            tokio::select! {
                _ = task => {}
                _ = stopped => {}
            }
        });
        LeaseKeeper {
            client,
            id,
            ttl,
            state,
            stop: Some(stop),
        }
    }

    /// The lease being kept.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The TTL the lease was granted with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When the last successful keepalive was sent (or the keeper started).
    pub fn last_keepalive(&self) -> Instant {
        *self.state.last_ok.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long since the last successful keepalive was sent.
    pub fn since_last_keepalive(&self) -> Duration {
        self.last_keepalive().elapsed()
    }

    /// Whether etcd said the lease no longer exists (expired or revoked);
    /// the keeper stops then.
    pub fn is_expired(&self) -> bool {
        self.state.expired.load(Ordering::Acquire)
    }

    /// Stops renewing; the lease then expires after its TTL unless revoked.
    pub fn stop(&mut self) {
        drop(self.stop.take());
    }

    /// Stops renewing and revokes the lease (deleting its keys).
    pub fn revoke(mut self) -> crate::Result<()> {
        self.stop();
        self.client.lease_revoke(self.id)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The longest one renewal may take before the keeper moves to the next
/// member.
pub const RENEWAL_BOUND: Duration = Duration::from_secs(2);

/// The keeper loop: renew every TTL/3; after a failure, re-open on the next
/// member after a short backoff.
async fn keep(shared: Arc<Shared>, id: LeaseId, ttl: Duration, state: Arc<KeeperState>) {
    let interval = (ttl / 3).max(Duration::from_millis(100));
    let n = shared.member_count();
    let mut idx = shared.preferred();
    let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    let mut backoff = Backoff::new();
    loop {
        let sent_at = Instant::now();
        // Bounded by the interval too, so that a hung member delays the next
        // renewal by at most one interval, and by RENEWAL_BOUND: a renewal
        // answers in milliseconds, and every second spent on a member that
        // does not answer is a second less before its owner must fence.
        let bound = interval
            .min(shared.config.request_timeout)
            .min(RENEWAL_BOUND);
        let renewed = tokio::time::timeout(bound, renew(&shared, idx, id, &mut stream)).await;
        match renewed {
            Ok(Ok(true)) => {
                *state.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = sent_at;
                shared.prefer(idx);
                backoff = Backoff::new();
                tokio::time::sleep_until((sent_at + interval).into()).await;
            }
            Ok(Ok(false)) => {
                state.expired.store(true, Ordering::Release);
                return;
            }
            Ok(Err(())) | Err(_) => {
                stream = None;
                idx = (idx + 1) % n;
                tokio::time::sleep(backoff.next_pause().min(interval / 2)).await;
            }
        }
    }
}

/// One renewal: opens the stream if needed (which itself renews), else sends
/// a request and reads the answer. `Ok(false)`: the lease is gone.
async fn renew(
    shared: &Shared,
    idx: usize,
    id: LeaseId,
    stream: &mut Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
) -> Result<bool, ()> {
    let gone = |e: &etcd_client::Error| {
        matches!(
            classify(e).disposition,
            Disposition::Fatal(FatalKind::LeaseNotFound)
        )
    };
    if let Some((keeper, responses)) = stream {
        keeper.keep_alive().await.map_err(|_| ())?;
        return match responses.message().await {
            Ok(Some(resp)) => Ok(resp.ttl() > 0),
            Ok(None) => Err(()),
            Err(e) if gone(&e) => Ok(false),
            Err(_) => Err(()),
        };
    }
    let mut client = shared.member_client(idx).await.map_err(|_| ())?;
    match client.lease_keep_alive(id).await {
        Ok(opened) => {
            *stream = Some(opened);
            Ok(true)
        }
        Err(e) if gone(&e) => Ok(false),
        Err(_) => Err(()),
    }
}
