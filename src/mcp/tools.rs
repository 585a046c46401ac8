//! The tools' parameters (their JSON schemas come from these types) and
//! their synchronous bodies. Each body returns the text of a successful
//! result, or a one-line message that becomes a tool error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::Deserialize;

use super::shape;
use jobwatch_core::breaker::{self, BreakerKey};
use jobwatch_core::classify::{JobState, classify};
use jobwatch_core::exit_code;
use jobwatch_core::model::{JobName, Outcome};
use jobwatch_core::preflight;
use jobwatch_core::recover::kill_job;
use jobwatch_core::spec as args;
use jobwatch_core::store::{RunAt, Store};

/// A tool's failure: one line for the agent.
pub type ToolError = String;
/// A tool's answer: its text, or a tool error.
pub type ToolResult = Result<String, ToolError>;

/// What counts as progress for the job's heartbeat.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// New output, CPU use or an explicit beat (default).
    Auto,
    /// New output only.
    Output,
    /// CPU used by the job's process tree.
    Cpu,
    /// Only explicit beats (`jobwatch beat NAME`).
    Beat,
    /// The wrapper being alive (the plain pattern).
    Timer,
}

impl Liveness {
    fn as_str(self) -> &'static str {
        match self {
            Liveness::Auto => "auto",
            Liveness::Output => "output",
            Liveness::Cpu => "cpu",
            Liveness::Beat => "beat",
            Liveness::Timer => "timer",
        }
    }
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
    pub liveness: Option<Liveness>,
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
}

/// How several jobs are waited for.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Return when every job has an outcome (default).
    #[default]
    All,
    /// Return when the first job has one.
    Any,
}

/// Parameters of `wait`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The jobs to wait for.
    pub names: Vec<String>,
    /// all (default) or any.
    pub mode: Option<Mode>,
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

/// What every tool needs: the store (the jobs directory) and this
/// executable.
#[derive(Debug, Clone)]
pub struct Context {
    /// The store, the same one the CLI would use.
    pub store: std::sync::Arc<dyn Store>,
    /// The jobs directory (`--dir` of the `run` the `start` tool spawns).
    pub dir: PathBuf,
    /// What that `run` needs besides `--dir` to open the store (etcd).
    pub env: Vec<(String, String)>,
    /// This executable, started as `run --detach` by `start`.
    pub exe: PathBuf,
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

/// `start`: launches `jobwatch run NAME --detach --json ...` and relays its
/// line, so the job gets the same detached wrapper as from the CLI.
pub fn start(ctx: &Context, p: StartParams) -> ToolResult {
    let job = name(&p.name)?;
    if p.command.is_empty() {
        return Err("command is empty: give the program and its arguments".into());
    }
    check_spawnable(&p)?;
    let mut cmd = Command::new(&ctx.exe);
    cmd.arg("--dir")
        .arg(&ctx.dir)
        .envs(ctx.env.iter().map(|(k, v)| (k, v)))
        .arg("run")
        .arg(job.as_str())
        .args(["--detach", "--json"])
        .args(run_flags(&p)?)
        .arg("--")
        .args(&p.command);
    if let Some(cwd) = &p.cwd {
        if !std::path::Path::new(cwd).is_dir() {
            return Err(format!("cwd {cwd:?} is not a directory"));
        }
        cmd.current_dir(cwd);
    }
    cmd.envs(p.env.iter().flatten())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ctx.exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success()
        && let Some(started) = stdout
            .lines()
            .find_map(|l| serde_json::from_str::<Started>(l).ok())
    {
        return Ok(shape::line(&started));
    }
    Err(run_failure(&out))
}

/// Refuses, naming the argument, what no process could be started with: a
/// NUL byte ends a C string, so no argument, path or environment entry can
/// hold one, and `=` ends an environment variable's name.
fn check_spawnable(p: &StartParams) -> Result<(), ToolError> {
    let nul =
        |what: String| format!("{what} holds a NUL byte, which no process can be given; remove it");
    for (i, arg) in p.command.iter().enumerate() {
        if arg.contains('\0') {
            return Err(nul(format!("command[{i}]")));
        }
    }
    for (field, value) in [("cwd", &p.cwd), ("preflight_config", &p.preflight_config)] {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(nul(field.to_owned()));
        }
    }
    for (key, value) in p.env.iter().flatten() {
        env_entry(key, value)?;
    }
    Ok(())
}

/// Why `key=value` cannot be put in a process's environment, if it cannot.
fn env_entry(key: &str, value: &str) -> Result<(), ToolError> {
    let why = if key.is_empty() {
        "is empty: give the variable a name"
    } else if key.contains('=') {
        "holds '=', which would end the name there: use a name without '='"
    } else if key.contains('\0') {
        "holds a NUL byte, which no variable name can: remove it"
    } else if value.contains('\0') {
        "has a value holding a NUL byte, which no variable can: remove it"
    } else {
        return Ok(());
    };
    Err(format!("env key {key:?} {why}"))
}

/// What `start` returns of `run --detach`'s line: what an agent needs.
#[derive(Debug, Deserialize, serde::Serialize)]
struct Started {
    name: String,
    pid: i32,
    log: String,
}

/// The flags of `run` for the optional parameters; durations are checked
/// here so a bad one is named by its parameter.
fn run_flags(p: &StartParams) -> Result<Vec<String>, ToolError> {
    let mut flags = Vec::new();
    type Parse = fn(&str) -> Result<Duration, String>;
    let durations: [(&str, &Option<String>, Parse); 5] = [
        ("timeout", &p.timeout, args::positive_duration),
        ("stale", &p.stale, args::positive_duration),
        ("backoff", &p.backoff, args::duration),
        ("backoff-max", &p.backoff_max, args::duration),
        ("cooldown", &p.cooldown, args::duration),
    ];
    for (flag, value, parse) in durations {
        if let Some(s) = value {
            let d = parse(s).map_err(|e| format!("{}: {e}", flag.replace('-', "_")))?;
            flags.push(format!("--{flag}={}ms", args::ms(d)));
        }
    }
    if let Some(l) = p.liveness {
        flags.push(format!("--liveness={}", l.as_str()));
    }
    if let Some(n) = p.retries {
        flags.push(format!("--retries={n}"));
    }
    if let Some(key) = &p.breaker {
        let key = breaker_key(key).map_err(|e| format!("breaker: {e}"))?;
        flags.push(format!("--breaker={key}"));
    }
    if let Some(n) = p.max_failures {
        flags.push(format!("--max-failures={n}"));
    }
    match (&p.preflight_config, p.preflight) {
        (Some(file), _) => flags.push(format!("--preflight={file}")),
        (None, Some(true)) => flags.push("--preflight".into()),
        _ => {}
    }
    Ok(flags)
}

/// Why `run --detach` did not start the job, with the meaning of its exit
/// code when it is one of jobwatch's refusals.
fn run_failure(out: &std::process::Output) -> ToolError {
    let err = String::from_utf8_lossy(&out.stderr);
    let msg = err
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the job did not start")
        .trim()
        .trim_start_matches("jobwatch: ");
    let msg = shape::cut(msg, 300);
    match out.status.code().and_then(|c| u8::try_from(c).ok()) {
        Some(exit_code::BREAKER_OPEN) => format!("{msg} (exit 6: breaker open)"),
        Some(exit_code::PREFLIGHT_FAILED) => format!("{msg} (exit 7: preflight failed)"),
        _ => msg,
    }
}

/// `status`: one line per job, from its files alone.
pub fn status(ctx: &Context, p: StatusParams) -> ToolResult {
    let now = SystemTime::now();
    let jobs = match &p.names {
        Some(list) => {
            let jobs = names(list)?;
            for j in &jobs {
                ensure_exists(ctx, j)?;
            }
            jobs
        }
        None => ctx.store.list().map_err(|e| e.to_string())?,
    };
    if jobs.is_empty() {
        return Ok(r#"{"jobs":0}"#.into());
    }
    let mut rows: Vec<String> = jobs
        .iter()
        .take(MAX_STATUS_ROWS)
        .map(|j| shape::line(&shape::status_row(&*ctx.store, j, now)))
        .collect();
    if jobs.len() > MAX_STATUS_ROWS {
        rows.push(format!(
            r#"{{"more":{},"hint":"name the jobs you want"}}"#,
            jobs.len() - MAX_STATUS_ROWS
        ));
    }
    Ok(shape::lines(rows))
}

fn ensure_exists(ctx: &Context, job: &JobName) -> Result<(), ToolError> {
    let exists =
        ctx.store.snapshot(job).any_state || ctx.store.log_path(job, &RunAt::Current).exists();
    if exists {
        Ok(())
    } else {
        Err(format!("no job named {job}"))
    }
}

/// `logs`: the tail of a job's log, or a byte range of it; one JSON line
/// about what was read, then the text.
pub fn logs(ctx: &Context, p: LogsParams) -> Result<(String, String), ToolError> {
    let job = name(&p.name)?;
    let path = ctx.store.log_path(&job, &RunAt::Current);
    let size = std::fs::metadata(&path)
        .map_err(|_| format!("no log for job {job}"))?
        .len();
    let read_err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let (from, bytes) = match p.offset {
        Some(offset) => {
            let len = p.length.unwrap_or(MAX_LOG_BYTES).min(MAX_LOG_BYTES);
            // Past the end is empty, not a seek the kernel refuses.
            let from = offset.min(size);
            (from, read_range(&path, from, len).map_err(read_err)?)
        }
        None => {
            let n = p.tail.map_or(DEFAULT_LOG_TAIL, |n| n as usize);
            // Only the bytes that are sent are read: a line of any length
            // is never held whole.
            let bytes = jobwatch_core::logs::tail_bytes_at_most(&path, n, MAX_LOG_BYTES)
                .map_err(read_err)?;
            (size.saturating_sub(bytes.len() as u64), bytes)
        }
    };
    let meta = serde_json::json!({
        "name": job.as_str(),
        "size": size,
        "from": from,
        "to": from + bytes.len() as u64,
    });
    Ok((
        meta.to_string(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

fn read_range(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = jobwatch_core::logs::open_log_file(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// `kill`: the job's whole process tree, then its final result.
pub fn kill(ctx: &Context, p: KillParams) -> ToolResult {
    let job = name(&p.name)?;
    let grace = p
        .grace
        .as_deref()
        .map(|g| args::duration(g).map_err(|e| format!("grace: {e}")))
        .transpose()?;
    let before = classify(ctx.store.snapshot(&job), SystemTime::now(), None);
    let grace = grace
        .or_else(|| before.record().map(|r| r.settings.grace()))
        .unwrap_or(Duration::from_secs(5));
    let already = matches!(before, JobState::Finished { .. });
    let after = kill_job(
        &*ctx.store,
        &job,
        Outcome::Killed,
        "killed by jobwatch kill (mcp)",
        grace,
    )
    .map_err(|e| e.to_string())?;
    let (outcome, record) = match &after {
        JobState::Finished { outcome, record } => (*outcome, record.as_deref()),
        other => (Outcome::Killed, other.record()),
    };
    let mut result = shape::ended(&*ctx.store, &job, &RunAt::Current, outcome, record, 0);
    if already {
        result.reason = Some(format!("already finished ({outcome}); nothing to kill"));
    }
    Ok(shape::line(&result))
}

fn breaker_key(s: &str) -> Result<BreakerKey, ToolError> {
    BreakerKey::parse(s).map_err(|e| e.to_string())
}

/// `breaker_status`: one breaker, or every breaker, one line each.
pub fn breaker_status(ctx: &Context, p: BreakerStatusParams) -> ToolResult {
    if let Some(key) = &p.key {
        let view = breaker::status(&*ctx.store, &breaker_key(key)?).map_err(|e| e.to_string())?;
        return Ok(shape::line(&view));
    }
    let views = breaker::list(&*ctx.store).map_err(|e| e.to_string())?;
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
    let view = breaker::reset(&*ctx.store, &breaker_key(&p.key)?).map_err(|e| e.to_string())?;
    Ok(shape::line(&view))
}

/// `preflight`: loads the config and runs its checks. Failing checks are
/// a result (`passed: false`, each failure with its detail), not a tool
/// error; a config that cannot be read or parsed is one.
pub fn preflight(p: PreflightParams) -> ToolResult {
    let path = PathBuf::from(p.config.as_deref().unwrap_or(preflight::DEFAULT_FILE));
    let config = preflight::Config::load(&path).map_err(|e| e.to_string())?;
    Ok(shape::line(&shape::preflight(&preflight::run_checks(
        &config,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_no_process_can_take_are_named() {
        assert!(env_entry("PATH", "/bin").is_ok());
        assert!(env_entry("EMPTY", "").is_ok());
        for (key, value) in [("", "v"), ("A=B", "v"), ("A\0B", "v"), ("OK", "a\0b")] {
            let e = env_entry(key, value).unwrap_err();
            assert!(e.starts_with(&format!("env key {key:?} ")), "{e}");
        }
    }
}
