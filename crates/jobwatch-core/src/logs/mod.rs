//! This host's logs of a store's jobs: `NAME.log` (the current attempt),
//! `attempts/NAME/K.log` (earlier attempts), archived runs' logs, and the
//! jobs' own result files. A distributed store keeps state, not output: the
//! output stays where the job runs, and only this module knows where.
//!
//! Every file is opened as protocol §3 says (never through a symlink, never
//! blocking on a FIFO), and reads are bounded (tails are read from the end).

mod follow;
mod tail;

pub use follow::{LineMatcher, LogChunk, LogFollower, MAX_PENDING_LINE};
pub use tail::{MAX_TAIL_BYTES, tail_bytes, tail_bytes_at_most, tail_lines, tail_start};

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::model::JobName;
use crate::store::file::protocol::JobPaths;
use crate::store::file::protocol::open::{create_dirs_within, entry, open_append, open_existing};

/// Opens a log file found by its path ([`LocalLogs::log_path`]) for
/// reading, safely: no symlink followed, no FIFO waited on (protocol §3).
pub fn open_log_file(path: &Path) -> io::Result<File> {
    open_existing(path)
}

/// Opens an existing log file found by its path for appending (the
/// detached wrapper's own stderr goes there), safely as [`open_log_file`].
pub fn append_to_log_file(path: &Path) -> io::Result<File> {
    open_append(path, false)
}

/// Which run of a name: the current one, or an archived one (by its label).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunAt {
    /// The name's current run.
    Current,
    /// An archived run, by its history label.
    Archived(String),
}

/// The logs under one root (the jobs directory, for the file store).
#[derive(Debug, Clone)]
pub struct LocalLogs {
    root: PathBuf,
}

impl LocalLogs {
    /// The logs kept under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files of the run `at` of `name`: in the root for the current
    /// run, in its history folder for an archived one.
    fn files(&self, name: &JobName, at: &RunAt) -> JobPaths {
        match at {
            RunAt::Current => JobPaths::new(&self.root, name),
            RunAt::Archived(label) => JobPaths::new(&self.history_of(name).join(label), name),
        }
    }

    /// The folder of a name's archived runs.
    pub(crate) fn history_of(&self, name: &JobName) -> PathBuf {
        self.root.join("history").join(name.as_str())
    }

    /// The log of run `at`.
    pub fn log_path(&self, name: &JobName, at: &RunAt) -> PathBuf {
        self.files(name, at).log()
    }

    /// Where run `at`'s result file is, if the job wrote one (for the
    /// current run: `$JOBWATCH_RESULT`; jobwatch never creates it).
    pub fn result_file(&self, name: &JobName, at: &RunAt) -> PathBuf {
        self.files(name, at).result()
    }

    /// The first `cap` bytes of run `at`'s result file, if the job wrote
    /// one that is a regular file: opened as every job file is, so a FIFO
    /// or a device the job put there never blocks the reader, and a symlink
    /// is not followed.
    pub fn read_result(&self, name: &JobName, at: &RunAt, cap: u64) -> Option<Vec<u8>> {
        use std::io::Read;
        let file = open_existing(&self.result_file(name, at)).ok()?;
        let mut bytes = Vec::new();
        file.take(cap).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// The result file of run `at`, if the job wrote one.
    pub fn result_path(&self, name: &JobName, at: &RunAt) -> Option<PathBuf> {
        let path = self.result_file(name, at);
        path.exists().then_some(path)
    }

    /// Opens run `at`'s log for reading, as every job file is opened (no
    /// symlink followed, no FIFO waited on); a missing one is `NotFound`.
    pub fn open(&self, name: &JobName, at: &RunAt) -> io::Result<File> {
        open_existing(&self.log_path(name, at))
    }

    /// The last `n` lines of run `at`'s log as a terminal would show them,
    /// each cut at [`crate::report::MAX_TAIL_LINE`]; none when there is no
    /// readable log.
    pub fn tail(&self, name: &JobName, at: &RunAt, n: usize) -> Vec<String> {
        tail_lines(&self.log_path(name, at), n).unwrap_or_default()
    }

    /// The log of attempt `k` of the current run, once a later attempt
    /// took over `NAME.log`.
    pub fn attempt_log(&self, name: &JobName, k: u32) -> PathBuf {
        JobPaths::new(&self.root, name).attempt_log(k)
    }

    /// Opens the current run's log for appending, creating it (0600) when
    /// missing: every writer's bytes land at the end. Never through a
    /// symlink (a log swapped for one fails loudly).
    pub fn open_for_append(&self, name: &JobName) -> io::Result<File> {
        open_append(&self.log_path(name, &RunAt::Current), true)
    }

    /// Moves the current log to `attempts/NAME/K.log` (creating the folder,
    /// 0700) and creates a fresh empty `NAME.log`, so a reader never finds
    /// the log missing between attempts. A log the job removed leaves
    /// nothing to move.
    pub fn put_attempt_aside(&self, name: &JobName, k: u32) -> io::Result<()> {
        let paths = JobPaths::new(&self.root, name);
        create_dirs_within(&self.root, &paths.attempts())?;
        match std::fs::rename(paths.log(), paths.attempt_log(k)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.open_for_append(name).map(drop)
    }

    /// The current log's size and last change: the wrapper's evidence of
    /// output.
    pub fn output_mark(&self, name: &JobName) -> (u64, Option<SystemTime>) {
        let meta = entry(&self.log_path(name, &RunAt::Current));
        (
            meta.as_ref().map_or(0, |m| m.len()),
            meta.and_then(|m| m.modified().ok()),
        )
    }
}
