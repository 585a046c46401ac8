//! A resilient, synchronous access layer over etcd for jobwatch's
//! multi-host store.
//!
//! `etcd-client` (tonic, async) does no failover, retry, keepalive re-open
//! or watch resumption; this crate does, behind a blocking API that a
//! synchronous program (a CLI, a wrapper with a poll(2) loop) can call:
//!
//! - [`EtcdConfig`]: `etcd://HOST:PORT[,HOST:PORT…][/NAMESPACE]` (or
//!   `etcds://` for TLS), TLS files and credentials from values or the
//!   `JOBWATCH_ETCD_*` environment.
//! - [`EtcdClient`]: get / prefix range at a revision, put, delete,
//!   create-if-absent, compare-and-swap on a revision, multi-op
//!   transactions, lease grant / revoke — each call bounded, retried across
//!   members, and safe to retry (see [`client`]).
//! - [`LeaseKeeper`]: keeps a lease alive every TTL/3 and tells when it
//!   last succeeded, so the owner can fence itself.
//! - [`Watch`]: a key or prefix from a revision, resumed after any failure
//!   without gaps or repeats, compaction reported as "re-read needed",
//!   delivered through a channel plus an eventfd for poll(2).
//!
//! Keys and values are bytes; every key is relative to the namespace's
//! prefix `jobwatch/NAMESPACE/`, which the layer adds and strips.
//!
//! The layer runs a private tokio runtime on one background thread; none of
//! its methods may be called from inside an async runtime.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod kv;
pub mod lease;
mod runtime;
pub mod store;
pub mod watch;

/// A real 3-member etcd cluster for tests (tests/support/cluster.rs), for
/// test crates outside this package (the root's multi-host tests).
#[cfg(feature = "test-cluster")]
#[doc(hidden)]
#[path = "../tests/support/cluster.rs"]
pub mod test_cluster;

pub use client::EtcdClient;
pub use config::{ConfigError, Credentials, EtcdConfig, TlsFiles};
pub use error::{Error, Result};
pub use kv::{
    CasOutcome, Compare, CreateOutcome, Get, KeyValue, LeaseId, Op, OpResult, Range, TxnOutcome,
};
pub use lease::LeaseKeeper;
pub use store::{EtcdStore, StoreOptions};
pub use watch::{Watch, WatchEvent, WatchMessage, WatchScope};
