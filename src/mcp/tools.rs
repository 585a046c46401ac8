//! The tools' parameters (their JSON schemas come from these types) and
//! their synchronous bodies. Each body returns the text of a successful
//! result, or a one-line message that becomes a tool error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::shape;
use jobwatch_core::breaker::{BreakerKey, BreakerSpec, PolicyUpdate};
use jobwatch_core::exit_code::{self, Coded};
use jobwatch_core::model::{JobName, LivenessMode, Outcome};
use jobwatch_core::ops::queue::{DetachedQueued, QueueRun};
use jobwatch_core::ops::start::StartError;
use jobwatch_core::ops::status::StatusRequest;
use jobwatch_core::ops::{self, Wrapper, kill::KillJob, logs::Slice};
use jobwatch_core::preflight;
use jobwatch_core::queue::{After, SlotRequest};
use jobwatch_core::report::JobReport;
use jobwatch_core::spec::{self as args, RunSpec};
use jobwatch_core::store::{RunAt, Store};
use jobwatch_core::wait::WaitMode;

/// A tool's failure: one line for the agent.
pub type ToolError = String;
/// A tool's answer: its text, or a tool error.
pub type ToolResult = Result<String, ToolError>;

/// The schema of an optional word of the core's (a liveness mode, a wait
/// mode): each word with its help, or nothing (the default).
fn words_schema<'a>(words: impl Iterator<Item = (&'a str, &'a str)>) -> schemars::Schema {
    let one_of: Vec<serde_json::Value> = words
        .map(|(word, help)| serde_json::json!({"const": word, "description": help, "type": "string"}))
        .collect();
    schemars::json_schema!({
        "anyOf": [{"oneOf": one_of}, {"type": "null"}],
    })
}

/// `start`'s `liveness`: the core's modes.
fn liveness_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    words_schema(LivenessMode::ALL.iter().map(|m| (m.as_str(), m.help())))
}

/// `wait`'s `mode`: the core's modes.
fn mode_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    words_schema(WaitMode::ALL.iter().map(|m| (m.as_str(), m.help())))
}

/// Parameters of `start`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartParams {
    /// Job name: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. Starting a name again archives its previous run.
    pub name: String,
    /// The command as an argv list, e.g. ["make", "-j8"]; use ["sh", "-c", "..."] for shell syntax.
    pub command: Vec<String>,
    /// Working directory (default: the server's).
    pub cwd: Option<String>,
    /// Extra environment variables for the command.
    pub env: Option<BTreeMap<String, String>>,
    /// Kill the job (outcome timeout) after this long, e.g. "30m".
    pub timeout: Option<String>,
    /// Kill the job (outcome hung) after this long without progress (default "60s").
    pub stale: Option<String>,
    /// What counts as progress (default auto).
    #[serde(default)]
    #[schemars(schema_with = "liveness_schema")]
    pub liveness: Option<LivenessMode>,
    /// Run again up to N more times after a failure, hang or timeout.
    pub retries: Option<u32>,
    /// Delay before the first retry, doubling each time, e.g. "5s".
    pub backoff: Option<String>,
    /// Longest delay between retries.
    pub backoff_max: Option<String>,
    /// Circuit breaker key: refuse to start while it is open; record this run's outcome in it.
    pub breaker: Option<String>,
    /// Failures in a row that open the breaker.
    pub max_failures: Option<u32>,
    /// How long an open breaker refuses starts, e.g. "10m".
    pub cooldown: Option<String>,
    /// Run the preflight checks first and refuse to start when one fails.
    pub preflight: Option<bool>,
    /// Preflight config file (implies preflight; default: jobwatch.toml in cwd).
    pub preflight_config: Option<String>,
    /// Start only after these jobs end: "NAME" or "NAME:success" (it must succeed, else this job ends skipped), "NAME:done" (however it ended). The job waits queued meanwhile.
    pub after: Option<Vec<String>>,
    /// A concurrency slot "GROUP" or "GROUP:N": at most N jobs of GROUP run at once (N defaults to the group's size, 1 for a new group); the rest wait queued, first come first.
    pub slot: Option<String>,
}

/// Parameters of `wait`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The jobs to wait for.
    pub names: Vec<String>,
    /// all (default) or any.
    #[serde(default)]
    #[schemars(schema_with = "mode_schema")]
    pub mode: Option<WaitMode>,
    /// How long this call may block, e.g. "30s"; capped by the server (default: the cap). The job is never killed when it passes.
    pub timeout: Option<String>,
    /// Log lines to include on any outcome but success (default 20, at most 50).
    pub tail: Option<u32>,
    /// A regex: return as soon as a line of the job's log matches (one job only), with outcome `matched` and the line; the job keeps running. E.g. "listening on".
    pub until_log: Option<String>,
}

/// Parameters of `status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    /// The jobs (default: every job in the directory).
    pub names: Option<Vec<String>>,
}

/// Parameters of `logs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// The job.
    pub name: String,
    /// The last N lines (default 50). Ignored when offset is given.
    pub tail: Option<u32>,
    /// Read from this byte offset instead of the tail.
    pub offset: Option<u64>,
    /// Bytes to read from offset (default and maximum 16384).
    pub length: Option<u64>,
}

/// Parameters of `kill`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillParams {
    /// The job.
    pub name: String,
    /// Time between SIGTERM and SIGKILL, e.g. "2s" (default: the job's own).
    pub grace: Option<String>,
}

/// Parameters of `breaker_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerStatusParams {
    /// The breaker key (default: every breaker).
    pub key: Option<String>,
}

/// Parameters of `breaker_reset`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerResetParams {
    /// The breaker key.
    pub key: String,
}

/// Parameters of `preflight`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightParams {
    /// The checks' config file (default: jobwatch.toml in the server's working directory).
    pub config: Option<String>,
}

/// Most bytes of log text one `logs` call returns.
pub const MAX_LOG_BYTES: u64 = 16 * 1024;
/// Default tail of `logs`.
const DEFAULT_LOG_TAIL: usize = 50;
/// Default tail of `wait`.
pub const DEFAULT_WAIT_TAIL: usize = 20;
/// Most rows `status` lists before summarising the rest.
const MAX_STATUS_ROWS: usize = 30;

/// What every tool needs: the store (the jobs directory, or the etcd
/// cluster of `--store`) and how to start a detached wrapper.
#[derive(Debug, Clone)]
pub struct Context {
    /// The store, the same one the CLI would use (a detached wrapper is
    /// handed its `Store::spec`).
    pub store: Arc<dyn Store>,
    /// The detached wrapper `start` runs (`jobwatch-wrapper`, or this
    /// executable as `jobwatch __wrapper`).
    pub wrapper: Arc<Wrapper>,
}

/// A validated job name, or the tool error saying why not.
pub fn name(s: &str) -> Result<JobName, ToolError> {
    JobName::parse(s).map_err(|e| e.to_string())
}

/// Several validated names; at least one.
pub fn names(list: &[String]) -> Result<Vec<JobName>, ToolError> {
    if list.is_empty() {
        return Err("names is empty: give at least one job name".into());
    }
    list.iter().map(|s| name(s)).collect()
}

/// `start`: builds the run spec from the parameters and starts it detached,
/// as `run --detach` does; its wrapper is reaped by this server once it
/// exits.
pub fn start(ctx: &Context, p: StartParams) -> ToolResult {
    let after = p
        .after
        .iter()
        .flatten()
        .map(|a| a.parse::<After>().map_err(|e| format!("after: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let slot = p
        .slot
        .as_deref()
        .map(|s| s.parse::<SlotRequest>().map_err(|e| format!("slot: {e}")))
        .transpose()?;
    let spec = run_spec(p)?;
    let queued = QueueRun { spec, after, slot };
    if queued.is_queued() {
        return match ops::queue::detached(&*ctx.store, queued) {
            Ok(DetachedQueued::Started(s)) => Ok(shape::line(&shape::started(&s))),
            Ok(DetachedQueued::Queued(q)) => Ok(shape::line(&shape::queued(&q))),
            Ok(DetachedQueued::Ended(r)) => {
                // Skipped at once (a dependency had not succeeded).
                let outcome = r.outcome.unwrap_or(Outcome::Skipped);
                let job = name(&r.name)?;
                let report =
                    JobReport::new(&*ctx.store, &job, &RunAt::Current, outcome, Some(&r), 0);
                Ok(shape::line(&shape::ended(&report)))
            }
            Err(e) => Err(start_failure(&e)),
        };
    }
    let spec = queued.spec;
    let op = ops::Context {
        store: &*ctx.store,
        wrapper: &ctx.wrapper,
    };
    match ops::start::detached(&op, &spec) {
        Ok(started) => Ok(shape::line(&shape::started(&started.reap_in_background()))),
        Err(e) => Err(start_failure(&e)),
    }
}

/// The run spec of `start`'s parameters: each named in its own error; the
/// core's rules (RunSpec::validate) do the rest.
fn run_spec(p: StartParams) -> Result<RunSpec, ToolError> {
    let job = name(&p.name)?;
    let duration =
        |field: &str, value: &Option<String>, parse: fn(&str) -> Result<Duration, String>| {
            value
                .as_deref()
                .map(|s| parse(s).map_err(|e| format!("{field}: {e}")))
                .transpose()
        };
    let timeout = duration("timeout", &p.timeout, args::positive_duration)?;
    let stale = duration("stale", &p.stale, args::positive_duration)?;
    let backoff = duration("backoff", &p.backoff, args::duration)?;
    let backoff_max = duration("backoff_max", &p.backoff_max, args::duration)?;
    let cooldown = duration("cooldown", &p.cooldown, args::duration)?;
    let breaker = p
        .breaker
        .as_deref()
        .map(|k| breaker_key(k).map_err(|e| format!("breaker: {e}")))
        .transpose()?;
    let mut settings = args::default_settings();
    if let Some(stale) = stale {
        // The tool has no `heartbeat`: it fits within a short `stale`
        // rather than have the job refused over it.
        settings = settings.with_stale(stale);
    }
    settings.timeout_ms = timeout.map(args::ms);
    if let Some(l) = p.liveness {
        settings.liveness = l;
    }
    if let Some(n) = p.retries {
        settings.retries = n;
    }
    if let Some(b) = backoff {
        settings.backoff_ms = args::ms(b);
    }
    if let Some(b) = backoff_max {
        settings.backoff_max_ms = args::ms(b);
    }
    // `preflight: true` reads jobwatch.toml in the job's cwd.
    let preflight = match (p.preflight_config, p.preflight) {
        (Some(file), _) => Some(PathBuf::from(file)),
        (None, Some(true)) => Some(PathBuf::from(preflight::DEFAULT_FILE)),
        _ => None,
    };
    let cwd = match &p.cwd {
        Some(cwd) => args::absolute(Path::new(cwd)),
        None => args::current_dir(),
    };
    Ok(RunSpec {
        env: p
            .env
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        settings,
        breaker: breaker.map(|key| BreakerSpec {
            key,
            policy: PolicyUpdate {
                max_failures: p.max_failures,
                cooldown,
            },
        }),
        preflight,
        ..RunSpec::new(job, p.command.into_iter().map(Into::into).collect(), cwd)
    })
}

/// Why `start` did not start the job, in one line: the failing preflight
/// checks themselves, and the meaning of jobwatch's refusals' exit codes.
fn start_failure(e: &StartError) -> ToolError {
    let msg = match e {
        StartError::PreflightFailed { report, .. } => preflight::failure_lines(report).join("; "),
        other => other.to_string(),
    };
    let msg = shape::cut(msg.trim(), 300);
    match e.exit_code() {
        exit_code::BREAKER_OPEN => format!("{msg} (exit 6: breaker open)"),
        exit_code::PREFLIGHT_FAILED => format!("{msg} (exit 7: preflight failed)"),
        _ => msg,
    }
}

/// `status`: one line per job, from its files alone.
pub fn status(ctx: &Context, p: StatusParams) -> ToolResult {
    let req = match &p.names {
        Some(list) => StatusRequest {
            names: Some(names(list)?),
            limit: None,
        },
        None => StatusRequest {
            names: None,
            limit: Some(MAX_STATUS_ROWS),
        },
    };
    let listing = ops::status::status(&*ctx.store, &req).map_err(|e| e.to_string())?;
    if let Some(missing) = listing.missing().next() {
        return Err(format!("no job named {missing}"));
    }
    let rows: Vec<_> = listing.rows().collect();
    if rows.is_empty() && listing.more == 0 {
        return Ok(r#"{"jobs":0}"#.into());
    }
    let more = listing.more + rows.len().saturating_sub(MAX_STATUS_ROWS);
    let mut lines: Vec<String> = rows
        .iter()
        .take(MAX_STATUS_ROWS)
        .map(|r| shape::line(&shape::status_row(r)))
        .collect();
    if more > 0 {
        lines.push(format!(
            r#"{{"more":{more},"hint":"name the jobs you want"}}"#
        ));
    }
    Ok(shape::lines(lines))
}

/// `logs`: the tail of a job's log, or a byte range of it; one JSON line
/// about what was read, then the text.
pub fn logs(ctx: &Context, p: LogsParams) -> Result<(String, String), ToolError> {
    let job = name(&p.name)?;
    let slice = match p.offset {
        Some(offset) => Slice::Range {
            offset,
            len: p.length.unwrap_or(MAX_LOG_BYTES),
        },
        None => Slice::Tail(p.tail.map_or(DEFAULT_LOG_TAIL, |n| n as usize)),
    };
    let text =
        ops::logs::read(&*ctx.store, &job, slice, MAX_LOG_BYTES).map_err(|e| e.to_string())?;
    let meta = serde_json::json!({
        "name": job.as_str(),
        "size": text.size,
        "from": text.from,
        "to": text.to,
    });
    Ok((
        meta.to_string(),
        String::from_utf8_lossy(&text.bytes).into_owned(),
    ))
}

/// `kill`: the job's whole process tree, then its final result.
pub fn kill(ctx: &Context, p: KillParams) -> ToolResult {
    let job = name(&p.name)?;
    let grace = p
        .grace
        .as_deref()
        .map(|g| args::duration(g).map_err(|e| format!("grace: {e}")))
        .transpose()?;
    let killed = ops::kill::kill(
        &*ctx.store,
        &KillJob {
            name: &job,
            grace,
            reason: "killed by jobwatch kill (mcp)",
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(shape::line(&shape::ended(&killed.report)))
}

fn breaker_key(s: &str) -> Result<BreakerKey, ToolError> {
    BreakerKey::parse(s).map_err(|e| e.to_string())
}

/// `breaker_status`: one breaker, or every breaker, one line each.
pub fn breaker_status(ctx: &Context, p: BreakerStatusParams) -> ToolResult {
    if let Some(key) = &p.key {
        let view =
            ops::breaker::status(&*ctx.store, &breaker_key(key)?).map_err(|e| e.to_string())?;
        return Ok(shape::line(&view));
    }
    let views = ops::breaker::list(&*ctx.store).map_err(|e| e.to_string())?;
    if views.is_empty() {
        return Ok(r#"{"breakers":0}"#.into());
    }
    let mut rows: Vec<String> = views
        .iter()
        .take(MAX_STATUS_ROWS)
        .map(|v| match v {
            Ok(view) => shape::line(view),
            Err(e) => shape::line(&serde_json::json!({"error": shape::cut(&e.to_string(), 200)})),
        })
        .collect();
    if views.len() > MAX_STATUS_ROWS {
        rows.push(format!(
            r#"{{"more":{},"hint":"name the breaker you want"}}"#,
            views.len() - MAX_STATUS_ROWS
        ));
    }
    Ok(shape::lines(rows))
}

/// `breaker_reset`: close a breaker and forget its failures.
pub fn breaker_reset(ctx: &Context, p: BreakerResetParams) -> ToolResult {
    let view =
        ops::breaker::reset(&*ctx.store, &breaker_key(&p.key)?).map_err(|e| e.to_string())?;
    Ok(shape::line(&view))
}

/// `preflight`: loads the config and runs its checks. Failing checks are
/// a result (`passed: false`, each failure with its detail), not a tool
/// error; a config that cannot be read or parsed is one.
pub fn preflight(p: PreflightParams) -> ToolResult {
    let path = PathBuf::from(p.config.as_deref().unwrap_or(preflight::DEFAULT_FILE));
    let report = ops::preflight::run(&path, &[]).map_err(|e| e.to_string())?;
    Ok(shape::line(&shape::preflight(&report)))
}
