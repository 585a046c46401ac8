//! The documented exit codes of `jobwatch`, and the one place that maps
//! to them: every outcome ([`for_outcome`], [`for_run`]), every answer that
//! carries a verdict ([`for_wait`], [`for_listing`], [`for_breaker`],
//! [`for_preflight`]) and every error of every operation ([`Coded`]), so a
//! loop can branch on `$?` without parsing output, and no front end picks a
//! code of its own.
//!
//! | error | code |
//! |---|---|
//! | a spec that breaks a rule, a bad cwd, a preflight config that cannot be read | 2 |
//! | a preflight check failed (`run --preflight`) | 7 |
//! | the breaker refused the start | 6 |
//! | the command was not found / cannot be executed | 127 / 126 |
//! | a detached wrapper died after spawning the command (the run is lost) | 4 |
//! | any other start failure (already running, busy, previous run, store, I/O) | 2 |
//! | wait, follow, logs, kill, beat, status, gc, breaker, store errors | 2 |

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
/// The command could not be executed (as a shell says).
pub const NOT_EXECUTABLE: u8 = 126;
/// The command was not found (as a shell says).
pub const NOT_FOUND: u8 = 127;
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

/// The exit code of a wait: a match is 0; with `All`, the first
/// non-success in the order asked (else 0); with `Any`, the first finished
/// job's.
pub fn for_wait(answer: &crate::ops::wait::WaitAnswer) -> u8 {
    use crate::ops::wait::WaitAnswer;
    use crate::wait::WaitMode;
    match answer {
        WaitAnswer::Matched(_) => SUCCESS,
        WaitAnswer::Reports { reports, mode } => {
            let code = |r: &crate::report::JobReport| for_outcome(r.outcome);
            match mode {
                WaitMode::All => reports
                    .iter()
                    .find(|r| r.outcome != Outcome::Success)
                    .map_or(SUCCESS, code),
                WaitMode::Any => reports.first().map_or(SUCCESS, code),
            }
        }
    }
}

/// `status`: 2 when a named job does not exist or a job's state is
/// invalid, else 0.
pub fn for_listing(listing: &crate::ops::status::Listing) -> u8 {
    if listing.missing().next().is_some() || listing.rows().any(|r| r.is_invalid()) {
        USAGE
    } else {
        SUCCESS
    }
}

/// `breaker status KEY` and `breaker record`: 6 while the breaker refuses
/// runs.
pub fn for_breaker(view: &crate::breaker::BreakerView) -> u8 {
    if view.admits { SUCCESS } else { BREAKER_OPEN }
}

/// `preflight`: 7 when a check failed.
pub fn for_preflight(report: &crate::preflight::PreflightReport) -> u8 {
    if report.passed {
        SUCCESS
    } else {
        PREFLIGHT_FAILED
    }
}

/// The exit code of a detached wrapper's refusal of this kind.
pub fn for_failure(kind: crate::ops::start::FailureKind) -> u8 {
    use crate::ops::start::FailureKind as K;
    match kind {
        K::BreakerOpen => BREAKER_OPEN,
        K::NotFound => NOT_FOUND,
        K::NotExecutable => NOT_EXECUTABLE,
        K::Handover
        | K::Store
        | K::AlreadyRunning
        | K::Busy
        | K::Previous
        | K::Breaker
        | K::Io
        | K::Other => USAGE,
    }
}

/// An error that stands for an exit code: every operation's error type,
/// each mapped here and nowhere else.
pub trait Coded: std::error::Error {
    /// The exit code a process that fails with this error gives.
    fn exit_code(&self) -> u8;
}

/// The exit code of `e`.
pub fn of(e: &dyn Coded) -> u8 {
    e.exit_code()
}

impl Coded for crate::ops::start::StartError {
    fn exit_code(&self) -> u8 {
        use crate::ops::start::StartError as E;
        match self {
            E::PreflightFailed { .. } => PREFLIGHT_FAILED,
            E::Supervise(e) => e.exit_code(),
            E::Refused(failure) => failure.exit_code(),
            E::Lost { .. } => LOST,
            E::Spec(_)
            | E::Cwd(_)
            | E::PreflightConfig(_)
            | E::Finish(_)
            | E::NotStarted { .. }
            | E::Wrapper { .. }
            | E::NotDetachable { .. } => USAGE,
        }
    }
}

impl Coded for crate::ops::start::WrapperFailure {
    fn exit_code(&self) -> u8 {
        match self.kind {
            // A kind this build does not know: the wrapper's word for it.
            crate::ops::start::FailureKind::Other => self.exit_code,
            kind => for_failure(kind),
        }
    }
}

impl Coded for crate::supervise::StartError {
    fn exit_code(&self) -> u8 {
        for_failure(crate::ops::start::FailureKind::of(self))
    }
}

/// Every other operation's error is bad input or a state that cannot be
/// used: nothing was waited for, started or changed as asked.
macro_rules! usage_errors {
    ($($t:ty),* $(,)?) => {
        $(impl Coded for $t {
            fn exit_code(&self) -> u8 {
                USAGE
            }
        })*
    };
}

usage_errors!(
    crate::spec::SpecError,
    crate::wait::WaitError,
    crate::wait::FollowError,
    crate::ops::logs::LogsError,
    crate::ops::beat::BeatError,
    crate::ops::status::StatusError,
    crate::recover::RecoverError,
    crate::gc::GcError,
    crate::breaker::BreakerError,
    crate::preflight::PreflightError,
    crate::store::StoreError,
    crate::store::file::DirError,
    crate::batch::plan::PlanError,
    crate::batch::run::BatchError,
    crate::batch::worktree::WorktreeError,
    crate::events::EventsError,
);

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

    #[test]
    fn start_errors_keep_the_codes_a_loop_branches_on() {
        use crate::ops::start::{FailureKind, StartError};
        let not_found = crate::supervise::StartError::Spawn {
            command: "nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(of(&not_found), NOT_FOUND);
        let denied = crate::supervise::StartError::Spawn {
            command: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(of(&StartError::Supervise(denied)), NOT_EXECUTABLE);
        assert_eq!(for_failure(FailureKind::BreakerOpen), BREAKER_OPEN);
        assert_eq!(for_failure(FailureKind::AlreadyRunning), USAGE);
        assert_eq!(
            of(&StartError::Lost {
                message: String::new()
            }),
            LOST
        );
        assert_eq!(
            of(&StartError::Spec(crate::spec::SpecError::EmptyCommand)),
            USAGE
        );
    }
}
