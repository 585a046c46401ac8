//! The results of the operations ([`crate::ops`]), which both front ends
//! render: a job's result ([`JobReport`]), a log match ([`MatchReport`]),
//! a status row ([`StatusRow`]), a running job's progress ([`Progress`]),
//! a detached start ([`Started`]) and a kill ([`KillReport`]).
//!
//! Each serializes as the CLI's JSON line (its shape is part of the CLI's
//! interface); a person's line is the CLI's to render, and the MCP server
//! renders its compact, bounded shapes from the same values.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::classify::{JobState, classify};
use crate::model::{JobName, JobRecord, Outcome};
use crate::store::{RunAt, Store};
use crate::wait::Verdict;

/// Longest log line kept in a report, in bytes; longer lines are cut, so a
/// report stays small whatever the job printed.
pub const MAX_TAIL_LINE: usize = 400;

/// One job's result, as printed by `wait`.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// The job's name.
    pub name: String,
    /// How it ended (or `timeout` when a waiter gave up).
    pub outcome: Outcome,
    /// Whether the job is still running (a waiter's `--no-kill` timeout).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
    /// The command's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended the command.
    pub signal: Option<i32>,
    /// Run time in ms.
    pub duration_ms: Option<u64>,
    /// Why it ended so (for anything but success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The log file.
    pub log: String,
    /// The command's own result file, when it wrote one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The last log lines, on anything but success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail: Option<Vec<String>>,
    /// `k/N` for attempt k of N when the job may be retried (the MCP
    /// server shows it; `wait --json`'s line never had it).
    #[serde(skip)]
    pub attempt: Option<String>,
}

impl JobReport {
    /// Builds the report of run `at` of a job from its (final) record;
    /// its log, result file and tail are where `store` says they are.
    pub fn new(
        store: &dyn Store,
        name: &JobName,
        at: &RunAt,
        outcome: Outcome,
        record: Option<&JobRecord>,
        tail: usize,
    ) -> Self {
        let tail = (outcome != Outcome::Success && tail > 0).then(|| store.tail(name, at, tail));
        Self {
            name: name.to_string(),
            outcome,
            running: false,
            exit_code: record.and_then(|r| r.exit_code),
            signal: record.and_then(|r| r.signal),
            duration_ms: record.and_then(|r| r.duration_ms),
            reason: record.and_then(|r| r.reason.clone()),
            log: store.log_path(name, at).display().to_string(),
            result: store.result_path(name, at).map(|p| p.display().to_string()),
            tail,
            attempt: record.and_then(attempt),
        }
    }

    /// The report of a waiter's verdict (a `--no-kill` timeout says the job
    /// was left running).
    pub fn of_verdict(store: &dyn Store, v: &Verdict, tail: usize) -> Self {
        let mut r = Self::new(store, &v.name, &v.at, v.outcome, v.record.as_ref(), tail);
        r.running = v.running;
        if v.running {
            r.exit_code = None;
            r.duration_ms = None;
            r.reason = Some("the waiter's --timeout passed; the job was left running".into());
        }
        r
    }

    /// One compact JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// The outcome word of a [`MatchReport`]: the waiter's own verdict, not a
/// job outcome (the job may well still run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchOutcome {
    /// A line of the job's log matched `wait --until-log`.
    Matched,
}

/// The result of `wait --until-log` when a line of the run's log matched.
#[derive(Debug, Clone, Serialize)]
pub struct MatchReport {
    /// The job's name.
    pub name: String,
    /// Always `matched`.
    pub outcome: MatchOutcome,
    /// Whether the run was still going when the line was found; `false`
    /// when it had already ended (its exit code and the like are then the
    /// record's).
    pub running: bool,
    /// The command's exit code, when the run had ended.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when the run had ended.
    pub signal: Option<i32>,
    /// Run time in ms, when the run had ended.
    pub duration_ms: Option<u64>,
    /// The log file.
    pub log: String,
    /// The first matching line, cut at [`MAX_TAIL_LINE`] bytes.
    pub line: String,
}

impl MatchReport {
    /// The report of a match in the log of run `at`; `record` is the run's
    /// final record when it had ended.
    pub fn new(
        store: &dyn Store,
        name: &JobName,
        at: &RunAt,
        line: &str,
        running: bool,
        record: Option<&JobRecord>,
    ) -> Self {
        let ended = record.filter(|_| !running);
        Self {
            name: name.to_string(),
            outcome: MatchOutcome::Matched,
            running,
            exit_code: ended.and_then(|r| r.exit_code),
            signal: ended.and_then(|r| r.signal),
            duration_ms: ended.and_then(|r| r.duration_ms),
            log: store.log_path(name, at).display().to_string(),
            line: shorten(line),
        }
    }

    /// One compact JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// A detached job has started: what `run --detach` prints and the MCP
/// `start` tool answers (in its shape), and what a detached wrapper reports
/// to its starter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The job's name.
    pub name: String,
    /// The command's PID.
    pub pid: i32,
    /// The wrapper's PID.
    pub wrapper_pid: i32,
    /// The job's log.
    pub log: String,
}

/// A queued job that waits (`run --after`/`--slot`, the MCP `start` tool
/// with `after`/`slot`): what it waits for and its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    /// The job's name.
    pub name: String,
    /// Always `true`: tells this line from a start line.
    pub queued: bool,
    /// The run it will be (waiters are bound to it).
    pub job_id: String,
    /// Its slot group, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Its place among the jobs waiting in its queue, from 1 (0: its turn
    /// has come).
    pub position: usize,
    /// The jobs it runs after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Where it stands, in a few words.
    pub waiting_for: String,
}

/// What `kill` did: the job's result afterwards, and whether it had
/// already finished (then nothing was killed and the reason says so).
#[derive(Debug, Clone)]
pub struct KillReport {
    /// The job's result (no tail: the caller asked for a kill, not a log).
    pub report: JobReport,
    /// The job had an outcome before the kill (recorded, committed or not).
    pub already_finished: bool,
}

/// One job's line in `status` and `ls` (this is the CLI's JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// The job.
    pub name: String,
    /// queued, running, success, failed, hung, timeout, killed, lost,
    /// skipped or invalid.
    pub state: &'static str,
    /// The command's PID (from the record, whatever the state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// When the run started (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Since the run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Since the last proof of progress, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_age_ms: Option<u64>,
    /// `k/N` for a job that may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// The command's exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why it ended so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why its state cannot be trusted (state `invalid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Archived runs of the name.
    pub runs: usize,
    /// A queued job's slot group (state `queued`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// A queued job's place among the jobs waiting in its queue, from 1
    /// (0: its turn has come, it is starting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Whether the run is going (running or hung).
    #[serde(skip)]
    pub running: bool,
}

impl StatusRow {
    /// The row of job `name` from what the store holds now; `None` when the
    /// name has no state at all.
    pub fn read(store: &dyn Store, name: &JobName, now: SystemTime) -> Option<StatusRow> {
        Self::read_counted(store, name, now, || store.archived(name).len())
    }

    /// [`StatusRow::read`], with the count of archived runs from `runs`
    /// (asked only if the job has state), for a caller that counted many
    /// names' runs at once ([`Store::archived_counts`]).
    pub fn read_counted(
        store: &dyn Store,
        name: &JobName,
        now: SystemTime,
        runs: impl FnOnce() -> usize,
    ) -> Option<StatusRow> {
        let obs = store.snapshot(name);
        let heartbeat = obs.last_beat;
        let state = classify(obs, now, None);
        if state == JobState::Missing {
            return None;
        }
        let record = state.record();
        let running = matches!(state, JobState::Running { .. } | JobState::Hung { .. });
        Some(StatusRow {
            name: name.to_string(),
            state: state.word(),
            pid: record.and_then(|r| r.child_pid),
            started_at: record.map(|r| r.started_at.clone()),
            age_ms: record.map(|r| ms_since(now, r.started())),
            heartbeat_age_ms: heartbeat.filter(|_| running).map(|t| ms_since(now, t)),
            attempt: record.and_then(attempt),
            exit_code: record.and_then(|r| r.exit_code),
            duration_ms: record.and_then(|r| r.duration_ms),
            reason: record.and_then(|r| r.reason.clone()),
            error: match &state {
                JobState::Invalid { reason } => Some(reason.clone()),
                _ => None,
            },
            runs: runs(),
            queue: None,
            position: None,
            running,
        })
    }

    /// The row of a queued job that has not started: state `queued`, its
    /// age since it was queued, where it waits in its reason.
    pub fn queued(store: &dyn Store, p: &crate::queue::Pending, now: SystemTime) -> StatusRow {
        let queued_at =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(p.job.queued_unix_ms);
        StatusRow {
            name: p.job.name.to_string(),
            state: "queued",
            pid: None,
            started_at: None,
            age_ms: Some(ms_since(now, queued_at)),
            heartbeat_age_ms: None,
            attempt: None,
            exit_code: None,
            duration_ms: None,
            reason: Some(crate::queue::describe(p)),
            error: None,
            runs: store.archived(&p.job.name).len(),
            queue: (p.job.queue != crate::queue::AFTER_ONLY).then(|| p.job.queue.clone()),
            position: Some(p.position),
            running: false,
        }
    }

    /// Whether the job's state cannot be trusted.
    pub fn is_invalid(&self) -> bool {
        self.error.is_some()
    }
}

/// What a running job shows of its progress: how long it has run, when it
/// last made progress, its last log line.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// The job.
    pub name: String,
    /// Since the job started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// `attempt/max_attempts` when the job may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// Since the last proof of progress (the heartbeat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beat_age_ms: Option<u64>,
    /// The log's last non-empty line, cut at [`PROGRESS_LINE`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_line: Option<String>,
}

/// Longest last line a [`Progress`] keeps, in bytes.
pub const PROGRESS_LINE: usize = 120;

impl Progress {
    /// The progress of job `name`, read from the store now.
    pub fn read(store: &dyn Store, name: &JobName, now: SystemTime) -> Progress {
        let obs = store.snapshot(name);
        let record = obs.record.as_ref().ok().and_then(|r| r.as_ref());
        Progress {
            name: name.to_string(),
            elapsed_ms: record.map(|r| ms_since(now, r.started())),
            attempt: record.and_then(attempt),
            beat_age_ms: obs.last_beat.map(|t| ms_since(now, t)),
            last_line: last_line(store, name),
        }
    }

    /// Whether job `name` is still going (no status yet): worth a progress
    /// report.
    pub fn is_pending(store: &dyn Store, name: &JobName) -> bool {
        matches!(store.snapshot(name).status, Ok(None))
    }
}

/// The log's last non-empty line, cut short for a one-line summary.
fn last_line(store: &dyn Store, name: &JobName) -> Option<String> {
    let lines = store.tail(name, &RunAt::Current, 1);
    let last = lines.last()?.trim();
    (!last.is_empty()).then(|| cut(last, PROGRESS_LINE))
}

/// `2/3` for the second of three attempts; nothing for a job without
/// retries.
pub fn attempt(r: &JobRecord) -> Option<String> {
    (r.max_attempts > 1).then(|| format!("{}/{}", r.attempt, r.max_attempts))
}

fn ms_since(now: SystemTime, t: SystemTime) -> u64 {
    now.duration_since(t).unwrap_or_default().as_millis() as u64
}

/// `s` cut to at most `max` bytes (at a character boundary), with `…` when
/// anything was cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A duration in ms as `1.2s`, `3m 4s` and the like.
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
    }
}

/// A log line cut to at most [`MAX_TAIL_LINE`] bytes (at a character
/// boundary, marked with `…`).
pub fn shorten(line: &str) -> String {
    cut(line, MAX_TAIL_LINE)
}
