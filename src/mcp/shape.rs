//! Result shaping: every tool answer is a few compact JSON lines an agent
//! can read at a glance, rendered from the core's report types (the same
//! values the CLI prints). Success stays within a few hundred bytes;
//! failure carries a tail bounded in lines, line length and total bytes,
//! whatever the job printed.

use serde::Serialize;

use jobwatch_core::model::{JobName, Outcome};
use jobwatch_core::report::{self, JobReport, MatchReport, Progress, Started};
use jobwatch_core::store::{RunAt, Store};

pub use jobwatch_core::report::cut;

/// Longest log line kept in a result, in bytes.
pub const MAX_LINE: usize = 200;
/// Most bytes of tail lines in one job's result.
pub const MAX_TAIL_BYTES: usize = 2_000;
/// Most tail lines an agent may ask for.
pub const MAX_TAIL_LINES: usize = 50;
/// Longest `reason` kept in a result, in bytes.
const MAX_REASON: usize = 160;

/// A detached job's start: what an agent needs of it.
#[derive(Debug, Serialize)]
pub struct StartedLine<'a> {
    /// The job.
    pub name: &'a str,
    /// The command's PID.
    pub pid: i32,
    /// Its log.
    pub log: &'a str,
}

/// The compact form of a start.
pub fn started(s: &Started) -> StartedLine<'_> {
    StartedLine {
        name: &s.name,
        pid: s.pid,
        log: &s.log,
    }
}

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

/// The compact form of a job's result: its reason cut short, its tail
/// bounded in lines, line length and bytes.
pub fn ended(r: &JobReport) -> Ended {
    Ended {
        name: r.name.clone(),
        outcome: r.outcome,
        exit_code: r.exit_code,
        signal: r.signal,
        duration_ms: r.duration_ms,
        attempt: r.attempt.clone(),
        reason: r.reason.as_deref().map(|why| cut(why, MAX_REASON)),
        log: r.log.clone(),
        result: r.result.clone(),
        tail: r.tail.as_deref().map(bound),
    }
}

/// A job still running when a wait's time cap passed: facts that show
/// whether it is getting anywhere.
#[derive(Debug, Serialize)]
pub struct Running<'a> {
    /// Always `running`.
    pub outcome: &'static str,
    /// The facts.
    #[serde(flatten)]
    pub progress: &'a Progress,
}

/// The compact form of a running job's progress.
pub fn running(p: &Progress) -> Running<'_> {
    Running {
        outcome: "running",
        progress: p,
    }
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

/// The compact form of a match.
pub fn matched(m: &MatchReport) -> Matched {
    Matched {
        name: m.name.clone(),
        outcome: "matched",
        running: m.running,
        line: cut(&m.line, MAX_LINE),
        log: m.log.clone(),
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

/// The compact form of a status row: a PID only while the job runs, one
/// reason (why its state is invalid, else why it ended), cut short.
pub fn status_row(r: &report::StatusRow) -> StatusRow {
    StatusRow {
        name: r.name.clone(),
        state: r.state,
        pid: r.pid.filter(|_| r.running),
        age_ms: r.age_ms,
        beat_age_ms: r.heartbeat_age_ms,
        exit_code: r.exit_code,
        attempt: r.attempt.clone(),
        reason: r
            .error
            .as_ref()
            .or(r.reason.as_ref())
            .map(|why| cut(why, MAX_REASON)),
    }
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

/// The line for one job of a wait: its result, or, if the wait's cap
/// passed while it runs, its progress read now.
pub fn report_line(store: &dyn Store, r: &JobReport) -> String {
    match JobName::parse(&r.name) {
        Ok(name) if r.running => line(&running(&Progress::read(store, &name, store.now()))),
        _ => line(&ended(r)),
    }
}

/// The last `n` log lines of run `at`, bounded as a result's tail is.
pub fn bounded_tail(store: &dyn Store, name: &JobName, at: &RunAt, n: usize) -> Vec<String> {
    bound(&store.tail(name, at, n.min(MAX_TAIL_LINES)))
}

/// Log lines, each cut at [`MAX_LINE`] bytes, the oldest dropped until the
/// whole tail fits in [`MAX_TAIL_BYTES`].
pub fn bound(lines: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut bytes = 0;
    for l in lines.iter().rev().take(MAX_TAIL_LINES) {
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
