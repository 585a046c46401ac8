//! The event journal of an etcd store ([`EventLog`]).
//!
//! Not kept yet on etcd: reading it says so in one line (and `jobwatch
//! events --store etcd://…` fails with it) rather than showing an empty
//! journal, which would read as "no job ever ran".

use std::io;

use jobwatch_core::model::JobEvent;
use jobwatch_core::store::{
    Cursor, EventLog, EventRead, EventTrim, Since, StoreError, Watch, WatchFor,
};

use super::EtcdStore;
use super::watch::EtcdWatch;

impl EventLog for EtcdStore {
    fn describe_events(&self) -> String {
        format!("the event journal of {}", self.url)
    }

    fn read_events(&self, _since: &Since) -> Result<EventRead, StoreError> {
        Err(unsupported(self))
    }

    fn watch_events(&self, what: WatchFor) -> Box<dyn Watch> {
        Box::new(EtcdWatch::new(self, &[], what))
    }

    fn append_missing_end(&self, _ended: &JobEvent, _after: &Cursor) -> Result<bool, StoreError> {
        Err(unsupported(self))
    }

    fn trim_events(&self, _dry_run: bool) -> Result<Option<EventTrim>, StoreError> {
        Ok(None)
    }
}

fn unsupported(store: &EtcdStore) -> StoreError {
    StoreError::Io {
        context: store.describe_events(),
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            "this build keeps no event journal on etcd; use the jobs directory for `jobwatch events`",
        ),
    }
}
