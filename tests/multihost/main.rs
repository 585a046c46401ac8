//! Many hosts on one etcd cluster (issue 11, docs/multi-host.md), tested
//! end to end: real 3-member clusters (the jobwatch-etcd harness, torn down
//! by PID), and hosts simulated by PID + UTS namespaces ([`hosts`]) so that
//! nothing can rely on seeing another host's processes.
//!
//! Run with `cargo test --features etcd-tests --test multihost` (root; etcd,
//! unshare and nsenter installed). Tests that fault the cluster start their
//! own; the others share one, each in its own namespace of keys.
//!
//! The times these tests print (`measured:`) are quoted in
//! docs/multi-host.md; the assertions are the documented bounds.

mod hosts;

use std::io::Write as _;
use std::process::Output;
use std::time::{Duration, Instant};

use hosts::{Gate, Host, eventually, finish, json};
use jobwatch_etcd::test_cluster::{Cluster, Options};
use jobwatch_etcd::{EtcdClient, EtcdConfig};

/// Settings that give a 10 s lease (the minimum): `lost` within 23 s.
const LEASE_10S: &[&str] = &["--stale", "30s", "--heartbeat", "1s"];

/// The documented bound on `lost` after a host dies, for a 10 s lease:
/// 2 × TTL + an election (docs/multi-host.md), plus the waiter's commit.
const LOST_BOUND_10S: Duration = Duration::from_secs(23);

/// Slack for a loaded 2-core machine on top of a documented bound.
const SLACK: Duration = Duration::from_secs(10);

/// Generous bound on a command that should end by itself.
const LONG: Duration = Duration::from_secs(120);

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn measured(what: &str, value: impl std::fmt::Debug) {
    let _ = writeln!(std::io::stderr(), "measured: {what}: {value:?}");
}

/// A client on the cluster's namespace, to look at what jobwatch stored.
fn client(url: &str) -> EtcdClient {
    EtcdClient::connect(EtcdConfig::parse(url).unwrap()).expect("connect")
}

/// How many times the name's status key was written (1: created once).
fn status_versions(url: &str, name: &str) -> i64 {
    let got = client(url)
        .get(format!("jobs/{name}/status").as_bytes())
        .expect("read status");
    got.kv.map_or(0, |kv| kv.version)
}

/// The current run's id, from its record.
fn job_id(url: &str, name: &str) -> String {
    let got = client(url)
        .get(format!("jobs/{name}/record").as_bytes())
        .expect("read record");
    let kv = got.kv.expect("a record");
    let record: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    record["job_id"].as_str().unwrap().to_owned()
}

/// PIDs (as this test sees them) of processes that belong to run `job_id`.
fn processes_of(job_id: &str) -> Vec<u32> {
    let needle = format!("JOBWATCH_JOB_ID={job_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .filter(|pid| {
            // A zombie is dead.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        })
        .collect()
}

fn setup(test: &str) -> Option<&'static Cluster> {
    let cluster = Cluster::shared()?;
    hosts::available(test).then_some(cluster)
}

/// A cluster of the test's own (it stops and kills members), when hosts
/// can be simulated here; `None` after saying why not.
fn own_cluster(test: &str) -> Option<Cluster> {
    let cluster = Cluster::start(test)?;
    hosts::available(test).then_some(cluster)
}

/// Host A on one follower only, host B on the whole cluster, both in
/// `namespace`: stopping that follower cuts A off while B still reaches
/// the cluster. Returns the follower, then the hosts.
fn one_host_on_one_member(cluster: &Cluster, namespace: &str) -> (usize, Host, Host) {
    let member = cluster.followers()[0];
    let only_its_member = format!("etcd://{}/{namespace}", cluster.endpoints()[member]);
    let a = Host::start("alpha", &only_its_member);
    let b = Host::start("beta", &cluster.url(namespace));
    (member, a, b)
}

#[test]
fn every_outcome_of_a_job_on_one_host_is_reported_on_another_with_its_tail() {
    let Some(cluster) = setup("outcomes") else {
        return;
    };
    let url = cluster.url("outcomes");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    a.start_job("ok", LEASE_10S, &["sh", "-c", "echo fine"]);
    a.start_job(
        "bad",
        LEASE_10S,
        &["sh", "-c", "echo first; echo boom >&2; exit 3"],
    );
    let mut slow = vec!["--timeout", "1s"];
    slow.extend_from_slice(LEASE_10S);
    a.start_job("slow", &slow, &["sleep", "1000"]);
    a.start_job(
        "stuck",
        &[
            "--stale",
            "2s",
            "--heartbeat",
            "500ms",
            "--liveness",
            "output",
        ],
        &["sleep", "1000"],
    );
    let cases = [
        ("ok", 0, "success"),
        ("bad", 1, "failed"),
        ("slow", 124, "timeout"),
        ("stuck", 3, "hung"),
    ];
    for (name, exit, outcome) in cases {
        let out = b.run(&["wait", name, "--timeout", "100s"], LONG);
        let v = json(&out);
        assert_eq!(code(&out), exit, "{name}: {v} {}", stderr(&out));
        assert_eq!(v["outcome"], outcome, "{name}: {v}");
    }
    let out = b.run(&["wait", "bad", "--timeout", "10s"], LONG);
    let tail = json(&out)["tail"].to_string();
    assert!(tail.contains("first") && tail.contains("boom"), "{tail}");
    // The log is on alpha: beta says where, never shows a file of its own.
    let out = b.run(&["logs", "bad"], LONG);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("alpha:"), "{}", stderr(&out));
    let out = a.run(&["logs", "bad"], LONG);
    assert!(String::from_utf8_lossy(&out.stdout).contains("boom"));
}

#[test]
fn a_running_job_elsewhere_is_listed_running_and_finishes_for_every_host() {
    let Some(cluster) = setup("listing") else {
        return;
    };
    let url = cluster.url("listing");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    let gate = Gate::new(a.dir(), "listing");
    a.start_job("job", LEASE_10S, &["sh", "-c", &gate.wait_cmd()]);
    let out = b.run(&["status", "job", "--json"], LONG);
    assert_eq!(json(&out)["state"], "running", "{}", stderr(&out));
    let out = b.run(&["ls", "--json"], LONG);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"job\""));
    let waiter = b.spawn(&["wait", "job", "--timeout", "100s"]);
    gate.open();
    let out = finish(waiter, LONG);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(status_versions(&url, "job"), 1);
}

#[test]
fn a_host_that_dies_is_reported_lost_by_every_waiter_within_the_bound_once() {
    let Some(cluster) = setup("crash") else {
        return;
    };
    let url = cluster.url("crash");
    let mut a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    let c = Host::start("gamma", &url);
    a.start_job("work", LEASE_10S, &["sleep", "1000"]);
    let waiters = [
        b.spawn(&["wait", "work", "--timeout", "100s"]),
        c.spawn(&["wait", "work", "--timeout", "100s"]),
    ];
    let died = Instant::now();
    a.crash();
    let outs: Vec<Output> = waiters.into_iter().map(|w| finish(w, LONG)).collect();
    let took = died.elapsed();
    measured("host crash to lost (10 s lease)", took);
    let verdicts: Vec<serde_json::Value> = outs.iter().map(json).collect();
    for (out, v) in outs.iter().zip(&verdicts) {
        assert_eq!(code(out), 4, "{v} {}", stderr(out));
        assert_eq!(v["outcome"], "lost");
    }
    // One outcome, committed once: both report the same final record.
    assert_eq!(verdicts[0]["duration_ms"], verdicts[1]["duration_ms"]);
    assert_eq!(status_versions(&url, "work"), 1);
    assert!(took < LOST_BOUND_10S + SLACK, "lost after {took:?}");
}

/// Which member a test kills while a job runs.
#[derive(Debug, Clone, Copy)]
enum Victim {
    Leader,
    Follower,
}

fn no_result_is_lost_when_a_member_dies_mid_run(victim: Victim) {
    let label = format!("{victim:?}-killed").to_lowercase();
    let Some(cluster) = own_cluster(&label) else {
        return;
    };
    let url = cluster.url("mid");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    let gate = Gate::new(a.dir(), "mid");
    a.start_job(
        "work",
        LEASE_10S,
        &["sh", "-c", &format!("{}; echo finished", gate.wait_cmd())],
    );
    let waiter = b.spawn(&["wait", "work", "--timeout", "100s"]);
    let target = match victim {
        Victim::Leader => cluster.leader(),
        Victim::Follower => cluster.followers()[0],
    };
    cluster.kill(target);
    cluster.wait_healthy();
    gate.open();
    let out = finish(waiter, LONG);
    let v = json(&out);
    assert_eq!(code(&out), 0, "{v} {}", stderr(&out));
    assert_eq!(v["outcome"], "success");
    assert_eq!(status_versions(&url, "work"), 1);
    let log = a.run(&["logs", "work"], LONG);
    assert!(String::from_utf8_lossy(&log.stdout).contains("finished"));
}

#[test]
fn a_follower_killed_mid_run_loses_no_result() {
    no_result_is_lost_when_a_member_dies_mid_run(Victim::Follower);
}

#[test]
fn the_leader_killed_mid_run_loses_no_result() {
    no_result_is_lost_when_a_member_dies_mid_run(Victim::Leader);
}

#[test]
fn a_wrapper_cut_off_from_the_cluster_stops_its_job_before_it_is_reported_lost() {
    let Some(cluster) = own_cluster("cut-off") else {
        return;
    };
    let url = cluster.url("cut");
    let (member, a, b) = one_host_on_one_member(&cluster, "cut");
    let alive = a.file("alive");
    let beat = format!(
        "while :; do date +%s%N > {0}.tmp && mv {0}.tmp {0}; sleep 0.05; done",
        alive.display()
    );
    a.start_job("work", LEASE_10S, &["sh", "-c", &beat]);
    let id = job_id(&url, "work");
    eventually(Duration::from_secs(30), "the job runs", || {
        alive.exists().then_some(())
    });
    let waiter = b.spawn(&["wait", "work", "--timeout", "100s"]);
    let cut = Instant::now();
    cluster.stop(member);
    let out = finish(waiter, LONG);
    let reported = now_ns();
    measured("cut off to lost (10 s lease)", cut.elapsed());
    let v = json(&out);
    assert_eq!(code(&out), 4, "{v} {}", stderr(&out));
    assert_eq!(v["outcome"], "lost");
    // The job was stopped before the cluster reported it lost: none of its
    // processes is left, and its last sign of life precedes the verdict.
    assert_eq!(processes_of(&id), Vec::<u32>::new(), "the job runs on");
    let last: u128 = std::fs::read_to_string(&alive)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(last < reported, "the job wrote after it was reported lost");
    measured(
        "job stopped before lost by",
        Duration::from_nanos((reported - last) as u64),
    );
    cluster.resume(member);
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn a_kill_from_another_host_is_carried_out_by_the_owning_wrapper() {
    let Some(cluster) = setup("kill") else {
        return;
    };
    let url = cluster.url("kill");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    a.start_job("k", LEASE_10S, &["sleep", "1000"]);
    let id = job_id(&url, "k");
    let out = b.run(&["kill", "k", "--json"], LONG);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["outcome"], "killed");
    assert_eq!(processes_of(&id), Vec::<u32>::new());
    let out = a.run(&["status", "k", "--json"], LONG);
    assert_eq!(json(&out)["state"], "killed");
}

#[test]
fn a_kill_requested_while_the_owners_watch_is_down_is_still_carried_out() {
    let Some(cluster) = own_cluster("kill-watch-down") else {
        return;
    };
    let member = cluster.followers()[0];
    let mut endpoints = cluster.endpoints();
    // The owner prefers that member (listed first): its watch is there.
    let preferred = endpoints.remove(member);
    let owner_url = format!("etcd://{preferred},{}/kd", endpoints.join(","));
    let killer_url = format!("etcd://{}/kd", endpoints.join(","));
    let a = Host::start("alpha", &owner_url);
    let b = Host::start("beta", &killer_url);
    // A 20 s lease: the keepalive moves to another member long before the
    // wrapper would fence itself.
    a.start_job(
        "k",
        &["--stale", "61s", "--heartbeat", "1s"],
        &["sleep", "1000"],
    );
    let id = job_id(&killer_url, "k");
    cluster.stop(member);
    let asked = Instant::now();
    let out = b.run(&["kill", "k", "--json", "--grace", "1s"], LONG);
    measured(
        "kill carried out after the owner's watch moved",
        asked.elapsed(),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["outcome"], "killed", "{}", stderr(&out));
    assert_eq!(processes_of(&id), Vec::<u32>::new());
    cluster.resume(member);
}

#[test]
fn two_hosts_starting_one_name_at_once_run_it_exactly_once() {
    let Some(cluster) = setup("once") else {
        return;
    };
    let url = cluster.url("once");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    for round in 0..3 {
        let name = format!("once{round}");
        let starts = a.file(&format!("starts-{round}"));
        let gate = Gate::new(a.dir(), &name);
        let script = format!("hostname >> {}; {}", starts.display(), gate.wait_cmd());
        let args = [
            "run",
            &name,
            "--detach",
            "--stale",
            "30s",
            "--heartbeat",
            "1s",
            "--",
            "sh",
            "-c",
            &script,
        ];
        let both = [a.spawn(&args), b.spawn(&args)];
        let outs: Vec<Output> = both.into_iter().map(|c| finish(c, LONG)).collect();
        let started = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(
            started,
            1,
            "round {round}: {:?}",
            outs.iter().map(stderr).collect::<Vec<_>>()
        );
        let refused = outs.iter().find(|o| !o.status.success()).unwrap();
        assert_eq!(code(refused), 2, "{}", stderr(refused));
        let lines = eventually(Duration::from_secs(30), "the job started", || {
            let text = std::fs::read_to_string(&starts).ok()?;
            (!text.is_empty()).then_some(text)
        });
        gate.open();
        let out = b.run(&["wait", &name, "--timeout", "100s"], LONG);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let after = std::fs::read_to_string(&starts).unwrap();
        assert_eq!(after.lines().count(), 1, "round {round}: {after:?}");
        assert_eq!(lines, after);
    }
}

#[test]
fn breaker_counts_from_several_hosts_lose_no_failure() {
    let Some(cluster) = setup("breaker") else {
        return;
    };
    let url = cluster.url("breaker");
    let hosts: Vec<Host> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| Host::start(n, &url))
        .collect();
    let runs = 4;
    std::thread::scope(|s| {
        for h in &hosts {
            s.spawn(move || {
                for i in 0..runs {
                    let name = format!("{}-{i}", h.name);
                    let out = h.run(
                        &[
                            "run",
                            &name,
                            "--breaker",
                            "shared",
                            "--max-failures",
                            "100",
                            "--stale",
                            "30s",
                            "--heartbeat",
                            "1s",
                            "--",
                            "false",
                        ],
                        LONG,
                    );
                    assert_eq!(code(&out), 1, "{}", stderr(&out));
                }
            });
        }
    });
    let out = hosts[0].run(&["breaker", "status", "shared", "--json"], LONG);
    let v = json(&out);
    assert_eq!(v["consecutive_failures"], 3 * runs, "{v}");
}

#[test]
fn an_unreachable_cluster_is_one_line_naming_it_and_exit_2_never_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens: refused at once.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = refused.local_addr().unwrap().port();
    drop(refused);
    // Listens, never answers: bounded by the connect and request timeouts.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for (port, bound) in [
        (port, Duration::from_secs(5)),
        (silent_port, Duration::from_secs(15)),
    ] {
        let url = format!("etcd://127.0.0.1:{port}/x");
        let started = Instant::now();
        let child = std::process::Command::new(hosts::jobwatch())
            .args(["--dir"])
            .arg(dir.path())
            .args(["--store", &url, "status"])
            .env_remove("RUST_BACKTRACE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish(child, Duration::from_secs(60));
        let took = started.elapsed();
        measured(&format!("unreachable cluster reported (port {port})"), took);
        assert_eq!(code(&out), 2);
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(took < bound, "{took:?}");
    }
    drop(silent);
}

#[test]
fn a_tls_cluster_with_client_certificates_is_used_through_the_flags() {
    let Some(cluster) = Cluster::start_with(
        "tls",
        Options {
            tls: true,
            ..Options::default()
        },
    ) else {
        return;
    };
    let tls = cluster.tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("tls");
    let jw = |args: &[&str], with_cert: bool| {
        let mut cmd = std::process::Command::new(hosts::jobwatch());
        cmd.arg("--dir")
            .arg(dir.path())
            .args(["--store", &url, "--etcd-ca"])
            .arg(&tls.ca);
        if with_cert {
            cmd.arg("--etcd-cert")
                .arg(&tls.client_cert)
                .arg("--etcd-key")
                .arg(&tls.client_key);
        }
        cmd.args(args)
            .env_remove("RUST_BACKTRACE")
            .env_remove("JOBWATCH_STORE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        finish(cmd.spawn().unwrap(), LONG)
    };
    // The detached wrapper gets the TLS files through its environment.
    let out = jw(
        &["run", "t", "--detach", "--", "sh", "-c", "echo over-tls"],
        true,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = jw(&["wait", "t", "--timeout", "100s"], true);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The cluster requires a client certificate: one line, exit 2.
    let out = jw(&["status"], false);
    assert_eq!(code(&out), 2, "{:?} {}", out.status, stderr(&out));
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn wrong_credentials_are_refused_in_one_line_naming_the_user_never_the_password() {
    let Some(cluster) = Cluster::start_with(
        "auth",
        Options {
            root_password: Some("s3cret-pw".to_owned()),
            ..Options::default()
        },
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("auth");
    let jw = |args: &[&str], password: &str| {
        let mut cmd = std::process::Command::new(hosts::jobwatch());
        cmd.arg("--dir")
            .arg(dir.path())
            .args(["--store", &url])
            .args(args)
            .env("JOBWATCH_ETCD_USER", "root")
            .env("JOBWATCH_ETCD_PASSWORD", password)
            .env_remove("RUST_BACKTRACE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        finish(cmd.spawn().unwrap(), LONG)
    };
    let out = jw(&["status"], "wrong-pw");
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("authentication failed") && err.contains("root"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");
    let out = jw(&["run", "a", "--detach", "--", "true"], "s3cret-pw");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = jw(&["wait", "a", "--timeout", "100s"], "s3cret-pw");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_follower_on_one_host_sees_every_event_of_jobs_on_another_exactly_once_across_a_killed_member()
{
    let Some(cluster) = own_cluster("events") else {
        return;
    };
    let url = cluster.url("events");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    let mut follower = b.spawn(&["events", "--follow", "--json"]);
    let lines = lines_of(follower.stdout.take().unwrap());
    let mut seen = Vec::new();
    let until = |seen: &mut Vec<serde_json::Value>, job_id: &str, kind: &str| {
        eventually(LONG, &format!("the {kind} event of {job_id}"), || {
            while let Ok(line) = lines.try_recv() {
                seen.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
            }
            seen.iter()
                .any(|e| e["job_id"] == job_id && e["event"] == kind)
                .then_some(())
        })
    };
    let run = |name: &str, command: &[&str]| {
        a.start_job(name, LEASE_10S, command);
        let id = job_id(&url, name);
        a.run(&["wait", name, "--timeout", "100s"], LONG);
        id
    };
    let mut ids = vec![run("one", &["true"]), run("two", &["sh", "-c", "exit 3"])];
    until(&mut seen, &ids[1], "ended");
    // The member listed first (the one every client tries first) dies.
    cluster.kill(0);
    cluster.wait_healthy();
    ids.push(run("three", &["true"]));
    ids.push(run("four", &["sh", "-c", "exit 1"]));
    // A last run: every event before its `ended` has been read by then,
    // repeats included.
    ids.push(run("five", &["true"]));
    until(&mut seen, &ids[4], "ended");
    let _ = follower.kill();
    let _ = follower.wait();
    let pairs: Vec<(String, String)> = seen
        .iter()
        .map(|e| {
            assert_eq!(e["host"], "alpha", "{e}");
            (
                e["job_id"].as_str().unwrap().to_owned(),
                e["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ids
        .iter()
        .flat_map(|id| {
            [
                (id.clone(), "started".to_owned()),
                (id.clone(), "ended".to_owned()),
            ]
        })
        .collect();
    assert_eq!(pairs, expected, "each event once, in order");
    let outcomes: Vec<&str> = seen
        .iter()
        .filter(|e| e["event"] == "ended")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["success", "failed", "success", "failed", "success"]
    );
    // A cursor printed by the follower resumes right after its event.
    let cursor = seen[3]["cursor"].as_str().unwrap();
    let out = a.run(&["events", "--json", "--since", cursor], LONG);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rest: Vec<String> = hosts::json_lines(&out)
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = seen[4..]
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rest, expected);
}

#[test]
fn a_follower_on_another_host_reports_the_run_of_a_host_that_died_ended_lost_once() {
    let Some(cluster) = setup("events-lost") else {
        return;
    };
    let url = cluster.url("evlost");
    let mut a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    let mut follower = b.spawn(&["events", "--follow", "--json", "--since", "now"]);
    let lines = lines_of(follower.stdout.take().unwrap());
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let until = |seen: &mut Vec<serde_json::Value>, job_id: &str, kind: &str| {
        eventually(LONG, &format!("the {kind} event of {job_id}"), || {
            while let Ok(line) = lines.try_recv() {
                seen.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
            }
            seen.iter()
                .any(|e| e["job_id"] == job_id && e["event"] == kind)
                .then_some(())
        })
    };
    a.start_job("work", LEASE_10S, &["sleep", "1000"]);
    let id = job_id(&url, "work");
    until(&mut seen, &id, "started");
    // The host dies: nobody is left to commit the run's end but the
    // follower, once the wrapper's lease has expired.
    a.crash();
    until(&mut seen, &id, "ended");
    // A last run: a repeat of the end would have come before its `ended`.
    b.start_job("last", LEASE_10S, &["true"]);
    let last = job_id(&url, "last");
    until(&mut seen, &last, "ended");
    let _ = follower.kill();
    let _ = follower.wait();
    let ends: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|e| e["job_id"] == id.as_str() && e["event"] == "ended")
        .collect();
    assert_eq!(ends.len(), 1, "{seen:?}");
    assert_eq!(ends[0]["outcome"], "lost", "{}", ends[0]);
    assert_eq!(ends[0]["finalized_by"], "waiter", "{}", ends[0]);
    assert_eq!(status_versions(&url, "work"), 1);
}

/// The lines a child writes on `out`, as they come.
fn lines_of(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn the_password_reaches_a_detached_wrapper_in_its_handover_never_in_an_argv_or_a_file() {
    const PASSWORD: &str = "pw-7c1e-never-shown";
    let Some(cluster) = Cluster::start_with(
        "auth-ps",
        Options {
            root_password: Some(PASSWORD.to_owned()),
            ..Options::default()
        },
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("authps");
    let jw = |args: &[&str]| {
        let mut cmd = std::process::Command::new(hosts::jobwatch());
        cmd.arg("--dir")
            .arg(dir.path())
            .args(["--store", &url, "--etcd-user", "root"])
            .args(args)
            .env("JOBWATCH_ETCD_PASSWORD", PASSWORD)
            .env_remove("RUST_BACKTRACE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        finish(cmd.spawn().unwrap(), LONG)
    };
    let out = jw(&["run", "a", "--detach", "--", "sleep", "1000"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = job_id_with_password(&url, PASSWORD, "a");
    // The wrapper and its job run: nothing `ps` shows holds the password.
    eventually(LONG, "the job runs", || {
        (!processes_of(&id).is_empty()).then_some(())
    });
    let ps = std::process::Command::new("ps")
        .args(["-eww", "-o", "pid=,args="])
        .output()
        .expect("ps (procps) runs");
    assert!(ps.status.success());
    let ps = String::from_utf8_lossy(&ps.stdout);
    // The lean `jobwatch-wrapper` beside the binary (`jobwatch __wrapper`
    // when it is missing).
    assert!(
        ps.contains("jobwatch-wrapper") || ps.contains("__wrapper"),
        "the detached wrapper is listed:\n{ps}"
    );
    assert!(!ps.contains(PASSWORD), "ps shows the password:\n{ps}");
    // Nor any file of the jobs directory (the record, the log, …).
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "{} holds the password",
            file.display()
        );
    }
    let out = jw(&["kill", "a"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = jw(&["wait", "a", "--timeout", "100s"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
}

/// The current run's id on a cluster with auth enabled (user root).
fn job_id_with_password(url: &str, password: &str, name: &str) -> String {
    let config = EtcdConfig::parse(url)
        .unwrap()
        .with_env_from(|v| match v {
            "JOBWATCH_ETCD_USER" => Some("root".to_owned()),
            "JOBWATCH_ETCD_PASSWORD" => Some(password.to_owned()),
            _ => None,
        })
        .unwrap();
    let client = EtcdClient::connect(config).expect("connect");
    let got = eventually(LONG, "the record", || {
        client
            .get(format!("jobs/{name}/record").as_bytes())
            .ok()?
            .kv
    });
    let record: serde_json::Value = serde_json::from_slice(&got.value).unwrap();
    record["job_id"].as_str().unwrap().to_owned()
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files
}

#[test]
fn without_self_fencing_a_cut_off_wrapper_lets_its_job_run_on_while_others_see_it_lost() {
    let Some(cluster) = own_cluster("no-fence") else {
        return;
    };
    let url = cluster.url("nofence");
    let (member, a, b) = one_host_on_one_member(&cluster, "nofence");
    let mut flags = vec!["--no-self-fence"];
    flags.extend_from_slice(LEASE_10S);
    a.start_job("work", &flags, &["sleep", "1000"]);
    let id = job_id(&url, "work");
    let waiter = b.spawn(&["wait", "work", "--timeout", "100s"]);
    cluster.stop(member);
    let out = finish(waiter, LONG);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    // The availability choice (docs/multi-host.md): the job was not stopped.
    assert!(!processes_of(&id).is_empty(), "the job was stopped");
    cluster.resume(member);
}

/// The parent of a process, as this test sees PIDs.
fn parent_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("PPid")
}

#[test]
fn a_sigkilled_wrapper_is_lost_at_once_on_its_host_and_for_every_other_host_once() {
    let Some(cluster) = setup("wrapper-killed") else {
        return;
    };
    let url = cluster.url("wkill");
    let a = Host::start("alpha", &url);
    let b = Host::start("beta", &url);
    a.start_job("work", LEASE_10S, &["sleep", "1000"]);
    let id = job_id(&url, "work");
    let job = eventually(Duration::from_secs(10), "the job runs", || {
        processes_of(&id).first().copied()
    });
    let wrapper = parent_of(job);
    let remote = b.spawn(&["wait", "work", "--timeout", "100s"]);
    let killed = Instant::now();
    // SAFETY: kill(2) of the wrapper this test started (through its host).
    unsafe {
        libc::kill(wrapper as libc::pid_t, libc::SIGKILL);
    }
    // On its own host the wrapper's PID says it is gone: no lease to wait
    // for (its lease is ended so the name can be finished now).
    let out = a.run(&["wait", "work", "--timeout", "100s"], LONG);
    let here = killed.elapsed();
    measured("wrapper SIGKILL to lost on its own host", here);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        here < Duration::from_secs(10),
        "waited for the lease: {here:?}"
    );
    let out = finish(remote, LONG);
    measured("wrapper SIGKILL to lost on another host", killed.elapsed());
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(status_versions(&url, "work"), 1);
    // The finisher on its host killed what was left of the job.
    assert_eq!(processes_of(&id), Vec::<u32>::new());
}
