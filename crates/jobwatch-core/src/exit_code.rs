//! The documented exit codes of `jobwatch`, one per outcome, so a loop can
//! branch on `$?` without parsing output.

use crate::model::Outcome;

/// The job succeeded.
pub const SUCCESS: u8 = 0;
/// The job failed (non-zero exit or a signal).
pub const FAILED: u8 = 1;
/// Usage error or bad input: nothing was waited for or started.
pub const USAGE: u8 = 2;
/// The job hung (no progress past the stale threshold) and was killed.
pub const HUNG: u8 = 3;
/// The job's wrapper vanished without a status.
pub const LOST: u8 = 4;
/// The job was killed by a user or a signal.
pub const KILLED: u8 = 5;
/// A circuit breaker is open: `run --breaker KEY` refused to start, or
/// `breaker status KEY` found it open.
pub const BREAKER_OPEN: u8 = 6;
/// A preflight check failed: `preflight` found a failing check, or
/// `run --preflight` refused to start.
pub const PREFLIGHT_FAILED: u8 = 7;
/// The job ran past a time limit (and was killed unless `--no-kill`).
pub const TIMEOUT: u8 = 124;

/// The exit code `wait` uses for an outcome.
pub fn for_outcome(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Success => SUCCESS,
        Outcome::Failed => FAILED,
        Outcome::Hung => HUNG,
        Outcome::Lost => LOST,
        Outcome::Killed => KILLED,
        Outcome::Timeout => TIMEOUT,
    }
}

/// The exit code of a foreground `run`: the command's own exit code, or
/// 128 + N when signal N ended it; jobwatch's own verdicts (timeout, hung)
/// use the codes above, so a kill is never mistaken for the command's status.
pub fn for_run(outcome: Outcome, exit_code: Option<i32>, signal: Option<i32>) -> u8 {
    match outcome {
        Outcome::Success => SUCCESS,
        Outcome::Timeout => TIMEOUT,
        Outcome::Hung => HUNG,
        Outcome::Lost => LOST,
        Outcome::Failed | Outcome::Killed => match (exit_code, signal) {
            (Some(code), _) if code != 0 => (code & 0xff) as u8,
            (_, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
            _ => for_outcome(outcome),
        },
    }
}

/// The table shown in `--help` and the README.
pub const TABLE: &str = "Exit codes: 0 success, 1 failed, 2 usage or bad input, 3 hung, 4 lost, 5 killed, \
6 breaker open, 7 preflight failed, 124 timeout.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_is_never_exit_zero() {
        for o in [
            Outcome::Failed,
            Outcome::Timeout,
            Outcome::Hung,
            Outcome::Lost,
            Outcome::Killed,
        ] {
            assert_ne!(for_outcome(o), 0);
            assert_ne!(for_run(o, Some(0), None), 0, "{o}");
            assert_ne!(for_run(o, None, None), 0, "{o}");
        }
        assert_eq!(for_run(Outcome::Failed, Some(7), None), 7);
        assert_eq!(for_run(Outcome::Killed, None, Some(2)), 130);
    }
}
