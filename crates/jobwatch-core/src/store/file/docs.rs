//! Documents of the file store: `breakers/KEY.json` (§15) and
//! `sessions/ID.json` (§17), each changed only by a holder of an exclusive
//! `flock` on the `.lock` file beside it (one read-modify-write, then
//! released) and replaced atomically.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
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
            DocKind::Session => self.root.join("sessions"),
        }
    }

    /// Makes the kind's folder. A real one for breakers: a symlinked
    /// `breakers/` would carry the state (and its lock) out of the jobs
    /// directory. Sessions' folder is made as protocol §17 says (0700).
    fn make_folder(&self, kind: DocKind) -> Result<(), StoreError> {
        let folder = self.folder(kind);
        match kind {
            DocKind::Breaker => {
                create_dirs_within(&self.root, &folder).map_err(|source| StoreError::Folder {
                    path: folder.clone(),
                    source,
                })
            }
            DocKind::Session => DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&folder)
                .map_err(|source| StoreError::Io {
                    context: format!("cannot create {}", folder.display()),
                    source,
                }),
        }
    }

    /// Takes the document's lock: breakers wait at most
    /// [`LOCK_PATIENCE`]; sessions as long as it takes.
    fn take_lock(&self, kind: DocKind, key: &str) -> Result<JobLock, StoreError> {
        let lock_path = self.lock(kind, key);
        let taken = match kind {
            DocKind::Breaker => JobLock::acquire_within(&lock_path, LOCK_PATIENCE),
            DocKind::Session => JobLock::acquire(&lock_path),
        };
        taken.map_err(|e| match e {
            LockError::Held => StoreError::Busy {
                what: lock_path.display().to_string(),
                waited: LOCK_PATIENCE,
            },
            LockError::Io { path, source } => StoreError::Lock {
                what: path.display().to_string(),
                source,
            },
        })
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
        self.make_folder(kind)?;
        let _lock = self.take_lock(kind, key)?;
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
