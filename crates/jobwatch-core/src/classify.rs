//! Classifying a job from what its store holds alone, so that `status` and
//! `wait` give the same answer after any crash of any monitor.
//!
//! A store takes the [`Snapshot`] (reading files and checking the wrapper's
//! PID, for the file store); [`classify`] is a pure function of that
//! snapshot and the time.

use std::time::{Duration, SystemTime};

use crate::liveness::{observer_threshold, visible_progress};
use crate::model::{JobRecord, Outcome, StatusWord};
use crate::store::{Holder, Snapshot};

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

/// Classifies a snapshot at time `now`. `stale` overrides the job's own
/// stale threshold (see [`observer_threshold`]).
pub fn classify(obs: Snapshot, now: SystemTime, stale: Option<Duration>) -> JobState {
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
        (None, None) if obs.any_state => JobState::Invalid {
            reason: "no job.json record and no status: not a jobwatch job, or a damaged one"
                .to_owned(),
        },
        (None, None) => JobState::Missing,
        (None, Some(record)) => unfinished(
            record,
            obs.holder,
            obs.last_beat,
            obs.last_output,
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
    wrapper: Holder,
    heartbeat_mtime: Option<SystemTime>,
    log_mtime: Option<SystemTime>,
    command_exited: bool,
    now: SystemTime,
    stale: Option<Duration>,
) -> JobState {
    let last_progress = visible_progress(record.settings.liveness, heartbeat_mtime, log_mtime);
    let threshold = observer_threshold(&record.settings, stale);
    // A mark too far in the future for the clock (a job may date its
    // heartbeat at the end of time, and tmpfs keeps it) is never overdue.
    let progress = last_progress.unwrap_or_else(|| record.started());
    let hung_at = progress.checked_add(threshold).unwrap_or(progress);
    let overdue = now >= hung_at;
    // A recorded outcome is the outcome, whoever commits it.
    let recorded = record.outcome.is_some();
    match wrapper {
        Holder::Dead if recorded => JobState::Recorded {
            record: Box::new(record),
        },
        Holder::Dead => JobState::Lost {
            record: Box::new(record),
        },
        // Another host's wrapper cannot be checked: a heartbeat that stopped
        // for longer than any healthy wrapper allows means it is gone.
        Holder::Elsewhere if overdue && recorded => JobState::Recorded {
            record: Box::new(record),
        },
        Holder::Elsewhere if overdue => JobState::Lost {
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
            pid_ns: None,
        }
    }

    fn obs(
        record: Option<JobRecord>,
        wrapper: Holder,
        status: Option<StatusWord>,
        beat: u64,
    ) -> Snapshot {
        Snapshot {
            record: Ok(record),
            holder: wrapper,
            status: Ok(status),
            last_beat: Some(t(beat)),
            last_output: None,
            command_exited: false,
            any_state: true,
        }
    }

    #[test]
    fn a_status_makes_a_job_finished_whatever_the_wrapper() {
        let s = classify(
            obs(
                Some(record(Some(Outcome::Timeout))),
                Holder::Dead,
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
        let s = classify(obs(Some(record(None)), Holder::Dead, None, 0), t(1), None);
        assert_eq!(s.word(), "lost");
    }

    #[test]
    fn a_live_wrapper_is_hung_only_after_the_observer_threshold() {
        let live = |now| {
            classify(
                obs(Some(record(None)), Holder::Alive, None, 0),
                t(now),
                None,
            )
            .word()
        };
        assert_eq!(live(11), "running", "the wrapper decides first");
        assert_eq!(live(12), "hung", "stale 10s + heartbeat 1s + 1s");
        let explicit = classify(
            obs(Some(record(None)), Holder::Alive, None, 0),
            t(3),
            Some(Duration::from_secs(2)),
        );
        assert_eq!(explicit.word(), "hung");
    }

    #[test]
    fn a_record_holding_an_outcome_is_that_outcome_when_its_wrapper_died_committing() {
        let s = classify(
            obs(Some(record(Some(Outcome::Success))), Holder::Dead, None, 0),
            t(1),
            None,
        );
        assert!(matches!(s, JobState::Recorded { .. }), "{s:?}");
        assert_eq!(s.word(), "success", "never lost");
        // Another host's wrapper that fell silent: the same.
        let s = classify(
            obs(
                Some(record(Some(Outcome::Failed))),
                Holder::Elsewhere,
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
        let committing = obs(Some(record(Some(Outcome::Success))), Holder::Alive, None, 0);
        assert_eq!(classify(committing, t(100), None).word(), "running");
        let mut exited = obs(Some(record(None)), Holder::Alive, None, 0);
        exited.command_exited = true;
        let s = classify(exited, t(100), Some(Duration::from_secs(1)));
        assert_eq!(s.word(), "running", "an exit is not a hang");
    }

    #[test]
    fn status_and_record_that_disagree_are_invalid() {
        let s = classify(
            obs(
                Some(record(Some(Outcome::Failed))),
                Holder::Dead,
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
        let mut o = obs(None, Holder::Unknown, None, 0);
        o.any_state = false;
        assert_eq!(classify(o, t(0), None), JobState::Missing);
        let o = obs(None, Holder::Unknown, None, 0);
        assert_eq!(classify(o, t(0), None).word(), "invalid");
    }

    /// The same rules over a store's snapshots: the memory store says what
    /// the files would, with the clock and the wrapper's liveness set here.
    #[test]
    fn a_memory_store_run_is_running_hung_finishing_lost_or_finished_as_its_state_says() {
        use crate::store::Store;
        use crate::store::memory::MemoryStore;
        use crate::store::memory::fixture::{ended, name, record};

        let store = MemoryStore::new();
        let t0 = store.now();
        let j = name("j");
        let word = |store: &MemoryStore| classify(store.snapshot(&j), store.now(), None).word();
        assert_eq!(word(&store), "missing");
        store.put_record(&j, record("j", "r1", t0));
        assert_eq!(word(&store), "lost", "a record whose wrapper is gone");
        store.set_holder("r1", Holder::Alive);
        store.put_output(&j, t0, &["working"]);
        assert_eq!(word(&store), "running");
        store.advance(Duration::from_secs(11));
        assert_eq!(word(&store), "running", "the wrapper decides first");
        store.advance(Duration::from_secs(1));
        assert_eq!(word(&store), "hung", "stale 10s + heartbeat 1s + 1s");
        store.set_command_exited("r1");
        assert_eq!(word(&store), "running", "an exit is not a hang");
        let done = ended(record("j", "r1", t0), Outcome::Failed, store.now());
        store.put_record(&j, done);
        store.set_holder("r1", Holder::Dead);
        assert_eq!(word(&store), "failed", "the recorded outcome, not lost");
        store.put_status(&j, StatusWord::Failed);
        let state = classify(store.snapshot(&j), store.now(), None);
        assert!(
            matches!(
                state,
                JobState::Finished {
                    outcome: Outcome::Failed,
                    ..
                }
            ),
            "{state:?}"
        );
        store.damage_status(&j, "cannot use j.status: it is a FIFO");
        let state = classify(store.snapshot(&j), store.now(), None);
        assert_eq!(
            state,
            JobState::Invalid {
                reason: "cannot use j.status: it is a FIFO".into()
            }
        );
    }
}

#[cfg(test)]
mod end_of_time {
    use super::*;
    use crate::model::{LivenessMode, RECORD_VERSION, Settings};
    use std::time::UNIX_EPOCH;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(2_000_000_000)
    }

    fn running(last_beat: SystemTime) -> Snapshot {
        let record = JobRecord {
            version: RECORD_VERSION,
            name: "j".into(),
            job_id: "id".into(),
            command: vec!["true".into()],
            cwd: "/".into(),
            host: "h".into(),
            boot_id: "b".into(),
            pid_ns: None,
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
                liveness: LivenessMode::Auto,
                retries: 0,
                backoff_ms: 0,
                backoff_max_ms: 0,
            },
            started_at: "x".into(),
            started_unix_ms: crate::model::unix_ms(now()),
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
        };
        Snapshot {
            record: Ok(Some(record)),
            holder: Holder::Alive,
            status: Ok(None),
            last_beat: Some(last_beat),
            last_output: None,
            command_exited: false,
            any_state: true,
        }
    }

    #[test]
    fn a_heartbeat_dated_at_the_end_of_time_reads_as_running() {
        // tmpfs keeps `touch -d @9223372036854775807`.
        let end = UNIX_EPOCH + Duration::from_secs(i64::MAX as u64);
        let state = classify(running(end), now(), None);
        assert_eq!(state.word(), "running");
    }
}
