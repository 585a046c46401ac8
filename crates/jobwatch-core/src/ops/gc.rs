//! `gc`: finished runs, surplus history and debris, removed (or listed, on
//! a dry run) by the pure plan of [`crate::gc`].

use crate::gc::{self, GcError, Policy, Report};
use crate::store::Store;

/// Removes what `policy` lets go (nothing, on a `dry_run`), as of the
/// store's now.
pub fn gc(store: &dyn Store, policy: &Policy, dry_run: bool) -> Result<Report, GcError> {
    gc::collect(store, policy, dry_run, store.now())
}
