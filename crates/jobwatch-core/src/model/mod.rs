//! The store-agnostic domain types: job names, run records, outcomes,
//! settings, kill requests, times and job events. Every store keeps these;
//! none of them knows where they are kept.

pub mod event;
pub mod name;
pub mod record;

pub use event::{EventKind, JobEvent, MAX_EVENT_LINE};
pub use name::{JobName, MAX_NAME_LEN, NameError};
pub use record::{
    Attempt, Finalizer, JobEnd, JobRecord, KillRequest, LivenessMode, Outcome, RECORD_VERSION,
    Settings, StatusWord, archive_label, rfc3339, unix_ms,
};
