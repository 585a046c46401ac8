//! `jobwatch hook EVENT` fed the hook JSON Claude Code writes on stdin
//! (fixtures captured from the real CLI, in fixtures/hooks/), and garbage.

use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use super::support::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/fixtures/hooks"
);
const SESSION: &str = "d61619d2-9d21-4d06-82e3-623ffb4fd86b";

/// A string as it appears inside a JSON string literal.
fn esc(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    quoted[1..quoted.len() - 1].to_owned()
}

/// A fixture with `@KEY@` placeholders filled (values JSON-escaped).
fn fixture(env: &Env, file: &str, subs: &[(&str, &str)]) -> String {
    let mut text = fs::read_to_string(format!("{FIXTURES}/{file}"))
        .unwrap_or_else(|e| panic!("fixture {file}: {e}"));
    text = text.replace("@SESSION@", SESSION);
    text = text.replace("@CWD@", &esc(&env.root().display().to_string()));
    for (key, value) in subs {
        text = text.replace(&format!("@{key}@"), &esc(value));
    }
    text
}

/// `jobwatch --dir D hook ARGS…` reading `input` on stdin, spawned.
fn spawn_hook(env: &Env, args: &[&str], input: &str) -> ChildGuard {
    let stdin = env.scratch(&format!("stdin-{}", unique()));
    fs::write(&stdin, input).unwrap();
    let mut cmd = env.cmd();
    cmd.arg("hook").args(args);
    ChildGuard::spawn_with_stdin(cmd, fs::File::open(&stdin).unwrap())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Runs a hook to completion.
#[track_caller]
fn hook(env: &Env, args: &[&str], input: &str) -> Output {
    spawn_hook(env, args, input).finish()
}

/// A hook that had nothing to say: exit 0, nothing on stdout or stderr.
#[track_caller]
fn assert_silent(o: &Output) {
    assert_eq!(code(o), 0, "{}", describe(o));
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "{}",
        describe(o)
    );
}

/// A hook that ignored its input: exit 0, a note on stderr, nothing on stdout.
#[track_caller]
fn assert_note(o: &Output, needle: &str) {
    assert_eq!(code(o), 0, "{}", describe(o));
    assert!(o.stdout.is_empty(), "{}", describe(o));
    let err = stderr(o);
    assert!(
        err.contains("jobwatch hook:") && err.contains(needle),
        "{}",
        describe(o)
    );
}

fn session_path(env: &Env) -> PathBuf {
    env.dir.join("sessions").join(format!("{SESSION}.json"))
}

fn session_jobs(env: &Env) -> Vec<Value> {
    let text = fs::read_to_string(session_path(env)).unwrap_or_else(|_| "{\"jobs\":[]}".into());
    serde_json::from_str::<Value>(&text).unwrap()["jobs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Tracks job `name` (running already) as started through the MCP tool.
#[track_caller]
fn track_mcp(env: &Env, name: &str, pid: i32) {
    let log = env.file(name, ".log").display().to_string();
    let input = fixture(
        env,
        "post_tool_use.mcp_start.json",
        &[("NAME", name), ("PID", &pid.to_string()), ("LOG", &log)],
    );
    // The pid is a number in the fixture: unquoted in the JSON text.
    assert_silent(&hook(env, &["post-tool-use"], &input));
}

fn stop_input(env: &Env) -> String {
    fixture(env, "stop.json", &[])
}

/// The JSON report inside a stop line.
fn report_in(line: &str) -> Value {
    let start = line.find('{').expect("a JSON report");
    let end = line.rfind('}').unwrap();
    serde_json::from_str(&line[start..=end]).unwrap_or_else(|e| panic!("{e}: {line}"))
}

// ------------------------------------------------------- post-tool-use ---

#[test]
fn post_tool_use_remembers_a_job_started_through_the_mcp_start_tool() {
    let env = Env::new();
    let job = env.detach("e2e", &[], &env.gated("g", 0));
    track_mcp(&env, "e2e", job.pid);
    let jobs = session_jobs(&env);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["name"], "e2e");
    assert_eq!(jobs[0]["job_id"], env.record("e2e")["job_id"]);
    assert_eq!(jobs[0]["via"], "mcp");
    assert!(jobs[0].get("reported").is_none());
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(session_path(&env))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "session file mode {mode:o}");
    // The same call seen twice tracks one job.
    track_mcp(&env, "e2e", job.pid);
    assert_eq!(session_jobs(&env).len(), 1);
    env.release("g");
}

#[test]
fn post_tool_use_remembers_detached_runs_of_a_bash_command() {
    let env = Env::new();
    let job = env.detach("build", &[], &env.gated("g", 0));
    let command = format!(
        "cd /src && jobwatch --dir {} run build --detach --timeout 30m -- make; jobwatch status",
        env.dir.display()
    );
    let stdout = format!("{}\n", job.json);
    let input = fixture(
        &env,
        "post_tool_use.bash.json",
        &[("COMMAND", &command), ("STDOUT", &stdout)],
    );
    assert_silent(&hook(&env, &["post-tool-use"], &input));
    let jobs = session_jobs(&env);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["name"], "build");
    assert_eq!(jobs[0]["via"], "bash");
    env.release("g");
}

#[test]
fn post_tool_use_never_tracks_a_run_the_call_did_not_start() {
    let env = Env::new();
    let job = env.detach("shared", &[], &env.gated("g", 0));
    let log = env.file("shared", ".log").display().to_string();
    // Another PID than the current run's: a start that failed, and the
    // name's run belongs to someone else.
    let input = fixture(
        &env,
        "post_tool_use.mcp_start.json",
        &[
            ("NAME", "shared"),
            ("PID", &(job.pid + 100_000).to_string()),
            ("LOG", &log),
        ],
    );
    assert_note(
        &hook(&env, &["post-tool-use"], &input),
        "not the one this call started",
    );
    assert!(session_jobs(&env).is_empty());
    env.release("g");
}

#[test]
fn post_tool_use_ignores_other_tools_silently() {
    let env = Env::new();
    let input = fixture(
        &env,
        "post_tool_use.bash.json",
        &[("COMMAND", "ls -la"), ("STDOUT", "total 0\n")],
    );
    assert_silent(&hook(&env, &["post-tool-use"], &input));
    assert!(!session_path(&env).exists());
}

// ---------------------------------------------------------------- stop ---

#[test]
fn stop_exits_at_once_when_the_session_started_nothing() {
    let env = Env::new();
    let o = spawn_hook(&env, &["stop"], &stop_input(&env)).finish_within(Duration::from_secs(5));
    assert_silent(&o);
}

#[test]
fn stop_waits_for_the_first_job_to_end_and_the_next_stop_waits_for_the_rest() {
    let env = Env::new();
    let gate = env.scratch("ga.go");
    let a = env.detach(
        "a",
        &[],
        &sh(&format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done; echo a-out; exit 3",
            gate.display()
        )),
    );
    let b = env.detach("b", &[], &env.gated("gb", 0));
    track_mcp(&env, "a", a.pid);
    track_mcp(&env, "b", b.pid);

    let mut first = spawn_hook(&env, &["stop"], &stop_input(&env));
    // It waits (nothing has ended) and kills nothing meanwhile.
    assert!(first.is_running(), "stop returned while both jobs ran");
    env.release("ga");
    let o = first.finish();
    assert_eq!(code(&o), 2, "{}", describe(&o));
    let line = stderr(&o);
    assert_eq!(line.trim_end().lines().count(), 1, "one line: {line}");
    assert!(line.len() <= 1024, "{} bytes", line.len());
    let r = report_in(&line);
    assert_eq!(r["name"], "a");
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["exit_code"], 3);
    assert!(r["tail"].to_string().contains("a-out"), "{r}");
    assert!(line.contains("1 more job"), "{line}");
    assert!(is_alive(b.pid), "stop must kill nothing");

    // The next stop re-arms for the rest, never reports `a` again.
    let mut second = spawn_hook(&env, &["stop"], &stop_input(&env));
    assert!(second.is_running());
    env.release("gb");
    let o = second.finish();
    assert_eq!(code(&o), 2, "{}", describe(&o));
    let line = stderr(&o);
    assert!(line.len() <= 300, "{} bytes: {line}", line.len());
    let r = report_in(&line);
    assert_eq!(
        (r["name"].as_str(), r["outcome"].as_str()),
        (Some("b"), Some("success"))
    );

    // Nothing left: the third stop returns at once.
    assert_silent(
        &spawn_hook(&env, &["stop"], &stop_input(&env)).finish_within(Duration::from_secs(5)),
    );
    let jobs = session_jobs(&env);
    assert!(jobs.iter().all(|j| j["reported"].is_string()), "{jobs:?}");
}

#[test]
fn a_job_that_ended_while_nobody_waited_is_reported_once() {
    let env = Env::new();
    let job = env.detach("quick", &[], &sh("exit 0"));
    track_mcp(&env, "quick", job.pid);
    env.await_status("quick");
    let o = spawn_hook(&env, &["stop"], &stop_input(&env)).finish_within(Duration::from_secs(5));
    assert_eq!(code(&o), 2, "{}", describe(&o));
    assert_eq!(report_in(&stderr(&o))["outcome"], "success");
    assert_silent(
        &spawn_hook(&env, &["stop"], &stop_input(&env)).finish_within(Duration::from_secs(5)),
    );
    let start = fixture(&env, "session_start.json", &[]);
    assert_silent(&hook(&env, &["session-start"], &start));
}

#[test]
fn two_stop_hooks_waiting_on_one_job_report_it_once() {
    let env = Env::new();
    let job = env.detach("shared", &[], &env.gated("g", 1));
    track_mcp(&env, "shared", job.pid);
    let first = spawn_hook(&env, &["stop"], &stop_input(&env));
    let second = spawn_hook(&env, &["stop"], &stop_input(&env));
    env.release("g");
    let outs = [first.finish(), second.finish()];
    let mut codes: Vec<i32> = outs.iter().map(code).collect();
    codes.sort();
    assert_eq!(
        codes,
        [0, 2],
        "{}\n{}",
        describe(&outs[0]),
        describe(&outs[1])
    );
    let woke = outs.iter().find(|o| code(o) == 2).unwrap();
    assert_eq!(report_in(&stderr(woke))["outcome"], "failed");
    let quiet = outs.iter().find(|o| code(o) == 0).unwrap();
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{}",
        describe(quiet)
    );
}

#[test]
fn stop_reports_a_lost_job_without_killing_what_remains() {
    let env = Env::new();
    let job = env.detach("orphan", &[], &sh("sleep 300"));
    track_mcp(&env, "orphan", job.pid);
    signal(job.wrapper_pid, rustix::process::Signal::KILL);
    eventually("the wrapper is gone", || is_gone(job.wrapper_pid));
    let o = spawn_hook(&env, &["stop"], &stop_input(&env)).finish();
    assert_eq!(code(&o), 2, "{}", describe(&o));
    assert_eq!(report_in(&stderr(&o))["outcome"], "lost");
    assert!(
        is_alive(job.pid),
        "a hook must never kill: the job's command was killed"
    );
    assert!(
        env.status_file("orphan").is_none(),
        "a hook must not finish the run"
    );
}

#[test]
fn stop_gives_up_when_claude_code_goes_away() {
    let env = Env::new();
    let job = env.detach("long", &[], &env.gated("g", 0));
    track_mcp(&env, "long", job.pid);
    let input = env.scratch("stop.json");
    fs::write(&input, stop_input(&env)).unwrap();
    let pidfile = env.scratch("hook.pid");
    // A stand-in for Claude Code: a shell that runs the hook and dies.
    let script = format!(
        "\"$JW\" --dir '{}' hook stop < '{}' 2>/dev/null & echo $! > '{}'; wait",
        env.dir.display(),
        input.display(),
        pidfile.display()
    );
    let mut parent = env.other("sh");
    parent.args(["-c", &script]);
    let parent = ChildGuard::spawn(parent);
    let hook_pid = wait_for("the hook's pid", || {
        fs::read_to_string(&pidfile)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    });
    // The hook notes its parent before it waits: only a parent that dies
    // after that is one it can notice (a loaded machine runs the kill first).
    await_blocked_on_events(hook_pid);
    signal(parent.pid(), rustix::process::Signal::KILL);
    drop(parent);
    eventually("the orphaned stop hook exits", || is_gone(hook_pid));
    assert!(is_alive(job.pid), "the job keeps running");
    assert!(
        session_jobs(&env)[0].get("reported").is_none(),
        "nothing was reported"
    );
    env.release("g");
}

// -------------------------------------------------------- session-start ---

#[test]
fn session_start_tells_a_resumed_session_its_running_jobs_and_unheard_outcomes() {
    let env = Env::new();
    let running = env.detach("train", &[], &env.gated("g", 0));
    let done = env.detach("lint", &[], &sh("echo bad; exit 1"));
    track_mcp(&env, "train", running.pid);
    track_mcp(&env, "lint", done.pid);
    env.await_status("lint");
    let input = fixture(&env, "session_start.json", &[]);
    let o = hook(&env, &["session-start"], &input);
    assert_eq!(code(&o), 0, "{}", describe(&o));
    let out: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(out["hookSpecificOutput"]["hookEventName"], "SessionStart");
    let text = out["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(text.len() <= 300, "{} bytes", text.len());
    assert!(text.contains("running: train"), "{text}");
    assert!(text.contains("lint failed (exit 1)"), "{text}");
    // Said once: the next start and the next stop do not repeat it.
    let again: Value =
        serde_json::from_str(stdout(&hook(&env, &["session-start"], &input)).trim()).unwrap();
    assert!(!again.to_string().contains("lint"), "{again}");
    env.release("g");
    let o = spawn_hook(&env, &["stop"], &stop_input(&env)).finish();
    assert_eq!(report_in(&stderr(&o))["name"], "train");
}

// --------------------------------------------------------- pre-tool-use ---

#[test]
fn pre_tool_use_turns_a_build_into_a_tracked_background_job_whose_end_wakes_stop() {
    let env = Env::new();
    let marker = env.scratch("built");
    let original = format!(
        "make -s -f /dev/null 2>/dev/null; echo built > '{}'; exit 4",
        marker.display()
    );
    let input = fixture(&env, "pre_tool_use.bash.json", &[("COMMAND", &original)]);
    let o = hook(&env, &["pre-tool-use", "--timeout", "5m"], &input);
    assert_eq!(code(&o), 0, "{}", describe(&o));
    let out: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let spec = &out["hookSpecificOutput"];
    assert_eq!(spec["hookEventName"], "PreToolUse");
    assert!(spec.get("permissionDecision").is_none());
    assert_eq!(spec["updatedInput"]["description"], "run it");
    let rewritten = spec["updatedInput"]["command"].as_str().unwrap().to_owned();
    assert!(
        rewritten.contains("--detach") && rewritten.contains("--timeout=300000ms"),
        "{rewritten}"
    );
    let context = spec["additionalContext"].as_str().unwrap();
    assert!(
        context.len() <= 300 && context.contains("wakes you"),
        "{context}"
    );

    // Claude Code runs the rewritten command in its shell…
    let mut shell = env.other("bash");
    shell.args(["-c", &rewritten]);
    let ran = output_of(shell);
    assert_code(&ran, 0);
    // …then PostToolUse sees it and tracks the job; stop reports its end.
    let post = fixture(
        &env,
        "post_tool_use.bash.json",
        &[("COMMAND", &rewritten), ("STDOUT", &stdout(&ran))],
    );
    assert_silent(&hook(&env, &["post-tool-use"], &post));
    let o = spawn_hook(&env, &["stop"], &stop_input(&env)).finish();
    assert_eq!(code(&o), 2, "{}", describe(&o));
    let r = report_in(&stderr(&o));
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("failed"), Some(4))
    );
    assert!(marker.exists(), "the original command ran");
}

#[test]
fn pre_tool_use_fails_open_and_honours_the_opt_out_marker() {
    let env = Env::new();
    for command in ["ls -la", "cargo test # jobwatch:foreground"] {
        let input = fixture(&env, "pre_tool_use.bash.json", &[("COMMAND", command)]);
        assert_silent(&hook(&env, &["pre-tool-use"], &input));
    }
    let input = fixture(&env, "pre_tool_use.bash.json", &[("COMMAND", "cargo test")]);
    assert_note(
        &hook(&env, &["pre-tool-use", "--allow", "("], &input),
        "not a valid regex",
    );
    assert_note(
        &hook(&env, &["pre-tool-use", "--timeout", "soon"], &input),
        "--timeout",
    );
    assert!(!env.dir.join("sessions").exists());
}

// ---------------------------------------------------------- session-end ---

#[test]
fn session_end_kills_the_session_s_running_jobs_and_nothing_else() {
    let env = Env::new();
    let mine = env.detach("mine", &[], &sh("sleep 300"));
    let other = env.detach("other", &[], &sh("sleep 300"));
    track_mcp(&env, "mine", mine.pid);
    let input = fixture(&env, "session_end.json", &[]);
    assert_silent(&hook(&env, &["session-end", "--grace", "1s"], &input));
    assert_eq!(env.await_status("mine"), "FAILED");
    assert_eq!(env.record("mine")["outcome"], "killed");
    assert!(is_alive(other.pid), "a job of no session must survive");
    assert!(env.status_file("other").is_none());
}

// ------------------------------------------------------------- garbage ---

#[test]
fn malformed_or_unexpected_input_never_blocks_the_agent() {
    let env = Env::new();
    let long = format!("{{\"session_id\":\"{}\"}}", "a".repeat(300));
    let garbage: Vec<(&str, &str)> = vec![
        ("", "no hook input"),
        ("not json at all", "not JSON"),
        ("{\"session_id\":", "not JSON"),
        ("\u{0}\u{1}\u{ff}", "not JSON"),
        ("[1,2,3]", "not a JSON object"),
        ("\"a string\"", "not a JSON object"),
        ("{}", "no session_id"),
        ("{\"session_id\":42}", "not a string"),
        ("{\"session_id\":\"../../etc/passwd\"}", "not a valid id"),
        ("{\"session_id\":\"a/b\"}", "not a valid id"),
        (&long, "not a valid id"),
    ];
    let events: [&[&str]; 5] = [
        &["post-tool-use"],
        &["stop"],
        &["session-start"],
        &["pre-tool-use"],
        &["session-end"],
    ];
    for event in events {
        for (input, why) in &garbage {
            let o = spawn_hook(&env, event, input).finish_within(Duration::from_secs(15));
            assert_note(&o, why);
        }
        // Valid JSON of an unexpected shape: silently nothing to do.
        let odd = format!(
            "{{\"session_id\":\"{SESSION}\",\"tool_name\":7,\"tool_input\":\"x\",\"tool_response\":null}}"
        );
        let o = spawn_hook(&env, event, &odd).finish_within(Duration::from_secs(15));
        assert_eq!(code(&o), 0, "{event:?}: {}", describe(&o));
        assert!(o.stdout.is_empty(), "{event:?}: {}", describe(&o));
    }
    let sessions = env.dir.join("sessions");
    let names: Vec<String> = fs::read_dir(&sessions)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(names.iter().all(|n| n.starts_with(SESSION)), "{names:?}");
}

#[test]
fn an_unusable_jobs_directory_is_a_note_not_an_error() {
    let env = Env::new();
    let file = env.scratch("not-a-dir");
    fs::write(&file, "x").unwrap();
    for event in [
        "post-tool-use",
        "stop",
        "session-start",
        "pre-tool-use",
        "session-end",
    ] {
        let mut cmd = env.bare();
        cmd.arg("--dir").arg(&file).args(["hook", event]);
        let stdin = env.scratch("in.json");
        fs::write(&stdin, stop_input(&env)).unwrap();
        let o = ChildGuard::spawn_with_stdin(cmd, fs::File::open(&stdin).unwrap()).finish();
        assert_note(&o, "not a directory");
    }
}

#[test]
fn a_damaged_session_file_is_a_note_for_stop_and_repaired_by_post_tool_use() {
    let env = Env::new();
    let job = env.detach("x", &[], &env.gated("g", 0));
    track_mcp(&env, "x", job.pid);
    fs::write(session_path(&env), "{ damaged").unwrap();
    assert_note(&hook(&env, &["stop"], &stop_input(&env)), "malformed");
    track_mcp(&env, "x", job.pid);
    assert_eq!(session_jobs(&env).len(), 1);
    env.release("g");
}
