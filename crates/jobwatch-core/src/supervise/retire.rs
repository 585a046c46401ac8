//! Retiring the previous run of a name, under the new run's claim
//! (protocol §6.2 step 2): nothing of it is lost or left running.

use std::time::{Duration, SystemTime};

use super::StartError;
use crate::classify::{JobState, classify};
use crate::model::{JobRecord, archive_label};
use crate::recover::finish_lost;
use crate::store::{Claim, Holder, Store};

/// Moves the previous run into history. A run left without a status (its
/// wrapper died: we hold the claim) is first finished: from its record when
/// that holds the outcome, else as `lost` with its remaining processes
/// killed, so nothing of it is lost or left running.
pub(super) fn retire_previous(
    store: &dyn Store,
    claim: &mut dyn Claim,
    grace: Duration,
) -> Result<(), StartError> {
    let name = claim.name().clone();
    let previous = |reason: String| StartError::Previous {
        name: name.to_string(),
        reason,
    };
    let state = classify(claim.snapshot(), store.now(), None);
    // The claim proves nothing about a wrapper on another host (a shared
    // directory): never take over a run that may still be alive there.
    if let Some(r) = state.record()
        && r.outcome.is_none()
        && store.holder(r) == Holder::Elsewhere
    {
        return Err(previous(format!(
            "its last run has no status and runs (or ran) on host {}; finish it there, or `jobwatch kill {}` there",
            r.host, name
        )));
    }
    let label_time = match &state {
        JobState::Missing => return Ok(()),
        JobState::Lost { record }
        | JobState::Recorded { record }
        | JobState::Running { record, .. }
        | JobState::Hung { record, .. } => {
            // Under our claim a "running" record can only be a dead wrapper
            // whose PID check raced; finish it the same way. A record that
            // holds an outcome gets its status from it: it is not lost.
            let why = "the wrapper vanished without a status; found when the name was reused";
            finish_lost(store, claim, (**record).clone(), grace, why)
                .map_err(|e| previous(e.to_string()))?
                .started()
        }
        other => other
            .record()
            .map(JobRecord::started)
            .unwrap_or_else(SystemTime::now),
    };
    claim
        .archive_current(&archive_label(label_time))
        .map_err(|e| previous(e.to_string()))?;
    Ok(())
}
