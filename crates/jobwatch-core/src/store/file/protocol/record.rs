//! Reading `NAME.job.json` and the small JSON files (`NAME.kill`,
//! `breakers/KEY.json`) tolerantly, and writing them atomically. The types
//! are the store-agnostic [`crate::model`].

use std::io;
use std::path::Path;

use super::atomic::{
    ReplacedFiles, WriteError, write_atomic, write_atomic_keeping, write_atomic_unsynced,
};
use super::open::{MAX_JSON_BYTES, MAX_RECORD_BYTES, ReadError, Unusable, read_capped};
pub use crate::model::{
    Attempt, Finalizer, JobEnd, JobRecord, KillRequest, LivenessMode, Outcome, RECORD_VERSION,
    Settings, StatusWord, rfc3339, unix_ms,
};

/// Writes a record atomically to `path`.
pub fn write_record(path: &Path, record: &JobRecord) -> Result<(), WriteError> {
    write_atomic(path, &record_json(record))
}

/// [`write_record`] by the holder of the name's lock, which keeps the
/// replaced record open in `replaced` ([`ReplacedFiles`]).
pub fn write_record_keeping(
    path: &Path,
    record: &JobRecord,
    replaced: &mut ReplacedFiles,
) -> Result<(), WriteError> {
    write_atomic_keeping(path, &record_json(record), replaced)
}

fn record_json(record: &JobRecord) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(record).expect("a record always serializes");
    json.push(b'\n');
    json
}

/// Writes a start's first record atomically to `path`, without making it
/// durable: the start's commit point rewrites it, synced (protocol §6.1).
pub fn write_start_record(
    path: &Path,
    record: &JobRecord,
    replaced: &mut ReplacedFiles,
) -> Result<(), WriteError> {
    write_atomic_unsynced(path, &record_json(record), replaced)
}

/// Writes a kill request atomically to `path`.
pub fn write_kill_request(path: &Path, request: &KillRequest) -> Result<(), WriteError> {
    let json = serde_json::to_vec(request).expect("a kill request always serializes");
    write_atomic(path, &json)
}

/// A record or kill request that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading failed for a reason other than absence.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The file exists but is not a valid record.
    #[error("malformed {path}: {detail}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The entry is not a regular file, or larger than jobwatch reads
    /// (protocol §3): a FIFO, a device, a symlink, a directory.
    #[error("cannot use {path}: {why}; remove it")]
    Unusable {
        /// The entry.
        path: String,
        /// What it is instead.
        why: Unusable,
    },
}

impl From<ReadError> for RecordError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io { path, source } => RecordError::Io {
                path: path.display().to_string(),
                source,
            },
            ReadError::Unusable { path, why } => RecordError::Unusable {
                path: path.display().to_string(),
                why,
            },
        }
    }
}

/// Reads and validates a small JSON file written by jobwatch (a kill
/// request, a breaker; at most [`MAX_JSON_BYTES`]); `Ok(None)` when the
/// file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RecordError> {
    read_json_capped(path, MAX_JSON_BYTES)
}

/// Reads and validates a JSON file of at most `cap` bytes, opened as every
/// job file is (no symlink, no FIFO or device: [`read_capped`]).
fn read_json_capped<T: serde::de::DeserializeOwned>(
    path: &Path,
    cap: u64,
) -> Result<Option<T>, RecordError> {
    let Some(bytes) = read_capped(path, cap)? else {
        return Ok(None);
    };
    let malformed = |detail: String| RecordError::Malformed {
        path: path.display().to_string(),
        detail,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed("the file is empty".into()));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| malformed(e.to_string()))
}

/// Reads `NAME.job.json` (at most [`MAX_RECORD_BYTES`]); `Ok(None)` when
/// it does not exist.
pub fn read_record(path: &Path) -> Result<Option<JobRecord>, RecordError> {
    let record: Option<JobRecord> = read_json_capped(path, MAX_RECORD_BYTES)?;
    match record {
        Some(r) if r.version > RECORD_VERSION => Err(RecordError::Malformed {
            path: path.display().to_string(),
            detail: format!(
                "record version {} is newer than this jobwatch understands ({RECORD_VERSION})",
                r.version
            ),
        }),
        other => Ok(other),
    }
}
