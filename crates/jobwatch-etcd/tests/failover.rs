//! Faults on a real cluster: members killed (SIGKILL) or stopped (SIGSTOP)
//! while calls, watches and lease keepers run. Each test has its own
//! cluster, since each one breaks it.
//!
//! The timings these tests print ("measured: ...") are the figures quoted in
//! the crate's README; the assertions are the documented bounds.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster::Cluster;
use jobwatch_etcd::{EtcdClient, EtcdConfig, Watch, WatchEvent, WatchMessage, WatchScope};

/// A client that uses member `first` first (connecting prefers the first
/// listed member that answers).
fn client_on(cluster: &Cluster, namespace: &str, first: usize) -> EtcdClient {
    let mut endpoints = cluster.endpoints();
    let preferred = endpoints.remove(first);
    endpoints.insert(0, preferred);
    let url = format!("etcd://{}/{namespace}", endpoints.join(","));
    // The first listed member is preferred only if it answers within a short
    // grace of the fastest one; on a loaded machine it may miss that once,
    // so connect again (bounded) rather than test a different member.
    for _ in 0..20 {
        let client = EtcdClient::connect(EtcdConfig::parse(&url).unwrap()).unwrap();
        if member_of(&cluster.endpoints(), &client) == first {
            return client;
        }
    }
    panic!("member {first} was never the first to answer in 20 connects");
}

fn member_of(endpoints: &[String], client: &EtcdClient) -> usize {
    let url = client.current_endpoint();
    endpoints
        .iter()
        .position(|e| url.ends_with(e.as_str()))
        .expect("current endpoint is a member")
}

/// Writes `seq/00000`… with create-if-absent (a lost reply's retry cannot
/// write twice), reporting each completion; returns when all are done.
fn write_sequence(client: EtcdClient, n: usize, progress: mpsc::Sender<(usize, Instant)>) {
    for i in 0..n {
        let key = format!("seq/{i:05}");
        let outcome = client
            .create(key.as_bytes(), format!("v{i}").as_bytes(), None)
            .unwrap_or_else(|e| panic!("write {i} failed: {e}"));
        assert!(outcome.created(), "write {i}: {outcome:?}");
        let _ = progress.send((i, Instant::now()));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Receives `n` events and checks they are `seq/0..n` each exactly once, in
/// order.
fn assert_watch_saw_each_write_once_in_order(watch: &Watch, n: usize) {
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while keys.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.recv_timeout(left) {
            Some(WatchMessage::Events(events)) => keys.extend(
                events
                    .iter()
                    .map(|e| String::from_utf8(e.key().to_vec()).unwrap()),
            ),
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("watch delivered {} of {n} events", keys.len()),
        }
    }
    let expected: Vec<String> = (0..n).map(|i| format!("seq/{i:05}")).collect();
    assert_eq!(keys, expected, "each write exactly once, in order");
    assert!(
        watch.recv_timeout(Duration::from_millis(300)).is_none(),
        "no duplicate after the last write"
    );
}

/// Runs the write sequence with a watch on it, applies `fault` after
/// `at` writes, and returns how long writes paused around the fault.
fn writes_and_watch_through(
    cluster: &Cluster,
    client: EtcdClient,
    fault: impl FnOnce(),
) -> Duration {
    let (n, at) = (120, 30);
    let start = client.get(b"seq/").unwrap().revision;
    let watch = client
        .watch(b"seq/", WatchScope::Prefix, start + 1)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let writer = {
        let client = client.clone();
        std::thread::spawn(move || write_sequence(client, n, tx))
    };
    let mut fault = Some(fault);
    let mut faulted_at = None;
    let mut resumed_after = None;
    for (i, done) in rx.iter() {
        if i + 1 == at {
            (fault.take().unwrap())();
            faulted_at = Some(Instant::now());
        } else if let Some(t) = faulted_at
            && resumed_after.is_none()
            && done > t
        {
            resumed_after = Some(done - t);
        }
    }
    writer.join().expect("the writer succeeded throughout");
    assert_watch_saw_each_write_once_in_order(&watch, n);
    let _ = cluster;
    resumed_after.expect("writes after the fault")
}

#[test]
fn calls_and_a_watch_go_on_when_the_follower_they_use_is_killed() {
    let Some(cluster) = Cluster::start("follower-kill") else {
        return;
    };
    let followers = cluster.followers();
    let client = client_on(&cluster, "f", followers[0]);
    let used = member_of(&cluster.endpoints(), &client);
    let paused = writes_and_watch_through(&cluster, client, || cluster.kill(used));
    eprintln!("measured: writes resumed {paused:?} after killing the follower in use");
    assert!(paused < Duration::from_secs(10), "{paused:?}");
    // Restarted on its data, the member catches up and serves again.
    cluster.restart(used);
    cluster.wait_healthy();
    let only_it = format!("etcd://{}/f", cluster.endpoints()[used]);
    let direct = EtcdClient::connect(EtcdConfig::parse(&only_it).unwrap()).unwrap();
    cluster::eventually(
        Duration::from_secs(10),
        "the restarted member has every write",
        || direct.get(b"seq/00119").ok()?.kv,
    );
}

#[test]
fn calls_and_a_watch_go_on_when_the_leader_they_use_is_killed() {
    let Some(cluster) = Cluster::start("leader-kill") else {
        return;
    };
    let leader = cluster.leader();
    let client = client_on(&cluster, "l", leader);
    let paused = writes_and_watch_through(&cluster, client, || cluster.kill(leader));
    eprintln!("measured: writes resumed {paused:?} after killing the leader");
    assert!(paused < Duration::from_secs(10), "{paused:?}");
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
}

#[test]
fn a_kept_lease_outlives_a_leader_change() {
    let Some(cluster) = Cluster::start("lease-leader-change") else {
        return;
    };
    let leader = cluster.leader();
    let client = client_on(&cluster, "k", leader);
    // The longest gap is about one interval (TTL/3) + the election + one
    // attempt bound; TTL 6 s keeps it below the TTL with a margin.
    let ttl = Duration::from_secs(6);
    let lease = client.lease_grant(ttl).unwrap();
    client.put(b"alive", b"host", Some(lease)).unwrap();
    let keeper = client.keep_alive(lease, ttl);
    cluster.kill(leader);
    let killed = Instant::now();
    let mut longest_gap = Duration::ZERO;
    while killed.elapsed() < 2 * ttl {
        longest_gap = longest_gap.max(keeper.since_last_keepalive());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!keeper.is_expired());
    assert!(
        client.get(b"alive").unwrap().kv.is_some(),
        "the key outlived 3 TTLs"
    );
    eprintln!(
        "measured: longest time without a successful keepalive across a leader kill: {longest_gap:?} (TTL {ttl:?})"
    );
    assert!(longest_gap < ttl, "{longest_gap:?}");
}

#[test]
fn a_lease_whose_keeper_stops_expires_within_the_bound_across_a_leader_kill() {
    let Some(cluster) = Cluster::start("lease-expiry-leader-kill") else {
        return;
    };
    let leader = cluster.leader();
    let followers = cluster.followers();
    // The watcher sits on a follower that survives; the keeper anywhere.
    let watcher = client_on(&cluster, "e", followers[0]);
    let owner = client_on(&cluster, "e", leader);
    let ttl = Duration::from_secs(4);
    let lease = owner.lease_grant(ttl).unwrap();
    let rev = owner.put(b"alive", b"host", Some(lease)).unwrap();
    let mut keeper = owner.keep_alive(lease, ttl);
    let watch = watcher.watch(b"alive", WatchScope::Key, rev + 1).unwrap();
    std::thread::sleep(ttl / 2);
    keeper.stop();
    let last = keeper.last_keepalive();
    // Kill the leader halfway through the TTL: the new leader restarts the
    // lease's countdown.
    while last.elapsed() < ttl / 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.kill(leader);
    let message = watch
        .recv_timeout(3 * ttl + Duration::from_secs(10))
        .expect("the lease expired");
    let expired_after = last.elapsed();
    let WatchMessage::Events(events) = message else {
        panic!("{message:?}")
    };
    assert!(matches!(&events[0], WatchEvent::Delete { key, .. } if key == b"alive"));
    eprintln!(
        "measured: TTL {ttl:?}, leader killed at +{:?}: expiry seen {expired_after:?} after the last keepalive",
        ttl / 2
    );
    // Documented bound: TTL <= expiry <= 2 x TTL + election (a few seconds).
    assert!(expired_after >= ttl, "{expired_after:?}");
    assert!(
        expired_after <= 2 * ttl + Duration::from_secs(4),
        "{expired_after:?}"
    );
}

#[test]
fn a_watch_whose_member_stops_answering_resumes_elsewhere_and_reports_a_compaction() {
    let Some(cluster) = Cluster::start("stopped-member-compaction") else {
        return;
    };
    let client = client_on(&cluster, "c", 0);
    let start = client.put(b"jobs/a", b"1", None).unwrap();
    let watch = client.watch(b"jobs/", WatchScope::Prefix, start).unwrap();
    let watched_member = member_of(&cluster.endpoints(), &client);
    let first = watch.recv_timeout(Duration::from_secs(10));
    assert!(matches!(first, Some(WatchMessage::Events(_))), "{first:?}");
    // The member under the watch freezes; meanwhile the others move on and
    // compact away the revisions the watch has not seen.
    cluster.stop(watched_member);
    let stopped = Instant::now();
    let writer = client_on(&cluster, "c", (watched_member + 1) % cluster.size());
    writer.put(b"jobs/b", b"1", None).unwrap();
    writer.put(b"jobs/c", b"1", None).unwrap();
    // Compaction keeps its own revision: the watch's next one (jobs/b's) is
    // now gone.
    let compacted = cluster.compact();
    let last = writer.put(b"jobs/d", b"1", None).unwrap();
    let message = watch
        .recv_timeout(Duration::from_secs(30))
        .expect("the watch noticed");
    let noticed = stopped.elapsed();
    let WatchMessage::ReReadNeeded {
        compact_revision,
        revision,
    } = message
    else {
        panic!("expected a re-read, got {message:?}")
    };
    eprintln!("measured: a watch on a stopped member resumed elsewhere after {noticed:?}");
    assert!(compact_revision >= compacted);
    assert!(revision >= last);
    let state = writer.get_prefix(b"jobs/", revision).unwrap();
    assert_eq!(state.kvs.len(), 4);
    // The watch goes on after the re-read point.
    let next = writer.put(b"jobs/e", b"1", None).unwrap();
    let message = watch.recv_timeout(Duration::from_secs(10));
    let Some(WatchMessage::Events(events)) = message else {
        panic!("{message:?}")
    };
    assert_eq!(events[0].revision(), next);
}
