//! `jobwatch hook post-tool-use`: after a tool call, remember the jobs it
//! started in the session's file, so `stop` knows what to wait for. Fast
//! (a few file reads and one small atomic write) and silent.
//!
//! Two kinds of calls start jobs:
//! - jobwatch's MCP `start` tool. Claude Code names a plugin's MCP tool
//!   `mcp__plugin_<plugin>_<server>__start` (here
//!   `mcp__plugin_jobwatch_jobwatch__start`) and a project's
//!   `mcp__<server>__start`; any `mcp__…__start` whose server name
//!   contains `jobwatch` counts. Its response is a list of content blocks
//!   whose text is `{"name","pid","log"}`.
//! - A Bash command with `jobwatch run NAME … --detach` ([`super::bash`]);
//!   its stdout carries `{"name","pid","wrapper_pid","log"}`.
//!
//! The run is identified by the name's current record, checked against the
//! PIDs the call printed (or, without them, started during the call), so a
//! failed start never makes the session track another session's run.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use super::input::{Common, ToolCall, strings_in};
use super::session::{SessionStore, TrackedJob};
use super::{HookContext, HookOutput};
use jobwatch_core::model::unix_ms;
use jobwatch_core::model::{JobName, JobRecord};
use jobwatch_core::store::Store;
use jobwatch_core::store::file::FileStore;

/// How a call says which process it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hint {
    /// The command's PID (`pid` in the start line).
    pub pid: Option<i32>,
    /// The wrapper's PID (`wrapper_pid`, printed by `run --detach`).
    pub wrapper_pid: Option<i32>,
}

/// A job a tool call claims to have started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Its name (not yet validated).
    pub name: String,
    /// The jobs directory it names, if not the hook's own (as written:
    /// relative paths are relative to the session's cwd).
    pub dir: Option<String>,
    /// What the call printed about it.
    pub hint: Hint,
    /// `mcp` or `bash`.
    pub via: &'static str,
}

/// A `{"name", "pid", "wrapper_pid"?}` line printed by a start.
#[derive(Debug, Deserialize)]
struct StartLine {
    name: String,
    pid: i32,
    wrapper_pid: Option<i32>,
}

/// Whether a tool is jobwatch's MCP `start`.
pub fn is_jobwatch_start(tool: &ToolCall) -> bool {
    let Some(rest) = tool.name.strip_prefix("mcp__") else {
        return false;
    };
    let Some(server) = rest.strip_suffix("__start") else {
        return false;
    };
    server.contains("jobwatch")
        || tool
            .mcp_server
            .as_deref()
            .is_some_and(|s| s.contains("jobwatch"))
}

/// The jobs a tool call started, from its input and response alone.
pub fn claims(tool: &ToolCall) -> Result<Vec<Claim>, String> {
    if is_jobwatch_start(tool) {
        let Some(name) = tool.input_str("name") else {
            return Ok(Vec::new());
        };
        return Ok(vec![Claim {
            name: name.to_owned(),
            dir: None,
            hint: hint_for(name, &start_lines(&tool.response)),
            via: "mcp",
        }]);
    }
    if tool.name != "Bash" {
        return Ok(Vec::new());
    }
    let Some(command) = tool.input_str("command") else {
        return Ok(Vec::new());
    };
    let printed = start_lines(tool.response.get("stdout").unwrap_or(&Value::Null));
    Ok(super::bash::run_calls(command)?
        .into_iter()
        .filter(|c| c.detach)
        .map(|c| Claim {
            hint: hint_for(&c.name, &printed),
            name: c.name,
            dir: c.dir,
            via: "bash",
        })
        .collect())
}

/// Every start line in a response: JSON objects on lines of its strings.
fn start_lines(response: &Value) -> Vec<StartLine> {
    strings_in(response)
        .into_iter()
        .flat_map(str::lines)
        .filter_map(|l| serde_json::from_str::<StartLine>(l.trim()).ok())
        .collect()
}

fn hint_for(name: &str, lines: &[StartLine]) -> Hint {
    lines
        .iter()
        .rev()
        .find(|l| l.name == name)
        .map(|l| Hint {
            pid: Some(l.pid),
            wrapper_pid: l.wrapper_pid,
        })
        .unwrap_or_default()
}

/// Whether `record` is the run a call started: the wrapper PID it printed,
/// else the command PID (a retried job has a new one, so any attempt after
/// the first is accepted if it started during the call), else a start no
/// earlier than `since_ms`.
pub fn accept(record: &JobRecord, hint: &Hint, since_ms: u64) -> bool {
    match (hint.wrapper_pid, hint.pid) {
        (Some(w), _) => record.wrapper_pid == w,
        (None, Some(p)) => {
            record.child_pid == Some(p)
                || (record.attempt > 1 && record.started_unix_ms >= since_ms)
        }
        (None, None) => record.started_unix_ms >= since_ms,
    }
}

/// How far back a start without PIDs may be: the call's own duration plus
/// this slack (a minute when the duration is not given).
const SLACK_MS: u64 = 10_000;

/// Runs the hook.
pub fn run(ctx: &HookContext, common: &Common, raw: &Value) -> HookOutput {
    let tool = ToolCall::parse(raw);
    let found = match claims(&tool) {
        Ok(c) => c,
        Err(why) => return HookOutput::note(format!("{why}; no job tracked")),
    };
    if found.is_empty() {
        return HookOutput::quiet();
    }
    let now = unix_ms(SystemTime::now());
    let since = now.saturating_sub(tool.duration_ms.unwrap_or(50_000) + SLACK_MS);
    let cwd = common.cwd.as_deref().map(Path::new);
    let mut notes = Vec::new();
    let jobs: Vec<TrackedJob> = found
        .iter()
        .filter_map(|c| match confirm(ctx, c, cwd, since) {
            Ok(job) => Some(job),
            Err(why) => {
                notes.push(why);
                None
            }
        })
        .collect();
    if !jobs.is_empty() {
        let store = SessionStore::new(&ctx.store);
        let tracked = store.update(&common.session, true, |f| {
            let changed = jobs
                .iter()
                .cloned()
                .fold(false, |changed, j| f.track(j) | changed);
            (changed, ())
        });
        if let Err(e) = tracked {
            notes.push(e.to_string());
        }
    }
    if notes.is_empty() {
        HookOutput::quiet()
    } else {
        HookOutput::note(notes.join("; "))
    }
}

/// Finds the run a claim is about in its jobs directory.
fn confirm(
    ctx: &HookContext,
    claim: &Claim,
    cwd: Option<&Path>,
    since_ms: u64,
) -> Result<TrackedJob, String> {
    let name = JobName::parse(&claim.name).map_err(|e| e.to_string())?;
    let store = match &claim.dir {
        None => ctx.store.clone(),
        Some(d) => open_named_dir(d, cwd)?,
    };
    let record = store
        .snapshot(&name)
        .record
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job {name} has no record; not tracked"))?;
    if !accept(&record, &claim.hint, since_ms) {
        return Err(format!(
            "job {name}'s current run is not the one this call started; not tracked"
        ));
    }
    Ok(TrackedJob {
        name: record.name,
        job_id: record.job_id,
        dir: store.path().to_owned(),
        started_at: record.started_at,
        via: claim.via.to_owned(),
        reported: None,
    })
}

/// A jobs directory named in a command; it must exist (the command that
/// started a job in it made it) and pass the usual safety checks.
fn open_named_dir(dir: &str, cwd: Option<&Path>) -> Result<FileStore, String> {
    let path = match (Path::new(dir).is_absolute(), cwd) {
        (true, _) => PathBuf::from(dir),
        (false, Some(cwd)) => cwd.join(dir),
        (false, None) => return Err(format!("relative jobs directory {dir:?} without a cwd")),
    };
    if !path.is_dir() {
        return Err(format!("jobs directory {} does not exist", path.display()));
    }
    FileStore::open(Some(&path)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(v: Value) -> ToolCall {
        ToolCall::parse(&v)
    }

    #[test]
    fn the_mcp_start_tool_is_recognised_by_its_claude_code_names() {
        for name in [
            "mcp__plugin_jobwatch_jobwatch__start",
            "mcp__jobwatch__start",
            "mcp__my-jobwatch__start",
        ] {
            assert!(
                is_jobwatch_start(&tool(json!({"tool_name": name}))),
                "{name}"
            );
        }
        for name in ["mcp__other__start", "mcp__jobwatch__wait", "start", "Bash"] {
            assert!(
                !is_jobwatch_start(&tool(json!({"tool_name": name}))),
                "{name}"
            );
        }
        assert!(is_jobwatch_start(&tool(json!({
            "tool_name": "mcp__renamed__start",
            "mcp_server": {"name": "plugin:jobwatch:jobwatch"}
        }))));
    }

    #[test]
    fn an_mcp_start_claims_its_job_with_the_pid_it_printed() {
        let t = tool(json!({
            "tool_name": "mcp__plugin_jobwatch_jobwatch__start",
            "tool_input": {"name": "e2e", "command": ["sleep", "1"]},
            "tool_response": [{"type": "text", "text": "{\"name\":\"e2e\",\"pid\":27956,\"log\":\"/j/e2e.log\"}"}]
        }));
        assert_eq!(
            claims(&t).unwrap(),
            vec![Claim {
                name: "e2e".into(),
                dir: None,
                hint: Hint {
                    pid: Some(27956),
                    wrapper_pid: None
                },
                via: "mcp",
            }]
        );
    }

    #[test]
    fn a_bash_command_claims_only_its_detached_runs() {
        let t = tool(json!({
            "tool_name": "Bash",
            "tool_input": {"command": "jobwatch run a --detach -- make && jobwatch run b -- true"},
            "tool_response": {"stdout": "noise\n{\"name\":\"a\",\"pid\":12,\"wrapper_pid\":11,\"log\":\"/j/a.log\"}\n", "stderr": ""}
        }));
        let found = claims(&t).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "a");
        assert_eq!(
            found[0].hint,
            Hint {
                pid: Some(12),
                wrapper_pid: Some(11)
            }
        );
        assert_eq!(found[0].via, "bash");
    }

    #[test]
    fn other_tools_and_odd_inputs_claim_nothing() {
        for v in [
            json!({"tool_name": "Read", "tool_input": {"file_path": "/x"}}),
            json!({"tool_name": "Bash", "tool_input": {"command": 5}}),
            json!({"tool_name": "Bash"}),
            json!({"tool_name": "mcp__jobwatch__start", "tool_input": {"name": 3}}),
        ] {
            assert_eq!(claims(&tool(v.clone())).unwrap(), vec![], "{v}");
        }
        let t = tool(json!({"tool_name": "Bash", "tool_input": {"command": "jobwatch run 'x"}}));
        assert!(claims(&t).is_err());
    }

    fn record(wrapper: i32, child: i32, started: u64, attempt: u32) -> JobRecord {
        serde_json::from_value(json!({
            "version": 1, "name": "a", "job_id": "id", "command": ["x"], "cwd": "",
            "host": "h", "boot_id": "b", "wrapper_pid": wrapper, "wrapper_start_time": 1,
            "child_pid": child, "child_start_time": 1, "pgid": child,
            "settings": {"heartbeat_ms": 1, "stale_ms": 1, "timeout_ms": null, "grace_ms": 1, "liveness": "auto"},
            "started_at": "", "started_unix_ms": started, "ended_at": null, "exit_code": null,
            "signal": null, "outcome": null, "duration_ms": null, "reason": null,
            "finalized_by": null, "attempt": attempt, "max_attempts": 3
        }))
        .unwrap()
    }

    #[test]
    fn a_run_is_accepted_only_when_it_is_the_one_the_call_started() {
        let r = record(11, 12, 1_000, 1);
        let both = Hint {
            pid: Some(12),
            wrapper_pid: Some(11),
        };
        assert!(accept(&r, &both, 0));
        assert!(!accept(
            &r,
            &Hint {
                pid: Some(12),
                wrapper_pid: Some(99)
            },
            0
        ));
        assert!(accept(
            &r,
            &Hint {
                pid: Some(12),
                wrapper_pid: None
            },
            0
        ));
        assert!(!accept(
            &r,
            &Hint {
                pid: Some(13),
                wrapper_pid: None
            },
            0
        ));
        assert!(accept(
            &record(11, 14, 1_000, 2),
            &Hint {
                pid: Some(12),
                wrapper_pid: None
            },
            0
        ));
        assert!(accept(&r, &Hint::default(), 1_000));
        assert!(
            !accept(&r, &Hint::default(), 1_001),
            "an older run is someone else's"
        );
    }
}
