//! Claude Code's hook input: one JSON object on stdin. Only the fields
//! jobwatch uses are read; unknown fields are ignored, so a newer Claude
//! Code with more fields works unchanged.
//!
//! Fields relied on (every event): `session_id`, `hook_event_name`, `cwd`.
//! PreToolUse and PostToolUse add `tool_name`, `tool_input`, `tool_use_id`;
//! PostToolUse adds `tool_response` (for an MCP tool a list of content
//! blocks `[{"type":"text","text":…}]`, for Bash an object with `stdout`)
//! and, for MCP tools, `mcp_server.name`. See docs/hooks.md.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::session::SessionId;

/// Most bytes of hook input read (a Bash tool's output is part of it).
pub const MAX_INPUT: u64 = 8 * 1024 * 1024;

/// How long a hook waits for its input before giving up.
pub const INPUT_WAIT: Duration = Duration::from_secs(10);

/// Reads one JSON value from stdin, bounded in size and time: Claude Code
/// writes it at once, and a hook that waits forever on a stdin nobody
/// writes to would hold the agent up.
pub fn read_stdin() -> Result<Value, String> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err("expects Claude Code's hook JSON on stdin, not a terminal; ignored".into());
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(parse_reader(std::io::stdin().lock().take(MAX_INPUT)));
    });
    match rx.recv_timeout(INPUT_WAIT) {
        Ok(parsed) => parsed,
        Err(_) => Err(format!(
            "no hook input on stdin within {}s; ignored",
            INPUT_WAIT.as_secs()
        )),
    }
}

/// Reads the first JSON value from `reader` (it need not be at its end:
/// only one value is read).
pub fn parse_reader(reader: impl Read) -> Result<Value, String> {
    let mut values = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(format!("hook input is not JSON ({e}); ignored")),
        None => Err("no hook input on stdin; ignored".into()),
    }
}

/// The fields every hook event carries.
#[derive(Debug, Clone)]
pub struct Common {
    /// The session, validated (it names a file).
    pub session: SessionId,
    /// `hook_event_name`, e.g. `Stop`.
    pub event: String,
    /// The session's working directory, when given.
    pub cwd: Option<String>,
}

#[derive(Deserialize)]
struct RawCommon {
    session_id: Option<Value>,
    hook_event_name: Option<Value>,
    cwd: Option<Value>,
}

impl Common {
    /// Reads the common fields; an input without a valid session id is
    /// refused (every hook keys its state by it).
    pub fn parse(v: &Value) -> Result<Self, String> {
        if !v.is_object() {
            return Err("hook input is not a JSON object; ignored".into());
        }
        let raw: RawCommon = serde_json::from_value(v.clone())
            .map_err(|e| format!("unexpected hook input ({e}); ignored"))?;
        let session = match raw.session_id {
            Some(Value::String(s)) => SessionId::parse(&s)?,
            Some(_) => return Err("session_id is not a string; ignored".into()),
            None => return Err("hook input has no session_id; ignored".into()),
        };
        Ok(Self {
            session,
            event: string(raw.hook_event_name).unwrap_or_default(),
            cwd: string(raw.cwd),
        })
    }
}

fn string(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// A tool call, as PreToolUse and PostToolUse describe it.
#[derive(Debug, Clone, Default)]
pub struct ToolCall {
    /// `tool_name`, e.g. `Bash` or `mcp__plugin_jobwatch_jobwatch__start`.
    pub name: String,
    /// `tool_input` (an object; `Null` when absent).
    pub input: Value,
    /// `tool_response` (PostToolUse only; `Null` otherwise).
    pub response: Value,
    /// `tool_use_id`.
    pub id: String,
    /// `mcp_server.name` for an MCP tool, e.g. `plugin:jobwatch:jobwatch`.
    pub mcp_server: Option<String>,
    /// `duration_ms`: how long the tool ran (PostToolUse).
    pub duration_ms: Option<u64>,
}

impl ToolCall {
    /// Reads the tool fields of a hook input; fields of the wrong type read
    /// as absent.
    pub fn parse(v: &Value) -> Self {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Self {
            name: s("tool_name"),
            input: v.get("tool_input").cloned().unwrap_or(Value::Null),
            response: v.get("tool_response").cloned().unwrap_or(Value::Null),
            id: s("tool_use_id"),
            mcp_server: v
                .get("mcp_server")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            duration_ms: v.get("duration_ms").and_then(Value::as_u64),
        }
    }

    /// A string field of `tool_input`.
    pub fn input_str(&self, key: &str) -> Option<&str> {
        self.input.get(key).and_then(Value::as_str)
    }
}

/// Every string inside a JSON value, depth first (tool responses nest
/// their text in content blocks).
pub fn strings_in(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    collect_strings(v, &mut out, 0);
    out
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>, depth: usize) {
    if depth > 8 {
        return;
    }
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_strings(i, out, depth + 1)),
        Value::Object(map) => map
            .values()
            .for_each(|i| collect_strings(i, out, depth + 1)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_value_is_read_without_waiting_for_the_end_of_the_stream() {
        let v = parse_reader(&b"{\"a\":1}\n{\"b\":2}"[..]).unwrap();
        assert_eq!(v, json!({"a": 1}));
        assert!(
            parse_reader(&b""[..])
                .unwrap_err()
                .contains("no hook input")
        );
        assert!(
            parse_reader(&b"{\"a\":"[..])
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_reader(&b"\xff\xfe"[..])
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn common_fields_need_a_valid_session_and_tolerate_the_rest() {
        let c = Common::parse(&json!({
            "session_id": "d61619d2-9d21-4d06-82e3-623ffb4fd86b",
            "hook_event_name": "Stop", "cwd": "/w", "new_field": {"x": 1}
        }))
        .unwrap();
        assert_eq!(c.session.as_str(), "d61619d2-9d21-4d06-82e3-623ffb4fd86b");
        assert_eq!(c.event, "Stop");
        assert_eq!(c.cwd.as_deref(), Some("/w"));
        for bad in [
            json!([1, 2]),
            json!("text"),
            json!({"hook_event_name": "Stop"}),
            json!({"session_id": 7}),
            json!({"session_id": "../../etc/passwd"}),
            json!({"session_id": ""}),
        ] {
            assert!(Common::parse(&bad).is_err(), "{bad}");
        }
        // A wrongly typed field that is not needed is read as absent.
        let c = Common::parse(&json!({"session_id": "s1", "cwd": 3})).unwrap();
        assert_eq!(c.cwd, None);
    }

    #[test]
    fn tool_fields_of_the_wrong_type_read_as_absent() {
        let t = ToolCall::parse(&json!({
            "tool_name": "Bash", "tool_input": {"command": "ls"},
            "tool_use_id": 5, "mcp_server": "x", "duration_ms": "slow"
        }));
        assert_eq!(t.name, "Bash");
        assert_eq!(t.input_str("command"), Some("ls"));
        assert_eq!(t.id, "");
        assert_eq!(t.mcp_server, None);
        assert_eq!(t.duration_ms, None);
        assert_eq!(t.response, Value::Null);
    }

    #[test]
    fn strings_are_found_in_nested_content_blocks() {
        let v = json!([{"type": "text", "text": "{\"name\":\"a\"}"}]);
        assert!(strings_in(&v).contains(&"{\"name\":\"a\"}"));
    }
}
