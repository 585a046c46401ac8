//! Job events: one `started` when a run's command is spawned and one `ended`
//! when its outcome is committed, as every store keeps them in its event
//! journal (`events.jsonl` in the file store, protocol §18) and as
//! `jobwatch events` prints them.
//!
//! An event is one compact JSON object on one line, `event` first: a line
//! always starts with `{"event":`, a byte sequence no JSON string can hold
//! unescaped, so a reader finds the start of a line again after a torn one
//! ([`JobEvent::from_line`]). A line is at most [`MAX_EVENT_LINE`] bytes
//! (the reason is cut to fit), so one `write(2)` with `O_APPEND` puts it
//! whole at the end of the journal, never interleaved with another.

use serde::{Deserialize, Serialize};

use super::{Finalizer, JobName, JobRecord, Outcome};

/// The most bytes of one event line, newline included: `PIPE_BUF`, the
/// size the kernel writes in one piece.
pub const MAX_EVENT_LINE: usize = 4096;

/// The most bytes of an event's `reason` (longer ones are cut, on a
/// character boundary, with `…`).
pub const MAX_EVENT_REASON: usize = 1024;

/// Every event line begins with these bytes (see the module docs).
pub const EVENT_LINE_START: &[u8] = b"{\"event\":";

/// The most bytes of a `job_id` accepted from a journal line.
const MAX_JOB_ID: usize = 128;

/// What happened to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Its command was spawned (the first attempt's; retries are not new
    /// runs).
    Started,
    /// Its outcome was committed (its status created), by its wrapper or a
    /// finisher.
    Ended,
}

impl EventKind {
    /// The word used in lines: `started`, `ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ended => "ended",
        }
    }
}

/// One job event. Fields that do not apply are absent from the line
/// (`outcome` and the rest only on `ended`; a missing field reads as
/// `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// `started` or `ended`.
    pub event: EventKind,
    /// The job's name.
    pub name: String,
    /// The run (`job_id` of its record).
    pub job_id: String,
    /// When: the run's `started_at`, or its `ended_at` (RFC 3339, UTC).
    pub at: String,
    /// The host the run's wrapper ran on.
    pub host: String,
    /// How it ended (`ended` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The command's exit code, when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Run time in ms (`ended` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// One line on why (timeout, hung, killed, lost, exec failure), at
    /// most [`MAX_EVENT_REASON`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who committed the outcome: `wrapper`, or `waiter` for a finisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_by: Option<Finalizer>,
}

impl JobEvent {
    /// The `started` event of the run `record` describes.
    pub fn started(record: &JobRecord) -> Self {
        Self {
            event: EventKind::Started,
            name: record.name.clone(),
            job_id: record.job_id.clone(),
            at: record.started_at.clone(),
            host: record.host.clone(),
            outcome: None,
            exit_code: None,
            signal: None,
            duration_ms: None,
            reason: None,
            finalized_by: None,
        }
    }

    /// The `ended` event of a finished record; `None` while it has no
    /// outcome.
    pub fn ended(record: &JobRecord) -> Option<Self> {
        Some(Self::ended_with(record, record.outcome?))
    }

    /// The `ended` event of `record` with `outcome` (a status's outcome,
    /// where the record does not hold one).
    pub fn ended_with(record: &JobRecord, outcome: Outcome) -> Self {
        Self {
            event: EventKind::Ended,
            name: record.name.clone(),
            job_id: record.job_id.clone(),
            at: record
                .ended_at
                .clone()
                .unwrap_or_else(|| record.started_at.clone()),
            host: record.host.clone(),
            outcome: Some(outcome),
            exit_code: record.exit_code,
            signal: record.signal,
            duration_ms: record.duration_ms,
            reason: record.reason.as_deref().map(cut_reason),
            finalized_by: record.finalized_by,
        }
    }

    /// The job's name, validated (a journal line is outside data).
    pub fn job_name(&self) -> Option<JobName> {
        JobName::parse(&self.name).ok()
    }

    /// The event as one journal line: compact JSON and `\n`, at most
    /// [`MAX_EVENT_LINE`] bytes (a record's fields are bounded: a name of
    /// 64 bytes, a host name of 64, a reason cut to [`MAX_EVENT_REASON`]).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("an event serializes");
        if line.len() >= MAX_EVENT_LINE {
            // Only an outside record could get here (a huge host or
            // job_id): drop the reason, then cut what is left of it.
            let mut short = self.clone();
            short.reason = None;
            line = serde_json::to_vec(&short).expect("an event serializes");
        }
        line.push(b'\n');
        line
    }

    /// Reads an event from one journal line (without its `\n`). A torn
    /// line left by a crashed writer may precede a complete one on the
    /// same line: the last `{"event":` in it starts the event read. `None`
    /// for anything that is not a valid event (its name and `job_id` are
    /// checked: they become store keys).
    pub fn from_line(line: &[u8]) -> Option<Self> {
        let start = memchr::memmem::rfind(line, EVENT_LINE_START)?;
        let event: JobEvent = serde_json::from_slice(&line[start..]).ok()?;
        let id_ok = !event.job_id.is_empty()
            && event.job_id.len() <= MAX_JOB_ID
            && event
                .job_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        (id_ok && event.job_name().is_some()).then_some(event)
    }

    /// Whether this is the `ended` event of run `job_id`.
    pub fn ends(&self, job_id: &str) -> bool {
        self.event == EventKind::Ended && self.job_id == job_id
    }
}

/// `reason` cut to [`MAX_EVENT_REASON`] bytes on a character boundary.
fn cut_reason(reason: &str) -> String {
    if reason.len() <= MAX_EVENT_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_EVENT_REASON - '…'.len_utf8();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LivenessMode, RECORD_VERSION, Settings};

    fn record() -> JobRecord {
        JobRecord {
            version: RECORD_VERSION,
            name: "build".into(),
            job_id: "6f1c2a9e-1b7d-4c55-9a8e-3d2f0b1c4e5a".into(),
            command: vec!["make".into()],
            cwd: "/src".into(),
            host: "h1".into(),
            boot_id: "b".into(),
            pid_ns: None,
            wrapper_pid: 10,
            wrapper_start_time: 1,
            child_pid: Some(11),
            child_start_time: Some(2),
            pgid: Some(11),
            settings: Settings {
                heartbeat_ms: 1_000,
                stale_ms: 10_000,
                timeout_ms: None,
                grace_ms: 0,
                liveness: LivenessMode::Auto,
                retries: 0,
                backoff_ms: 0,
                backoff_max_ms: 0,
            },
            started_at: "2033-05-18T03:33:20.000Z".into(),
            started_unix_ms: 2_000_000_000_000,
            ended_at: None,
            exit_code: None,
            signal: None,
            outcome: None,
            duration_ms: None,
            reason: None,
            finalized_by: None,
            breaker: None,
            attempt: 1,
            max_attempts: 1,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn a_started_line_is_compact_json_with_the_event_first_and_nothing_that_does_not_apply() {
        let line = JobEvent::started(&record()).to_line();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"event\":\"started\",\"name\":\"build\",\"job_id\":\"6f1c2a9e-1b7d-4c55-9a8e-3d2f0b1c4e5a\",\
             \"at\":\"2033-05-18T03:33:20.000Z\",\"host\":\"h1\"}\n"
        );
    }

    #[test]
    fn an_ended_event_carries_the_outcome_exit_code_signal_duration_and_reason() {
        let mut r = record();
        r.outcome = Some(Outcome::Timeout);
        r.signal = Some(15);
        r.ended_at = Some("2033-05-18T03:35:20.000Z".into());
        r.duration_ms = Some(120_000);
        r.reason = Some("timed out after 2m".into());
        r.finalized_by = Some(Finalizer::Wrapper);
        let e = JobEvent::ended(&r).unwrap();
        let line = e.to_line();
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.starts_with("{\"event\":\"ended\""), "{text}");
        for part in [
            "\"outcome\":\"timeout\"",
            "\"signal\":15",
            "\"duration_ms\":120000",
            "\"reason\":\"timed out after 2m\"",
            "\"finalized_by\":\"wrapper\"",
            "\"at\":\"2033-05-18T03:35:20.000Z\"",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert_eq!(JobEvent::from_line(&line[..line.len() - 1]), Some(e));
        assert!(JobEvent::ended(&record()).is_none(), "no outcome, no end");
    }

    #[test]
    fn a_line_never_exceeds_pipe_buf_however_long_the_reason() {
        let mut r = record();
        r.outcome = Some(Outcome::Lost);
        r.reason = Some("é".repeat(10_000));
        let line = JobEvent::ended(&r).unwrap().to_line();
        assert!(line.len() <= MAX_EVENT_LINE, "{}", line.len());
        let back = JobEvent::from_line(&line[..line.len() - 1]).unwrap();
        let reason = back.reason.unwrap();
        assert!(reason.len() <= MAX_EVENT_REASON && reason.ends_with('…'));
        // A record from outside with an absurd host still fits: the reason goes.
        r.host = "h".repeat(5_000);
        let line = JobEvent::ended(&r).unwrap().to_line();
        assert!(line.ends_with(b"\n"));
    }

    #[test]
    fn a_complete_event_after_a_torn_one_on_the_same_line_is_read() {
        let good = JobEvent::started(&record()).to_line();
        let mut line = b"{\"event\":\"ended\",\"name\":\"bu".to_vec();
        line.extend_from_slice(&good[..good.len() - 1]);
        assert_eq!(
            JobEvent::from_line(&line),
            Some(JobEvent::started(&record()))
        );
        // Zeros from a crash, then a line.
        let mut zeros = vec![0u8; 100];
        zeros.extend_from_slice(&good[..good.len() - 1]);
        assert!(JobEvent::from_line(&zeros).is_some());
    }

    #[test]
    fn lines_that_are_not_events_or_name_bad_jobs_are_not_read() {
        for bad in [
            &b""[..],
            b"garbage",
            b"{\"event\":\"ended\",\"name\":\"bu",
            b"{\"journal\":\"0123456789abcdef\",\"after\":null}",
            b"{\"event\":\"exploded\",\"name\":\"a\",\"job_id\":\"r\",\"at\":\"t\",\"host\":\"h\"}",
            b"{\"event\":\"started\",\"name\":\"../x\",\"job_id\":\"r\",\"at\":\"t\",\"host\":\"h\"}",
            b"{\"event\":\"started\",\"name\":\"a\",\"job_id\":\"r/1\",\"at\":\"t\",\"host\":\"h\"}",
        ] {
            assert_eq!(
                JobEvent::from_line(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_optional_ones_read_as_absent() {
        let line = b"{\"event\":\"ended\",\"name\":\"a\",\"job_id\":\"r1\",\"at\":\"t\",\"host\":\"h\",\"outcome\":\"failed\",\"future\":[1]}";
        let e = JobEvent::from_line(line).unwrap();
        assert_eq!(e.outcome, Some(Outcome::Failed));
        assert_eq!(e.exit_code, None);
        assert!(e.ends("r1") && !e.ends("r2"));
    }
}
