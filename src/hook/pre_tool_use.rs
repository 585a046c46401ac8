//! `jobwatch hook pre-tool-use` (opt-in): a long-running Bash command that
//! matches the allowlist (builds, test suites, `sleep`-poll loops, …) runs
//! as a detached job with a timeout instead of in the agent's shell, where
//! the Bash tool's own timeout would cut it off and the agent would sit
//! waiting. The model is told (`additionalContext`) that the outcome wakes
//! it; `post-tool-use` tracks the job from the rewritten command.
//!
//! Output (stdout, exit 0):
//! `{"hookSpecificOutput":{"hookEventName":"PreToolUse","updatedInput":{…},"additionalContext":"…"}}`.
//! `updatedInput` is the whole tool input with `command` replaced; no
//! `permissionDecision` is given, so the usual permission rules still apply
//! to the rewritten command.
//!
//! Fail-open: anything unexpected (another tool, a bad `--allow` regex, an
//! odd input) leaves the command as it is. A command containing
//! `# jobwatch:foreground` is never rewritten, nor one that already runs
//! `jobwatch` or asks for `run_in_background`. Register it as the
//! last PreToolUse hook, so every other hook judges the command the model
//! wrote, and nothing rewrites it after jobwatch.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use regex::Regex;
use serde_json::{Value, json};

use super::input::ToolCall;
use super::{HookContext, HookOutput};
use crate::cli::args::{ms, positive_duration};

/// The per-command opt-out marker (a shell comment, so it changes nothing
/// when the command runs).
pub const OPT_OUT: &str = "# jobwatch:foreground";

/// The built-in allowlist: commands that take long and print an outcome.
/// Each is a regex matched against the whole command.
pub const DEFAULT_ALLOW: &[&str] = &[
    // Builds and test suites, optionally after `cd DIR &&` or variables.
    r"^(cd\s+\S+\s*&&\s*)?(\w+=\S*\s+)*(cargo\s+(build|test|nextest|bench|clippy|check|doc)\b|make\b|ninja\b|cmake\s+--build\b|meson\s+(compile|test)\b|(\./)?gradlew?\s|mvn\s|(npm|pnpm|yarn)\s+(run\s+)?(build|test)\b|go\s+(build|test)\b|(python3?\s+-m\s+)?pytest\b|tox\b|bazel\s+(build|test)\b|docker\s+(build|compose\s+build)\b)",
    // Poll loops: `while … sleep …`, `until … sleep …`.
    r"\b(while|until)\b[\s\S]*\bsleep\b",
    // A plain long sleep (10 s or more).
    r"^sleep\s+(\d{2,}|\d+[mhd])\b",
];

/// Options of `hook pre-tool-use`, given in the hook's `args`.
#[derive(Debug, Args)]
pub struct PreToolUseArgs {
    /// Run commands matching this regex as background jobs (repeatable;
    /// replaces the built-in list of builds, test suites and sleep-polls).
    #[arg(long = "allow", value_name = "REGEX")]
    allow: Vec<String>,

    /// Kill the job (outcome timeout) after this long.
    #[arg(long, default_value = "1h", value_name = "D")]
    timeout: String,

    /// Kill the job (outcome hung) after this long without output or CPU
    /// use.
    #[arg(long, default_value = "10m", value_name = "D")]
    stale: String,
}

/// What gets rewritten, and how.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Commands matching any of these.
    pub allow: Vec<Regex>,
    /// The job's time limit.
    pub timeout: Duration,
    /// The job's stale threshold.
    pub stale: Duration,
}

impl Policy {
    /// The policy from the hook's options; a bad regex or duration is an
    /// error naming it (the hook then leaves every command alone).
    pub fn from_args(a: &PreToolUseArgs) -> Result<Self, String> {
        let patterns: Vec<&str> = if a.allow.is_empty() {
            DEFAULT_ALLOW.to_vec()
        } else {
            a.allow.iter().map(String::as_str).collect()
        };
        let allow = patterns
            .into_iter()
            .map(|p| Regex::new(p).map_err(|e| format!("--allow {p:?} is not a valid regex: {e}")))
            .collect::<Result<_, _>>()?;
        let timeout = positive_duration(&a.timeout).map_err(|e| format!("--timeout: {e}"))?;
        let stale = positive_duration(&a.stale).map_err(|e| format!("--stale: {e}"))?;
        Ok(Self {
            allow,
            timeout,
            stale,
        })
    }
}

/// The hook's output for a tool call, or `None` to leave it alone.
/// `exe` is the jobwatch to run; `dir` the jobs directory to name.
pub fn rewrite(tool: &ToolCall, policy: &Policy, exe: &Path, dir: Option<&Path>) -> Option<Value> {
    if tool.name != "Bash" || tool.input.get("run_in_background") == Some(&Value::Bool(true)) {
        return None;
    }
    let command = tool.input_str("command")?.trim();
    if command.is_empty() || opted_out(command) || super::bash::invokes_jobwatch(command) {
        return None;
    }
    if !policy.allow.iter().any(|re| re.is_match(command)) {
        return None;
    }
    let name = job_name(command, &tool.id);
    let mut words = vec![exe.display().to_string()];
    if let Some(d) = dir {
        words.extend(["--dir".to_owned(), d.display().to_string()]);
    }
    words.extend([
        "run".to_owned(),
        name.clone(),
        "--detach".to_owned(),
        format!("--timeout={}ms", ms(policy.timeout)),
        format!("--stale={}ms", ms(policy.stale)),
        "--".to_owned(),
        "bash".to_owned(),
        "-c".to_owned(),
        command.to_owned(),
    ]);
    let mut input = tool.input.clone();
    input["command"] = Value::String(shell_words::join(&words));
    let context = format!(
        "jobwatch: this command now runs as background job {name} (timeout {}); its outcome wakes you when it ends, so end your turn instead of waiting or polling. To run a command in the foreground, add `{OPT_OUT}`.",
        humantime::format_duration(policy.timeout)
    );
    Some(json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "updatedInput": input,
            "additionalContext": context,
        }
    }))
}

/// Whether the command carries the opt-out marker (spaces tolerated:
/// `#jobwatch: foreground`).
fn opted_out(command: &str) -> bool {
    let squeezed: String = command.chars().filter(|c| !c.is_whitespace()).collect();
    squeezed.contains("#jobwatch:foreground")
}

/// A job name from the command's first words and the tool call's id, e.g.
/// `cargo-test-9f8a2c` for `cargo test --all`.
pub fn job_name(command: &str, tool_use_id: &str) -> String {
    let words = shell_words::split(command)
        .unwrap_or_else(|_| command.split_whitespace().map(str::to_owned).collect());
    let mut parts: Vec<String> = Vec::new();
    for w in words.iter().filter(|w| !w.contains('=')) {
        let w = w.rsplit('/').next().unwrap_or(w);
        let slug: String = w
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        if slug.is_empty() || (!parts.is_empty() && slug.starts_with('-')) {
            break;
        }
        parts.push(slug);
        if parts.len() == 2 || matches!(parts[0].as_str(), "cd" | "while" | "until") {
            break;
        }
    }
    let mut base = parts.join("-");
    base.truncate(40);
    let base = base.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let base = if base.is_empty() { "job" } else { base };
    let id: String = tool_use_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let suffix = if id.len() >= 6 {
        id[id.len() - 6..].to_owned()
    } else {
        jobwatch_core::sys::proc::random_id().replace('-', "")[..8].to_owned()
    };
    format!("{base}-{suffix}")
}

/// Runs the hook.
pub fn run(ctx: &HookContext, args: &PreToolUseArgs, raw: &Value) -> HookOutput {
    let policy = match Policy::from_args(args) {
        Ok(p) => p,
        Err(why) => return HookOutput::note(format!("{why}; command left as it is")),
    };
    let tool = ToolCall::parse(raw);
    match rewrite(&tool, &policy, &ctx.exe, ctx.explicit_dir.as_deref()) {
        Some(out) => HookOutput::json(&out),
        None => HookOutput::quiet(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobwatch_core::model::JobName;

    fn policy() -> Policy {
        Policy::from_args(&PreToolUseArgs {
            allow: vec![],
            timeout: "30m".into(),
            stale: "10m".into(),
        })
        .unwrap()
    }

    fn bash(command: &str) -> ToolCall {
        ToolCall::parse(&json!({
            "tool_name": "Bash",
            "tool_input": {"command": command, "description": "d", "timeout": 120000},
            "tool_use_id": "toolu_01ABCdef123456"
        }))
    }

    fn rewritten(command: &str) -> Option<String> {
        let out = rewrite(&bash(command), &policy(), Path::new("/bin/jobwatch"), None)?;
        Some(
            out["hookSpecificOutput"]["updatedInput"]["command"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    #[test]
    fn builds_tests_and_poll_loops_become_detached_jobs() {
        for cmd in [
            "cargo test --all",
            "cd crates/x && cargo build --release",
            "RUST_LOG=debug cargo nextest run",
            "make -j8",
            "npm run build",
            "pytest -x tests/",
            "while ! curl -sf localhost:8080; do sleep 5; done",
            "sleep 300",
        ] {
            let new = rewritten(cmd).unwrap_or_else(|| panic!("{cmd} was not rewritten"));
            let words = shell_words::split(&new).unwrap();
            assert_eq!(words[0], "/bin/jobwatch");
            assert_eq!(words[1], "run");
            assert!(JobName::parse(&words[2]).is_ok(), "{}", words[2]);
            assert!(words.contains(&"--detach".to_owned()));
            assert!(words.contains(&"--timeout=1800000ms".to_owned()));
            assert_eq!(&words[words.len() - 3..], ["bash", "-c", cmd], "{new}");
        }
    }

    #[test]
    fn the_rest_of_the_input_is_kept_and_the_model_is_told() {
        let out = rewrite(
            &bash("make"),
            &policy(),
            Path::new("/x/jobwatch"),
            Some(Path::new("/j")),
        )
        .unwrap();
        let spec = &out["hookSpecificOutput"];
        assert_eq!(spec["hookEventName"], "PreToolUse");
        assert!(
            spec.get("permissionDecision").is_none(),
            "permissions stay the user's"
        );
        assert_eq!(spec["updatedInput"]["description"], "d");
        assert_eq!(spec["updatedInput"]["timeout"], 120000);
        assert!(
            spec["updatedInput"]["command"]
                .as_str()
                .unwrap()
                .starts_with("/x/jobwatch --dir /j run make-123456 ")
        );
        let context = spec["additionalContext"].as_str().unwrap();
        assert!(
            context.contains("make-123456") && context.len() <= 300,
            "{context}"
        );
    }

    #[test]
    fn other_commands_tools_and_opted_out_commands_are_left_alone() {
        for cmd in [
            "ls -la",
            "git status",
            "cat Makefile",
            "sleep 2",
            "cargo test # jobwatch:foreground",
            "jobwatch run x --detach -- make",
            "",
        ] {
            assert_eq!(rewritten(cmd), None, "{cmd}");
        }
        let bg = ToolCall::parse(&json!({
            "tool_name": "Bash",
            "tool_input": {"command": "make", "run_in_background": true}
        }));
        assert!(rewrite(&bg, &policy(), Path::new("/j"), None).is_none());
        let read =
            ToolCall::parse(&json!({"tool_name": "Read", "tool_input": {"command": "make"}}));
        assert!(rewrite(&read, &policy(), Path::new("/j"), None).is_none());
    }

    #[test]
    fn the_allowlist_is_configurable_and_a_bad_one_fails_open() {
        let custom = Policy::from_args(&PreToolUseArgs {
            allow: vec![r"^\./long-script".into()],
            timeout: "2h".into(),
            stale: "5m".into(),
        })
        .unwrap();
        assert!(rewrite(&bash("./long-script --all"), &custom, Path::new("/j"), None).is_some());
        assert!(rewrite(&bash("make"), &custom, Path::new("/j"), None).is_none());
        for (allow, timeout) in [("(", "1h"), ("x", "soon"), ("x", "0s")] {
            assert!(
                Policy::from_args(&PreToolUseArgs {
                    allow: vec![allow.into()],
                    timeout: timeout.into(),
                    stale: "1m".into(),
                })
                .is_err()
            );
        }
    }

    #[test]
    fn job_names_are_valid_and_readable() {
        assert_eq!(
            job_name("cargo test --all", "toolu_01ABCdef123456"),
            "cargo-test-123456"
        );
        assert_eq!(
            job_name("./gradlew build", "toolu_999999"),
            "gradlew-build-999999"
        );
        assert_eq!(job_name("X=1 make -j8", "abcdef"), "make-abcdef");
        let odd = job_name("'' ''", "");
        assert!(odd.starts_with("job-"), "{odd}");
        for cmd in [
            "..weird",
            "ü ü",
            "while true; do sleep 1; done",
            &"x".repeat(200),
        ] {
            let n = job_name(cmd, "tool_abcdef");
            assert!(JobName::parse(&n).is_ok(), "{cmd} -> {n}");
        }
    }
}
