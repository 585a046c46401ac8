//! How jobwatch opens the files in its directory (protocol §3, "Opening
//! files"): never through a symlink, never blocking, only regular files,
//! and never reading more than a cap.
//!
//! The jobs directory belongs to the user, but what is in it is not always
//! what jobwatch wrote: a FIFO named `NAME.status` would block a plain
//! `open(2)` forever, `NAME.job.json` linked to `/dev/zero` would be read
//! without end, and a symlink swapped in for `NAME.log` would make the next
//! attempt append to whatever it points at. So every job file is opened
//! with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC` and checked with
//! `fstat` to be a regular file before a byte is read or written, and
//! whole-file reads stop at a cap. Anything else is [`Unusable`], with a
//! one-line reason; the caller decides whether that makes a job `invalid`,
//! fails a write loudly, or replaces the entry.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The most read of a record (`NAME.job.json`), in bytes. It holds the
/// command's argv, which the kernel limits to a few MiB, so a real record
/// never comes near it.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// The most read of a small JSON file (`NAME.kill`, `breakers/KEY.json`).
pub const MAX_JSON_BYTES: u64 = 1 << 20;
/// The most read of a `NAME.status` (a word and a few `key=value` lines).
pub const MAX_STATUS_BYTES: u64 = 4 << 10;

/// Why an entry of the jobs directory cannot be used as the file jobwatch
/// expects there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// A symlink: jobwatch never follows one in its directory.
    #[error("it is a symlink, and jobwatch never follows one in its directory")]
    Symlink,
    /// A FIFO, a device, a socket or a directory.
    #[error("it is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the cap for its kind, in bytes.
    #[error("it is larger than {}, the most jobwatch reads of it", human_bytes(*.0))]
    TooLarge(u64),
}

impl From<Unusable> for io::Error {
    fn from(why: Unusable) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, why)
    }
}

/// A file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading failed for a reason other than absence.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The entry is not a regular file, or too large.
    #[error("cannot use {}: {why}; remove it", path.display())]
    Unusable {
        /// The entry.
        path: PathBuf,
        /// What it is instead.
        why: Unusable,
    },
}

impl From<ReadError> for io::Error {
    /// Keeps the whole message, path included.
    fn from(e: ReadError) -> Self {
        let kind = match &e {
            ReadError::Io { source, .. } => source.kind(),
            ReadError::Unusable { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Opens a job file for reading; `Ok(None)` when it does not exist. The
/// descriptor is non-blocking, which changes nothing for a regular file
/// (the only kind returned).
pub fn open_regular(path: &Path) -> Result<Option<File>, ReadError> {
    Ok(open_with_meta(path)?.map(|(file, _)| file))
}

/// [`open_regular`], with the `fstat` it took.
fn open_with_meta(path: &Path) -> Result<Option<(File, Metadata)>, ReadError> {
    let unusable = |why| ReadError::Unusable {
        path: path.to_owned(),
        why,
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(SAFE_FLAGS)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(match unusable_entry(path) {
                Some(why) => unusable(why),
                None => ReadError::Io {
                    path: path.to_owned(),
                    source,
                },
            });
        }
    };
    let meta = file.metadata().map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    match not_regular(&meta) {
        Some(why) => Err(unusable(why)),
        None => Ok(Some((file, meta))),
    }
}

/// Opens an existing job file for reading, as [`open_regular`] does; a
/// missing file is `NotFound`. The error names no path: the caller's
/// context does (`cannot read PATH: it is a FIFO, not a regular file`).
pub fn open_existing(path: &Path) -> io::Result<File> {
    match open_regular(path) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(io::ErrorKind::NotFound.into()),
        Err(ReadError::Io { source, .. }) => Err(source),
        Err(ReadError::Unusable { why, .. }) => Err(why.into()),
    }
}

/// Reads a whole job file of at most `cap` bytes; `Ok(None)` when it does
/// not exist. A larger file is [`Unusable::TooLarge`], found from its size
/// before anything is read (and again if it grows while being read).
pub fn read_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let Some((file, meta)) = open_with_meta(path)? else {
        return Ok(None);
    };
    let too_large = || ReadError::Unusable {
        path: path.to_owned(),
        why: Unusable::TooLarge(cap),
    };
    let len = meta.len();
    if len > cap {
        return Err(too_large());
    }
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = file.take(cap + 1);
    // One read asking for a byte more than the size: when it returns just
    // the size, the file is whole, and the read that `read_to_end` would
    // spend to see the end is saved (`status` of 10,000 jobs reads 20,000
    // files). A file that changed size meanwhile is read on to its end.
    let mut bytes = vec![0; len as usize + 1];
    let got = loop {
        match reader.read(&mut bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other.map_err(io_err)?,
        }
    };
    bytes.truncate(got);
    if got as u64 != len {
        reader.read_to_end(&mut bytes).map_err(io_err)?;
    }
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// Opens `NAME.log` for appending, creating it (mode 0600) when `create`
/// is set: never through a symlink, never blocking on a FIFO, and only a
/// regular file. The descriptor is made blocking again, since the job
/// inherits it as its stdout and stderr.
pub fn open_append(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(create)
        .mode(0o600)
        .custom_flags(SAFE_FLAGS)
        .open(path)
        .map_err(|e| explain(path, e))?;
    require_regular(&file)?;
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

/// Opens (creating, mode 0600) a lock file for reading and writing, never
/// through a symlink and only as a regular file.
pub fn open_lock(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(SAFE_FLAGS)
        .open(path)
        .map_err(|e| explain(path, e))?;
    require_regular(&file)?;
    Ok(file)
}

/// Sets the mtime of the regular file at `path` to `t` (creating it empty,
/// mode 0600, when `create` is set), never through a symlink: a heartbeat
/// moves only in the jobs directory.
pub fn touch(path: &Path, t: SystemTime, create: bool) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(SAFE_FLAGS)
        .open(path)
        .map_err(|e| explain(path, e))?;
    require_regular(&file)?;
    file.set_modified(t)
}

/// The metadata of the entry at `path` itself (a symlink is not followed).
pub fn entry(path: &Path) -> Option<Metadata> {
    std::fs::symlink_metadata(path).ok()
}

/// The mtime of the entry at `path` itself (a symlink is not followed).
pub fn mtime(path: &Path) -> Option<SystemTime> {
    entry(path)?.modified().ok()
}

/// Whether the entry at `path` is a symlink.
pub fn is_symlink(path: &Path) -> bool {
    entry(path).is_some_and(|m| m.file_type().is_symlink())
}

/// Removes a symlink at `path`, if one is there; whatever else is there
/// stays. A symlink cannot be a file jobwatch wrote, so where jobwatch must
/// create a file (the status), one in the way is removed, never followed.
pub fn remove_symlink(path: &Path) -> io::Result<()> {
    if !is_symlink(path) {
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates (mode 0700) every missing folder from `root` down to `path`,
/// which must lie inside `root`, and checks that each one is a real folder,
/// not a symlink: what jobwatch moves into it stays in the jobs directory.
pub fn create_dirs_within(root: &Path, path: &Path) -> io::Result<()> {
    let relative = path.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not inside {}", path.display(), root.display()),
        )
    })?;
    let mut at = root.to_owned();
    for part in relative.components() {
        at.push(part);
        match std::fs::DirBuilder::new().mode(0o700).create(&at) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let meta = std::fs::symlink_metadata(&at)?;
        if !meta.is_dir() {
            let what = if meta.file_type().is_symlink() {
                Unusable::Symlink.to_string()
            } else {
                format!("it is a {}, not a folder", kind_of(&meta))
            };
            // The caller's context names `path`; a parent is named here.
            let message = if at == path {
                what
            } else {
                format!("{}: {what}", at.display())
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
    }
    Ok(())
}

/// `O_NOFOLLOW`: a symlink fails with `ELOOP` instead of being followed.
/// `O_NONBLOCK`: opening a FIFO returns at once instead of waiting for a
/// writer (and a read of it would not wait either, but nothing is read
/// before `fstat` says "regular file"). `O_NOCTTY`: a terminal device never
/// becomes the controlling terminal. std adds `O_CLOEXEC` itself.
const SAFE_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;

/// An open error rephrased when the entry is a symlink or not a regular
/// file (`ELOOP` and `ENXIO` say little by themselves).
fn explain(path: &Path, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        return e;
    }
    unusable_entry(path).map_or(e, io::Error::from)
}

fn require_regular(file: &File) -> io::Result<()> {
    match not_regular(&file.metadata()?) {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// What is wrong with the entry at `path`, looked at without following it.
fn unusable_entry(path: &Path) -> Option<Unusable> {
    unusable_kind(&std::fs::symlink_metadata(path).ok()?)
}

fn unusable_kind(meta: &Metadata) -> Option<Unusable> {
    if meta.file_type().is_symlink() {
        return Some(Unusable::Symlink);
    }
    not_regular(meta)
}

fn not_regular(meta: &Metadata) -> Option<Unusable> {
    (!meta.is_file()).then(|| Unusable::NotRegular(kind_of(meta)))
}

/// The kind of a file, in words.
fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// `16 MiB`, `4 KiB`, or bytes.
fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn a_fifo_is_refused_at_once_for_reading_appending_touching_and_locking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.status");
        mkfifo(&p);
        let why = Unusable::NotRegular("FIFO");
        assert!(matches!(read_capped(&p, 10), Err(ReadError::Unusable { why: w, .. }) if w == why));
        for err in [
            open_append(&p, true).unwrap_err(),
            open_lock(&p).unwrap_err(),
            touch(&p, SystemTime::now(), false).unwrap_err(),
        ] {
            assert_eq!(err.to_string(), why.to_string());
        }
        let msg = read_capped(&p, 10).unwrap_err().to_string();
        assert!(
            msg.contains("x.status: it is a FIFO, not a regular file"),
            "{msg}"
        );
    }

    #[test]
    fn a_symlink_is_never_followed_nor_its_target_touched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"theirs").unwrap();
        let past = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&target)
            .unwrap()
            .set_modified(past)
            .unwrap();
        let link = dir.path().join("x.log");
        symlink(&target, &link).unwrap();
        assert!(matches!(
            read_capped(&link, 100),
            Err(ReadError::Unusable {
                why: Unusable::Symlink,
                ..
            })
        ));
        assert!(open_append(&link, true).is_err());
        assert!(touch(&link, SystemTime::now(), true).is_err());
        assert!(open_lock(&link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
        assert_eq!(mtime(&target), Some(past));
        // A dangling one is not created through either.
        let dangling = dir.path().join("y.heartbeat");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(touch(&dangling, SystemTime::now(), true).is_err());
        assert!(open_append(&dangling, true).is_err());
        assert!(!dir.path().join("nowhere").exists());
        remove_symlink(&dangling).unwrap();
        assert!(entry(&dangling).is_none());
    }

    #[test]
    fn a_file_over_the_cap_is_refused_from_its_size_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.job.json");
        File::create(&p).unwrap().set_len(2 << 30).unwrap();
        let err = read_capped(&p, MAX_RECORD_BYTES).unwrap_err();
        assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap().unwrap(), b"12345");
        assert!(read_capped(&p, 4).is_err());
        assert!(read_capped(&dir.path().join("none"), 4).unwrap().is_none());
    }

    #[test]
    fn a_directory_is_not_a_file_and_a_symlinked_folder_is_not_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("x.status");
        std::fs::create_dir(&d).unwrap();
        let msg = read_capped(&d, 10).unwrap_err().to_string();
        assert!(
            msg.contains("it is a directory, not a regular file"),
            "{msg}"
        );
        let root = dir.path();
        create_dirs_within(root, &root.join("attempts/x")).unwrap();
        assert!(root.join("attempts/x").is_dir());
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(elsewhere.path(), root.join("history")).unwrap();
        let err = create_dirs_within(root, &root.join("history/x")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!elsewhere.path().join("x").exists());
    }

    #[test]
    fn an_appended_log_is_blocking_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = open_append(&dir.path().join("x.log"), true).unwrap();
        let flags = rustix::fs::fcntl_getfl(&f).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
    }
}
