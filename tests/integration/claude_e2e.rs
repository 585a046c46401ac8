//! End to end with the real Claude Code CLI: `claude -p` with the repository's
//! plugin (its MCP server and hooks running the jobwatch under test) against
//! a scripted Messages API on 127.0.0.1.
//!
//! The scripted model starts two jobs through the MCP `start` tool and ends
//! its turn (a third scenario: it arms the Monitor tool on `jobwatch events
//! --follow`, and a job it did not start wakes it). The test asserts that the model is next called only after the
//! first job ended, with that outcome in its input, then only after the
//! second ended, and that no model request happened in between; it prints
//! the wake-up delays (job exit to next model request) and the bytes each
//! hook injected.
//!
//! The CLI comes from npm (`@anthropic-ai/claude-code`, whose platform
//! package ships a native binary) into `target/claude-code/`, installed at
//! test time and cached there, never vendored. Without npm or the registry
//! the test says why and returns; under `CI=true` it fails instead.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::support::*;

/// The Claude Code release this test was written against; override with
/// `JOBWATCH_E2E_CLAUDE_VERSION` (or point `JOBWATCH_E2E_CLAUDE` at a
/// binary).
const CLAUDE_VERSION: &str = "2.1.332";

/// How long one `claude -p` run may take.
const CLAUDE_DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn claude_code_is_woken_by_each_job_s_end_and_never_polls() {
    let claude = match claude_binary() {
        Ok(path) => path,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("claude_e2e: the Claude Code CLI is needed under CI=true: {why}")
        }
        Err(why) => {
            say(&format!(
                "claude_e2e: NOT RUN: cannot get the Claude Code CLI: {why}"
            ));
            return;
        }
    };
    let env = Env::new();
    let (fast_gate, fast_mark) = (env.scratch("fast.go"), env.scratch("fast.exited"));
    let (slow_gate, slow_mark) = (env.scratch("slow.go"), env.scratch("slow.exited"));
    let jobs = vec![
        ("e2e-fast".to_owned(), gated(&fast_gate, "", &fast_mark, 0)),
        (
            "e2e-slow".to_owned(),
            gated(
                &slow_gate,
                "echo some output; echo boom >&2;",
                &slow_mark,
                3,
            ),
        ),
    ];
    let server = ScriptedApi::start(start_calls(jobs));
    let mut claude_run = spawn_claude(
        &env,
        &claude,
        &server.url(),
        &["--allowedTools", "mcp__plugin_jobwatch_jobwatch__start"],
    );
    // The model started both jobs and ended its turn; both still run.
    await_main_requests(&server, 2, &mut claude_run);
    fs::write(&fast_gate, "go").unwrap();
    await_main_requests(&server, 3, &mut claude_run);
    fs::write(&slow_gate, "go").unwrap();
    let out = claude_run.finish_within(CLAUDE_DEADLINE);
    let requests = server.stop();
    let log = describe_requests(&requests);
    assert_eq!(
        code(&out),
        0,
        "claude -p failed:\n{}\nrequests:\n{log}",
        describe(&out)
    );

    let main: Vec<&Recorded> = requests.iter().filter(|r| r.is_main()).collect();
    assert_eq!(
        main.len(),
        4,
        "expected start, tool results, two wakes:\n{log}"
    );
    assert!(
        requests.iter().all(|r| r.is_main()),
        "side requests:\n{log}"
    );
    let fast_exit = exit_time(&fast_mark);
    let slow_exit = exit_time(&slow_mark);
    let (sent_start, after_start, wake1, wake2) = (main[0], main[1], main[2], main[3]);

    // The turn ended before either job did, and nothing asked the model
    // anything until the first job exited.
    assert!(
        sent_start.at < after_start.at && after_start.at < fast_exit,
        "{log}"
    );
    assert!(
        wake1.at >= fast_exit,
        "woken before the fast job exited:\n{log}"
    );
    assert!(
        wake1.at < slow_exit,
        "the first wake waited for the slow job too:\n{log}"
    );
    assert!(
        wake2.at >= slow_exit,
        "woken before the slow job exited:\n{log}"
    );
    let between = |from: SystemTime, to: SystemTime| {
        requests.iter().filter(|r| r.at > from && r.at < to).count()
    };
    assert_eq!(
        between(after_start.at, wake1.at),
        0,
        "a model request while waiting:\n{log}"
    );
    assert_eq!(
        between(wake1.at, wake2.at),
        0,
        "a model request while waiting:\n{log}"
    );

    // Each wake carries its job's outcome, once.
    let seen1 = stop_feedback(wake1);
    let seen2 = stop_feedback(wake2);
    assert_eq!(
        seen1.len(),
        1,
        "wake 1 carries one outcome: {seen1:?}\n{log}"
    );
    assert_eq!(seen2.len(), 2, "wake 2 adds one outcome: {seen2:?}\n{log}");
    assert_eq!(
        seen2[0], seen1[0],
        "the first outcome is not reported again"
    );
    let (line1, line2) = (seen1[0].clone(), seen2[1].clone());
    assert!(
        line1.contains("\"name\":\"e2e-fast\"") && line1.contains("\"outcome\":\"success\""),
        "{line1}"
    );
    assert!(line1.contains("1 more job"), "{line1}");
    assert!(
        line2.contains("\"name\":\"e2e-slow\"") && line2.contains("\"outcome\":\"failed\""),
        "{line2}"
    );
    assert!(
        line2.contains("\"exit_code\":3") && line2.contains("boom"),
        "{line2}"
    );
    assert!(line1.len() <= 300, "{} bytes: {line1}", line1.len());
    assert!(line2.len() <= 1024, "{} bytes: {line2}", line2.len());
    // post-tool-use is silent, and session-start had nothing to tell.
    assert!(
        !after_start.text().contains("PostToolUse"),
        "post-tool-use injected text:\n{log}"
    );
    assert!(
        !sent_start.text().contains("background jobs this session"),
        "{log}"
    );

    let ms = |d: Result<Duration, _>| d.map_or(-1.0, |d: Duration| d.as_secs_f64() * 1000.0);
    say(&format!(
        "claude_e2e: Claude Code {}: wake-up delay (job exit -> next model request): \
         {:.1} ms (first job), {:.1} ms (second job); bytes injected: stop {} and {}, \
         post-tool-use 0, session-start 0 (nothing to report at startup)",
        claude_version(&claude),
        ms(wake1.at.duration_since(fast_exit)),
        ms(wake2.at.duration_since(slow_exit)),
        line1.len(),
        line2.len(),
    ));
}

/// A line on the real stderr: the test harness captures `eprintln!` of a
/// passing test, and a skip or a measurement must be seen.
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

#[test]
fn claude_code_runs_a_matching_bash_command_as_a_job_and_is_woken_when_it_ends() {
    let claude = match claude_binary() {
        Ok(path) => path,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("claude_e2e: the Claude Code CLI is needed under CI=true: {why}")
        }
        Err(why) => {
            say(&format!(
                "claude_e2e: NOT RUN: cannot get the Claude Code CLI: {why}"
            ));
            return;
        }
    };
    let env = Env::new();
    let (gate, mark) = (env.scratch("build.go"), env.scratch("build.exited"));
    let command = gated(&gate, "echo compiling;", &mark, 5);
    let bash = json!({"type": "tool_use", "id": "toolu_e2eBash01", "name": "Bash",
                      "input": {"command": command, "description": "build"}});
    let server = ScriptedApi::start(Box::new(move |_| vec![bash.clone()]));
    // The opt-in PreToolUse hook, as the plugin's README shows it.
    let settings = env.scratch("settings.json");
    let hook = json!({"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{
        "type": "command", "command": "jobwatch",
        "args": ["hook", "pre-tool-use", "--allow", "^while \\[ ! -e", "--timeout", "5m"],
        "timeout": 10}]}]}});
    fs::write(&settings, hook.to_string()).unwrap();
    let settings = settings.display().to_string();
    let mut claude_run = spawn_claude(
        &env,
        &claude,
        &server.url(),
        &["--settings", &settings, "--allowedTools", "Bash"],
    );
    // The Bash call returned while its command still waits for the gate:
    // it runs as a background job.
    await_main_requests(&server, 2, &mut claude_run);
    assert!(!mark.exists());
    fs::write(&gate, "go").unwrap();
    let out = claude_run.finish_within(CLAUDE_DEADLINE);
    let requests = server.stop();
    let log = describe_requests(&requests);
    assert_eq!(
        code(&out),
        0,
        "claude -p failed:\n{}\nrequests:\n{log}",
        describe(&out)
    );
    let main: Vec<&Recorded> = requests.iter().filter(|r| r.is_main()).collect();
    assert_eq!(
        main.len(),
        3,
        "expected the call, its result, one wake:\n{log}"
    );
    let exited = exit_time(&mark);
    let (after_call, wake) = (main[1], main[2]);
    // The command ran as a job: the tool returned before it ended, and the
    // model was told so.
    assert!(
        after_call.at < exited,
        "the Bash call waited for the command:\n{log}"
    );
    let pre_context = injected_context(after_call, "jobwatch: this command now runs")
        .unwrap_or_else(|| panic!("no pre-tool-use context:\n{log}"));
    assert!(pre_context.len() <= 300, "{pre_context}");
    assert!(
        after_call.text().contains("now runs as background job"),
        "{log}"
    );
    assert!(wake.at >= exited, "{log}");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.at > after_call.at && r.at < wake.at)
            .count(),
        0,
        "{log}"
    );
    let seen = stop_feedback(wake);
    assert_eq!(seen.len(), 1, "{seen:?}\n{log}");
    assert!(
        seen[0].contains("\"outcome\":\"failed\"") && seen[0].contains("\"exit_code\":5"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains("compiling"),
        "the tail shows the output: {}",
        seen[0]
    );
    say(&format!(
        "claude_e2e: pre-tool-use: the rewritten command returned at once; wake-up delay {:.1} ms; \
         pre-tool-use injected {} bytes, stop {} bytes",
        wake.at
            .duration_since(exited)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0,
        pre_context.len(),
        seen[0].len()
    ));
}

/// How long the scripted model's Monitor lives: `claude -p` returns once it
/// expired (it waits for its background tasks).
const MONITOR_MS: u64 = 30_000;

#[test]
fn claude_code_s_monitor_on_jobwatch_events_wakes_the_model_once_per_job_end() {
    let claude = match claude_binary() {
        Ok(path) => path,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("claude_e2e: the Claude Code CLI is needed under CI=true: {why}")
        }
        Err(why) => {
            say(&format!(
                "claude_e2e: NOT RUN: cannot get the Claude Code CLI: {why}"
            ));
            return;
        }
    };
    let env = Env::new();
    // A job the session did not start (a script's, CI's): its hooks know
    // nothing of it, only the event stream does.
    let (gate, mark) = (env.scratch("ci.go"), env.scratch("ci.exited"));
    let out = env.jw(&[
        "run",
        "ci",
        "--detach",
        "--",
        "sh",
        "-c",
        &gated(&gate, "", &mark, 3),
    ]);
    assert_code(&out, 0);
    // The skill's recipe: a cursor taken before arming, so nothing that
    // ends before the follower reads is missed.
    let out = env.jw(&["events", "--cursor"]);
    assert_code(&out, 0);
    let cursor = stdout(&out).trim().to_owned();
    let command = format!(
        "jobwatch events --follow --since {cursor} | grep --line-buffered '\"event\":\"ended\"'"
    );
    let monitor = json!({"type": "tool_use", "id": "toolu_e2eMon01", "name": "Monitor",
        "input": {"command": command, "description": "jobwatch: job ends", "timeout_ms": MONITOR_MS}});
    let server = ScriptedApi::start(Box::new(move |_| vec![monitor.clone()]));
    let mut claude_run = spawn_claude(&env, &claude, &server.url(), &["--allowedTools", "Monitor"]);
    // The model armed the Monitor and ended its turn; the job still runs.
    await_main_requests(&server, 2, &mut claude_run);
    assert!(!mark.exists());
    fs::write(&gate, "go").unwrap();
    let out = claude_run.finish_within(CLAUDE_DEADLINE);
    let requests = server.stop();
    let log = describe_requests(&requests);
    assert_eq!(
        code(&out),
        0,
        "claude -p failed:\n{}\nrequests:\n{log}",
        describe(&out)
    );
    let main: Vec<&Recorded> = requests.iter().filter(|r| r.is_main()).collect();
    assert!(main.len() >= 3, "start, tool result, the event:\n{log}");
    let (armed, wake) = (main[1], main[2]);
    assert!(
        armed.text().contains("Monitor started"),
        "the Monitor ran:\n{log}"
    );
    let exited = exit_time(&mark);
    assert!(armed.at < exited, "{log}");
    assert!(wake.at >= exited, "woken before the job ended:\n{log}");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.at > armed.at && r.at < wake.at)
            .count(),
        0,
        "a model request while waiting:\n{log}"
    );
    let event = "{\"event\":\"ended\",\"name\":\"ci\"";
    let line = strings(&wake.body)
        .into_iter()
        .find_map(|t| {
            let at = t.find(event)?;
            let rest = &t[at..];
            Some(rest[..rest.find('}').map_or(rest.len(), |e| e + 1)].to_owned())
        })
        .unwrap_or_else(|| panic!("the wake carries the job's end:\n{log}"));
    assert!(
        line.contains("\"outcome\":\"failed\"") && line.contains("\"exit_code\":3"),
        "{line}"
    );
    // Each end reaches the model once, however often it is called after.
    let last = main.last().unwrap();
    let seen: usize = strings(&last.body)
        .iter()
        .map(|t| t.matches(event).count())
        .sum();
    assert_eq!(seen, 1, "the end is in the conversation once:\n{log}");
    say(&format!(
        "claude_e2e: Monitor on `jobwatch events --follow`: wake-up delay {:.1} ms (job exit -> next model request, \
         including the Monitor's 200 ms batching); {} bytes per event line",
        wake.at
            .duration_since(exited)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0,
        line.len()
    ));
}

// ------------------------------------------------------------ the CLI ---

/// The Claude Code binary: `JOBWATCH_E2E_CLAUDE`, else the native binary of
/// the npm package under `target/claude-code/`, installed there if missing.
fn claude_binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("JOBWATCH_E2E_CLAUDE") {
        let path = PathBuf::from(path);
        return if runs(&path) {
            Ok(path)
        } else {
            Err(format!(
                "JOBWATCH_E2E_CLAUDE={} does not run",
                path.display()
            ))
        };
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_owned();
    let cache = target.join("claude-code");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => return Err(format!("no Claude Code package for {other}")),
    };
    let native = cache.join(format!(
        "node_modules/@anthropic-ai/claude-code-linux-{arch}/claude"
    ));
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    // One installer at a time (test binaries may run in parallel).
    let lock = fs::File::create(cache.join(".lock")).map_err(|e| e.to_string())?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| e.to_string())?;
    let version =
        std::env::var("JOBWATCH_E2E_CLAUDE_VERSION").unwrap_or_else(|_| CLAUDE_VERSION.into());
    if !runs(&native) || claude_version(&native) != version {
        install(&cache, &version)?;
    }
    if !runs(&native) {
        return Err(format!(
            "{} does not run after the install",
            native.display()
        ));
    }
    Ok(native)
}

fn runs(claude: &Path) -> bool {
    claude.exists()
        && Command::new(claude)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn claude_version(claude: &Path) -> String {
    Command::new(claude)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

fn install(cache: &Path, version: &str) -> Result<(), String> {
    say(&format!(
        "claude_e2e: installing @anthropic-ai/claude-code@{version} into {}",
        cache.display()
    ));
    let mut npm = Command::new("npm");
    npm.args([
        "install",
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--loglevel=error",
        "--prefix",
    ])
    .arg(cache)
    .arg(format!("@anthropic-ai/claude-code@{version}"));
    let child = ChildGuard::spawn(npm);
    let out = child.finish_within(Duration::from_secs(600));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "npm install failed ({}): {}",
            out.status,
            stderr(&out).trim()
        ))
    }
}

/// Starts `claude -p` in a private HOME, with the repository's plugin and the
/// jobwatch under test first on PATH.
fn spawn_claude(env: &Env, claude: &Path, url: &str, extra: &[&str]) -> ChildGuard {
    let home = env.scratch("home");
    let work = env.scratch("work");
    let bin_dir = env.scratch("bin");
    for d in [&home, &work, &bin_dir] {
        fs::create_dir_all(d).unwrap();
    }
    std::os::unix::fs::symlink(bin(), bin_dir.join("jobwatch")).unwrap();
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin/jobwatch");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(claude);
    // Nothing of the calling agent's or user's Claude setup may leak in;
    // the test's tag (set by `prepare`) marks every process for cleanup.
    cmd.env_clear();
    env.prepare(&mut cmd);
    cmd.env("PATH", path)
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .env("JOBWATCH_DIR", &env.dir)
        .env("ANTHROPIC_BASE_URL", url)
        .env("ANTHROPIC_API_KEY", "sk-ant-e2e-dummy")
        .env("ENABLE_TOOL_SEARCH", "false")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .current_dir(&work)
        .args(["-p", "Start the e2e work, then end your turn."])
        .arg("--plugin-dir")
        .arg(&plugin)
        .args(extra)
        .args(["--output-format", "stream-json", "--verbose"]);
    ChildGuard::spawn(cmd)
}

/// A script that waits for `gate` to exist, runs `then`, writes the time
/// to `mark` and exits with `code`: the test decides when a job ends.
fn gated(gate: &Path, then: &str, mark: &Path, code: i32) -> String {
    format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done; {then} date +%s%N > '{}'; exit {code}",
        gate.display(),
        mark.display()
    )
}

/// Waits until the scripted API has answered `n` main-loop requests.
#[track_caller]
fn await_main_requests(server: &ScriptedApi, n: usize, claude: &mut ChildGuard) {
    wait_until(
        &format!("{n} model requests"),
        Duration::from_secs(120),
        || server.main_answered() >= n || !claude.is_running(),
    );
    assert!(
        server.main_answered() >= n,
        "claude exited before model request {n}"
    );
}

/// When a job's command exited: the nanoseconds it wrote just before.
#[track_caller]
fn exit_time(mark: &Path) -> SystemTime {
    let text = fs::read_to_string(mark).unwrap_or_else(|e| panic!("{}: {e}", mark.display()));
    let ns: u64 = text.trim().parse().unwrap();
    UNIX_EPOCH + Duration::from_nanos(ns)
}

// ------------------------------------------------ the scripted model ---

/// One request the scripted API received.
#[derive(Debug, Clone)]
struct Recorded {
    at: SystemTime,
    path: String,
    body: Value,
}

impl Recorded {
    /// A request of the main loop: it offers jobwatch's `start` tool.
    fn is_main(&self) -> bool {
        start_tool(&self.body).is_some()
    }

    fn text(&self) -> String {
        self.body.to_string()
    }
}

/// The name Claude Code gave jobwatch's MCP `start` tool.
fn start_tool(body: &Value) -> Option<String> {
    body["tools"].as_array()?.iter().find_map(|t| {
        let name = t["name"].as_str()?;
        (name.contains("jobwatch") && name.ends_with("__start")).then(|| name.to_owned())
    })
}

/// The lines our stop hook injected into a request's conversation so far,
/// oldest first (Claude Code puts each in a "Stop hook feedback" reminder).
fn stop_feedback(r: &Recorded) -> Vec<String> {
    let Some(messages) = r.body["messages"].as_array() else {
        return Vec::new();
    };
    let texts = messages.iter().flat_map(|m| match &m["content"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    });
    let lead = "jobwatch: a background job of this session ended:";
    texts
        .flat_map(|text| {
            text.match_indices(lead)
                .map(|(at, _)| {
                    let rest = &text[at..];
                    rest[..rest.find('\n').unwrap_or(rest.len())].to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A text our hook injected (from `lead` to the end of its text block).
fn injected_context(r: &Recorded, lead: &str) -> Option<String> {
    strings(&r.body)
        .into_iter()
        .find_map(|t| t.find(lead).map(|at| t[at..].to_owned()))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

fn describe_requests(requests: &[Recorded]) -> String {
    let t0 = requests.first().map(|r| r.at).unwrap_or(UNIX_EPOCH);
    requests
        .iter()
        .map(|r| {
            let tail: String = r
                .text()
                .chars()
                .rev()
                .take(600)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!(
                "+{:?} {} main={} …{tail}",
                r.at.duration_since(t0).unwrap_or_default(),
                r.path,
                r.is_main()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The tool calls of the model's first turn, given the name Claude Code
/// gave jobwatch's `start` tool.
type FirstTurn = Box<dyn Fn(&str) -> Vec<Value> + Send + Sync>;

/// `start` calls for jobs `(name, sh script)`.
fn start_calls(jobs: Vec<(String, String)>) -> FirstTurn {
    Box::new(move |tool| {
        jobs.iter()
            .enumerate()
            .map(|(i, (name, script))| {
                json!({"type": "tool_use", "id": format!("toolu_e2e{i}"), "name": tool,
                       "input": {"name": name, "command": ["sh", "-c", script], "timeout": "1m"}})
            })
            .collect()
    })
}

/// A stand-in for the Messages API on 127.0.0.1, streaming SSE like the
/// real one. Script: the first main request gets the [`FirstTurn`]'s tool
/// calls, every later one a short text that ends the turn.
///
/// HTTP/1.1 by hand (keep-alive, content-length or chunked bodies): the
/// test needs each request's arrival time and nothing more, and a stub this
/// small is easier to read than a server crate's setup.
struct ScriptedApi {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    answered: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl ScriptedApi {
    fn start(first_turn: FirstTurn) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let main_calls = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let first_turn: Arc<FirstTurn> = Arc::new(first_turn);
        let acceptor = {
            let (requests, stopping, answered) =
                (requests.clone(), stopping.clone(), answered.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, main_calls, first_turn, answered) = (
                        requests.clone(),
                        main_calls.clone(),
                        first_turn.clone(),
                        answered.clone(),
                    );
                    thread::spawn(move || {
                        serve(stream, &requests, &main_calls, &answered, &first_turn)
                    });
                }
            })
        };
        Self {
            addr,
            requests,
            answered,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// Main-loop requests answered in full so far.
    fn main_answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and returns what was received, in arrival order.
    fn stop(mut self) -> Vec<Recorded> {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let mut r = self.requests.lock().unwrap().clone();
        r.sort_by_key(|r| r.at);
        r
    }
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<Recorded>>,
    main_calls: &AtomicUsize,
    answered: &AtomicUsize,
    first_turn: &FirstTurn,
) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some((method, path, body)) = read_request(&mut reader) {
        let at = SystemTime::now();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        requests.lock().unwrap().push(Recorded {
            at,
            path: path.clone(),
            body: body.clone(),
        });
        let (content_type, reply) = if method != "POST" {
            ("application/json", b"{}".to_vec())
        } else if path.contains("count_tokens") {
            ("application/json", br#"{"input_tokens":10}"#.to_vec())
        } else {
            let blocks = match start_tool(&body) {
                Some(tool) if main_calls.fetch_add(1, Ordering::SeqCst) == 0 => first_turn(&tool),
                _ => vec![json!({"type": "text", "text": "Noted; ending my turn."})],
            };
            if body["stream"] == true {
                ("text/event-stream", sse(&blocks))
            } else {
                ("application/json", whole(&blocks))
            }
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&reply).is_err() {
            return;
        }
        let _ = writer.flush();
        if start_tool(&body).is_some() {
            answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Reads one request: method, path and body; `None` at the end of the
/// connection.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers.get("content-length").and_then(|v| v.parse().ok()) {
        body = vec![0; n];
        r.read_exact(&mut body).ok()?;
    }
    Some((method, path, body))
}

fn stop_reason(blocks: &[Value]) -> &'static str {
    if blocks.iter().any(|b| b["type"] == "tool_use") {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// A streamed message, event by event as the Messages API sends it.
fn sse(blocks: &[Value]) -> Vec<u8> {
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": "msg_e2e", "type": "message", "role": "assistant", "model": "claude-e2e",
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 1}}})];
    for (i, b) in blocks.iter().enumerate() {
        if b["type"] == "text" {
            events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
            events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": b["text"]}}));
        } else {
            events.push(
                json!({"type": "content_block_start", "index": i, "content_block":
                {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}),
            );
            events.push(json!({"type": "content_block_delta", "index": i, "delta":
                {"type": "input_json_delta", "partial_json": b["input"].to_string()}}));
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(blocks), "stop_sequence": null},
                       "usage": {"output_tokens": 5}}));
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect::<String>()
        .into_bytes()
}

/// The same message, not streamed.
fn whole(blocks: &[Value]) -> Vec<u8> {
    json!({"id": "msg_e2e", "type": "message", "role": "assistant", "model": "claude-e2e",
           "content": blocks, "stop_reason": stop_reason(blocks), "stop_sequence": null,
           "usage": {"input_tokens": 10, "output_tokens": 5}})
    .to_string()
    .into_bytes()
}
