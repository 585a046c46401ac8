//! Opening the store a [`StoreSpec`] names: the file store of the core, or
//! the etcd store with the feature `etcd`. One opener for every entry: the
//! CLI opens its `--store` with it, and both wrapper entries (`jobwatch
//! __wrapper` and the lean `jobwatch-wrapper`, which includes this file as
//! its own module) open a handed-over store with it, so a command and the
//! wrappers it starts open their store the same way.

use jobwatch_core::spec::StoreSpec;
use jobwatch_core::store::Store;

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
