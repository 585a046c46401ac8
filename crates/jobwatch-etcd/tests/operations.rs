//! Calls against one healthy 3-member cluster shared by every test in this
//! file: none of them faults it, and each works in its own namespace.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cluster::{Cluster, eventually};
use jobwatch_etcd::{
    CasOutcome, Compare, CreateOutcome, Error, EtcdClient, EtcdConfig, Op, OpResult, WatchEvent,
    WatchMessage, WatchScope,
};

fn connect(cluster: &Cluster, namespace: &str) -> EtcdClient {
    let config = EtcdConfig::parse(&cluster.url(namespace)).unwrap();
    EtcdClient::connect(config).unwrap()
}

/// Collects watch events until `n` have arrived (bounded).
fn collect_events(watch: &jobwatch_etcd::Watch, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while events.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.recv_timeout(left) {
            Some(WatchMessage::Events(batch)) => events.extend(batch),
            Some(other) => panic!("unexpected watch message {other:?}"),
            None => panic!("only {} of {n} events arrived: {events:?}", events.len()),
        }
    }
    events
}

#[test]
fn create_lets_exactly_one_of_two_racing_clients_win() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let clients = [connect(cluster, "race"), connect(cluster, "race")];
    let rounds = 30;
    let barrier = Arc::new(Barrier::new(2));
    let outcomes: Vec<Vec<CreateOutcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(who, client)| {
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    (0..rounds)
                        .map(|round| {
                            barrier.wait();
                            let key = format!("claim/{round}");
                            client
                                .create(key.as_bytes(), format!("client-{who}").as_bytes(), None)
                                .unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (round, (a, b)) in outcomes[0].iter().zip(&outcomes[1]).enumerate() {
        assert!(
            a.created() != b.created(),
            "round {round}: exactly one must win: {a:?} / {b:?}"
        );
        let (winner, loser) = if a.created() { (0, b) } else { (1, a) };
        let CreateOutcome::Exists(kv) = loser else {
            unreachable!()
        };
        assert_eq!(kv.value, format!("client-{winner}").as_bytes());
        assert_eq!(kv.key, format!("claim/{round}").as_bytes());
    }
}

#[test]
fn compare_and_swap_from_many_threads_counts_every_increment_exactly_once() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let client = connect(cluster, "counter");
    let key = b"count";
    assert!(client.create(key, b"0", None).unwrap().created());
    let (threads, each) = (6, 20);
    let conflicts: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let client = client.clone();
                s.spawn(move || {
                    let mut conflicts = 0;
                    let mut current = client.get(key).unwrap().kv.unwrap();
                    for i in 0..each {
                        loop {
                            let count: u64 = parse_count(&current.value);
                            // Unique per write (thread, step), as the
                            // compare_and_swap contract asks.
                            let value = format!("{}:{t}:{i}", count + 1);
                            match client
                                .compare_and_swap(key, current.mod_revision, value.as_bytes(), None)
                                .unwrap()
                            {
                                CasOutcome::Swapped { revision } => {
                                    current.value = value.into_bytes();
                                    current.mod_revision = revision;
                                    break;
                                }
                                CasOutcome::Conflict(now) => {
                                    conflicts += 1;
                                    current = now.expect("the counter is never deleted");
                                }
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let end = client.get(key).unwrap().kv.unwrap();
    assert_eq!(parse_count(&end.value), (threads * each) as u64);
    // Each increment is one change after the creation.
    assert_eq!(end.version, (threads * each) as i64 + 1);
    eprintln!(
        "cas: {} increments, {conflicts} conflicts retried",
        threads * each
    );
}

fn parse_count(value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).unwrap();
    text.split(':').next().unwrap().parse().unwrap()
}

#[test]
fn prefix_reads_are_one_snapshot_at_a_revision_inside_their_namespace() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let a = connect(cluster, "snap-a");
    let b = connect(cluster, "snap-b");
    b.put(b"jobs/x", b"other namespace", None).unwrap();
    // More keys than one page (500), written 100 to a transaction.
    for chunk in 0..11 {
        let ops: Vec<Op> = (0..100)
            .map(|i| Op::put(format!("jobs/{:04}", chunk * 100 + i), "v1"))
            .collect();
        a.txn(&[], &ops, &[]).unwrap();
    }
    let before = a.get_prefix(b"jobs/", 0).unwrap();
    assert_eq!(before.kvs.len(), 1100);
    assert!(before.kvs.iter().all(|kv| kv.value == b"v1"));
    assert_eq!(
        before.kvs[0].key, b"jobs/0000",
        "keys are namespace-relative"
    );
    a.put(b"jobs/0000", b"v2", None).unwrap();
    a.delete(b"jobs/0001").unwrap();
    let old = a.get_prefix(b"jobs/", before.revision).unwrap();
    assert_eq!(old, before, "a read at a revision sees that revision");
    let now = a.get_prefix(b"jobs/", 0).unwrap();
    assert_eq!(now.kvs.len(), 1099);
    assert_eq!(now.kvs[0].value, b"v2");
    assert_eq!(b.get_prefix(b"", 0).unwrap().kvs.len(), 1);
    assert_eq!(a.delete_prefix(b"jobs/").unwrap(), 1099);
    assert_eq!(
        b.get(b"jobs/x").unwrap().kv.unwrap().value,
        b"other namespace"
    );
}

#[test]
fn transactions_run_their_then_or_otherwise_branch_on_the_compares() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let c = connect(cluster, "txn");
    let rev = c.put(b"status", b"running", None).unwrap();
    let finish = c
        .txn(
            &[
                Compare::Value(b"status".to_vec(), b"running".to_vec()),
                Compare::ModRevision(b"status".to_vec(), rev),
                Compare::Absent(b"final".to_vec()),
            ],
            &[Op::put("final", "ok"), Op::Delete(b"status".to_vec())],
            &[Op::Get(b"final".to_vec())],
        )
        .unwrap();
    assert!(finish.succeeded);
    assert_eq!(finish.results, [OpResult::Put, OpResult::Delete(1)]);
    let again = c
        .txn(
            &[Compare::Absent(b"final".to_vec())],
            &[Op::put("final", "second")],
            &[Op::Get(b"final".to_vec())],
        )
        .unwrap();
    assert!(!again.succeeded);
    let OpResult::Get(kvs) = &again.results[0] else {
        panic!("{again:?}")
    };
    assert_eq!(kvs[0].value, b"ok");
    assert!(!again.uncertain);
}

#[test]
fn a_watch_from_a_revision_delivers_later_changes_in_order_and_wakes_poll() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let c = connect(cluster, "watch");
    let r1 = c.put(b"jobs/a", b"1", None).unwrap();
    c.put(b"jobs/b", b"1", None).unwrap();
    c.put(b"other", b"not watched", None).unwrap();
    let watch = c.watch(b"jobs/", WatchScope::Prefix, r1).unwrap();
    let history = collect_events(&watch, 2);
    assert_eq!(
        history.iter().map(|e| e.key().to_vec()).collect::<Vec<_>>(),
        [b"jobs/a".to_vec(), b"jobs/b".to_vec()]
    );
    assert_eq!(history[0].revision(), r1);

    // Live changes wake a poll(2) on the watch's fd.
    let deleted_at = {
        c.put(b"jobs/c", b"1", None).unwrap();
        c.delete(b"jobs/a").unwrap();
        c.get(b"jobs/a").unwrap().revision
    };
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 {
        let mut fds = [rustix::event::PollFd::new(
            &watch,
            rustix::event::PollFlags::IN,
        )];
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::event::Timespec::try_from(left).unwrap();
        let ready = rustix::event::poll(&mut fds, Some(&ts)).unwrap();
        assert!(ready > 0, "the fd never became readable; seen {seen:?}");
        while let Some(message) = watch.try_recv() {
            let WatchMessage::Events(batch) = message else {
                panic!("{message:?}")
            };
            seen.extend(batch);
        }
    }
    assert!(matches!(&seen[0], WatchEvent::Put(kv) if kv.key == b"jobs/c"));
    assert_eq!(
        seen[1],
        WatchEvent::Delete {
            key: b"jobs/a".to_vec(),
            revision: deleted_at
        }
    );
    // Drained: the fd is no longer readable.
    let mut fds = [rustix::event::PollFd::new(
        &watch,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec::default();
    assert_eq!(rustix::event::poll(&mut fds, Some(&zero)).unwrap(), 0);
}

#[test]
fn a_watch_from_a_compacted_revision_asks_for_a_re_read_then_goes_on() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let c = connect(cluster, "compact");
    let old = c.put(b"k", b"1", None).unwrap();
    c.put(b"k", b"2", None).unwrap();
    let compacted = cluster.compact();
    let err = c.get_prefix(b"", old).unwrap_err();
    assert!(
        matches!(err, Error::Compacted { requested, .. } if requested == old),
        "{err}"
    );
    assert!(err.to_string().contains("compacted"), "{err}");

    let watch = c.watch(b"k", WatchScope::Key, old).unwrap();
    let message = watch
        .recv_timeout(Duration::from_secs(10))
        .expect("a message");
    let WatchMessage::ReReadNeeded {
        compact_revision,
        revision,
    } = message
    else {
        panic!("expected a re-read, got {message:?}")
    };
    assert!(
        compact_revision >= compacted,
        "{compact_revision} < {compacted}"
    );
    let state = c.get_prefix(b"k", revision).unwrap();
    assert_eq!(state.kvs[0].value, b"2");
    let next = c.put(b"k", b"3", None).unwrap();
    let events = collect_events(&watch, 1);
    assert_eq!(events[0].revision(), next);
}

#[test]
fn a_lease_whose_keeper_stops_expires_between_ttl_and_twice_ttl() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let c = connect(cluster, "lease-expiry");
    let ttl = Duration::from_secs(3);
    let lease = c.lease_grant(ttl).unwrap();
    let start = c.put(b"alive", b"host-1", Some(lease)).unwrap();
    let mut keeper = c.keep_alive(lease, ttl);
    let watch = c.watch(b"alive", WatchScope::Key, start + 1).unwrap();
    // Kept past its TTL, the key stays.
    std::thread::sleep(ttl + ttl / 2);
    assert!(c.get(b"alive").unwrap().kv.is_some());
    assert!(keeper.since_last_keepalive() < ttl);
    keeper.stop();
    let last = keeper.last_keepalive();
    let events = collect_events(&watch, 1);
    let expired_after = last.elapsed();
    assert!(matches!(&events[0], WatchEvent::Delete { key, .. } if key == b"alive"));
    eprintln!("lease ttl {ttl:?}: expiry seen {expired_after:?} after the last keepalive");
    assert!(expired_after >= ttl, "{expired_after:?}");
    assert!(
        expired_after <= 2 * ttl + Duration::from_secs(2),
        "{expired_after:?}"
    );
    assert_eq!(c.lease_time_to_live(lease).unwrap(), None);
}

#[test]
fn a_keeper_reports_its_lease_expired_once_it_is_revoked_elsewhere() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let c = connect(cluster, "lease-revoke");
    let other = connect(cluster, "lease-revoke");
    let ttl = Duration::from_secs(3);
    let lease = c.lease_grant(ttl).unwrap();
    c.put(b"alive", b"x", Some(lease)).unwrap();
    let keeper = c.keep_alive(lease, ttl);
    assert!(!keeper.is_expired());
    other.lease_revoke(lease).unwrap();
    assert!(c.get(b"alive").unwrap().kv.is_none());
    eventually(2 * ttl, "the keeper notices the revoked lease", || {
        keeper.is_expired().then_some(())
    });
    // Revoking again (a lost reply's retry) is not an error.
    other.lease_revoke(lease).unwrap();
    let err = c.put(b"alive", b"y", Some(lease)).unwrap_err();
    assert!(
        matches!(err, Error::LeaseNotFound { id } if id == lease),
        "{err}"
    );
}
