//! Many hosts on etcd (issue 11), side by side with the jobs directory, on
//! one loopback 3-member cluster started here (the jobwatch-etcd harness),
//! with hosts simulated by PID + UTS namespaces (tests/multihost/hosts.rs):
//!
//! - completion detection across hosts: the job's last act (its own time
//!   stamp, on host A) to `jobwatch wait` returning on host B;
//! - time to `lost` after host A dies (its namespace killed), against the
//!   documented bound (2 × lease TTL + an election);
//! - etcd writes per running job per minute, for a job that prints all the
//!   time and for a silent one (the revisions that touch the job's keys:
//!   each write is one transaction; lease keepalives are not writes).
//!
//! Built only with `--features etcd-tests`; without etcd, or without root
//! for the namespaces, its rows say why they are missing.

#[path = "../../tests/multihost/hosts.rs"]
#[allow(dead_code)]
mod hosts;

use std::time::{Duration, Instant, SystemTime};

use crate::Opts;
use crate::stats::{Row, Value};
use crate::util::{Ctx, note, read_time, since, spread};
use hosts::{Host, finish};
use jobwatch_etcd::test_cluster::Cluster;
use jobwatch_etcd::{EtcdClient, EtcdConfig, WatchEvent, WatchMessage, WatchScope};

const SECTION: &str = "6. many hosts (etcd, loopback 3-member cluster)";
const FILES: &str = "jobwatch wait, jobs directory, same host (inotify)";
/// A 10 s lease (the minimum): `lost` within 2 × 10 s + an election.
const LEASE_10S: &[&str] = &["--stale", "30s", "--heartbeat", "1s"];
/// As in section 1: the waiter is up before the job ends.
const SETTLE: Duration = Duration::from_millis(300);

/// Runs the section; rows say why when it cannot.
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let missing = |why: &str| {
        vec![Row {
            section: SECTION,
            label: "not measured".into(),
            value: Value::Note(why.to_owned()),
            baseline: None,
        }]
    };
    if !hosts::available("bench") {
        return missing("needs root, unshare and nsenter to simulate hosts");
    }
    note("etcd: starting a 3-member cluster");
    let Some(cluster) = Cluster::start("bench") else {
        return missing("etcd is not installed (apt-get install etcd-server)");
    };
    let url = cluster.url("bench");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    let mut rows = Vec::new();
    let mut add = |label: String, value: Value, baseline: bool| {
        rows.push(Row {
            section: SECTION,
            baseline: baseline.then(|| FILES.to_owned()),
            label,
            value,
        })
    };
    note("etcd: completion detection, jobs directory baseline");
    add(
        FILES.into(),
        Value::Times(files_baseline(ctx, opts.etcd_runs)),
        false,
    );
    note("etcd: completion detection across hosts");
    add(
        "jobwatch wait on host B, job on host A (etcd watch)".into(),
        Value::Times(across_hosts(ctx, &a, &b, opts.etcd_runs)),
        true,
    );
    note("etcd: time to lost after a host dies");
    let lost = time_to_lost(&url, opts.etcd_lost_runs);
    add(
        "host A dies → `lost` on host B (lease 10 s; bound 23 s)".into(),
        Value::Times(lost),
        false,
    );
    note("etcd: writes per running job per minute");
    for (label, script) in [
        ("a job printing all the time", "while :; do echo tick; done"),
        ("a silent job", "sleep 100000"),
    ] {
        let per_min = writes_per_minute(&a, &url, script, opts.etcd_writes_for);
        add(
            format!("etcd writes per minute, {label} (--heartbeat 10s, the default)"),
            Value::Amount {
                value: per_min,
                unit: "writes/min",
            },
            false,
        );
    }
    rows
}

/// The same measurement on the jobs directory, for the ratio.
fn files_baseline(ctx: &Ctx, runs: usize) -> Vec<Duration> {
    let dir = ctx.dir("etcd-files");
    (0..runs)
        .map(|i| {
            let name = format!("f{i}");
            let stamp = dir.join(format!("{name}.exit"));
            let job = ctx.exiting_job(spread(i, SETTLE, Duration::ZERO), &stamp);
            let started = ctx
                .jw(&dir, &["run", &name, "--detach", "--", "sh", "-c", &job])
                .status()
                .expect("run");
            assert!(started.success());
            let status = ctx.jw(&dir, &["wait", &name]).status().expect("wait");
            let returned = SystemTime::now();
            assert!(status.success());
            since(read_time(&stamp), returned)
        })
        .collect()
}

fn across_hosts(ctx: &Ctx, a: &Host, b: &Host, runs: usize) -> Vec<Duration> {
    (0..runs)
        .map(|i| {
            let name = format!("x{i}");
            let stamp = a.file(&format!("{name}.exit"));
            let job = ctx.exiting_job(spread(i, SETTLE, Duration::ZERO), &stamp);
            a.start_job(&name, &[], &["sh", "-c", &job]);
            let out = b.run(&["wait", &name], Duration::from_secs(120));
            let returned = SystemTime::now();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            since(read_time(&stamp), returned)
        })
        .collect()
}

fn time_to_lost(url: &str, runs: usize) -> Vec<Duration> {
    (0..runs)
        .map(|i| {
            let mut host = Host::start(&format!("doomed{i}"), url);
            let watcher = Host::start(&format!("watcher{i}"), url);
            let name = format!("lost{i}");
            host.start_job(&name, LEASE_10S, &["sleep", "100000"]);
            let waiter = watcher.spawn(&["wait", &name]);
            let died = Instant::now();
            host.crash();
            let out = finish(waiter, Duration::from_secs(120));
            assert_eq!(out.status.code(), Some(4), "expected lost");
            died.elapsed()
        })
        .collect()
}

fn writes_per_minute(a: &Host, url: &str, script: &str, over: Duration) -> f64 {
    let client = EtcdClient::connect(EtcdConfig::parse(url).unwrap()).expect("connect");
    let name = format!("w{}", script.len());
    // Never judged hung within the window (a silent job would be at 60 s).
    a.start_job(&name, &["--stale", "1h"], &["sh", "-c", script]);
    // The start's writes settled; from here every revision that touches the
    // job's keys is one write of its (each is one transaction).
    std::thread::sleep(Duration::from_secs(2));
    let from = client.get(b"x").expect("read").revision;
    let prefix = format!("jobs/{name}/");
    let watch = client
        .watch(prefix.as_bytes(), WatchScope::Prefix, from + 1)
        .expect("watch");
    let started = Instant::now();
    let mut revisions = std::collections::BTreeSet::new();
    while let Some(left) = over.checked_sub(started.elapsed()) {
        if let Some(WatchMessage::Events(events)) = watch.recv_timeout(left) {
            revisions.extend(events.iter().map(WatchEvent::revision));
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let _ = a.run(&["kill", &name], Duration::from_secs(60));
    revisions.len() as f64 / minutes
}
