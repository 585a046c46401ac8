//! Values both front ends parse the same way: durations, with errors that
//! say what was wrong and what would be right.

use std::time::Duration;

/// The longest duration any flag or MCP argument accepts: 100 years (of
/// 365.25 days, as `100y` reads). Far inside every representation jobwatch
/// puts a duration in (milliseconds in a u64 in the record, seconds in an
/// i64 in the clocks, a four-digit year in a timestamp), so no deadline or
/// sum of durations can overflow; a longer one is refused rather than cut
/// to something short.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// A duration like `500ms`, `10s`, `5m`, `1h 30m`; zero allowed, at most
/// [`MAX_DURATION`].
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 500ms, 10s, 5m)"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "invalid duration {s:?}: too long (at most 100 years)"
        ));
    }
    Ok(d)
}

/// A duration that must be longer than zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("invalid duration {s:?}: must be longer than zero")),
        d => Ok(d),
    }
}

/// A duration as whole milliseconds, for the record. Durations from
/// [`duration`] always fit; anything longer saturates rather than wraps.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

    #[test]
    fn durations_stop_at_100_years() {
        assert_eq!(duration("100y").unwrap(), MAX_DURATION);
        for long in ["100y 1ms", "18446744073709552s", "9223372036854775807s"] {
            let e = duration(long).unwrap_err();
            assert!(e.contains("too long (at most 100 years)"), "{e}");
        }
        assert_eq!(ms(MAX_DURATION), 3_155_760_000_000);
        assert_eq!(ms(Duration::MAX), u64::MAX, "saturates, never wraps");
    }
}
