//! Writes whose reply is lost after etcd applied them: the client talks to
//! one member through a TCP proxy that, on demand, forwards requests but
//! swallows every reply. The attempt then times out, the layer retries on
//! another member, and must report the truth: the write was applied once,
//! by this call.

#[path = "support/cluster.rs"]
mod cluster;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster::Cluster;
use jobwatch_etcd::{CasOutcome, CreateOutcome, EtcdClient, EtcdConfig};

/// A proxy to `target` that drops the replies while `swallow` is set.
struct ReplyEater {
    port: u16,
    swallow: Arc<AtomicBool>,
}

impl ReplyEater {
    fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let swallow = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&swallow);
        // The accept thread ends with the test process; each connection's
        // pumps end when either side closes.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let never = Arc::new(AtomicBool::new(false));
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    never,
                );
                pump(server, client, Arc::clone(&flag));
            }
        });
        ReplyEater { port, swallow }
    }
}

/// Copies `from` to `to`, discarding what it reads while `drop` is set.
fn pump(mut from: TcpStream, mut to: TcpStream, drop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !drop.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// A client whose first member is the proxy (to member 0) and whose current
/// member is that proxy; attempts time out after 1 s.
fn client_through(cluster: &Cluster, proxy: &ReplyEater) -> EtcdClient {
    let endpoints = cluster.endpoints();
    let url = format!(
        "etcd://127.0.0.1:{},{},{}/lost",
        proxy.port, endpoints[1], endpoints[2]
    );
    for _ in 0..50 {
        let mut config = EtcdConfig::parse(&url).unwrap();
        config.request_timeout = Duration::from_secs(1);
        let client = EtcdClient::connect(config).unwrap();
        if client
            .current_endpoint()
            .ends_with(&format!(":{}", proxy.port))
        {
            return client;
        }
    }
    panic!("no connection went through the proxy first");
}

#[test]
fn a_create_whose_reply_was_lost_reports_created_once() {
    let Some(cluster) = Cluster::start("lost-create") else {
        return;
    };
    let proxy = ReplyEater::start(cluster.endpoints()[0].clone());
    let client = client_through(&cluster, &proxy);
    let observer = client_through(&cluster, &proxy);
    proxy.swallow.store(true, Ordering::SeqCst);
    let outcome = client.create(b"claim", b"run-1", None).unwrap();
    proxy.swallow.store(false, Ordering::SeqCst);
    assert!(
        matches!(outcome, CreateOutcome::Created { .. }),
        "the lost creation was ours: {outcome:?}"
    );
    let kv = observer.get(b"claim").unwrap().kv.unwrap();
    assert_eq!(kv.value, b"run-1");
    assert_eq!(kv.version, 1, "applied exactly once");
    // Someone else's claim is still reported as theirs.
    let other = client.create(b"claim", b"run-2", None).unwrap();
    assert!(matches!(other, CreateOutcome::Exists(kv) if kv.value == b"run-1"));
}

#[test]
fn a_compare_and_swap_whose_reply_was_lost_reports_swapped_once() {
    let Some(cluster) = Cluster::start("lost-cas") else {
        return;
    };
    let proxy = ReplyEater::start(cluster.endpoints()[0].clone());
    let client = client_through(&cluster, &proxy);
    let created = client.put(b"breaker", b"failures=0", None).unwrap();
    proxy.swallow.store(true, Ordering::SeqCst);
    let outcome = client
        .compare_and_swap(b"breaker", created, b"failures=1;run-7", None)
        .unwrap();
    proxy.swallow.store(false, Ordering::SeqCst);
    let CasOutcome::Swapped { revision } = outcome else {
        panic!("the lost swap was ours: {outcome:?}")
    };
    let kv = client.get(b"breaker").unwrap().kv.unwrap();
    assert_eq!(kv.value, b"failures=1;run-7");
    assert_eq!(kv.mod_revision, revision);
    assert_eq!(kv.version, 2, "applied exactly once");
    // A swap from the stale revision now conflicts.
    let stale = client
        .compare_and_swap(b"breaker", created, b"failures=1;run-8", None)
        .unwrap();
    assert!(matches!(stale, CasOutcome::Conflict(Some(kv)) if kv.value == b"failures=1;run-7"));
}
