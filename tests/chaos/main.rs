//! Chaos and bad-input suite: crashes of the wrapper and the waiter, many
//! concurrent jobs, readers racing writers, PID reuse, escaping processes,
//! read-only and full storage, and random bytes in every file jobwatch
//! parses. Every test owns a temp jobs directory and kills what it starts
//! (the integration suite's helpers, shared through `#[path]`).

#[path = "../integration/support.rs"]
mod support;

mod crash;
mod gate;
mod many;
mod outcomes;
mod parsers;
mod processes;
mod storage;
