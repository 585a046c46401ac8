//! `NAME.status`: the plain protocol's completion flag. Its first line is
//! `SUCCESS` or `FAILED`; further `key=value` lines are informational.

use std::io;
use std::path::Path;

use super::atomic::{CreateOnce, WriteError, create_once};
use super::open::{MAX_STATUS_BYTES, ReadError, Unusable, entry, read_capped, remove_symlink};
use super::record::{JobRecord, Outcome, StatusWord};

/// A status file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Reading failed for a reason other than absence.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The entry is not a regular file, or larger than
    /// [`MAX_STATUS_BYTES`] (protocol §3).
    #[error("cannot use {path}: {why}; remove it")]
    Unusable {
        /// The entry.
        path: String,
        /// What it is instead.
        why: Unusable,
    },
    /// The first line is neither `SUCCESS` nor `FAILED`.
    #[error("malformed status file {path}: first line is {found:?}, expected SUCCESS or FAILED")]
    Malformed {
        /// The file.
        path: String,
        /// What the first line held (shortened).
        found: String,
    },
}

/// Reads `NAME.status` (at most [`MAX_STATUS_BYTES`]); `Ok(None)` when it
/// does not exist yet.
pub fn read_status(path: &Path) -> Result<Option<StatusWord>, StatusError> {
    let bytes = match read_capped(path, MAX_STATUS_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(ReadError::Io { path, source }) => {
            return Err(StatusError::Io {
                path: path.display().to_string(),
                source,
            });
        }
        Err(ReadError::Unusable { path, why }) => {
            return Err(StatusError::Unusable {
                path: path.display().to_string(),
                why,
            });
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let first = text.lines().next().unwrap_or("").trim();
    match first {
        "SUCCESS" => Ok(Some(StatusWord::Success)),
        "FAILED" => Ok(Some(StatusWord::Failed)),
        other => Err(StatusError::Malformed {
            path: path.display().to_string(),
            found: other.chars().take(40).collect(),
        }),
    }
}

/// The content written for a finished job.
pub fn status_content(record: &JobRecord, outcome: Outcome) -> String {
    let mut s = format!("{}\noutcome={}\n", outcome.status_word().as_str(), outcome);
    if let Some(code) = record.exit_code {
        s.push_str(&format!("exit_code={code}\n"));
    }
    if let Some(sig) = record.signal {
        s.push_str(&format!("signal={sig}\n"));
    }
    s
}

/// Writes `NAME.status` once; an existing status is never replaced. A
/// symlink at its place is not a status (every writer creates a regular
/// file, §5): it is removed first, never followed and never taken for one,
/// so it cannot turn a finished run into `lost`.
pub fn write_status_once(
    path: &Path,
    record: &JobRecord,
    outcome: Outcome,
) -> Result<CreateOnce, WriteError> {
    remove_symlink(path).map_err(|source| WriteError {
        path: path.to_owned(),
        source,
    })?;
    create_once(path, status_content(record, outcome).as_bytes())
}

/// Whether a status has been written at `path`: an entry that is not a
/// symlink (a FIFO or a directory there counts, and reads as `invalid`).
pub fn is_written(path: &Path) -> bool {
    entry(path).is_some_and(|m| !m.file_type().is_symlink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_garbage_status_is_malformed_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.status");
        for bad in [&b""[..], b"SUCC", b"\xff\xfe", b"success\n", b"\nSUCCESS\n"] {
            std::fs::write(&p, bad).unwrap();
            assert!(
                matches!(read_status(&p), Err(StatusError::Malformed { .. })),
                "{bad:?}"
            );
        }
        std::fs::write(&p, b"FAILED\noutcome=hung\n").unwrap();
        assert_eq!(read_status(&p).unwrap(), Some(StatusWord::Failed));
        std::fs::write(&p, b"SUCCESS").unwrap();
        assert_eq!(read_status(&p).unwrap(), Some(StatusWord::Success));
        std::fs::remove_file(&p).unwrap();
        assert_eq!(read_status(&p).unwrap(), None);
    }

    #[test]
    fn a_symlink_is_neither_read_as_a_status_nor_kept_by_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.status");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"FAILED\n").unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(!is_written(&p));
        assert!(matches!(
            read_status(&p),
            Err(StatusError::Unusable {
                why: Unusable::Symlink,
                ..
            })
        ));
        let record: JobRecord = serde_json::from_value(serde_json::json!({
            "version": 1, "name": "x", "job_id": "j", "command": ["true"], "cwd": "",
            "host": "h", "boot_id": "", "wrapper_pid": 1, "wrapper_start_time": 1,
            "child_pid": null, "child_start_time": null, "pgid": null,
            "settings": {"heartbeat_ms": 1, "stale_ms": 1, "timeout_ms": null,
                         "grace_ms": 1, "liveness": "auto"},
            "started_at": "", "started_unix_ms": 0, "ended_at": null, "exit_code": 0,
            "signal": null, "outcome": "success", "duration_ms": null, "reason": null,
            "finalized_by": null
        }))
        .unwrap();
        assert_eq!(
            write_status_once(&p, &record, Outcome::Success).unwrap(),
            CreateOnce::Created
        );
        assert!(is_written(&p));
        assert_eq!(read_status(&p).unwrap(), Some(StatusWord::Success));
        assert_eq!(std::fs::read(&target).unwrap(), b"FAILED\n");
    }

    #[test]
    fn a_status_over_its_cap_is_unusable_and_names_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.status");
        let mut big = b"SUCCESS\n".to_vec();
        big.resize(MAX_STATUS_BYTES as usize + 1, b'x');
        std::fs::write(&p, &big).unwrap();
        let err = read_status(&p).unwrap_err().to_string();
        assert!(err.contains("x.status: it is larger than 4 KiB"), "{err}");
    }
}
