//! `logs`: a job's output, streamed (the CLI: whole, or from its last N
//! lines) or read in bounded pieces (the MCP server: its tail, or a byte
//! range). Every log is opened as every job file is (no symlink followed,
//! no FIFO waited on); a line of any length is never held whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::logs::{tail_bytes_at_most, tail_start};
use crate::model::JobName;
use crate::store::{RunAt, Store};

/// A log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// The job has no log here.
    #[error("no log for job {name} ({})", path.display())]
    NoLog {
        /// The job.
        name: JobName,
        /// Where its log would be.
        path: PathBuf,
    },
    /// The log could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The log.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The current run's log of `name`, if it has one here.
pub fn log_path(store: &dyn Store, name: &JobName) -> Result<PathBuf, LogsError> {
    let path = store.log_path(name, &RunAt::Current);
    if !path.exists() {
        return Err(LogsError::NoLog {
            name: name.clone(),
            path,
        });
    }
    Ok(path)
}

/// The current run's log of `name`, opened and positioned at the start of
/// its last `tail` lines (or at its start), to be copied by the caller.
pub fn open(store: &dyn Store, name: &JobName, tail: Option<usize>) -> Result<File, LogsError> {
    let path = log_path(store, name)?;
    let read_err = |source| LogsError::Read {
        path: path.clone(),
        source,
    };
    let mut f = store.logs().open(name, &RunAt::Current).map_err(read_err)?;
    if let Some(n) = tail {
        let start = tail_start(&mut f, n).map_err(read_err)?;
        f.seek(SeekFrom::Start(start)).map_err(read_err)?;
    }
    Ok(f)
}

/// Which part of a log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// Its last N lines (as many of their last bytes as fit).
    Tail(usize),
    /// `len` bytes from `offset` (past the end: nothing).
    Range {
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// A piece of a log, and where it lies in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogText {
    /// The job.
    pub name: JobName,
    /// The log's size when read.
    pub size: u64,
    /// The piece's first byte.
    pub from: u64,
    /// Just past its last byte.
    pub to: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Reads `slice` of the current run's log of `name`, at most `max_bytes`
/// of it (a tail keeps its last bytes).
pub fn read(
    store: &dyn Store,
    name: &JobName,
    slice: Slice,
    max_bytes: u64,
) -> Result<LogText, LogsError> {
    let path = log_path(store, name)?;
    let read_err = |source| LogsError::Read {
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(&path).map_err(read_err)?.len();
    let (from, bytes) = match slice {
        Slice::Range { offset, len } => {
            // Past the end is empty, not a seek the kernel refuses.
            let from = offset.min(size);
            let mut f = store.logs().open(name, &RunAt::Current).map_err(read_err)?;
            f.seek(SeekFrom::Start(from)).map_err(read_err)?;
            let mut buf = Vec::new();
            f.take(len.min(max_bytes))
                .read_to_end(&mut buf)
                .map_err(read_err)?;
            (from, buf)
        }
        Slice::Tail(n) => {
            // Only the bytes that are sent are read.
            let bytes = tail_bytes_at_most(&path, n, max_bytes).map_err(read_err)?;
            (size.saturating_sub(bytes.len() as u64), bytes)
        }
    };
    Ok(LogText {
        name: name.clone(),
        size,
        from,
        to: from + bytes.len() as u64,
        bytes,
    })
}
