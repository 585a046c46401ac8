//! `jobwatch-wrapper`: the detached job's wrapper as a binary of its own,
//! installed beside `jobwatch` (which starts it; see
//! `jobwatch_core::ops::start::Wrapper::beside_this_executable`).
//!
//! It links jobwatch-core's supervising code and nothing of the front ends
//! (no clap, MCP server, async runtime, TLS or terminal UI): a wrapper lives
//! as long as its job, and what it maps is paid once per running job. It
//! takes no arguments: its starter hands it the run spec and the store on
//! stdin, once, and reads its one-line reply on stdout, exactly as with
//! `jobwatch __wrapper`.

use std::io::IsTerminal;
use std::process::ExitCode;

use jobwatch_core::exit_code::USAGE;
use jobwatch_core::ops::start::{Wrapper, serve_wrapper};
use jobwatch_core::sys::stdio::warn;

fn main() -> ExitCode {
    if let Some(why) = misuse(std::env::args_os().len(), std::io::stdin().is_terminal()) {
        warn(why);
        return ExitCode::from(USAGE);
    }
    // The run this wrapper ends may let queued jobs start: it starts them
    // as their own wrappers, with this same binary.
    if let Ok(wrapper) = Wrapper::beside_this_executable() {
        jobwatch_core::ops::queue::install(wrapper);
    }
    let stdin = std::io::stdin();
    ExitCode::from(serve_wrapper(&mut stdin.lock(), &open))
}

/// Why this invocation is not a starter's (a person typed it), if it is
/// not: it would wait for a run spec that never comes.
fn misuse(args: usize, stdin_is_terminal: bool) -> Option<&'static str> {
    (args > 1 || stdin_is_terminal).then_some(
        "jobwatch-wrapper is started by `jobwatch run --detach` with a run spec on stdin; \
         it takes no arguments (run jobs with `jobwatch run NAME --detach -- CMD`)",
    )
}

// The same opener as `jobwatch`'s (the etcd store with the feature `etcd`),
// compiled into this binary without the rest of the front ends' library.
#[path = "../store_open.rs"]
mod store_open;
use store_open::open;
