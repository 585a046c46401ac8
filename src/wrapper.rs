//! `jobwatch __wrapper`: this executable as a detached job's wrapper. Its
//! argv carries nothing of the job: its starter hands it the run spec and
//! the store on stdin, once, and reads its one-line reply on stdout (see
//! `jobwatch_core::ops::start`). Not a command for people: it has no flags
//! and no help.
//!
//! The store is opened with [`open`] (`src/store_open.rs`), the opener the
//! CLI and the lean `jobwatch-wrapper` use too.

use jobwatch_core::ops::start::serve_wrapper;

/// Runs the wrapper; returns its exit code.
pub fn main() -> u8 {
    let stdin = std::io::stdin();
    serve_wrapper(&mut stdin.lock(), &open)
}

pub use crate::store_open::open;
