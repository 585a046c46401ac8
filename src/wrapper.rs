//! `jobwatch __wrapper`: this executable as a detached job's wrapper. Its
//! argv carries nothing of the job: its starter hands it the run spec and
//! the store on stdin, once, and reads its one-line reply on stdout (see
//! `jobwatch_core::ops::start`). Not a command for people: it has no flags
//! and no help.
//!
//! Also here: [`open`], which opens any store a [`StoreSpec`] names. The
//! binary links every store (the etcd one with the feature `etcd`), so the
//! CLI opens its `--store` with it too: a command and the wrappers it
//! starts open their store the same way.

use jobwatch_core::ops::start::serve_wrapper;
use jobwatch_core::spec::StoreSpec;
use jobwatch_core::store::Store;

/// Runs the wrapper; returns its exit code.
pub fn main() -> u8 {
    let stdin = std::io::stdin();
    serve_wrapper(&mut stdin.lock(), &open)
}

/// Opens the store the spec names, or says in one line why not (an etcd
/// cluster that cannot be reached names its endpoints, within the connect
/// bound).
pub fn open(spec: &StoreSpec) -> Result<Box<dyn Store>, String> {
    match spec {
        StoreSpec::File { .. } => spec.open(),
        StoreSpec::Etcd(etcd) => open_etcd(etcd),
    }
}

#[cfg(feature = "etcd")]
fn open_etcd(spec: &jobwatch_core::spec::EtcdSpec) -> Result<Box<dyn Store>, String> {
    jobwatch_etcd::EtcdStore::open_spec(spec)
        .map(|s| Box::new(s) as Box<dyn Store>)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "etcd"))]
fn open_etcd(spec: &jobwatch_core::spec::EtcdSpec) -> Result<Box<dyn Store>, String> {
    Err(format!(
        "--store {}: this jobwatch was built without etcd support; build it with `cargo build --release --features etcd` (needs protoc: apt-get install -y protobuf-compiler)",
        spec.url
    ))
}
