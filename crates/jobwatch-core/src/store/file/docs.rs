//! Documents of the file store: `breakers/KEY.json`, each changed only by
//! a holder of an exclusive `flock` on `breakers/KEY.lock` (one
//! read-modify-write, then released) and replaced atomically (§15).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::JobsDir;
use super::protocol::atomic::write_atomic;
use super::protocol::lock::{JobLock, LockError};
use super::protocol::open::{MAX_JSON_BYTES, ReadError, create_dirs_within, read_capped};
use crate::store::{DocKind, DocRead, DocStore, Invalid, StoreError};

/// The longest anyone waits for a document's lock. Every holder keeps it
/// for one read-modify-write of a small file (milliseconds, even with many
/// jobs ending together); a holder that keeps it longer is stuck, and a
/// job's end must not wait on it.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// The documents of one jobs directory.
#[derive(Debug, Clone)]
pub struct FileDocs {
    root: PathBuf,
}

impl FileDocs {
    /// The documents of `dir`.
    pub fn new(dir: &JobsDir) -> Self {
        Self {
            root: dir.path().to_owned(),
        }
    }

    fn folder(&self, kind: DocKind) -> PathBuf {
        match kind {
            DocKind::Breaker => self.root.join("breakers"),
        }
    }

    fn file(&self, kind: DocKind, key: &str) -> PathBuf {
        self.folder(kind).join(format!("{key}.json"))
    }

    fn lock(&self, kind: DocKind, key: &str) -> PathBuf {
        self.folder(kind).join(format!("{key}.lock"))
    }
}

fn read_err(e: ReadError) -> StoreError {
    match e {
        ReadError::Io { path, source } => StoreError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        },
        unusable @ ReadError::Unusable { .. } => Invalid(unusable.to_string()).into(),
    }
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    read_capped(path, MAX_JSON_BYTES).map_err(read_err)
}

impl DocStore for FileDocs {
    fn describe(&self, kind: DocKind, key: &str) -> String {
        self.file(kind, key).display().to_string()
    }

    fn read(&self, kind: DocKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read(&self.file(kind, key))
    }

    fn update(
        &self,
        kind: DocKind,
        key: &str,
        f: &mut dyn FnMut(DocRead<'_>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        // A real folder: a symlinked `breakers/` would carry the state (and
        // its lock) out of the jobs directory.
        let folder = self.folder(kind);
        create_dirs_within(&self.root, &folder).map_err(|source| StoreError::Folder {
            path: folder.clone(),
            source,
        })?;
        let lock_path = self.lock(kind, key);
        let _lock = JobLock::acquire_within(&lock_path, LOCK_PATIENCE).map_err(|e| match e {
            LockError::Held => StoreError::Busy {
                what: lock_path.display().to_string(),
                waited: LOCK_PATIENCE,
            },
            LockError::Io { path, source } => StoreError::Io {
                context: format!("cannot lock {}", path.display()),
                source,
            },
        })?;
        let path = self.file(kind, key);
        let current = read(&path);
        let new = match &current {
            Ok(bytes) => f(Ok(bytes.as_deref())),
            Err(e) => f(Err(e)),
        };
        let new = match (new, current) {
            (None, Err(e)) => return Err(e),
            (new, _) => new,
        };
        if let Some(bytes) = new {
            write_atomic(&path, &bytes).map_err(|e| StoreError::Io {
                context: format!("cannot write {}", e.path.display()),
                source: e.source,
            })?;
        }
        Ok(())
    }

    fn list(&self, kind: DocKind) -> Result<Vec<String>, StoreError> {
        let folder = self.folder(kind);
        let entries = match std::fs::read_dir(&folder) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Folder {
                    path: folder,
                    source,
                });
            }
        };
        let mut keys: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(name.strip_suffix(".json")?.to_owned())
            })
            .collect();
        keys.sort();
        Ok(keys)
    }
}
