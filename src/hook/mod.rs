//! `jobwatch hook EVENT`: Claude Code's hooks, so an agent learns the
//! outcome of its background jobs without polling, and a plugin needs no
//! jq, python or node.
//!
//! Each hook reads Claude Code's hook JSON from stdin ([`input`]), decides
//! with pure functions, and does its I/O at the edges:
//! - [`post_tool_use`]: remembers the jobs a session started (the MCP
//!   `start` tool, `jobwatch run NAME … --detach` in a Bash command) in the
//!   session file ([`session`]).
//! - [`stop`]: registered with `asyncRewake`: waits for the first of the
//!   session's jobs to end, without killing anything, and wakes the model
//!   with its outcome (exit 2, one line on stderr, [`line`]).
//! - [`session_start`]: tells a new, resumed or compacted session which of
//!   its jobs run and which ended unreported (`additionalContext`).
//! - [`pre_tool_use`] (opt-in): rewrites long-running Bash commands into a
//!   detached `jobwatch run` with a timeout.
//! - [`session_end`] (opt-in): kills the session's running jobs.
//!
//! A hook never blocks the agent by mistake: malformed or unexpected input,
//! an unusable jobs directory, even a panic, end in exit 0 with a note on
//! stderr. Only `stop` exits 2, and only to deliver an outcome.

pub mod bash;
pub mod input;
pub mod line;
pub mod look;
pub mod post_tool_use;
pub mod pre_tool_use;
pub mod session;
pub mod session_end;
pub mod session_start;
pub mod stop;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use jobwatch_core::store::file::FileStore;

const HOOK_HELP: &str = "\
Reads Claude Code's hook JSON on stdin. Register in hooks.json (exec form), e.g.
  {\"type\": \"command\", \"command\": \"jobwatch\", \"args\": [\"hook\", \"stop\"], \"asyncRewake\": true}
Malformed or unexpected input: exit 0 and a note on stderr; the agent is never blocked.
The plugin in plugin/jobwatch/ registers post-tool-use, stop and session-start.

Examples:
  jobwatch hook stop < stop-input.json          # exit 2 and the outcome on stderr when a job ends
  jobwatch hook pre-tool-use --allow '^make\\b' --timeout 2h < pre-input.json";

/// Claude Code hooks: learn job outcomes without polling (reads hook JSON on stdin).
#[derive(Debug, Args)]
#[command(after_help = HOOK_HELP)]
pub struct HookArgs {
    #[command(subcommand)]
    event: HookEvent,
}

/// The hook events jobwatch handles.
#[derive(Debug, Subcommand)]
enum HookEvent {
    /// PostToolUse: remember the jobs this session started (silent).
    PostToolUse,
    /// Stop, with asyncRewake: wait for the first of the session's running
    /// jobs to end (killing nothing), then exit 2 with its outcome on stderr.
    Stop,
    /// SessionStart: additionalContext listing the session's running jobs
    /// and the outcomes it has not heard yet.
    SessionStart,
    /// PreToolUse (opt-in; register it last): run long Bash commands that
    /// match the allowlist as a detached job with a timeout.
    PreToolUse(pre_tool_use::PreToolUseArgs),
    /// SessionEnd (opt-in): kill the session's running jobs.
    SessionEnd(session_end::SessionEndArgs),
}

/// What a hook hands back to Claude Code.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HookOutput {
    /// The exit code: 0, or 2 to deliver `stderr` to the model.
    pub code: u8,
    /// JSON for Claude Code on stdout.
    pub stdout: Option<String>,
    /// A note (exit 0) or the outcome line (exit 2).
    pub stderr: Option<String>,
}

impl HookOutput {
    /// Nothing to say.
    pub fn quiet() -> Self {
        Self::default()
    }

    /// Exit 0 with a note on stderr: the input was not something to act on.
    pub fn note(why: impl std::fmt::Display) -> Self {
        Self {
            stderr: Some(format!("jobwatch hook: {why}")),
            ..Self::default()
        }
    }

    /// JSON on stdout, exit 0.
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            stdout: Some(value.to_string()),
            ..Self::default()
        }
    }

    /// Exit 2: the line reaches the model (asyncRewake wakes it).
    pub fn wake(line: String) -> Self {
        Self {
            code: 2,
            stdout: None,
            stderr: Some(line),
        }
    }
}

/// Where a hook runs: the jobs directory it was given (or the default),
/// and this executable (for commands it starts).
#[derive(Debug, Clone)]
pub struct HookContext {
    /// The jobs directory, as the store.
    pub store: FileStore,
    /// `--dir` as given, passed on to commands the hook writes.
    pub explicit_dir: Option<PathBuf>,
    /// This executable.
    pub exe: PathBuf,
}

/// Runs `jobwatch hook EVENT`; returns the exit code. Never fails: every
/// problem is a note on stderr with exit 0.
pub fn main(dir: Option<PathBuf>, args: HookArgs) -> u8 {
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run(dir, args)))
        .unwrap_or_else(|_| HookOutput::note("internal error (a panic); ignored"));
    emit(&out);
    out.code
}

fn run(dir: Option<PathBuf>, args: HookArgs) -> HookOutput {
    let ctx = match context(dir) {
        Ok(ctx) => ctx,
        Err(why) => return HookOutput::note(why),
    };
    let raw = match input::read_stdin() {
        Ok(raw) => raw,
        Err(why) => return HookOutput::note(why),
    };
    let common = match input::Common::parse(&raw) {
        Ok(c) => c,
        Err(why) => return HookOutput::note(why),
    };
    match args.event {
        HookEvent::PostToolUse => post_tool_use::run(&ctx, &common, &raw),
        HookEvent::Stop => stop::run(&ctx, &common),
        HookEvent::SessionStart => session_start::run(&ctx, &common),
        HookEvent::PreToolUse(a) => pre_tool_use::run(&ctx, &a, &raw),
        HookEvent::SessionEnd(a) => session_end::run(&ctx, &a, &common),
    }
}

fn context(dir: Option<PathBuf>) -> Result<HookContext, String> {
    let store = FileStore::open(dir.as_deref()).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    Ok(HookContext {
        store,
        explicit_dir: dir,
        exe,
    })
}

/// Prints the output. A reader that went away is not an error worth
/// reporting: there is nobody left to report it to.
fn emit(out: &HookOutput) {
    if let Some(s) = &out.stdout {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    }
    if let Some(s) = &out.stderr {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{s}");
        let _ = e.flush();
    }
}
