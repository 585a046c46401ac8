//! `jobwatch __wrapper`: this executable as a detached job's wrapper. Its
//! argv carries nothing of the job: its starter hands it the run spec and
//! the store on stdin, once, and reads its one-line reply on stdout (see
//! `jobwatch_core::ops::start`). Not a command for people: it has no flags
//! and no help.

use jobwatch_core::ops::start::serve_wrapper;
use jobwatch_core::spec::StoreSpec;
use jobwatch_core::store::Store;

/// Runs the wrapper; returns its exit code.
pub fn main() -> u8 {
    let stdin = std::io::stdin();
    serve_wrapper(&mut stdin.lock(), &open)
}

/// Opens the store the spec names. A store of another crate (etcd) is
/// opened here, where that crate is linked.
fn open(spec: &StoreSpec) -> Result<Box<dyn Store>, String> {
    spec.open().map_err(|e| e.to_string())
}
