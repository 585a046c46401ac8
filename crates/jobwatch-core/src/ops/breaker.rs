//! `breaker status|list|reset|record`: the persisted circuit breakers that
//! stop a loop when failures repeat. Whether a view refuses runs (exit 6)
//! is [`crate::exit_code::for_breaker`]'s to say.

use crate::breaker::{self, BreakerError, BreakerKey, BreakerView, Event, PolicyUpdate};
use crate::store::Store;

/// One breaker (a key never recorded reads as closed).
pub fn status(store: &dyn Store, key: &BreakerKey) -> Result<BreakerView, BreakerError> {
    breaker::status(store, key)
}

/// Every breaker, by key; a damaged one is an error in its place, so one
/// bad document hides no other.
pub fn list(store: &dyn Store) -> Result<Vec<Result<BreakerView, BreakerError>>, BreakerError> {
    breaker::list(store)
}

/// Closes a breaker and forgets its failures (repairing a damaged one).
pub fn reset(store: &dyn Store, key: &BreakerKey) -> Result<BreakerView, BreakerError> {
    breaker::reset(store, key)
}

/// Counts a success or failure of work a script ran itself, with the
/// policy it gives (stored).
pub fn record(
    store: &dyn Store,
    key: &BreakerKey,
    event: Event,
    policy: PolicyUpdate,
) -> Result<BreakerView, BreakerError> {
    breaker::record_event(store, key, event, None, None, policy)
}
