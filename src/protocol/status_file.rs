//! `NAME.status`: the plain protocol's completion flag. Its first line is
//! `SUCCESS` or `FAILED`; further `key=value` lines are informational.

use std::io;
use std::path::Path;

use super::atomic::{CreateOnce, WriteError, create_once};
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
    /// The first line is neither `SUCCESS` nor `FAILED`.
    #[error("malformed status file {path}: first line is {found:?}, expected SUCCESS or FAILED")]
    Malformed {
        /// The file.
        path: String,
        /// What the first line held (shortened).
        found: String,
    },
}

/// Reads `NAME.status`; `Ok(None)` when it does not exist yet.
pub fn read_status(path: &Path) -> Result<Option<StatusWord>, StatusError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StatusError::Io {
                path: path.display().to_string(),
                source,
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

/// Writes `NAME.status` once; an existing status is never replaced.
pub fn write_status_once(
    path: &Path,
    record: &JobRecord,
    outcome: Outcome,
) -> Result<CreateOnce, WriteError> {
    create_once(path, status_content(record, outcome).as_bytes())
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
}
