//! The typed values that go in and out of the key-value calls. Keys here
//! are always relative to the namespace: the layer adds and strips the
//! `jobwatch/NAMESPACE/` prefix.

/// A lease id as etcd hands it out.
pub type LeaseId = i64;

/// One key with its value and etcd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, relative to the namespace.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the transaction that created the key (since its last
    /// deletion).
    pub create_revision: i64,
    /// Revision of the last change of the key.
    pub mod_revision: i64,
    /// Number of changes since creation (1 right after creation).
    pub version: i64,
    /// The lease the key is attached to (0: none).
    pub lease: LeaseId,
}

impl KeyValue {
    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// One key read at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// The key, if it exists.
    pub kv: Option<KeyValue>,
    /// The store's revision the read saw (watch from `revision + 1` to miss
    /// nothing after it).
    pub revision: i64,
}

/// All keys under a prefix, read at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The keys in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the whole range was read at.
    pub revision: i64,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key's last change was at this revision (0: the key is absent).
    ModRevision(Vec<u8>, i64),
    /// The key holds exactly this value (false when absent).
    Value(Vec<u8>, Vec<u8>),
    /// The key is attached to this lease (0: none).
    Lease(Vec<u8>, LeaseId),
}

/// An operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write a key, attached to a lease or not.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease to attach to.
        lease: Option<LeaseId>,
    },
    /// Delete one key.
    Delete(Vec<u8>),
    /// Delete every key under a prefix.
    DeletePrefix(Vec<u8>),
    /// Read one key.
    Get(Vec<u8>),
    /// Read every key under a prefix (no pagination: keep such ranges small).
    GetPrefix(Vec<u8>),
}

impl Op {
    /// A put without a lease.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
}

/// What one operation of a committed transaction returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A put was applied.
    Put,
    /// A delete removed this many keys.
    Delete(i64),
    /// A read found these keys.
    Get(Vec<KeyValue>),
}

/// The outcome of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether the compares held (the `then` branch ran) or not (`otherwise`).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// One result per operation of the branch that ran.
    pub results: Vec<OpResult>,
    /// An earlier attempt failed in a way that may have applied it (its
    /// reply was lost). If the transaction's compares are invalidated by its
    /// own success (compare on revision or absence), it cannot have applied
    /// twice, but `succeeded == false` may then mean "an earlier attempt of
    /// mine succeeded": the caller must check.
    pub uncertain: bool,
}

/// The outcome of [`EtcdClient::create`](crate::EtcdClient::create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// This call created the key, at this revision.
    Created {
        /// Revision of the creation.
        revision: i64,
    },
    /// The key already existed; here it is.
    Exists(KeyValue),
}

impl CreateOutcome {
    /// Whether this call created the key.
    pub fn created(&self) -> bool {
        matches!(self, CreateOutcome::Created { .. })
    }
}

/// The outcome of [`EtcdClient::compare_and_swap`](crate::EtcdClient::compare_and_swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The key was still at the expected revision and now holds the new
    /// value, since this revision.
    Swapped {
        /// Revision of the write.
        revision: i64,
    },
    /// The key changed meanwhile; here is its current state (None: deleted).
    Conflict(Option<KeyValue>),
}

impl CasOutcome {
    /// Whether the swap happened.
    pub fn swapped(&self) -> bool {
        matches!(self, CasOutcome::Swapped { .. })
    }
}

/// The end of the key range that holds every key starting with `prefix`
/// (etcd's convention: the prefix with its last byte below 0xff incremented;
/// `\0` for "to the end").
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_range_end(b"jobwatch/a/"), b"jobwatch/a0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
    }
}
