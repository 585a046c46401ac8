//! Circuit breakers through the CLI: `run --breaker` admission and counting,
//! the cooldown's single trial run, and `breaker status|reset|record`.

use std::collections::BTreeMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use rustix::process::Signal;
use serde_json::Value;

use crate::support::*;

/// The breaker-open exit code.
const BREAKER_OPEN: i32 = 6;

/// `breaker status KEY --json`: its exit code and its one JSON line.
#[track_caller]
fn breaker(env: &Env, key: &str) -> (i32, Value) {
    let out = env.jw(&["breaker", "status", key, "--json"]);
    let v = json_line(&out);
    assert_eq!(v["key"], key, "{v:#}");
    (code(&out), v)
}

/// `breakers/KEY.json`, parsed.
#[track_caller]
fn stored(env: &Env, key: &str) -> Value {
    let path = env.dir.join("breakers").join(format!("{key}.json"));
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// Runs a job under `key` in the foreground that exits with `exit_code`.
#[track_caller]
fn run_under(env: &Env, name: &str, key: &str, opts: &[&str], exit_code: i32) -> Output {
    let mut all = vec!["--quiet", "--breaker", key];
    all.extend_from_slice(opts);
    env.run(
        name,
        &all,
        &sh(&format!("echo run {name}; exit {exit_code}")),
    )
}

/// Asserts that `run NAME --breaker KEY` (foreground and detached) is
/// refused with exit 6 and a one-line message naming the key.
#[track_caller]
fn assert_refused(env: &Env, name: &str, key: &str) {
    for detach in [false, true] {
        let mut args = vec!["run", name, "--breaker", key];
        if detach {
            args.push("--detach");
        }
        args.extend(["--", "sh", "-c", "echo must not run"]);
        let out = env.jw(&args);
        assert_code(&out, BREAKER_OPEN);
        let err = stderr(&out);
        assert_eq!(
            err.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "one-line refusal\n{}",
            describe(&out)
        );
        assert!(
            err.contains(&format!("breaker {key} is open")),
            "{}",
            describe(&out)
        );
        assert!(
            err.contains(&format!("jobwatch breaker reset {key}")),
            "{}",
            describe(&out)
        );
        assert!(stdout(&out).is_empty(), "{}", describe(&out));
    }
}

/// Every file and folder under the jobs directory except the breakers'
/// own, with a digest of its content and its mtime: what a refused run must
/// leave exactly as it was.
fn job_files(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, Option<SystemTime>)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            if path.is_dir() {
                if e.file_name() != "breakers" {
                    walk(&path, out);
                }
                out.insert(path, (0, None));
            } else {
                let mut h = DefaultHasher::new();
                fs::read(&path).unwrap_or_default().hash(&mut h);
                let m = mtime(&path);
                out.insert(path, (h.finish(), m));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

#[test]
fn the_breaker_opens_after_exactly_max_failures_and_refuses_without_touching_anything() {
    let env = Env::new();
    for n in 1..=2 {
        assert_code(&run_under(&env, "flaky", "deploy", &[], 1), 1);
        let (c, v) = breaker(&env, "deploy");
        assert_eq!(c, 0, "{n} failure(s) of 3 still admit: {v:#}");
        assert_eq!(v["state"], "closed", "{v:#}");
        assert_eq!(v["admits"], true, "{v:#}");
        assert_eq!(v["consecutive_failures"], n, "{v:#}");
        assert_eq!(v["max_failures"], 3, "the default: {v:#}");
    }
    assert_code(&run_under(&env, "flaky", "deploy", &[], 1), 1);
    let (c, v) = breaker(&env, "deploy");
    assert_eq!(c, BREAKER_OPEN, "the 3rd failure opens it: {v:#}");
    assert_eq!(v["state"], "open", "{v:#}");
    assert_eq!(v["admits"], false, "{v:#}");
    assert_eq!(v["consecutive_failures"], 3, "{v:#}");
    assert_eq!(v["last"]["outcome"], "failed", "{v:#}");
    assert_eq!(v["last"]["job"], "flaky", "{v:#}");

    // The previous run of the name stays exactly where and as it was (not
    // archived), and a name never run gets no files at all.
    let before = job_files(&env.dir);
    assert_refused(&env, "flaky", "deploy");
    assert_refused(&env, "newcomer", "deploy");
    let after = job_files(&env.dir);
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, _)| p)
        .chain(before.keys().filter(|p| !after.contains_key(*p)))
        .collect();
    assert!(
        changed.is_empty(),
        "a refused run changes no job file: {changed:?}"
    );
    assert_eq!(env.log("flaky"), "run flaky\n");
    assert_eq!(env.record("flaky")["outcome"], "failed");

    // Other keys and runs without a breaker are not affected.
    assert_code(&run_under(&env, "other", "elsewhere", &[], 0), 0);
    assert_code(&env.run("free", &["--quiet"], &["true"]), 0);
}

#[test]
fn a_success_in_between_resets_the_count() {
    let env = Env::new();
    let opts = ["--max-failures", "2"];
    assert_code(&run_under(&env, "j", "k", &opts, 1), 1);
    assert_code(&run_under(&env, "j", "k", &opts, 0), 0);
    let (c, v) = breaker(&env, "k");
    assert_eq!(
        (c, v["consecutive_failures"].clone()),
        (0, 0.into()),
        "{v:#}"
    );
    assert_code(&run_under(&env, "j", "k", &opts, 1), 1);
    let (c, v) = breaker(&env, "k");
    assert_eq!(c, 0, "one failure after a success still admits: {v:#}");
    assert_eq!(v["consecutive_failures"], 1, "{v:#}");
    assert_code(&run_under(&env, "j", "k", &opts, 1), 1);
    assert_eq!(breaker(&env, "k").0, BREAKER_OPEN);
    let file = stored(&env, "k");
    assert_eq!(file["successes"], 1, "{file:#}");
    assert_eq!(file["failures"], 3, "{file:#}");
}

/// A cooldown no test outlives: the breaker stays open until the test moves
/// its opening into the past with [`cool_down`].
const LONG_COOLDOWN: [&str; 4] = ["--max-failures", "1", "--cooldown", "1h"];

/// Makes the open breaker `key` look as if it had opened two hours ago
/// (its `opened_*` fields rewritten), so its 1 h cooldown has passed; the
/// test then proceeds on that state, not on the wall clock. Returns the
/// new `opened_unix_ms`.
#[track_caller]
fn cool_down(env: &Env, key: &str) -> u64 {
    let mut file = stored(env, key);
    assert_eq!(file["state"], "open", "{file:#}");
    let past = SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    let ms = past
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    file["opened_unix_ms"] = ms.into();
    file["opened_at"] = humantime::format_rfc3339_millis(past).to_string().into();
    let path = env.dir.join("breakers").join(format!("{key}.json"));
    fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    ms
}

#[test]
fn after_the_cooldown_one_trial_runs_and_its_success_closes_the_breaker() {
    let env = Env::new();
    assert_code(&run_under(&env, "first", "k", &LONG_COOLDOWN, 1), 1);
    let (c, v) = breaker(&env, "k");
    assert_eq!(c, BREAKER_OPEN, "{v:#}");
    assert!(v["trial_in_ms"].as_u64().is_some(), "{v:#}");
    assert_eq!(v["cooldown_ms"], 3_600_000, "{v:#}");
    assert_refused(&env, "early", "k");

    cool_down(&env, "k");
    let (c, v) = breaker(&env, "k");
    assert_eq!(c, 0, "the cooldown has passed: {v:#}");
    assert_eq!(v["state"], "half-open", "{v:#}");
    env.detach("trial", &["--breaker", "k"], &env.gated("trial", 0));

    // One trial at a time: another run under the key waits for its verdict.
    let (c, v) = breaker(&env, "k");
    assert_eq!(c, BREAKER_OPEN, "{v:#}");
    assert_eq!(
        (v["state"].as_str(), v["trial_job"].as_str()),
        (Some("half-open"), Some("trial")),
        "{v:#}"
    );
    assert_refused(&env, "second", "k");
    assert!(env.status_file("trial").is_none(), "the trial still runs");

    env.release("trial");
    let (w, _) = env.wait(&["trial"]);
    assert_code(&w, exit::SUCCESS);
    let (c, v) = breaker(&env, "k");
    assert_eq!(c, 0, "{v:#}");
    assert_eq!(v["state"], "closed", "{v:#}");
    assert_eq!(v["consecutive_failures"], 0, "{v:#}");
    assert!(v.get("trial_job").is_none(), "{v:#}");
    assert_code(&run_under(&env, "second", "k", &[], 0), 0);
}

#[test]
fn a_failing_trial_reopens_the_breaker_for_another_cooldown() {
    let env = Env::new();
    assert_code(&run_under(&env, "first", "k", &LONG_COOLDOWN, 1), 1);
    let opened = cool_down(&env, "k");

    env.detach("trial", &["--breaker", "k"], &env.gated("trial", 1));
    let file = stored(&env, "k");
    assert_eq!(file["state"], "half_open", "{file:#}");
    assert_eq!(file["trial"]["job"], "trial", "{file:#}");
    env.release("trial");
    assert_code(&env.wait(&["trial"]).0, exit::FAILED);

    let file = stored(&env, "k");
    assert_eq!(
        file["state"], "open",
        "the failed trial re-opens it: {file:#}"
    );
    assert!(file["trial"].is_null(), "{file:#}");
    assert_eq!(file["consecutive_failures"], 2, "{file:#}");
    let reopened = file["opened_unix_ms"].as_u64().unwrap();
    assert!(
        reopened > opened + 3_600_000,
        "the cooldown starts again from the trial's failure: {file:#}"
    );
    // A full new cooldown: refused now, a trial again once it has passed.
    assert_refused(&env, "trial", "k");
    cool_down(&env, "k");
    assert_code(&run_under(&env, "trial", "k", &[], 0), 0);
    assert_eq!(breaker(&env, "k").1["state"], "closed");
}

#[test]
fn hung_and_timed_out_runs_count_as_failures() {
    let env = Env::new();
    let key = ["--breaker", "k", "--max-failures", "10"];
    let mut hung = key.to_vec();
    hung.extend(["--liveness", "output"]);
    hung.extend_from_slice(FAST);
    let out = env.run("hung", &hung, &sh("echo started; exec sleep 30"));
    assert_code(&out, exit::HUNG);
    let v = breaker(&env, "k").1;
    assert_eq!(v["consecutive_failures"], 1, "{v:#}");
    assert_eq!(v["last"]["outcome"], "hung", "{v:#}");

    let mut timeout = key.to_vec();
    timeout.extend(["--timeout", "300ms", "--grace", "100ms"]);
    assert_code(&env.run("slow", &timeout, &["sleep", "30"]), exit::TIMEOUT);
    let v = breaker(&env, "k").1;
    assert_eq!(v["consecutive_failures"], 2, "{v:#}");
    assert_eq!(v["last"]["outcome"], "timeout", "{v:#}");
}

#[test]
fn a_lost_run_counts_as_a_failure_when_wait_finalizes_it() {
    let env = Env::new();
    let mut opts = vec!["--breaker", "k"];
    opts.extend_from_slice(FAST_TIMER);
    let d = env.detach("orphan", &opts, &["sleep", "30"]);
    signal(d.wrapper_pid, Signal::KILL);
    eventually("the wrapper is gone", || is_gone(d.wrapper_pid));
    // Nothing counted yet: the run has no verdict until someone finds it.
    assert_eq!(breaker(&env, "k").1["consecutive_failures"], 0);

    let (w, lines) = env.wait(&["orphan"]);
    assert_code(&w, exit::LOST);
    assert_eq!(line_for(&lines, "orphan")["outcome"], "lost");
    let v = breaker(&env, "k").1;
    assert_eq!(v["consecutive_failures"], 1, "{v:#}");
    assert_eq!(v["last"]["outcome"], "lost", "{v:#}");
    assert_eq!(v["last"]["job"], "orphan", "{v:#}");
    // A second observer of the same lost run counts nothing more.
    assert_code(&env.wait(&["orphan"]).0, exit::LOST);
    assert_eq!(stored(&env, "k")["failures"], 1);
}

#[test]
fn a_killed_run_counts_neither_way() {
    let env = Env::new();
    let opts = ["--max-failures", "2"];
    assert_code(&run_under(&env, "j", "k", &opts, 1), 1);

    env.detach("victim", &["--breaker", "k"], &env.gated("victim", 0));
    assert_code(&env.jw(&["kill", "victim", "--grace", "300ms"]), 0);
    assert_eq!(env.record("victim")["outcome"], "killed");
    let v = breaker(&env, "k").1;
    assert_eq!(
        v["consecutive_failures"], 1,
        "not reset, not counted: {v:#}"
    );
    assert_eq!(v["last"]["event"], "neutral", "{v:#}");
    let file = stored(&env, "k");
    assert_eq!(
        (file["successes"].clone(), file["failures"].clone()),
        (0.into(), 1.into())
    );

    // The count goes on from where it was: one more failure opens it.
    assert_code(&run_under(&env, "j", "k", &[], 1), 1);
    assert_eq!(breaker(&env, "k").0, BREAKER_OPEN);
}

#[test]
fn concurrent_records_lose_no_count() {
    let env = Env::new();
    let recorders: Vec<ChildGuard> = (0..20)
        .map(|_| {
            env.spawn(&[
                "breaker",
                "record",
                "shared",
                "failure",
                "--max-failures",
                "100",
            ])
        })
        .collect();
    for r in recorders {
        let out = r.finish();
        assert_code(&out, 0);
    }
    let file = stored(&env, "shared");
    assert_eq!(file["consecutive_failures"], 20, "{file:#}");
    assert_eq!(file["failures"], 20, "{file:#}");
    assert_eq!(file["state"], "closed", "{file:#}");
}

#[test]
fn record_exits_6_once_the_breaker_refuses_runs() {
    let env = Env::new();
    let rec = |what: &str| env.jw(&["breaker", "record", "k", what, "--max-failures", "2"]);
    assert_code(&rec("failure"), 0);
    assert_code(&rec("failure"), BREAKER_OPEN);
    assert_refused(&env, "j", "k");
    // A success reported by a script closes it like a job's success would.
    let out = rec("success");
    assert_code(&out, 0);
    assert_eq!(json_line(&out)["state"], "closed");
}

#[test]
fn reset_closes_the_breaker_and_keeps_its_policy() {
    let env = Env::new();
    for _ in 0..2 {
        env.jw(&[
            "breaker",
            "record",
            "k",
            "failure",
            "--max-failures",
            "2",
            "--cooldown",
            "1h",
        ]);
    }
    assert_eq!(breaker(&env, "k").0, BREAKER_OPEN);

    let out = env.jw(&["breaker", "reset", "k"]);
    assert_code(&out, 0);
    let v = json_line(&out);
    assert_eq!(v["state"], "closed", "{v:#}");
    let (c, v) = breaker(&env, "k");
    assert_eq!(c, 0, "{v:#}");
    assert_eq!(v["consecutive_failures"], 0, "{v:#}");
    assert_eq!(v["max_failures"], 2, "the policy stays: {v:#}");
    assert_eq!(v["cooldown_ms"], 3_600_000, "the policy stays: {v:#}");
    assert_code(&run_under(&env, "j", "k", &[], 0), 0);

    // The kept policy applies: two failures open it again.
    assert_code(&run_under(&env, "j", "k", &[], 1), 1);
    assert_code(&run_under(&env, "j", "k", &[], 1), 1);
    assert_eq!(breaker(&env, "k").0, BREAKER_OPEN);
}

#[test]
fn status_without_a_key_lists_every_breaker() {
    let env = Env::new();
    let out = env.jw(&["breaker", "status"]);
    assert_code(&out, 0);
    assert!(json_lines(&out).is_empty(), "{}", describe(&out));

    env.jw(&[
        "breaker",
        "record",
        "beta",
        "failure",
        "--max-failures",
        "1",
    ]);
    env.jw(&["breaker", "record", "alpha", "success"]);
    let out = env.jw(&["breaker", "status", "--json"]);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    let keys: Vec<&str> = lines.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["alpha", "beta"], "sorted by key: {lines:#?}");
    assert_eq!(lines[0]["state"], "closed");
    assert_eq!(lines[1]["state"], "open");
    // A never-recorded key reads as closed and creates no file.
    let (c, v) = breaker(&env, "gamma");
    assert_eq!((c, v["state"].as_str()), (0, Some("closed")));
    assert!(!env.dir.join("breakers/gamma.json").exists());
}

#[test]
fn a_malformed_breaker_file_is_a_clear_error_naming_it() {
    let env = Env::new();
    env.jw(&["breaker", "record", "good", "success"]);
    let bad = env.dir.join("breakers/bad.json");
    for junk in ["{not json", "[]", "{\"version\": 1}", ""] {
        fs::write(&bad, junk).unwrap();
        for args in [
            &["breaker", "status", "bad"][..],
            &["breaker", "record", "bad", "failure"],
            &["run", "j", "--breaker", "bad", "--", "true"],
            &["run", "j", "--detach", "--breaker", "bad", "--", "true"],
        ] {
            let out = env.jw(args);
            assert_usage_error(&out, &["breaker bad", &bad.display().to_string()]);
            assert!(!stderr(&out).contains("panicked"), "{}", describe(&out));
        }
        assert_eq!(
            fs::read_to_string(&bad).unwrap(),
            junk,
            "left for a person to see"
        );
        assert!(env.status_file("j").is_none(), "no job ran");

        // One bad file hides no other.
        let out = env.jw(&["breaker", "status"]);
        assert_code(&out, exit::USAGE);
        assert!(
            stderr(&out).contains(&bad.display().to_string()),
            "{}",
            describe(&out)
        );
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 1, "{}", describe(&out));
        assert_eq!(lines[0]["key"], "good");
    }

    // Repairing it is what reset is for.
    let out = env.jw(&["breaker", "reset", "bad"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(json_line(&out)["state"], "closed");
    assert_code(&env.jw(&["breaker", "status", "bad"]), exit::SUCCESS);
}

#[test]
fn invalid_breaker_keys_are_usage_errors() {
    let env = Env::new();
    for key in ["bad/key", "../up", "", ".hidden", "sp ace"] {
        for args in [
            vec!["breaker", "status", key],
            vec!["breaker", "reset", key],
            vec!["breaker", "record", key, "failure"],
            vec!["run", "j", "--breaker", key, "--", "true"],
        ] {
            let out = env.jw(&args);
            assert_usage_error(&out, &["breaker key"]);
        }
    }
    let out = env.jw(&["breaker", "record", "k", "maybe"]);
    assert_code(&out, exit::USAGE);
    assert!(env.status_file("j").is_none(), "no job ran");
}

#[test]
fn a_trial_that_is_still_starting_keeps_other_runs_out() {
    let env = Env::new();
    // The trial's name has a lost run whose child ignores SIGTERM: starting
    // the trial first finishes that run, which takes the whole --grace.
    let stubborn = env.tree_script("t", "trap '' TERM", "sleep 300");
    let d = env.detach("trial", FAST_TIMER, &stubborn);
    let tree = env.tree_pids("t");
    signal(d.wrapper_pid, Signal::KILL);
    eventually("the wrapper is gone", || is_gone(d.wrapper_pid));
    let out = env.jw(&[
        "breaker",
        "record",
        "k",
        "failure",
        "--max-failures",
        "1",
        "--cooldown",
        "0ms",
    ]);
    assert_code(&out, 0);
    assert_eq!(json_line(&out)["state"], "half-open");

    let starting = env.spawn(&[
        "run",
        "trial",
        "--detach",
        "--breaker",
        "k",
        "--grace",
        "3s",
        "--liveness",
        "timer",
        "--",
        "sleep",
        "30",
    ]);
    wait_until("the trial is admitted", DEADLINE, || {
        env.dir.join("breakers/k.json").exists() && stored(&env, "k")["trial"]["job"] == "trial"
    });
    assert!(
        is_alive(tree.child),
        "precondition: the trial is still finishing the lost run"
    );
    assert_refused(&env, "other", "k");
    assert_code(&starting.finish(), 0);
    tree.assert_gone();
    assert_eq!(breaker(&env, "k").1["trial_job"], "trial");
    assert_refused(&env, "other", "k");
}

#[test]
fn a_run_reported_again_by_the_finisher_of_a_lost_run_counts_once() {
    let env = Env::new();
    assert_code(&run_under(&env, "j", "k", &["--max-failures", "2"], 1), 1);
    assert_eq!(stored(&env, "k")["failures"], 1);
    // As if the wrapper had died after counting its run but before writing
    // the status: the next observer commits the recorded outcome (a recorded
    // outcome is never rewritten as lost) and reports it to the breaker
    // again.
    fs::remove_file(env.file("j", ".status")).unwrap();
    let (w, lines) = env.wait(&["j"]);
    assert_code(&w, exit::FAILED);
    assert_eq!(line_for(&lines, "j")["outcome"], "failed");
    let file = stored(&env, "k");
    assert_eq!(file["failures"], 1, "counted once: {file:#}");
    assert_eq!(file["consecutive_failures"], 1, "{file:#}");
    assert_eq!(breaker(&env, "k").0, 0, "still admits");
}
