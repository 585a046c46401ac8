//! Liveness as policy: what counts as progress, and when a job is stale.
//! Pure functions of observations and time, so the rules are tested without
//! processes or sleeping.
//!
//! Two judges apply them: the wrapper, which enforces the job's own stale
//! threshold ([`wrapper_verdict`], protocol §7 "the wrapper's hung
//! decision"), and outside observers, which only back it up
//! ([`observer_threshold`], a little later, so a healthy wrapper always
//! decides first).

use std::time::{Duration, SystemTime};

use crate::model::{LivenessMode, Settings};

/// What the wrapper observed about the job at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// When the observation was made.
    pub at: SystemTime,
    /// Size of the job's log.
    pub log_len: u64,
    /// Last modification of the job's log: the time of its last output.
    pub log_mtime: Option<SystemTime>,
    /// CPU ticks used by the job's process tree, including reaped children.
    pub cpu_ticks: Option<u64>,
}

/// Turns successive observations into evidence of progress, per the mode.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    mode: LivenessMode,
    last_log_len: u64,
    max_cpu_ticks: u64,
}

impl ProgressTracker {
    /// Starts tracking from a first observation (taken at job start).
    pub fn new(mode: LivenessMode, first: &Observation) -> Self {
        Self {
            mode,
            last_log_len: first.log_len,
            max_cpu_ticks: first.cpu_ticks.unwrap_or(0),
        }
    }

    /// The time of the latest progress seen in `obs` since the previous
    /// observation, or `None` when there was none.
    ///
    /// Output progress is dated by the log's mtime (exact); CPU progress by
    /// the observation time (it has no timestamp of its own). CPU counts only
    /// when the total exceeds the highest total seen: a descendant's ticks
    /// briefly vanish between its exit and its reaping, and their return
    /// must not look like work.
    pub fn progress_since_last(&mut self, obs: &Observation) -> Option<SystemTime> {
        let mut latest: Option<SystemTime> = None;
        if self.mode == LivenessMode::Timer {
            latest = Some(obs.at);
        }
        if obs.log_len != self.last_log_len {
            self.last_log_len = obs.log_len;
            if self.mode.counts_output() {
                latest = latest.max(Some(obs.log_mtime.unwrap_or(obs.at)));
            }
        }
        if let Some(cpu) = obs.cpu_ticks
            && cpu > self.max_cpu_ticks
        {
            self.max_cpu_ticks = cpu;
            if self.mode.counts_cpu() {
                latest = latest.max(Some(obs.at));
            }
        }
        latest
    }
}

/// The wrapper's judgement of its job at `now`, from its last progress mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapperVerdict {
    /// Not stale yet: without further progress it becomes stale at `stale_at`
    /// (the wrapper sleeps no longer than that).
    Fresh {
        /// When the job becomes stale without further progress.
        stale_at: SystemTime,
    },
    /// No progress for the whole stale threshold.
    Stale,
}

/// The wrapper's hang rule (protocol §7): a job is stale once
/// `now ≥ last_beat + stale`, and only then. `last_beat` is the progress
/// mark (the heartbeat's mtime, explicit beats included; the job's start
/// when the mark is missing).
///
/// This verdict alone never kills: the wrapper calls it hung only when it
/// still holds after a fresh sample, and after a full one (see
/// `supervise::machine`), so progress up to that moment still counts. A
/// mark too far in the future for the clock never goes stale.
pub fn wrapper_verdict(last_beat: SystemTime, stale: Duration, now: SystemTime) -> WrapperVerdict {
    match last_beat.checked_add(stale) {
        Some(stale_at) if now >= stale_at => WrapperVerdict::Stale,
        Some(stale_at) => WrapperVerdict::Fresh { stale_at },
        // Only a mark near the end of time overflows: no clock reaches it.
        None => WrapperVerdict::Fresh {
            stale_at: last_beat,
        },
    }
}

/// How long after the last progress an outside observer (a waiter, or
/// `status`) may call the job hung.
///
/// The wrapper samples CPU once per heartbeat interval and dates CPU
/// progress by that sample, so the heartbeat can lag true progress by up to
/// one interval in the modes that use CPU (or that beat on a timer). Without
/// an explicit threshold the observer is only a backstop for a wrapper that
/// stopped enforcing (stopped, or stuck): it waits one more interval and a
/// second beyond the job's own threshold so that a healthy wrapper always
/// decides first.
pub fn observer_threshold(settings: &Settings, explicit: Option<Duration>) -> Duration {
    let lag = if settings.liveness.counts_cpu() || settings.liveness == LivenessMode::Timer {
        settings.heartbeat()
    } else {
        Duration::ZERO
    };
    match explicit {
        Some(stale) => stale + lag,
        None => settings.stale() + settings.heartbeat() + Duration::from_secs(1),
    }
}

/// The last progress an outside observer can see: the heartbeat, or the
/// log when output counts.
pub fn visible_progress(
    mode: LivenessMode,
    heartbeat_mtime: Option<SystemTime>,
    log_mtime: Option<SystemTime>,
) -> Option<SystemTime> {
    let log = if mode.counts_output() {
        log_mtime
    } else {
        None
    };
    heartbeat_mtime.max(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn obs(at: u64, log_len: u64, log_mtime: u64, cpu: u64) -> Observation {
        Observation {
            at: t(at),
            log_len,
            log_mtime: Some(t(log_mtime)),
            cpu_ticks: Some(cpu),
        }
    }

    #[test]
    fn output_progress_is_dated_by_the_log_not_by_the_sample() {
        let mut tr = ProgressTracker::new(LivenessMode::Output, &obs(0, 0, 0, 0));
        assert_eq!(tr.progress_since_last(&obs(10, 5, 3, 0)), Some(t(3)));
        assert_eq!(
            tr.progress_since_last(&obs(20, 5, 3, 99)),
            None,
            "cpu ignored"
        );
    }

    #[test]
    fn a_deadlock_shows_no_progress_in_auto_mode() {
        let mut tr = ProgressTracker::new(LivenessMode::Auto, &obs(0, 7, 0, 40));
        for at in [10, 20, 30] {
            assert_eq!(tr.progress_since_last(&obs(at, 7, 0, 40)), None);
        }
    }

    #[test]
    fn cpu_counts_only_above_the_highest_total_seen() {
        let mut tr = ProgressTracker::new(LivenessMode::Cpu, &obs(0, 0, 0, 100));
        assert_eq!(
            tr.progress_since_last(&obs(10, 0, 0, 90)),
            None,
            "zombie dip"
        );
        assert_eq!(
            tr.progress_since_last(&obs(20, 0, 0, 100)),
            None,
            "reaped back"
        );
        assert_eq!(tr.progress_since_last(&obs(30, 0, 0, 101)), Some(t(30)));
    }

    #[test]
    fn beat_mode_ignores_output_and_cpu_and_timer_always_beats() {
        let mut beat = ProgressTracker::new(LivenessMode::Beat, &obs(0, 0, 0, 0));
        assert_eq!(beat.progress_since_last(&obs(10, 9, 9, 9)), None);
        let mut timer = ProgressTracker::new(LivenessMode::Timer, &obs(0, 0, 0, 0));
        assert_eq!(timer.progress_since_last(&obs(10, 0, 0, 0)), Some(t(10)));
    }

    #[test]
    fn the_wrapper_calls_a_job_stale_exactly_at_last_beat_plus_stale() {
        let stale = Duration::from_secs(60);
        assert_eq!(
            wrapper_verdict(t(0), stale, t(59)),
            WrapperVerdict::Fresh { stale_at: t(60) }
        );
        assert_eq!(
            wrapper_verdict(t(0), stale, t(60) - Duration::from_millis(1)),
            WrapperVerdict::Fresh { stale_at: t(60) }
        );
        assert_eq!(wrapper_verdict(t(0), stale, t(60)), WrapperVerdict::Stale);
        assert_eq!(wrapper_verdict(t(0), stale, t(3600)), WrapperVerdict::Stale);
    }

    #[test]
    fn a_beat_newer_than_now_keeps_the_job_fresh_for_the_whole_threshold() {
        // An explicit beat from a clock slightly ahead, or a `touch -d`.
        assert_eq!(
            wrapper_verdict(t(100), Duration::from_secs(10), t(50)),
            WrapperVerdict::Fresh { stale_at: t(110) }
        );
    }

    #[test]
    fn a_mark_too_far_in_the_future_for_the_clock_is_never_stale() {
        // tmpfs keeps `touch -d @9223372036854775807`.
        let end_of_time = UNIX_EPOCH + Duration::from_secs(i64::MAX as u64);
        assert_eq!(
            wrapper_verdict(end_of_time, Duration::from_secs(60), t(0)),
            WrapperVerdict::Fresh {
                stale_at: end_of_time
            }
        );
    }

    #[test]
    fn observers_give_the_wrapper_room_to_decide_first() {
        let s = Settings {
            heartbeat_ms: 10_000,
            stale_ms: 60_000,
            timeout_ms: None,
            grace_ms: 5_000,
            liveness: LivenessMode::Output,
            retries: 0,
            backoff_ms: 0,
            backoff_max_ms: 0,
        };
        assert_eq!(observer_threshold(&s, None), Duration::from_secs(71));
        assert_eq!(
            observer_threshold(&s, Some(Duration::from_secs(5))),
            Duration::from_secs(5),
            "output progress is exact, so no lag"
        );
        let auto = Settings {
            liveness: LivenessMode::Auto,
            ..s
        };
        assert_eq!(
            observer_threshold(&auto, Some(Duration::from_secs(5))),
            Duration::from_secs(15)
        );
    }
}
