//! The etcd store's contract on a real cluster, through the store traits
//! alone (the multi-host behaviour of whole commands is tested in the root
//! package's tests/multihost): claims exclusive and fenced, outcomes
//! committed once, watches that wake, kill requests that reach the owning
//! wrapper's claim, breakers that lose no update, and a wrapper's claim
//! that says it is losing before its lease can expire.

#[path = "support/cluster.rs"]
mod cluster;

use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use cluster::{Cluster, eventually};
use jobwatch_core::model::EventKind;
use jobwatch_core::model::{
    Finalizer, JobEnd, JobName, JobRecord, KillRequest, LivenessMode, Outcome, Settings, rfc3339,
};
use jobwatch_core::store::{
    ClaimError, ClaimWait, Commit, Cursor, DocKind, Hold, Holder, Since, Store, Wake, WatchFor,
};
use jobwatch_core::supervise::record_held_by;
use jobwatch_etcd::{EtcdConfig, EtcdStore, StoreOptions};

/// A store on `url` with its own client (as another process would have).
fn store(url: &str, dir: &std::path::Path) -> EtcdStore {
    EtcdStore::open(
        EtcdConfig::parse(url).unwrap(),
        dir,
        StoreOptions::default(),
    )
    .expect("open the store")
}

fn name(s: &str) -> JobName {
    JobName::parse(s).unwrap()
}

/// Settings whose lease TTL is the 10 s minimum.
fn settings() -> Settings {
    Settings {
        heartbeat_ms: 1_000,
        stale_ms: 30_000,
        timeout_ms: None,
        grace_ms: 1_000,
        liveness: LivenessMode::Auto,
        retries: 0,
        backoff_ms: 0,
        backoff_max_ms: 0,
    }
}

fn record(name: &str, job_id: &str) -> JobRecord {
    // This test process stands for the wrapper: alive, on this host.
    let me = jobwatch_core::sys::proc::myself();
    let name = JobName::parse(name).expect("a valid name");
    JobRecord {
        command: vec!["true".into()],
        cwd: "/".into(),
        settings: settings(),
        attempt: 1,
        max_attempts: 1,
        ..record_held_by(&name, job_id.to_owned(), None, me, SystemTime::now())
    }
}

fn ended(mut r: JobRecord, outcome: Outcome) -> JobRecord {
    let end = JobEnd {
        outcome,
        exit_code: None,
        signal: None,
        reason: None,
    };
    r.finish(&end, Finalizer::Wrapper, SystemTime::now());
    r
}

fn readable(fd: std::os::fd::BorrowedFd<'_>, within: Duration) -> bool {
    let ts = rustix::event::Timespec {
        tv_sec: within.as_secs() as i64,
        tv_nsec: within.subsec_nanos() as _,
    };
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

#[test]
fn of_many_claimants_on_different_connections_exactly_one_holds_a_name() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("claims");
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<EtcdStore> = (0..4).map(|_| store(&url, dir.path())).collect();
    let won = std::sync::atomic::AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(stores.len());
    std::thread::scope(|s| {
        for st in &stores {
            let (won, barrier) = (&won, &barrier);
            s.spawn(move || {
                barrier.wait();
                match st.claim(&name("race"), ClaimWait::No) {
                    Ok(claim) => {
                        won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // Held until every other claimant has tried.
                        barrier.wait();
                        drop(claim);
                    }
                    Err(ClaimError::Held { .. }) => {
                        barrier.wait();
                    }
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    assert_eq!(won.into_inner(), 1);
    // Released on drop: free again.
    assert!(stores[0].claim(&name("race"), ClaimWait::No).is_ok());
}

#[test]
fn an_outcome_is_committed_once_and_a_second_commit_reports_the_first() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("commit");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&url, dir.path()), store(&url, dir.path()));
    let n = name("job");
    let mut claim = a.claim(&n, ClaimWait::No).unwrap();
    let r = record("job", "run-1");
    claim.write_record(&r).unwrap();
    assert_eq!(b.snapshot(&n).holder, Holder::Alive, "the wrapper's lease");
    let done = ended(r.clone(), Outcome::Success);
    // Rule 3: no commit before the final record.
    assert!(claim.commit(&done).is_err());
    claim.write_record(&done).unwrap();
    assert_eq!(claim.commit(&done).unwrap(), Commit::Committed);
    drop(claim);
    // A finisher elsewhere, too late: the first outcome stands.
    let mut late = b
        .claim(&n, ClaimWait::Briefly(Duration::from_secs(5)))
        .unwrap();
    let lost = ended(r, Outcome::Lost);
    late.write_record(&lost).unwrap();
    assert_eq!(late.commit(&lost).unwrap(), Commit::AlreadyFinished);
    drop(late);
    let snap = b.snapshot(&n);
    assert_eq!(
        snap.status.unwrap(),
        Some(jobwatch_core::model::StatusWord::Success)
    );
}

#[test]
fn a_runs_events_are_journaled_with_its_spawn_and_its_status_once_each_at_the_revision_of_the_change()
 {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("events");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&url, dir.path()), store(&url, dir.path()));
    let n = name("job");
    let start = b.events().read_events(&Since::Now).unwrap().next;
    let mut claim = a.claim(&n, ClaimWait::No).unwrap();
    let r = record("job", "run-ev");
    claim.write_record(&r).unwrap();
    assert!(
        b.events().read_events(&start).unwrap().events.is_empty(),
        "nothing before the spawn"
    );
    claim.mark_spawned(&r).unwrap();
    let retry = JobRecord {
        attempt: 2,
        ..r.clone()
    };
    claim.mark_spawned(&retry).unwrap();
    let done = ended(retry, Outcome::Failed);
    claim.write_record(&done).unwrap();
    assert_eq!(claim.commit(&done).unwrap(), Commit::Committed);
    // A retried commit (its reply lost) finds its own status: it creates
    // nothing more, no second event either.
    claim.commit(&done).unwrap();
    drop(claim);
    let read = b.events().read_events(&start).unwrap();
    let kinds: Vec<_> = read
        .events
        .iter()
        .map(|p| (p.event.job_id.as_str(), p.event.event))
        .collect();
    assert_eq!(
        kinds,
        [("run-ev", EventKind::Started), ("run-ev", EventKind::Ended)],
        "one started for the run (not per attempt), one ended"
    );
    assert_eq!(read.events[1].event.outcome, Some(Outcome::Failed));
    // The ended event's cursor is the revision that created the status.
    let status = b.client().get(b"jobs/job/status").unwrap().kv.unwrap();
    assert_eq!(
        read.events[1].cursor.as_str(),
        format!("etcd:{}", status.create_revision)
    );
    // After the last cursor: nothing; a repair finds the end there already.
    let after = Since::After(read.events[1].cursor.clone());
    assert!(b.events().read_events(&after).unwrap().events.is_empty());
    let end = read.events[1].event.clone();
    assert!(
        !b.events()
            .append_missing_end(&end, &read.events[0].cursor)
            .unwrap()
    );
    // Another store's cursor is refused in one line.
    let e = b
        .events()
        .read_events(&Since::After(Cursor::new("3f9a0c1d2e4b5a69:4711")))
        .unwrap_err();
    assert!(e.to_string().contains("etcd:REVISION"), "{e}");
}

#[test]
fn a_holder_whose_claim_is_gone_can_no_longer_write() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("fence");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&url, dir.path()), store(&url, dir.path()));
    let n = name("job");
    let mut stale = a.claim(&n, ClaimWait::No).unwrap();
    stale.write_record(&record("job", "run-1")).unwrap();
    // Its lease ends (as if it expired): the key goes, someone else claims.
    let claim_key = b"jobs/job/claim";
    let lease = a.client().get(claim_key).unwrap().kv.unwrap().lease;
    a.client().lease_revoke(lease).unwrap();
    let mut next = b
        .claim(&n, ClaimWait::No)
        .expect("free once the lease is gone");
    next.write_record(&record("job", "run-2")).unwrap();
    // Every write of the stale holder compares its claim: refused.
    let err = stale.write_record(&ended(record("job", "run-1"), Outcome::Failed));
    assert!(err.unwrap_err().to_string().contains("no longer holds"));
    assert!(stale.remove_kill_request().is_err());
    assert_eq!(b.current_job_id(&n).as_deref(), Some("run-2"));
}

#[test]
fn a_waiters_watch_wakes_on_a_status_and_on_a_wrappers_claim_going() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("watch");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&url, dir.path()), store(&url, dir.path()));
    let n = name("job");
    let watch = b.watch(std::slice::from_ref(&n), WatchFor::default());
    let other = b.watch(&[name("other")], WatchFor::default());
    let mut claim = a.claim(&n, ClaimWait::No).unwrap();
    let r = record("job", "run-1");
    claim.write_record(&r).unwrap();
    assert_eq!(watch.wait(Duration::from_secs(30)), Wake::State);
    while watch.drain().is_some() {}
    // The wrapper dies: its claim key goes with its lease.
    drop(claim);
    assert!(readable(watch.fd().unwrap(), Duration::from_secs(30)));
    assert_eq!(watch.drain(), Some(Wake::State));
    assert_eq!(b.snapshot(&n).holder, Holder::Dead);
    assert_eq!(other.drain(), None, "another name's watch stays asleep");
}

#[test]
fn a_kill_request_from_another_host_reaches_the_wrappers_claim_and_wakes_it() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("kill");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&url, dir.path()), store(&url, dir.path()));
    let n = name("job");
    let mut claim = a.claim(&n, ClaimWait::No).unwrap();
    claim.write_record(&record("job", "run-1")).unwrap();
    assert!(claim.kill_request().is_none());
    let fd = claim.wake_fd().expect("a wrapper's claim wakes its loop");
    let req = KillRequest {
        job_id: "run-1".into(),
        outcome: Outcome::Killed,
        reason: "test".into(),
        at: rfc3339(SystemTime::now()),
        grace_ms: Some(100),
        command_exited: false,
    };
    b.request_kill(&n, &req).unwrap();
    assert!(readable(fd.as_fd(), Duration::from_secs(30)));
    assert_eq!(claim.hold(), Hold::Held);
    assert_eq!(claim.kill_request(), Some(req));
}

#[test]
fn breaker_updates_from_many_connections_are_never_lost() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("docs");
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<EtcdStore> = (0..4).map(|_| store(&url, dir.path())).collect();
    let per = 10;
    std::thread::scope(|s| {
        for st in &stores {
            s.spawn(move || {
                for _ in 0..per {
                    st.docs()
                        .update(DocKind::Breaker, "count", &mut |cur| {
                            let n: u64 = cur
                                .ok()
                                .flatten()
                                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                                .unwrap_or(0);
                            Some((n + 1).to_string().into_bytes())
                        })
                        .unwrap();
                }
            });
        }
    });
    let bytes = stores[0].docs().read(DocKind::Breaker, "count").unwrap();
    assert_eq!(bytes.as_deref(), Some(b"40".as_slice()));
    assert_eq!(stores[0].docs().list(DocKind::Breaker).unwrap(), ["count"]);
}

#[test]
fn a_run_is_archived_under_a_unique_label_with_its_outcome() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.url("archive");
    let dir = tempfile::tempdir().unwrap();
    let a = store(&url, dir.path());
    let n = name("job");
    for id in ["run-1", "run-2"] {
        let mut claim = a.claim(&n, ClaimWait::No).unwrap();
        claim.archive_current("L").unwrap();
        let done = ended(record("job", id), Outcome::Failed);
        claim.write_record(&record("job", id)).unwrap();
        claim.write_record(&done).unwrap();
        claim.commit(&done).unwrap();
    }
    let mut claim = a.claim(&n, ClaimWait::No).unwrap();
    claim.archive_current("L").unwrap();
    drop(claim);
    assert_eq!(a.archived(&n), ["L.1", "L"]);
    let old = a.archived_run(&n, "run-1").expect("run-1 in history");
    assert_eq!(
        old.snapshot.status.unwrap(),
        Some(jobwatch_core::model::StatusWord::Failed)
    );
    assert!(matches!(a.snapshot(&n).record, Ok(None)));
}

#[test]
fn a_wrapper_cut_off_from_the_cluster_is_told_to_stop_before_its_lease_can_expire() {
    let Some(cluster) = Cluster::start("store-fence") else {
        return;
    };
    let member = cluster.followers()[0];
    let only = format!("etcd://{}/fence", cluster.endpoints()[member]);
    let dir = tempfile::tempdir().unwrap();
    let wrapper = store(&only, dir.path());
    let observer = store(&cluster.url("fence"), dir.path());
    let n = name("job");
    let mut claim = wrapper.claim(&n, ClaimWait::No).unwrap();
    claim.write_record(&record("job", "run-1")).unwrap();
    let lease = observer
        .client()
        .get(b"jobs/job/claim")
        .unwrap()
        .kv
        .unwrap()
        .lease;
    let ttl = observer
        .client()
        .lease_time_to_live(lease)
        .unwrap()
        .unwrap();
    assert!(ttl <= Duration::from_secs(10), "{ttl:?}");
    cluster.stop(member);
    let cut = Instant::now();
    let within = eventually(
        Duration::from_secs(30),
        "the claim says it is losing",
        || match claim.hold() {
            Hold::Losing { within, .. } => Some(within),
            Hold::Held => None,
        },
    );
    let fenced = cut.elapsed();
    // The lease cannot expire before a TTL after the last keepalive: the
    // wrapper is told with time to spare for the kill.
    eventually(Duration::from_secs(40), "the lease expires", || {
        observer.snapshot(&n).holder.eq(&Holder::Dead).then_some(())
    });
    let expired = cut.elapsed();
    eprintln!(
        "measured: fenced after {fenced:?} (kill within {within:?}), lease expired after {expired:?}"
    );
    assert!(
        fenced + within <= expired,
        "fenced {fenced:?} + {within:?} > expired {expired:?}"
    );
    cluster.resume(member);
}
