//! The compact result of a job, as one JSON line for programs (a person's
//! line is the CLI's to render), plus the last lines of its log on anything
//! but success.

use serde::Serialize;

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
    if line.len() <= MAX_TAIL_LINE {
        return line.to_owned();
    }
    let mut end = MAX_TAIL_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}
