//! Classifying a job from its files alone, so that `status` and `wait` give
//! the same answer after any crash of any monitor.
//!
//! [`observe`] reads the files (and checks the wrapper's PID); [`classify`]
//! is a pure function of that observation and the time.

use std::time::{Duration, SystemTime};

use crate::liveness::{observer_threshold, visible_progress};
use crate::model::StatusWord;
use crate::model::{JobRecord, Outcome};
use crate::protocol::open::{entry, mtime};
use crate::protocol::record::{RecordError, read_record};
use crate::protocol::status_file::{StatusError, read_status};
use crate::protocol::{FileKind, JobPaths};
use crate::sys::proc::{self, ProcessId};

/// Whether the wrapper process is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapperState {
    /// Alive (same PID, same start time, same boot, not a zombie).
    Alive,
    /// Gone, or its PID now belongs to another process.
    Dead,
    /// It runs on another host: its PID cannot be checked from here.
    Elsewhere,
    /// No record to tell.
    Unknown,
}

/// Everything read from one job's files at one moment.
#[derive(Debug)]
pub struct Observed {
    /// `NAME.job.json`.
    pub record: Result<Option<JobRecord>, RecordError>,
    /// The wrapper, checked after the record was read and before the status
    /// (`Unknown` when the status already existed: it no longer matters).
    pub wrapper: WrapperState,
    /// `NAME.status`.
    pub status: Result<Option<StatusWord>, StatusError>,
    /// mtime of `NAME.heartbeat` (not read once a status exists).
    pub heartbeat_mtime: Option<SystemTime>,
    /// mtime of `NAME.log` (not read once a status exists).
    pub log_mtime: Option<SystemTime>,
    /// Whether the recorded command has exited while its wrapper lives
    /// ([`command_exited`]; only checked when the wrapper is alive and no
    /// status exists).
    pub command_exited: bool,
    /// Whether any of the job's files exists.
    pub any_file: bool,
}

/// What a job is, as far as its files tell.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Running and making progress (or too recently started to say), or
    /// ended and being committed by its live wrapper (its command exited,
    /// or its final record is written): such a run is never overdue.
    Running {
        /// The record.
        record: Box<JobRecord>,
        /// Last visible progress.
        last_progress: Option<SystemTime>,
        /// When it will count as hung without further progress.
        hung_at: SystemTime,
    },
    /// Running, but no visible progress for longer than allowed and its
    /// wrapper did not act: an outside observer should kill it.
    Hung {
        /// The record.
        record: Box<JobRecord>,
        /// Last visible progress.
        last_progress: Option<SystemTime>,
    },
    /// `.status` exists: the job is over and its files are final.
    Finished {
        /// The outcome.
        outcome: Outcome,
        /// The final record, when the job has one.
        record: Option<Box<JobRecord>>,
    },
    /// The wrapper vanished without writing a status.
    Lost {
        /// The last record.
        record: Box<JobRecord>,
    },
    /// The record holds the run's final outcome, but its wrapper is gone
    /// (or, on another host, silent) without having created `NAME.status`:
    /// it died while committing. The recorded outcome is the outcome; a
    /// finisher writes the status from it.
    Recorded {
        /// The final record.
        record: Box<JobRecord>,
    },
    /// No files at all for this name.
    Missing,
    /// Files exist but cannot be trusted: the reason says which and why.
    Invalid {
        /// One line naming the file and the problem.
        reason: String,
    },
}

impl JobState {
    /// The one-word state shown by `status`.
    pub fn word(&self) -> &'static str {
        match self {
            JobState::Running { .. } => "running",
            JobState::Hung { .. } => "hung",
            JobState::Finished { outcome, .. } => outcome.as_str(),
            JobState::Lost { .. } => "lost",
            JobState::Recorded { record } => record.outcome.map_or("lost", Outcome::as_str),
            JobState::Missing => "missing",
            JobState::Invalid { .. } => "invalid",
        }
    }

    /// The record, when there is one.
    pub fn record(&self) -> Option<&JobRecord> {
        match self {
            JobState::Running { record, .. }
            | JobState::Hung { record, .. }
            | JobState::Lost { record }
            | JobState::Recorded { record } => Some(record),
            JobState::Finished { record, .. } => record.as_deref(),
            JobState::Missing | JobState::Invalid { .. } => None,
        }
    }
}

/// Reads a job's files. The order matters: the wrapper is checked before the
/// status is read, so "wrapper dead and no status" can never be a status
/// written between the two reads.
///
/// A job whose status already exists is over: its wrapper and progress no
/// longer matter, so they are not read (this is most of the cost of
/// `status` over many finished jobs). Otherwise the status is read again
/// after the wrapper check, and that second read is the one that counts.
pub fn observe(paths: &JobPaths) -> Observed {
    let record = read_record(&paths.record());
    let (wrapper, status) = match read_status(&paths.status()) {
        Ok(None) => {
            let wrapper = match &record {
                Ok(Some(r)) => wrapper_state(r),
                _ => WrapperState::Unknown,
            };
            (wrapper, read_status(&paths.status()))
        }
        present_or_unreadable => (WrapperState::Unknown, present_or_unreadable),
    };
    // The job may have finished between the two reads: the status then sits
    // beside the start record. The final record precedes the status, so a
    // second read sees it.
    let record = match (&status, record) {
        (Ok(Some(_)), Ok(Some(r))) if r.outcome.is_none() => read_record(&paths.record()),
        (_, record) => record,
    };
    let over = !matches!(status, Ok(None));
    let heartbeat_mtime = if over {
        None
    } else {
        mtime(&paths.heartbeat())
    };
    let log_mtime = if over { None } else { mtime(&paths.log()) };
    let command_exited = wrapper == WrapperState::Alive
        && matches!(&record, Ok(Some(r)) if r.outcome.is_none() && command_exited(r));
    let any_file = matches!(record, Ok(Some(_)) | Err(_))
        || over
        || heartbeat_mtime.is_some()
        || log_mtime.is_some()
        || entry(&paths.file(FileKind::Pid)).is_some();
    Observed {
        record,
        wrapper,
        status,
        heartbeat_mtime,
        log_mtime,
        command_exited,
        any_file,
    }
}

/// Whether the command of the run's current attempt has exited: it is a
/// zombie its wrapper has not reaped yet, or it is gone (reaped, or its PID
/// reused). While the wrapper backs off between attempts (the attempt is
/// already listed in `attempts`) this says nothing: `false`.
///
/// A run whose command exited is finishing, not hung: its wrapper kills the
/// leftovers, then commits the exit's outcome. An exit that happened before
/// any kill request wins (§9.4 of the protocol).
pub fn command_exited(record: &JobRecord) -> bool {
    let (Some(pid), Some(start_time)) = (record.child_pid, record.child_start_time) else {
        return false;
    };
    let between_attempts = record.attempts.len() >= record.attempt as usize;
    // A start time of 0 was unreadable at spawn: it proves nothing.
    start_time != 0 && !between_attempts && !proc::is_alive(ProcessId { pid, start_time })
}

/// Checks the wrapper named by a record.
pub fn wrapper_state(record: &JobRecord) -> WrapperState {
    if record.host != proc::hostname() {
        return WrapperState::Elsewhere;
    }
    if record.boot_id != proc::boot_id() {
        return WrapperState::Dead;
    }
    let id = ProcessId {
        pid: record.wrapper_pid,
        start_time: record.wrapper_start_time,
    };
    if proc::is_alive(id) {
        WrapperState::Alive
    } else {
        WrapperState::Dead
    }
}

/// Classifies an observation at time `now`. `stale` overrides the job's own
/// stale threshold (see [`observer_threshold`]).
pub fn classify(obs: Observed, now: SystemTime, stale: Option<Duration>) -> JobState {
    let record = match obs.record {
        Ok(r) => r,
        Err(e) => {
            return JobState::Invalid {
                reason: e.to_string(),
            };
        }
    };
    let status = match obs.status {
        Ok(s) => s,
        Err(e) => {
            return JobState::Invalid {
                reason: e.to_string(),
            };
        }
    };
    match (status, record) {
        (Some(word), record) => finished(word, record),
        (None, None) if obs.any_file => JobState::Invalid {
            reason: "no job.json record and no status: not a jobwatch job, or a damaged one"
                .to_owned(),
        },
        (None, None) => JobState::Missing,
        (None, Some(record)) => unfinished(
            record,
            obs.wrapper,
            obs.heartbeat_mtime,
            obs.log_mtime,
            obs.command_exited,
            now,
            stale,
        ),
    }
}

fn finished(word: StatusWord, record: Option<JobRecord>) -> JobState {
    let from_word = match word {
        StatusWord::Success => Outcome::Success,
        StatusWord::Failed => Outcome::Failed,
    };
    let outcome = match record.as_ref().and_then(|r| r.outcome) {
        Some(o) if o.status_word() != word => {
            return JobState::Invalid {
                reason: format!("status file says {} but job.json says {o}", word.as_str()),
            };
        }
        Some(o) => o,
        None => from_word,
    };
    JobState::Finished {
        outcome,
        record: record.map(Box::new),
    }
}

fn unfinished(
    record: JobRecord,
    wrapper: WrapperState,
    heartbeat_mtime: Option<SystemTime>,
    log_mtime: Option<SystemTime>,
    command_exited: bool,
    now: SystemTime,
    stale: Option<Duration>,
) -> JobState {
    let last_progress = visible_progress(record.settings.liveness, heartbeat_mtime, log_mtime);
    let threshold = observer_threshold(&record.settings, stale);
    let hung_at = last_progress.unwrap_or_else(|| record.started()) + threshold;
    let overdue = now >= hung_at;
    // A recorded outcome is the outcome, whoever commits it.
    let recorded = record.outcome.is_some();
    match wrapper {
        WrapperState::Dead if recorded => JobState::Recorded {
            record: Box::new(record),
        },
        WrapperState::Dead => JobState::Lost {
            record: Box::new(record),
        },
        // Another host's wrapper cannot be checked: a heartbeat that stopped
        // for longer than any healthy wrapper allows means it is gone.
        WrapperState::Elsewhere if overdue && recorded => JobState::Recorded {
            record: Box::new(record),
        },
        WrapperState::Elsewhere if overdue => JobState::Lost {
            record: Box::new(record),
        },
        // The command has ended and the live wrapper is finishing (killing
        // leftovers, counting, writing): whatever it takes, that is not a
        // hang, and the exit it saw decides the outcome.
        _ if recorded || command_exited => JobState::Running {
            record: Box::new(record),
            last_progress,
            hung_at: now + threshold,
        },
        _ if overdue => JobState::Hung {
            record: Box::new(record),
            last_progress,
        },
        _ => JobState::Running {
            record: Box::new(record),
            last_progress,
            hung_at,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RECORD_VERSION;
    use crate::model::{LivenessMode, Settings};
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(2_000_000_000 + secs)
    }

    fn record(outcome: Option<Outcome>) -> JobRecord {
        JobRecord {
            version: RECORD_VERSION,
            name: "j".into(),
            job_id: "id".into(),
            command: vec!["true".into()],
            cwd: "/".into(),
            host: "h".into(),
            boot_id: "b".into(),
            wrapper_pid: 1,
            wrapper_start_time: 1,
            child_pid: Some(2),
            child_start_time: Some(2),
            pgid: Some(2),
            settings: Settings {
                heartbeat_ms: 1_000,
                stale_ms: 10_000,
                timeout_ms: None,
                grace_ms: 100,
                liveness: LivenessMode::Output,
                retries: 0,
                backoff_ms: 0,
                backoff_max_ms: 0,
            },
            started_at: "x".into(),
            started_unix_ms: crate::model::unix_ms(t(0)),
            ended_at: None,
            exit_code: None,
            signal: None,
            outcome,
            duration_ms: None,
            reason: None,
            finalized_by: None,
            breaker: None,
            attempt: 1,
            max_attempts: 1,
            attempts: Vec::new(),
        }
    }

    fn obs(
        record: Option<JobRecord>,
        wrapper: WrapperState,
        status: Option<StatusWord>,
        beat: u64,
    ) -> Observed {
        Observed {
            record: Ok(record),
            wrapper,
            status: Ok(status),
            heartbeat_mtime: Some(t(beat)),
            log_mtime: None,
            command_exited: false,
            any_file: true,
        }
    }

    #[test]
    fn a_status_makes_a_job_finished_whatever_the_wrapper() {
        let s = classify(
            obs(
                Some(record(Some(Outcome::Timeout))),
                WrapperState::Dead,
                Some(StatusWord::Failed),
                0,
            ),
            t(100),
            None,
        );
        assert!(matches!(
            s,
            JobState::Finished {
                outcome: Outcome::Timeout,
                ..
            }
        ));
    }

    #[test]
    fn a_dead_wrapper_without_status_is_lost() {
        let s = classify(
            obs(Some(record(None)), WrapperState::Dead, None, 0),
            t(1),
            None,
        );
        assert_eq!(s.word(), "lost");
    }

    #[test]
    fn a_live_wrapper_is_hung_only_after_the_observer_threshold() {
        let live = |now| {
            classify(
                obs(Some(record(None)), WrapperState::Alive, None, 0),
                t(now),
                None,
            )
            .word()
        };
        assert_eq!(live(11), "running", "the wrapper decides first");
        assert_eq!(live(12), "hung", "stale 10s + heartbeat 1s + 1s");
        let explicit = classify(
            obs(Some(record(None)), WrapperState::Alive, None, 0),
            t(3),
            Some(Duration::from_secs(2)),
        );
        assert_eq!(explicit.word(), "hung");
    }

    #[test]
    fn a_record_holding_an_outcome_is_that_outcome_when_its_wrapper_died_committing() {
        let s = classify(
            obs(
                Some(record(Some(Outcome::Success))),
                WrapperState::Dead,
                None,
                0,
            ),
            t(1),
            None,
        );
        assert!(matches!(s, JobState::Recorded { .. }), "{s:?}");
        assert_eq!(s.word(), "success", "never lost");
        // Another host's wrapper that fell silent: the same.
        let s = classify(
            obs(
                Some(record(Some(Outcome::Failed))),
                WrapperState::Elsewhere,
                None,
                0,
            ),
            t(100),
            None,
        );
        assert_eq!(s.word(), "failed");
    }

    #[test]
    fn a_live_wrapper_whose_command_ended_is_finishing_and_never_overdue() {
        let committing = obs(
            Some(record(Some(Outcome::Success))),
            WrapperState::Alive,
            None,
            0,
        );
        assert_eq!(classify(committing, t(100), None).word(), "running");
        let mut exited = obs(Some(record(None)), WrapperState::Alive, None, 0);
        exited.command_exited = true;
        let s = classify(exited, t(100), Some(Duration::from_secs(1)));
        assert_eq!(s.word(), "running", "an exit is not a hang");
    }

    #[test]
    fn status_and_record_that_disagree_are_invalid() {
        let s = classify(
            obs(
                Some(record(Some(Outcome::Failed))),
                WrapperState::Dead,
                Some(StatusWord::Success),
                0,
            ),
            t(1),
            None,
        );
        assert_eq!(s.word(), "invalid");
    }

    #[test]
    fn nothing_on_disk_is_missing_and_orphan_files_are_invalid() {
        let mut o = obs(None, WrapperState::Unknown, None, 0);
        o.any_file = false;
        assert_eq!(classify(o, t(0), None), JobState::Missing);
        let o = obs(None, WrapperState::Unknown, None, 0);
        assert_eq!(classify(o, t(0), None).word(), "invalid");
    }
}
