//! Value parsers shared by the commands: durations and job names, with
//! errors that say what was wrong and what would be right.

use std::time::Duration;

use crate::breaker::BreakerKey;
use crate::protocol::JobName;

/// A duration like `500ms`, `10s`, `5m`, `1h 30m`; zero allowed.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 500ms, 10s, 5m)"))
}

/// A duration that must be longer than zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("invalid duration {s:?}: must be longer than zero")),
        d => Ok(d),
    }
}

/// A job name.
pub fn job_name(s: &str) -> Result<JobName, String> {
    JobName::parse(s).map_err(|e| e.to_string())
}

/// A circuit-breaker key (same syntax as a job name).
pub fn breaker_key(s: &str) -> Result<BreakerKey, String> {
    BreakerKey::parse(s)
}

/// A duration as whole milliseconds, for the record.
pub fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_known_unit() {
        assert_eq!(duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("1m 30s").unwrap(), Duration::from_secs(90));
        for bad in ["10x", "", "ten seconds", "-1s", "10"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(positive_duration("0s").is_err());
    }
}
