//! `jobwatch gc` and the `runs` count of `ls`: what goes, what stays, and
//! that a running job is never touched. Ages are set in the past (recorded
//! end times, mtimes) rather than waited for.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

const HOUR: Duration = Duration::from_secs(3600);

/// Every path under `root` with its size and mtime (symlinks not followed).
fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            }
            let rel = e.path().strip_prefix(root).unwrap().to_owned();
            out.insert(rel, (meta.len(), meta.modified().unwrap()));
        }
    }
    out
}

/// The archived run folders of `name`, sorted by label (oldest first).
fn history(env: &Env, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(env.dir.join("history").join(name)) else {
        return Vec::new();
    };
    let mut runs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    runs.sort();
    runs
}

/// Runs `name` to success `n` times; run i prints `run i`.
fn runs(env: &Env, name: &str, n: usize) {
    for i in 1..=n {
        assert_code(
            &env.run(name, &["--quiet"], &sh(&format!("echo run {i}"))),
            0,
        );
    }
}

/// Rewrites the `ended_at` of the record at `path` to `ago` before now.
fn set_ended_ago(path: &Path, ago: Duration) {
    let text = fs::read_to_string(path).unwrap();
    let mut rec: Value = serde_json::from_str(&text).unwrap();
    let t = humantime::format_rfc3339_millis(SystemTime::now() - ago).to_string();
    rec["ended_at"] = Value::from(t);
    fs::write(path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
}

/// Sets the mtime of a file or folder to `ago` before now.
fn set_mtime_ago(path: &Path, ago: Duration) {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// Ages an archived run: its recorded end and its folder's mtime.
fn age_archived(run: &Path, name: &str, ago: Duration) {
    set_ended_ago(&run.join(format!("{name}.job.json")), ago);
    set_mtime_ago(run, ago);
}

fn gc(env: &Env, args: &[&str]) -> (std::process::Output, Vec<Value>) {
    let mut a = vec!["gc"];
    a.extend_from_slice(args);
    let out = env.jw(&a);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["action"], "summary", "{}", describe(&out));
    (out, lines)
}

/// The `paths` of every item line, flattened.
fn removed_paths(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["action"] != "summary")
        .flat_map(|l| l["paths"].as_array().unwrap().clone())
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn rel(env: &Env, p: &Path) -> String {
    p.strip_prefix(&env.dir).unwrap().display().to_string()
}

#[test]
fn gc_dry_run_lists_what_it_would_remove_and_deletes_nothing() {
    let env = Env::new();
    runs(&env, "a", 4);
    set_ended_ago(&env.file("a", ".job.json"), 2 * HOUR);
    let tmp = env.dir.join(".tmp-AbC123");
    fs::write(&tmp, b"half").unwrap();
    set_mtime_ago(&tmp, HOUR);
    let before = listing(&env.dir);

    let (out, lines) = gc(&env, &["--dry-run", "--keep", "1", "--older-than", "1h"]);
    assert_eq!(listing(&env.dir), before, "a dry run deletes nothing");
    let paths = removed_paths(&lines);
    let hist = history(&env, "a");
    assert_eq!(hist.len(), 3);
    for run in &hist[..2] {
        assert!(paths.contains(&rel(&env, run)), "{}", describe(&out));
    }
    assert!(!paths.contains(&rel(&env, &hist[2])), "the newest is kept");
    assert!(
        paths.contains(&".tmp-AbC123".to_owned()),
        "{}",
        describe(&out)
    );
    assert!(
        paths.contains(&"a.job.json".to_owned()),
        "{}",
        describe(&out)
    );
    assert!(!paths.contains(&"a.lock".to_owned()), "locks stay");
    assert!(lines.iter().all(|l| l["action"] != "removed"));
    let summary = lines.last().unwrap();
    assert_eq!(summary["dry_run"], true);
    assert!(summary["bytes"].as_u64().unwrap() > 0, "{summary}");

    // The real run removes exactly what the dry run listed.
    let (_, real) = gc(&env, &["--keep", "1", "--older-than", "1h"]);
    assert_eq!(removed_paths(&real), paths);
    assert_eq!(real.last().unwrap()["bytes"], summary["bytes"]);
}

#[test]
fn gc_never_touches_a_running_job_but_prunes_its_old_history() {
    let env = Env::new();
    runs(&env, "busy", 2);
    for run in history(&env, "busy") {
        age_archived(&run, "busy", 2 * HOUR);
    }
    set_ended_ago(&env.file("busy", ".job.json"), 2 * HOUR);
    env.detach("busy", &[], &env.gated("busy", 0));
    assert_eq!(history(&env, "busy").len(), 2);
    let fresh = history(&env, "busy")[1].clone();
    let current: BTreeMap<_, _> = listing(&env.dir)
        .into_iter()
        .filter(|(p, _)| p.to_str().unwrap().starts_with("busy."))
        .collect();

    let (out, lines) = gc(&env, &["--older-than", "1m", "--keep", "0"]);
    let paths = removed_paths(&lines);
    assert!(
        paths.iter().all(|p| p.starts_with("history/busy/")),
        "only archived runs go: {}",
        describe(&out)
    );
    // The run archived moments ago may still be filled by its archiver:
    // without the lock (the wrapper holds it) it stays.
    assert_eq!(history(&env, "busy"), [fresh]);
    for (path, (len, _)) in &current {
        assert!(env.dir.join(path).exists(), "{} stays", path.display());
        if path.to_str().unwrap().ends_with(".job.json") {
            assert_eq!(fs::metadata(env.dir.join(path)).unwrap().len(), *len);
        }
    }
    let status = env.jw(&["status", "busy"]);
    assert_eq!(json_line(&status)["state"], "running");

    env.release("busy");
    let (out, _) = env.wait(&["busy"]);
    assert_code(&out, exit::SUCCESS);
}

#[test]
fn keep_n_keeps_exactly_the_newest_n_archived_runs() {
    let env = Env::new();
    runs(&env, "k", 6);
    assert_eq!(history(&env, "k").len(), 5);
    let (_, lines) = gc(&env, &["--keep", "2"]);
    assert_eq!(lines.len(), 4, "three runs and a summary: {lines:#?}");
    let left = history(&env, "k");
    assert_eq!(left.len(), 2);
    let logs: Vec<String> = left
        .iter()
        .map(|r| fs::read_to_string(r.join("k.log")).unwrap())
        .collect();
    assert_eq!(logs, ["run 4\n", "run 5\n"]);
    assert_eq!(env.log("k"), "run 6\n", "the current run stays");
}

#[test]
fn no_flag_keeps_ten_archived_runs_and_every_current_run() {
    let env = Env::new();
    runs(&env, "d", 12);
    set_ended_ago(&env.file("d", ".job.json"), 1000 * HOUR);
    let (_, lines) = gc(&env, &[]);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(history(&env, "d").len(), 10);
    assert!(env.file("d", ".status").exists());
}

#[test]
fn older_than_removes_only_runs_that_ended_before_the_limit() {
    let env = Env::new();
    runs(&env, "o", 3);
    let hist = history(&env, "o");
    age_archived(&hist[0], "o", 3 * HOUR);
    age_archived(&hist[1], "o", 10 * 60 * Duration::from_secs(1));

    let (_, lines) = gc(&env, &["--older-than", "1h"]);
    assert_eq!(removed_paths(&lines), [rel(&env, &hist[0])]);
    assert_eq!(history(&env, "o"), [hist[1].clone()]);
    assert!(env.file("o", ".status").exists(), "ended just now: stays");

    set_ended_ago(&env.file("o", ".job.json"), 2 * HOUR);
    let (out, lines) = gc(&env, &["--older-than", "1h"]);
    let paths = removed_paths(&lines);
    for suffix in [".pid", ".heartbeat", ".log", ".job.json", ".status"] {
        assert!(
            paths.contains(&format!("o{suffix}")),
            "{suffix}: {}",
            describe(&out)
        );
        assert!(!env.file("o", suffix).exists(), "{suffix} removed");
    }
    assert!(env.file("o", ".lock").exists(), "the lock file stays");
    assert_eq!(history(&env, "o").len(), 1, "10 minutes old: stays");
    let ls = env.jw(&["ls"]);
    assert!(json_lines(&ls).is_empty(), "{}", describe(&ls));
}

#[test]
fn a_malformed_archived_record_is_a_warning_and_its_age_comes_from_file_times() {
    let env = Env::new();
    runs(&env, "m", 3);
    let hist = history(&env, "m");
    fs::write(hist[0].join("m.job.json"), b"{ not json").unwrap();
    set_mtime_ago(&hist[0].join("m.status"), 3 * HOUR);
    fs::write(hist[1].join("m.job.json"), b"").unwrap();

    let (out, lines) = gc(&env, &["--older-than", "1h"]);
    assert_eq!(removed_paths(&lines), [rel(&env, &hist[0])]);
    let err = stderr(&out);
    assert!(err.contains("warning"), "{}", describe(&out));
    assert!(err.contains("m.job.json"), "{}", describe(&out));
    assert_eq!(history(&env, "m"), [hist[1].clone()]);
}

#[test]
fn gc_removes_stray_temp_files_orphaned_kill_requests_and_empty_folders() {
    let env = Env::new();
    runs(&env, "t", 1);
    let old_tmp = env.dir.join(".tmp-old123");
    let new_tmp = env.dir.join(".tmp-new123");
    fs::write(&old_tmp, b"x").unwrap();
    fs::write(&new_tmp, b"x").unwrap();
    set_mtime_ago(&old_tmp, HOUR);
    // A request naming an earlier run, beside a finished one: never usable.
    fs::write(
        env.file("t", ".kill"),
        br#"{"job_id":"earlier","outcome":"killed","reason":"r","at":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    fs::create_dir_all(env.dir.join("history/gone")).unwrap();
    fs::create_dir_all(env.dir.join("attempts/t")).unwrap();
    let breakers = env.dir.join("breakers");
    fs::create_dir_all(&breakers).unwrap();
    let breaker_tmp = breakers.join(".tmp-brk123");
    fs::write(&breaker_tmp, b"x").unwrap();
    set_mtime_ago(&breaker_tmp, HOUR);

    let (out, lines) = gc(&env, &[]);
    let mut paths = removed_paths(&lines);
    paths.sort();
    assert_eq!(
        paths,
        [".tmp-old123", "attempts/t", "history/gone", "t.kill"],
        "{}",
        describe(&out)
    );
    assert!(!old_tmp.exists() && new_tmp.exists());
    assert!(breaker_tmp.exists(), "breakers/ is never touched");
    assert!(env.file("t", ".status").exists());
}

#[test]
fn a_kill_request_of_the_finished_run_itself_stays_with_it() {
    let env = Env::new();
    env.detach("stopme", &[], &env.gated("stopme", 0));
    assert_code(&env.jw(&["kill", "stopme", "--grace", "300ms"]), 0);
    assert!(env.file("stopme", ".kill").exists());
    let (out, lines) = gc(&env, &[]);
    assert!(removed_paths(&lines).is_empty(), "{}", describe(&out));
    assert!(env.file("stopme", ".kill").exists());
}

#[test]
fn gc_never_follows_symlinks_out_of_the_jobs_dir() {
    let env = Env::new();
    runs(&env, "s", 1);
    let outside = env.scratch("outside");
    fs::create_dir_all(outside.join("run")).unwrap();
    fs::write(outside.join("run/keep.txt"), b"precious").unwrap();
    let old = SystemTime::now() - 5 * HOUR;
    fs::File::open(outside.join("run"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let hist = env.dir.join("history/s");
    fs::create_dir_all(&hist).unwrap();
    std::os::unix::fs::symlink(&outside, env.dir.join("history/evil")).unwrap();
    std::os::unix::fs::symlink(outside.join("run"), hist.join("20200101T000000.000Z")).unwrap();

    let (out, _) = gc(&env, &["--keep", "0", "--older-than", "1s"]);
    assert_eq!(
        fs::read(outside.join("run/keep.txt")).unwrap(),
        b"precious",
        "{}",
        describe(&out)
    );
}

#[test]
fn ls_shows_how_many_archived_runs_each_name_has() {
    let env = Env::new();
    runs(&env, "three", 4);
    runs(&env, "one", 1);
    let out = env.jw(&["ls", "--json"]);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(line_for(&lines, "three")["runs"], 3);
    assert_eq!(line_for(&lines, "one")["runs"], 0);
}
