//! `wait` (until jobs reach an outcome, or until a line of one job's log
//! matches) and `logs --follow` (copy a run's log until it ends): the
//! event-driven waiter of [`crate::wait`], its verdicts turned into the
//! reports both front ends render.

use std::io::Write;

use regex::Regex;

use crate::model::{JobName, Outcome};
use crate::report::{JobReport, MatchReport};
use crate::store::Store;
use crate::wait::{
    self as waiter, FollowError, FollowSpec, LogWait, WaitError, WaitMode, WaitSpec,
};

/// What to wait for.
#[derive(Debug, Clone)]
pub struct WaitRequest {
    /// The jobs, the mode, the waiter's own limits and kills.
    pub spec: WaitSpec,
    /// Log lines in a report on anything but success.
    pub tail: usize,
    /// Return as soon as a line of the (one) job's log matches.
    pub until_log: Option<Regex>,
}

/// How a wait ended.
#[derive(Debug, Clone)]
pub enum WaitAnswer {
    /// A report per job that reached an outcome (with `Any`, only those),
    /// in the order asked; a job the waiter's `--no-kill` limit left
    /// running is reported `running`.
    Reports {
        /// The reports.
        reports: Vec<JobReport>,
        /// All or any.
        mode: WaitMode,
    },
    /// A line of the job's log matched (`until_log`).
    Matched(MatchReport),
}

impl WaitRequest {
    /// The rules of a wait, checked before it begins: `until_log` reads
    /// one job's log.
    pub fn check(&self) -> Result<(), WaitError> {
        match self.spec.names.len() {
            n if self.until_log.is_some() && n != 1 => Err(WaitError::UntilLogNames(n)),
            _ => Ok(()),
        }
    }
}

impl WaitAnswer {
    /// Whether the wait is over (an outcome or a match), rather than cut
    /// short by the waiter's own limit with jobs still running.
    pub fn settled(&self) -> bool {
        match self {
            WaitAnswer::Matched(_) => true,
            WaitAnswer::Reports { reports, mode } => match mode {
                WaitMode::All => reports.iter().all(|r| !r.running),
                WaitMode::Any => reports.iter().any(|r| !r.running),
            },
        }
    }
}

/// Waits per `req`.
pub fn wait(store: &dyn Store, req: &WaitRequest) -> Result<WaitAnswer, WaitError> {
    req.check()?;
    if let Some(pattern) = &req.until_log {
        return Ok(match waiter::wait_until_log(store, &req.spec, pattern)? {
            LogWait::Matched(m) => WaitAnswer::Matched(MatchReport::new(
                store,
                &m.name,
                &m.at,
                &m.line,
                m.running,
                m.record.as_ref(),
            )),
            LogWait::Ended(v) => WaitAnswer::Reports {
                reports: vec![JobReport::of_verdict(store, &v, req.tail)],
                mode: WaitMode::All,
            },
        });
    }
    let verdicts = waiter::wait(store, &req.spec)?;
    Ok(WaitAnswer::Reports {
        reports: verdicts
            .iter()
            .map(|v| JobReport::of_verdict(store, v, req.tail))
            .collect(),
        mode: req.spec.mode,
    })
}

/// Copies the log of `name`'s current run to `out` (from its start, or its
/// last `tail` lines) and goes on until the run ends; returns its outcome.
/// Read-only: a lost run ends it with `lost`, nothing is killed.
pub fn follow(
    store: &dyn Store,
    name: &JobName,
    tail: Option<usize>,
    exits_after: bool,
    out: &mut impl Write,
) -> Result<Outcome, FollowError> {
    let spec = FollowSpec { tail, exits_after };
    Ok(waiter::follow(store, name, &spec, out)?.outcome)
}
