//! Who may start: the job's circuit breaker and its name.
//!
//! A run first reads its breaker without any lock and stops at once if it
//! would be refused, so a refused run creates nothing, not even the file
//! store's `NAME.lock` (protocol §15). It then claims the name, and is
//! admitted for good under the claim (the breaker's own read-modify-write),
//! before the previous run is retired.

use std::time::Duration;

use super::{RunSpec, StartError};
use crate::breaker::{self, Admission, BreakerView, RunRef};
use crate::model::JobName;
use crate::store::{Claim, ClaimError, ClaimWait, Store};

/// How long `run` waits for a lock holder that is not a live wrapper.
const BRIEF_HOLDER_WAIT: Duration = Duration::from_secs(2);

/// Turns the job away, before any of its files is touched, when its
/// breaker (if any) would refuse it.
pub(super) fn refuse_if_breaker_open(store: &dyn Store, spec: &RunSpec) -> Result<(), StartError> {
    let Some(b) = &spec.breaker else {
        return Ok(());
    };
    match breaker::refusal(store, &b.key, b.policy)? {
        Some(view) => Err(StartError::BreakerOpen(Box::new(view))),
        None => Ok(()),
    }
}

/// Claims the name. A live wrapper holds it for its job's whole life: that
/// is "already running". Anyone else (`gc`, or a waiter finishing a lost
/// run) holds it briefly, so a run waits a moment for them.
pub(super) fn claim<'s>(
    store: &'s dyn Store,
    name: &JobName,
) -> Result<Box<dyn Claim + 's>, StartError> {
    store
        .claim(name, ClaimWait::Briefly(BRIEF_HOLDER_WAIT))
        .map_err(|e| match e {
            ClaimError::AlreadyRunning { name, pid } => StartError::AlreadyRunning {
                name: name.to_string(),
                pid,
            },
            ClaimError::Held { name } => StartError::Busy {
                name: name.to_string(),
            },
            ClaimError::Store(e) => StartError::Store(e),
        })
}

/// Asks the job's breaker (if any) whether it may start, under the name's
/// claim; an open breaker refuses before any of the job's files change.
pub(super) fn admit_through_breaker(
    store: &dyn Store,
    spec: &RunSpec,
    job_id: &str,
) -> Result<(), StartError> {
    let Some(b) = &spec.breaker else {
        return Ok(());
    };
    let run = RunRef {
        job: spec.name.to_string(),
        job_id: job_id.to_owned(),
    };
    match breaker::admit(store, &b.key, &run, b.policy)? {
        Admission::Admitted | Admission::Trial => Ok(()),
        Admission::Refused(view) => Err(StartError::BreakerOpen(view)),
    }
}

/// One line that says why a breaker refused, and what would let it admit.
pub(super) fn breaker_refusal(view: &BreakerView) -> String {
    let last = view
        .last
        .as_ref()
        .and_then(|l| {
            let job = l.job.as_deref()?;
            let outcome = l.outcome?;
            Some(format!("; last: {job} {outcome}"))
        })
        .unwrap_or_default();
    let when = match (view.trial_in_ms, &view.trial_job) {
        (_, Some(job)) if view.state == crate::breaker::ViewState::HalfOpen => {
            format!("its trial run {job} is still running")
        }
        (Some(ms), _) => format!(
            "a trial run is allowed in {}",
            humantime::format_duration(Duration::from_secs(ms.div_ceil(1000)))
        ),
        (None, _) => "no cooldown is set".to_owned(),
    };
    format!(
        "breaker {} is open after {} consecutive failure(s){last}; {when}; `jobwatch breaker reset {}` closes it",
        view.key, view.consecutive_failures, view.key
    )
}
