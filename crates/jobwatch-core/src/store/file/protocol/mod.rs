//! The file protocol (v1): how a job is laid out on disk, written atomically
//! and read tolerantly. `docs/protocol.md` is its normative description;
//! this module is the only code that knows file names and formats.

pub mod atomic;
pub mod dir;
pub mod heartbeat;
pub mod history;
pub mod lock;
pub mod open;
pub mod paths;
pub mod record;
pub mod status_file;

pub use dir::JobsDir;
pub use paths::{FileKind, JobPaths};
