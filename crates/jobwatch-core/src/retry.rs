//! Retries: which endings are worth another attempt, and how long to wait
//! before it (exponential backoff with jitter, so that many loops retrying
//! the same flaky dependency do not all come back at the same instant).

use std::time::Duration;

use crate::model::{Outcome, Settings};

/// Whether an attempt that ended this way (by itself or by the wrapper's
/// own limits) is worth another try. `killed` is a decision, not a fault;
/// `lost` never reaches a live wrapper.
pub fn is_retryable(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Failed | Outcome::Hung | Outcome::Timeout)
}

/// The delay before the attempt after attempt `failed` (1-based), before
/// jitter: `backoff * 2^(failed-1)`, capped at `backoff_max`.
pub fn nominal_delay(settings: &Settings, failed: u32) -> Duration {
    let base = settings.backoff_ms;
    let doublings = failed.saturating_sub(1).min(63);
    let ms = base
        .saturating_mul(1u64 << doublings)
        .min(settings.backoff_max_ms.max(base));
    Duration::from_millis(ms)
}

/// The delay with "equal jitter": uniform in `[nominal/2, nominal]`, so it
/// still grows with each failure yet never lines up with another loop's.
/// `random` is any uniformly random number.
pub fn jittered_delay(settings: &Settings, failed: u32, random: u64) -> Duration {
    let nominal = nominal_delay(settings, failed).as_millis() as u64;
    let half = nominal / 2;
    let spread = nominal - half;
    let jitter = if spread == 0 {
        0
    } else {
        random % (spread + 1)
    };
    Duration::from_millis(half + jitter)
}

/// A random number from the kernel (falls back to the clock, which is
/// enough for jitter).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::NONBLOCK) {
        Ok(8) => u64::from_ne_bytes(bytes),
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LivenessMode;

    fn settings(backoff_ms: u64, backoff_max_ms: u64) -> Settings {
        Settings {
            heartbeat_ms: 1_000,
            stale_ms: 10_000,
            timeout_ms: None,
            grace_ms: 100,
            liveness: LivenessMode::Auto,
            retries: 5,
            backoff_ms,
            backoff_max_ms,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = settings(100, 1_000);
        let delays: Vec<u64> = (1..=6)
            .map(|k| nominal_delay(&s, k).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(nominal_delay(&settings(100, 0), 3).as_millis(), 100);
        assert_eq!(
            nominal_delay(&settings(u64::MAX / 2, u64::MAX), 40).as_millis() as u64,
            u64::MAX
        );
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_nominal_delay() {
        let s = settings(1_000, 60_000);
        for k in 1..=4 {
            let nominal = nominal_delay(&s, k);
            for random in [0, 1, 499, 500, u64::MAX, random_u64()] {
                let d = jittered_delay(&s, k, random);
                assert!(d >= nominal / 2 && d <= nominal, "{k} {random} {d:?}");
            }
        }
        assert_eq!(jittered_delay(&settings(0, 0), 1, 7), Duration::ZERO);
    }

    #[test]
    fn only_faults_are_retried() {
        for o in [Outcome::Failed, Outcome::Hung, Outcome::Timeout] {
            assert!(is_retryable(o), "{o}");
        }
        for o in [Outcome::Success, Outcome::Killed, Outcome::Lost] {
            assert!(!is_retryable(o), "{o}");
        }
    }
}
