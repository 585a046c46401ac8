//! The jobs directory: where it is, creating it private, and refusing one
//! that another user could tamper with.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::paths::JobPaths;
use crate::model::JobName;

/// Environment variable that names the jobs directory.
pub const DIR_ENV: &str = "JOBWATCH_DIR";

/// Why the jobs directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Neither `--dir`, `$JOBWATCH_DIR`, `$XDG_STATE_HOME` nor `$HOME` is set.
    #[error("cannot find a jobs directory: set --dir, $JOBWATCH_DIR or $HOME")]
    NoDefault,
    /// Creating the directory failed.
    #[error("cannot create jobs directory {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading the directory's metadata failed.
    #[error("cannot inspect jobs directory {path}: {source}")]
    Inspect {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path exists but is not a directory.
    #[error("jobs directory {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Another user owns the directory.
    #[error("unsafe jobs directory {path}: owned by uid {owner}, not by you (uid {me})")]
    NotOwned {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The current effective uid.
        me: u32,
    },
    /// Group or others may write into the directory.
    #[error(
        "unsafe jobs directory {path}: writable by group or others (mode {mode:04o}); run `chmod 700 {path}`"
    )]
    WorldWritable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// An opened, checked jobs directory.
#[derive(Debug, Clone)]
pub struct JobsDir {
    root: PathBuf,
}

impl JobsDir {
    /// The directory to use when `--dir` is not given: `$JOBWATCH_DIR`, else
    /// `$XDG_STATE_HOME/jobwatch`, else `~/.local/state/jobwatch`.
    pub fn default_path() -> Result<PathBuf, DirError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(dir) = env(DIR_ENV) {
            return Ok(PathBuf::from(dir));
        }
        if let Some(state) = env("XDG_STATE_HOME") {
            return Ok(PathBuf::from(state).join("jobwatch"));
        }
        if let Some(home) = env("HOME") {
            return Ok(PathBuf::from(home).join(".local/state/jobwatch"));
        }
        Err(DirError::NoDefault)
    }

    /// Opens `path`, creating it (mode 0700, parents as needed) when missing,
    /// and refuses it when another user owns it or could write into it.
    pub fn open_or_create(path: &Path) -> Result<Self, DirError> {
        if !path.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|source| DirError::Create {
                    path: path.to_owned(),
                    source,
                })?;
        }
        Self::open_checked(path)
    }

    fn open_checked(path: &Path) -> Result<Self, DirError> {
        let meta = fs::metadata(path).map_err(|source| DirError::Inspect {
            path: path.to_owned(),
            source,
        })?;
        check_safe(path, &meta)?;
        let root = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        Ok(Self { root })
    }

    /// A directory that was opened and checked before, such as the folder of
    /// a [`JobPaths`] made by [`JobsDir::job`].
    pub fn already_checked(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The paths of one job's files.
    pub fn job(&self, name: &JobName) -> JobPaths {
        JobPaths::new(&self.root, name)
    }

    /// The folder that keeps earlier runs of `name`.
    pub fn history_of(&self, name: &JobName) -> PathBuf {
        self.root.join("history").join(name.as_str())
    }

    /// The folder of circuit-breaker state files (`breakers/KEY.json`).
    pub fn breakers(&self) -> PathBuf {
        self.root.join("breakers")
    }
}

fn check_safe(path: &Path, meta: &fs::Metadata) -> Result<(), DirError> {
    if !meta.is_dir() {
        return Err(DirError::NotADirectory(path.to_owned()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(DirError::NotOwned {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DirError::WorldWritable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}
