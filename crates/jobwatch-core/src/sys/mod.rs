//! The only home of operating-system specifics: `/proc`, signals, process
//! groups and reaping, and writing to the caller's stdout and stderr.
//! Callers above this module never touch raw PIDs without a start time,
//! nor write `unsafe`.

pub mod child;
pub mod cpu;
pub mod exec;
pub mod proc;
pub mod signal;
pub mod stdio;

pub use proc::{ProcInfo, ProcessId, Snapshot};
