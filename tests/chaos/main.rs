//! Chaos and bad-input suite: crashes of the wrapper and the waiter, many
//! concurrent jobs, readers racing writers, PID reuse, escaping processes,
//! read-only and full storage, random bytes in every file jobwatch parses,
//! and hostile entries (FIFOs, symlinks, huge files) in the jobs directory.
//! Every test owns a temp jobs directory and kills what it starts (the
//! integration suite's helpers, shared through `#[path]`).

#[path = "../integration/support.rs"]
mod support;

mod crash;
mod gate;
mod hostile;
mod many;
mod outcomes;
mod parsers;
mod processes;
mod storage;
