//! Result shaping: every tool answer is a few compact JSON lines an agent
//! can read at a glance. Success stays within a few hundred bytes; failure
//! carries a tail bounded in lines, line length and total bytes, whatever
//! the job printed.

use std::time::SystemTime;

use serde::Serialize;

use jobwatch_core::classify::{JobState, classify};
use jobwatch_core::model::JobName;
use jobwatch_core::model::{JobRecord, Outcome};
use jobwatch_core::store::{RunAt, Store};
use jobwatch_core::wait::Verdict;

/// Longest log line kept in a result, in bytes.
pub const MAX_LINE: usize = 200;
/// Most bytes of tail lines in one job's result.
pub const MAX_TAIL_BYTES: usize = 2_000;
/// Most tail lines an agent may ask for.
pub const MAX_TAIL_LINES: usize = 50;
/// Longest `reason` kept in a result, in bytes.
const MAX_REASON: usize = 160;

/// A job that has reached an outcome.
#[derive(Debug, Serialize)]
pub struct Ended {
    /// The job.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The command's exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `attempt/max_attempts` when the job may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// Why it ended so (anything but success).
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

/// A job still running when a wait's time cap passed: facts that show
/// whether it is getting anywhere.
#[derive(Debug, Serialize)]
pub struct Running {
    /// The job.
    pub name: String,
    /// Always `running`.
    pub outcome: &'static str,
    /// Since the job started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// `attempt/max_attempts` when the job may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// Since the last proof of progress (the heartbeat's mtime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beat_age_ms: Option<u64>,
    /// The log's last line, cut short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_line: Option<String>,
}

/// A line of a job's log matched `wait`'s `until_log`.
#[derive(Debug, Serialize)]
pub struct Matched {
    /// The job.
    pub name: String,
    /// Always `matched`.
    pub outcome: &'static str,
    /// Whether the job was still running when the line was found.
    pub running: bool,
    /// The matching line, cut short.
    pub line: String,
    /// The log file.
    pub log: String,
}

/// The result of a `wait` whose `until_log` matched.
pub fn matched(store: &dyn Store, m: &jobwatch_core::wait::LogMatch) -> Matched {
    Matched {
        name: m.name.to_string(),
        outcome: "matched",
        running: m.running,
        line: cut(&m.line, MAX_LINE),
        log: store.log_path(&m.name, &m.at).display().to_string(),
    }
}

/// One job's line in `status`.
#[derive(Debug, Serialize)]
pub struct StatusRow {
    /// The job.
    pub name: String,
    /// running, success, failed, hung, timeout, killed, lost or invalid.
    pub state: &'static str,
    /// The command's PID while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Since the job started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Since the last proof of progress, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beat_age_ms: Option<u64>,
    /// The command's exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// `attempt/max_attempts` when the job may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// Why it ended so, or why its files are invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A preflight report: the verdict, the number of checks, and only what
/// needs attention (failures with their detail, checks a fix repaired).
#[derive(Debug, Serialize)]
pub struct Preflight {
    /// Whether every check passed.
    pub passed: bool,
    /// How many checks ran.
    pub checks: usize,
    /// The checks that failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedCheck>,
    /// The checks that failed at first and passed after their fix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
}

/// One failed preflight check.
#[derive(Debug, Serialize)]
pub struct FailedCheck {
    /// Its name.
    pub name: String,
    /// command, tcp, http or path.
    pub kind: String,
    /// What the last probe found.
    pub detail: String,
}

/// The compact form of a preflight report.
pub fn preflight(report: &jobwatch_core::preflight::PreflightReport) -> Preflight {
    Preflight {
        passed: report.passed,
        checks: report.checks.len(),
        failed: report
            .failures()
            .map(|c| FailedCheck {
                name: c.name.clone(),
                kind: c.kind.as_str().to_owned(),
                detail: cut(&c.detail, MAX_LINE),
            })
            .collect(),
        fixed: report
            .checks
            .iter()
            .filter(|c| c.fixed)
            .map(|c| c.name.clone())
            .collect(),
    }
}

/// One compact JSON line.
pub fn line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("results always serialize")
}

/// The result of a finished job, with at most `tail` log lines when it did
/// not succeed.
pub fn ended(
    store: &dyn Store,
    name: &JobName,
    at: &RunAt,
    outcome: Outcome,
    record: Option<&JobRecord>,
    tail: usize,
) -> Ended {
    let tail =
        (outcome != Outcome::Success && tail > 0).then(|| bounded_tail(store, name, at, tail));
    Ended {
        name: name.to_string(),
        outcome,
        exit_code: record.and_then(|r| r.exit_code),
        signal: record.and_then(|r| r.signal),
        duration_ms: record.and_then(|r| r.duration_ms),
        attempt: record.and_then(attempt),
        reason: record
            .and_then(|r| r.reason.as_deref())
            .map(|r| cut(r, MAX_REASON)),
        log: store.log_path(name, at).display().to_string(),
        result: store.result_path(name, at).map(|p| p.display().to_string()),
        tail,
    }
}

/// The line for one verdict of the library's waiter.
pub fn verdict_line(store: &dyn Store, v: &Verdict, tail: usize) -> String {
    if v.running {
        line(&running(store, &v.name))
    } else {
        line(&ended(
            store,
            &v.name,
            &v.at,
            v.outcome,
            v.record.as_ref(),
            tail,
        ))
    }
}

/// Progress facts of a running job, read from its files now.
pub fn running(store: &dyn Store, name: &JobName) -> Running {
    let obs = store.snapshot(name);
    let now = SystemTime::now();
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_millis() as u64;
    let record = obs.record.as_ref().ok().and_then(|r| r.as_ref());
    Running {
        name: name.to_string(),
        outcome: "running",
        elapsed_ms: record.map(|r| since(r.started())),
        attempt: record.and_then(attempt),
        beat_age_ms: obs.last_beat.map(since),
        last_line: last_line(store, name),
    }
}

/// `2/3` for the second of three attempts; nothing for a job without
/// retries.
fn attempt(r: &JobRecord) -> Option<String> {
    (r.max_attempts > 1).then(|| format!("{}/{}", r.attempt, r.max_attempts))
}

/// The log's last non-empty line, cut short for a one-line summary.
pub fn last_line(store: &dyn Store, name: &JobName) -> Option<String> {
    let lines = store.tail(name, &RunAt::Current, 1);
    let last = lines.last()?.trim();
    (!last.is_empty()).then(|| cut(last, 120))
}

/// A job's `status` line.
pub fn status_row(store: &dyn Store, name: &JobName, now: SystemTime) -> StatusRow {
    let obs = store.snapshot(name);
    let heartbeat = obs.last_beat;
    let state = classify(obs, now, None);
    let record = state.record();
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_millis() as u64;
    let running = matches!(state, JobState::Running { .. } | JobState::Hung { .. });
    let reason = match &state {
        JobState::Invalid { reason } => Some(reason.clone()),
        _ => record.and_then(|r| r.reason.clone()),
    };
    StatusRow {
        name: name.to_string(),
        state: state.word(),
        pid: record.and_then(|r| r.child_pid).filter(|_| running),
        age_ms: record.map(|r| since(r.started())),
        beat_age_ms: heartbeat.filter(|_| running).map(since),
        exit_code: record.and_then(|r| r.exit_code),
        attempt: record.and_then(attempt),
        reason: reason.map(|r| cut(&r, MAX_REASON)),
    }
}

/// The last `n` log lines, each cut at [`MAX_LINE`] bytes, the oldest
/// dropped until the whole tail fits in [`MAX_TAIL_BYTES`].
pub fn bounded_tail(store: &dyn Store, name: &JobName, at: &RunAt, n: usize) -> Vec<String> {
    let lines = store.tail(name, at, n.min(MAX_TAIL_LINES));
    let mut kept: Vec<String> = Vec::new();
    let mut bytes = 0;
    for l in lines.iter().rev() {
        let l = cut(l, MAX_LINE);
        // Measured as JSON: escapes can make a line longer than its bytes.
        bytes += line(&l).len() + 1;
        if bytes > MAX_TAIL_BYTES {
            break;
        }
        kept.push(l);
    }
    kept.reverse();
    kept
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

/// Several lines, one per item.
pub fn lines(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobwatch_core::store::file::FileStore;

    #[test]
    fn cut_keeps_short_text_and_marks_cut_text() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(cut("éé", 3), "é…");
    }

    #[test]
    fn tail_is_bounded_in_lines_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let name = JobName::parse("j").unwrap();
        let store = FileStore::open(Some(dir.path())).unwrap();
        let body: String = (0..100)
            .map(|i| format!("{i} {}\n", "x".repeat(500)))
            .collect();
        std::fs::write(store.log_path(&name, &RunAt::Current), body).unwrap();
        let tail = bounded_tail(&store, &name, &RunAt::Current, 1000);
        assert!(!tail.is_empty() && tail.len() <= MAX_TAIL_LINES);
        assert!(tail.iter().all(|l| l.len() <= MAX_LINE + 3));
        assert!(serde_json::to_string(&tail).unwrap().len() <= MAX_TAIL_BYTES + 2);
        assert!(tail.last().unwrap().starts_with("99 "));
    }
}
