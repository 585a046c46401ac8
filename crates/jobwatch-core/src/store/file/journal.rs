//! The event journal of a jobs directory (protocol §18): `events.jsonl`,
//! one line per job event ([`JobEvent`]), appended by the store's claims
//! when a run starts and when its outcome is committed, read by
//! `jobwatch events` from a cursor.
//!
//! - **Appends** open the file `O_APPEND`, take a shared `flock` on it (so
//!   a rotation never happens under them), check that the name still
//!   points at the file they locked, and write the line with one
//!   `write(2)` of at most `PIPE_BUF` bytes: lines never interleave.
//! - **Files** start with a header line naming the file (`journal`: a
//!   random id) and the file it follows (`after`), written atomically when
//!   the file is created. A cursor is `ID:OFFSET`, the byte offset just
//!   after an event in file `ID`, so a cursor survives a rotation (the
//!   file is found again as `events.1.jsonl`) and is never applied to
//!   another file that reused a name or an inode.
//! - **Rotation** (gc, past [`ROTATE_AT`]) takes the exclusive lock, links
//!   `events.jsonl` to `events.1.jsonl` (replacing the older one) and
//!   renames a fresh file (header `after`: the old id) over
//!   `events.jsonl`: the name never goes missing, and one old file is
//!   kept.
//! - **Readers** take no lock. A line without its newline at the end of
//!   the live file is a write in progress: left for the next read. A torn
//!   or malformed line is skipped (a complete event after a torn one on
//!   the same line is still read, [`JobEvent::from_line`]).
//! - **Repairs** ([`Journal::append_missing`]) take the exclusive lock,
//!   look for the run's `ended` from its `started` on, and append it only
//!   when it is not there.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::protocol::atomic::{self, CreateOnce};
use super::protocol::lock::flock_within;
use super::protocol::open::{open_append, open_existing};
use crate::model::{JobEvent, MAX_EVENT_LINE, rfc3339};
use crate::store::{
    Cursor, EVENT_BATCH, EventRead, EventTrim, GcItem, Invalid, Positioned, Since, StoreError,
};

/// The journal's file name in the jobs directory.
pub const JOURNAL: &str = "events.jsonl";
/// The one older journal file gc keeps.
pub const OLD_JOURNAL: &str = "events.1.jsonl";
/// gc rotates the journal once it is this large.
pub const ROTATE_AT: u64 = 1 << 20;
/// The longest an append, a repair or a rotation waits for the journal's
/// lock (only a rotation or a repair holds it exclusively, for
/// milliseconds: a holder longer than this is stuck).
pub const JOURNAL_PATIENCE: Duration = Duration::from_secs(2);

/// The header's format version.
const JOURNAL_VERSION: u32 = 1;
/// The most read of a header line.
const MAX_HEADER: usize = 1024;
/// How much of a journal file one `pread` takes.
const READ_CHUNK: usize = 64 << 10;
/// How often an append or a repair retries after a rotation moved the
/// file it had opened.
const TRIES: usize = 4;

/// The first line of every journal file.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// This file's id: 16 lowercase hex digits, random.
    journal: String,
    /// The id of the file this one follows (`null`: the first, or one
    /// created after the journal was removed).
    after: Option<String>,
    /// When the file was created (RFC 3339).
    created: String,
    /// [`JOURNAL_VERSION`].
    version: u32,
}

/// The journal of one jobs directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// One journal file, open for reading.
struct Segment {
    file: File,
    path: PathBuf,
    id: String,
    after: Option<String>,
    /// Where its events start (after the header).
    body: u64,
    dev: u64,
    ino: u64,
    /// Its header is of a newer format: its lines are not read.
    newer: bool,
}

impl Segment {
    /// Opens a journal file; `None` when there is none.
    fn open(path: &Path) -> io::Result<Option<Self>> {
        let file = match open_existing(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let mut head = vec![0u8; MAX_HEADER];
        let n = file.read_at(&mut head, 0)?;
        let header = memchr::memchr(b'\n', &head[..n]).and_then(|nl| {
            let h: Header = serde_json::from_slice(&head[..nl]).ok()?;
            is_id(&h.journal).then_some((h, nl as u64 + 1))
        });
        let (dev, ino) = (meta.dev(), meta.ino());
        Ok(Some(match header {
            Some((h, body)) => Self {
                file,
                path: path.to_owned(),
                newer: h.version > JOURNAL_VERSION,
                id: h.journal,
                after: h.after.filter(|a| is_id(a)),
                body,
                dev,
                ino,
            },
            // Not written by jobwatch (or damaged): named by its inode, read
            // from its first byte.
            None => Self {
                file,
                path: path.to_owned(),
                id: fallback_id(dev, ino),
                after: None,
                body: 0,
                dev,
                ino,
                newer: false,
            },
        }))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether `path` still names this file (it has not been rotated away).
    fn is_at(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }

    /// The offset just after the last complete line: where "now" is (a
    /// line still being written is not skipped).
    fn end_of_lines(&self) -> io::Result<u64> {
        let mut end = self.len()?;
        let mut buf = vec![0u8; READ_CHUNK];
        while end > self.body {
            let from = end.saturating_sub(READ_CHUNK as u64).max(self.body);
            let n = self.file.read_at(&mut buf[..(end - from) as usize], from)?;
            if let Some(nl) = memchr::memrchr(b'\n', &buf[..n]) {
                return Ok(from + nl as u64 + 1);
            }
            end = from;
        }
        Ok(self.body)
    }
}

/// Whether `s` is a journal id.
fn is_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id of a file without a header: from its device and inode.
fn fallback_id(dev: u64, ino: u64) -> String {
    format!(
        "{:016x}",
        (dev.rotate_left(32) ^ ino).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

/// A fresh random journal id.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                // No entropy source: the time and PID still differ between
                // the few files one directory ever has.
                let t = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64;
                bytes = (t ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
                break;
            }
        }
    }
    format!("{:016x}", u64::from_le_bytes(bytes))
}

fn cursor(id: &str, offset: u64) -> Cursor {
    Cursor::new(format!("{id}:{offset}"))
}

/// `ID:OFFSET`, or an error naming what a cursor of this store looks like.
fn parse_cursor(c: &Cursor) -> Result<(String, u64), StoreError> {
    let parsed = c
        .as_str()
        .split_once(':')
        .filter(|(id, _)| is_id(id))
        .and_then(|(id, off)| Some((id.to_owned(), off.parse::<u64>().ok()?)));
    parsed.ok_or_else(|| {
        Invalid(format!(
            "invalid cursor {:?}: this jobs directory's cursors look like 0123456789abcdef:1234 \
             (the \"cursor\" of an event `jobwatch events` printed), or use `now`",
            c.as_str()
        ))
        .into()
    })
}

impl Journal {
    /// The journal of the jobs directory `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// `events.jsonl`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// `events.1.jsonl`.
    pub fn old_path(&self) -> PathBuf {
        self.dir.join(OLD_JOURNAL)
    }

    fn io(&self, what: &str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let context = format!("cannot {what} {}", path.display());
        move |source| StoreError::Io { context, source }
    }

    /// Creates `events.jsonl` with its header unless it exists (whoever
    /// creates it first wins; the file is complete from its first byte).
    fn create(&self, after: Option<&str>) -> io::Result<()> {
        let header = Header {
            journal: new_id(),
            after: after.map(str::to_owned),
            created: rfc3339(SystemTime::now()),
            version: JOURNAL_VERSION,
        };
        let mut line = serde_json::to_vec(&header).expect("a header serializes");
        line.push(b'\n');
        match atomic::create_once(&self.path(), &line) {
            Ok(CreateOnce::Created | CreateOnce::AlreadyExists) => Ok(()),
            Err(e) => Err(e.source),
        }
    }

    /// `events.jsonl`, open for appending under `lock` (shared for an
    /// append, exclusive for a repair or a rotation), created if missing;
    /// the name is checked to still point at the locked file.
    fn open_locked(&self, lock: FlockOperation) -> io::Result<File> {
        let path = self.path();
        for _ in 0..TRIES {
            let file = match open_append(&path, false) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.create(None)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !flock_within(&file, lock, JOURNAL_PATIENCE)? {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "it was locked by another process for more than {}s",
                        JOURNAL_PATIENCE.as_secs()
                    ),
                ));
            }
            let meta = file.metadata()?;
            let current = std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
            if current {
                return Ok(file);
            }
            // Rotated between the open and the lock: the new file it is.
        }
        Err(io::Error::other(
            "it was replaced again and again while being opened",
        ))
    }

    /// Appends one event: one `write(2)` of its whole line, under the
    /// shared lock. The line is not fsynced (see protocol §18).
    pub fn append(&self, event: &JobEvent) -> Result<(), StoreError> {
        let path = self.path();
        let file = self
            .open_locked(FlockOperation::LockShared)
            .map_err(self.io("append to", &path))?;
        write_line(&file, &event.to_line()).map_err(self.io("append to", &path))
    }

    /// The kept journal files, oldest first, each once (mid-rotation both
    /// names are one file).
    fn kept(&self) -> Result<Vec<Segment>, StoreError> {
        let mut kept = Vec::new();
        for path in [self.old_path(), self.path()] {
            if let Some(seg) = Segment::open(&path).map_err(self.io("read", &path))?
                && !kept
                    .iter()
                    .any(|k: &Segment| (k.dev, k.ino) == (seg.dev, seg.ino))
            {
                kept.push(seg);
            }
        }
        Ok(kept)
    }

    /// The events after `since` (see [`crate::store::EventLog::read_events`]).
    pub fn read(&self, since: &Since) -> Result<EventRead, StoreError> {
        let mut out = EventRead {
            events: Vec::new(),
            next: Since::Start,
            more: false,
            notes: Vec::new(),
        };
        let mut kept = self.kept()?;
        let (mut seg, mut pos) = match since {
            Since::Now => {
                if let Some(cur) = kept.pop() {
                    let end = cur.end_of_lines().map_err(self.io("read", &cur.path))?;
                    out.next = Since::After(cursor(&cur.id, end));
                }
                return Ok(out);
            }
            Since::Start => match kept.into_iter().next() {
                Some(first) => {
                    let body = first.body;
                    (first, body)
                }
                None => return Ok(out),
            },
            Since::After(c) => {
                let (id, offset) = parse_cursor(c)?;
                if !kept.iter().any(|s| s.id == id) {
                    // A rotation between the two opens of `kept` may have
                    // hidden the file: look once more before calling it gone.
                    kept = self.kept()?;
                }
                let found = kept.iter().position(|s| s.id == id);
                match found.map(|i| kept.swap_remove(i)) {
                    Some(seg)
                        if offset >= seg.body
                            && offset <= seg.len().map_err(self.io("read", &seg.path))? =>
                    {
                        (seg, offset)
                    }
                    other => {
                        let why = if other.is_some() {
                            "it lies past the end of its journal file (the file was cut short)"
                        } else {
                            "that part of the journal is no longer kept (gc rotated it away, or it was removed)"
                        };
                        out.notes.push(format!(
                            "cursor {c}: {why}; reading from the oldest event kept"
                        ));
                        let mut kept = self.kept()?;
                        if kept.is_empty() {
                            return Ok(out);
                        }
                        let first = kept.remove(0);
                        let body = first.body;
                        (first, body)
                    }
                }
            }
        };
        let live_path = self.path();
        let mut visited = HashSet::from([seg.id.clone()]);
        loop {
            // Whether the file is still the live one is looked at before its
            // length: once it is not, nothing is appended to it any more, so
            // the length read next is its last.
            let live = seg.is_at(&live_path);
            let len = seg.len().map_err(self.io("read", &seg.path))?;
            let (end, full) = if seg.newer {
                (len, false)
            } else {
                scan(&seg, pos, len, &mut out).map_err(self.io("read", &seg.path))?
            };
            pos = end;
            if full {
                out.more = true;
                break;
            }
            if live {
                break;
            }
            if pos < len {
                out.notes.push(format!(
                    "skipped a torn last line in {} (bytes {pos}..{len})",
                    seg.path.display()
                ));
                pos = len;
            }
            let Some(next) = self.successor(&seg, &mut visited, &mut out.notes)? else {
                break;
            };
            pos = next.body;
            seg = next;
        }
        out.next = Since::After(cursor(&seg.id, pos));
        Ok(out)
    }

    /// The file to read after the rotated file `seg`: the one whose header
    /// says it follows `seg`; else (the follower fell behind two
    /// rotations, or the journal was removed) the oldest kept file not yet
    /// read, with a note on the gap.
    fn successor(
        &self,
        seg: &Segment,
        visited: &mut HashSet<String>,
        notes: &mut Vec<String>,
    ) -> Result<Option<Segment>, StoreError> {
        let candidates: Vec<Segment> = self
            .kept()?
            .into_iter()
            .filter(|s| !visited.contains(&s.id))
            .collect();
        let next = match candidates
            .iter()
            .position(|s| s.after.as_deref() == Some(seg.id.as_str()))
        {
            Some(i) => candidates.into_iter().nth(i),
            None => {
                let first = candidates.into_iter().next();
                if let Some(f) = &first {
                    notes.push(format!(
                        "events after journal file {} were not kept (rotated away or removed before they were read); continuing with {}",
                        seg.id,
                        f.path.display()
                    ));
                }
                first
            }
        };
        if let Some(n) = &next {
            visited.insert(n.id.clone());
        }
        Ok(next)
    }

    /// Appends `ended` unless the journal holds its run's `ended` after
    /// `after`; under the exclusive lock, so repairs never race each
    /// other (or a rotation).
    pub fn append_missing(&self, ended: &JobEvent, after: &Cursor) -> Result<bool, StoreError> {
        let path = self.path();
        let file = self
            .open_locked(FlockOperation::LockExclusive)
            .map_err(self.io("append to", &path))?;
        let mut since = Since::After(after.clone());
        loop {
            let read = self.read(&since)?;
            if read.events.iter().any(|p| p.event.ends(&ended.job_id)) {
                return Ok(false);
            }
            since = read.next;
            if !read.more {
                break;
            }
        }
        write_line(&file, &ended.to_line()).map_err(self.io("append to", &path))?;
        Ok(true)
    }

    /// gc's rotation: once `events.jsonl` is [`ROTATE_AT`] or larger, it
    /// becomes `events.1.jsonl` (the older one goes) and a fresh file
    /// follows it.
    pub fn rotate(&self, dry_run: bool) -> Result<Option<EventTrim>, StoreError> {
        let path = self.path();
        let old = self.old_path();
        let Some(cur) = Segment::open(&path).map_err(self.io("read", &path))? else {
            return Ok(None);
        };
        let size = cur.len().map_err(self.io("read", &path))?;
        if size < ROTATE_AT {
            return Ok(None);
        }
        let old_size = std::fs::symlink_metadata(&old).map(|m| m.len()).ok();
        let trim = EventTrim {
            item: GcItem {
                paths: old_size
                    .iter()
                    .map(|_| PathBuf::from(OLD_JOURNAL))
                    .collect(),
                bytes: old_size.unwrap_or(0),
            },
            why: format!(
                "the event journal reached {} KiB (gc rotates it at {} KiB): {JOURNAL} becomes {OLD_JOURNAL}",
                size >> 10,
                ROTATE_AT >> 10
            ),
        };
        if dry_run {
            return Ok(Some(trim));
        }
        let file = self
            .open_locked(FlockOperation::LockExclusive)
            .map_err(self.io("rotate", &path))?;
        // The file locked is the live one; its id is the new file's `after`.
        let locked = Segment::open(&path)
            .map_err(self.io("read", &path))?
            .filter(|s| file.metadata().is_ok_and(|m| m.ino() == s.ino));
        let Some(locked) = locked else {
            return Ok(None);
        };
        let header = Header {
            journal: new_id(),
            after: Some(locked.id.clone()),
            created: rfc3339(SystemTime::now()),
            version: JOURNAL_VERSION,
        };
        let mut line = serde_json::to_vec(&header).expect("a header serializes");
        line.push(b'\n');
        let mut fresh = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(self.io("rotate", &path))?;
        fresh
            .write_all(&line)
            .and_then(|()| fresh.as_file().sync_all())
            .map_err(self.io("rotate", &path))?;
        match std::fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io("remove", &old)(e)),
        }
        std::fs::hard_link(&path, &old).map_err(self.io("rotate", &path))?;
        fresh
            .persist(&path)
            .map_err(|e| self.io("rotate", &path)(e.error))?;
        atomic::sync_parent(&path).map_err(self.io("rotate", &path))?;
        Ok(Some(trim))
    }
}

/// One `write(2)` of a whole line; a short write (a full disk) is an
/// error: the torn line it leaves is skipped by readers.
fn write_line(mut file: &File, line: &[u8]) -> io::Result<()> {
    debug_assert!(line.len() <= MAX_EVENT_LINE);
    let n = file.write(line)?;
    if n == line.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("only {n} of the line's {} bytes were written", line.len()),
        ))
    }
}

/// Reads the complete lines of `seg` in `from..to` into `out` (at most
/// [`EVENT_BATCH`] events in all); returns the offset after the last line
/// consumed and whether the batch is full. A line longer than an event can
/// be is kept only by its last [`MAX_EVENT_LINE`] bytes, which is where
/// an event after torn bytes would be.
fn scan(seg: &Segment, from: u64, to: u64, out: &mut EventRead) -> io::Result<(u64, bool)> {
    let mut buf = vec![0u8; READ_CHUNK.min(to.saturating_sub(from) as usize)];
    let mut line: Vec<u8> = Vec::new();
    let (mut at, mut consumed) = (from, from);
    let mut skipped = 0usize;
    let mut full = false;
    'read: while at < to {
        let want = buf.len().min((to - at) as usize);
        let n = seg.file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[..n]) {
            keep_tail(&mut line, &buf[start..nl]);
            let end = at + nl as u64 + 1;
            match JobEvent::from_line(&line) {
                Some(event) => out.events.push(Positioned {
                    event,
                    cursor: cursor(&seg.id, end),
                }),
                None if !line.iter().all(u8::is_ascii_whitespace) => skipped += 1,
                None => {}
            }
            consumed = end;
            line.clear();
            start = nl + 1;
            if out.events.len() >= EVENT_BATCH {
                full = true;
                break 'read;
            }
        }
        keep_tail(&mut line, &buf[start..n]);
        at += n as u64;
    }
    if skipped > 0 {
        out.notes.push(format!(
            "skipped {skipped} malformed line(s) in {} (bytes {from}..{consumed})",
            seg.path.display()
        ));
    }
    Ok((consumed, full))
}

/// Appends `bytes` to `line`, keeping no more than the last
/// [`MAX_EVENT_LINE`] bytes once it grows past twice that.
fn keep_tail(line: &mut Vec<u8>, bytes: &[u8]) {
    line.extend_from_slice(bytes);
    if line.len() > 2 * MAX_EVENT_LINE {
        line.drain(..line.len() - MAX_EVENT_LINE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventKind, Outcome};

    fn event(kind: EventKind, name: &str, id: &str) -> JobEvent {
        JobEvent {
            event: kind,
            name: name.into(),
            job_id: id.into(),
            at: "2033-05-18T03:33:20.000Z".into(),
            host: "h".into(),
            outcome: (kind == EventKind::Ended).then_some(Outcome::Success),
            exit_code: None,
            signal: None,
            duration_ms: None,
            reason: None,
            finalized_by: None,
        }
    }

    fn started(name: &str, id: &str) -> JobEvent {
        event(EventKind::Started, name, id)
    }

    fn ended(name: &str, id: &str) -> JobEvent {
        event(EventKind::Ended, name, id)
    }

    fn all(j: &Journal, since: &Since) -> (Vec<Positioned>, Since, Vec<String>) {
        let r = j.read(since).unwrap();
        assert!(!r.more);
        (r.events, r.next, r.notes)
    }

    fn names(events: &[Positioned]) -> Vec<String> {
        events
            .iter()
            .map(|p| format!("{}:{}", p.event.event.as_str(), p.event.name))
            .collect()
    }

    fn journal() -> (tempfile::TempDir, Journal) {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::new(tmp.path());
        (tmp, j)
    }

    #[test]
    fn events_are_read_back_in_order_and_a_cursor_resumes_after_its_event() {
        let (_tmp, j) = journal();
        assert!(all(&j, &Since::Start).0.is_empty(), "no journal yet");
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            j.append(&started(name, &format!("r{i}"))).unwrap();
        }
        let (events, next, notes) = all(&j, &Since::Start);
        assert_eq!(names(&events), ["started:a", "started:b", "started:c"]);
        assert!(notes.is_empty(), "{notes:?}");
        let (rest, _, _) = all(&j, &Since::After(events[0].cursor.clone()));
        assert_eq!(names(&rest), ["started:b", "started:c"]);
        // Caught up: nothing more, and the next read starts where this ended.
        assert_eq!(next, Since::After(events[2].cursor.clone()));
        assert!(all(&j, &next).0.is_empty());
        j.append(&ended("a", "r0")).unwrap();
        assert_eq!(names(&all(&j, &next).0), ["ended:a"]);
    }

    #[test]
    fn now_is_the_end_of_the_complete_lines() {
        let (_tmp, j) = journal();
        assert_eq!(
            all(&j, &Since::Now).1,
            Since::Start,
            "no journal: from its start"
        );
        j.append(&started("a", "r1")).unwrap();
        // A line still being written is not skipped by `now`.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        let line = started("b", "r2").to_line();
        f.write_all(&line[..10]).unwrap();
        let (events, next, _) = all(&j, &Since::Now);
        assert!(events.is_empty());
        f.write_all(&line[10..]).unwrap();
        assert_eq!(names(&all(&j, &next).0), ["started:b"]);
    }

    #[test]
    fn a_line_still_being_written_is_left_for_the_next_read() {
        let (_tmp, j) = journal();
        j.append(&started("a", "r1")).unwrap();
        let (_, next, _) = all(&j, &Since::Start);
        let line = started("b", "r2").to_line();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(&line[..20]).unwrap();
        let (events, again, notes) = all(&j, &next);
        assert!(events.is_empty() && notes.is_empty());
        assert_eq!(again, next, "the partial line is not consumed");
        f.write_all(&line[20..]).unwrap();
        assert_eq!(names(&all(&j, &next).0), ["started:b"]);
    }

    #[test]
    fn a_torn_line_is_skipped_and_the_event_written_after_it_is_read() {
        let (_tmp, j) = journal();
        j.append(&started("a", "r1")).unwrap();
        // A writer died mid-line; the next append lands right after it.
        let torn = ended("a", "r1").to_line();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(&torn[..25]).unwrap();
        j.append(&started("b", "r2")).unwrap();
        f.write_all(b"not json at all\n").unwrap();
        j.append(&started("c", "r3")).unwrap();
        let (events, _, notes) = all(&j, &Since::Start);
        assert_eq!(names(&events), ["started:a", "started:b", "started:c"]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("skipped 1 malformed line"), "{notes:?}");
    }

    #[test]
    fn a_cursor_into_the_rotated_file_resumes_there_and_goes_on_into_the_new_one() {
        let (_tmp, j) = journal();
        j.append(&started("a", "r1")).unwrap();
        j.append(&started("b", "r2")).unwrap();
        let (before, _, _) = all(&j, &Since::Start);
        // Grow past the rotation size with a foreign padding line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(&vec![b' '; ROTATE_AT as usize]).unwrap();
        f.write_all(b"\n").unwrap();
        assert!(j.rotate(true).unwrap().is_some(), "dry run says it would");
        assert!(j.rotate(false).unwrap().is_some());
        assert!(j.old_path().exists() && j.path().exists());
        assert!(
            j.rotate(false).unwrap().is_none(),
            "the fresh file is small"
        );
        j.append(&started("c", "r3")).unwrap();
        let (events, _, notes) = all(&j, &Since::After(before[0].cursor.clone()));
        assert_eq!(names(&events), ["started:b", "started:c"]);
        assert!(notes.is_empty(), "{notes:?}");
        let (whole, _, _) = all(&j, &Since::Start);
        assert_eq!(names(&whole), ["started:a", "started:b", "started:c"]);
    }

    #[test]
    fn a_reader_caught_up_on_a_file_that_is_then_rotated_goes_on_without_a_gap_or_repeat() {
        let (_tmp, j) = journal();
        j.append(&started("a", "r1")).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(&vec![b' '; ROTATE_AT as usize]).unwrap();
        f.write_all(b"\n").unwrap();
        j.append(&started("b", "r2")).unwrap();
        let (_, next, _) = all(&j, &Since::Start);
        j.rotate(false).unwrap().unwrap();
        j.append(&started("c", "r3")).unwrap();
        let (events, _, notes) = all(&j, &next);
        assert_eq!(names(&events), ["started:c"]);
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_cursor_rotated_away_twice_restarts_at_the_oldest_kept_event_and_says_so() {
        let (_tmp, j) = journal();
        j.append(&started("a", "r1")).unwrap();
        let (first, _, _) = all(&j, &Since::Start);
        for name in ["b", "c"] {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(j.path())
                .unwrap();
            f.write_all(&vec![b' '; ROTATE_AT as usize]).unwrap();
            f.write_all(b"\n").unwrap();
            j.rotate(false).unwrap().unwrap();
            j.append(&started(name, name)).unwrap();
        }
        let (events, _, notes) = all(&j, &Since::After(first[0].cursor.clone()));
        assert_eq!(names(&events), ["started:b", "started:c"]);
        assert!(notes[0].contains("no longer kept"), "{notes:?}");
    }

    #[test]
    fn a_removed_journal_starts_again_and_an_old_cursor_reads_the_new_one_from_its_start() {
        let (_tmp, j) = journal();
        j.append(&started("a", "r1")).unwrap();
        let (_, next, _) = all(&j, &Since::Start);
        std::fs::remove_file(j.path()).unwrap();
        j.append(&started("b", "r2")).unwrap();
        let (events, _, notes) = all(&j, &next);
        assert_eq!(names(&events), ["started:b"]);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn cursors_of_another_shape_are_refused_with_what_they_should_look_like() {
        let (_tmp, j) = journal();
        for bad in [
            "x",
            "0123:5",
            "0123456789abcdef:",
            "0123456789ABCDEF:1",
            "mem:3",
        ] {
            let err = j.read(&Since::After(Cursor::new(bad))).unwrap_err();
            assert!(
                err.to_string().contains("0123456789abcdef:1234"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_repair_appends_an_end_only_when_the_run_has_none_after_its_start() {
        let (_tmp, j) = journal();
        j.append(&started("a", "r1")).unwrap();
        j.append(&started("b", "r2")).unwrap();
        let (events, _, _) = all(&j, &Since::Start);
        let (at_a, at_b) = (events[0].cursor.clone(), events[1].cursor.clone());
        j.append(&ended("a", "r1")).unwrap();
        assert!(!j.append_missing(&ended("a", "r1"), &at_a).unwrap());
        assert!(j.append_missing(&ended("b", "r2"), &at_b).unwrap());
        assert!(!j.append_missing(&ended("b", "r2"), &at_b).unwrap(), "once");
        let (events, _, _) = all(&j, &Since::Start);
        assert_eq!(
            names(&events),
            ["started:a", "started:b", "ended:a", "ended:b"]
        );
    }

    #[test]
    fn a_journal_that_is_not_a_regular_file_is_refused_by_readers_and_writers() {
        let (tmp, j) = journal();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), j.path()).unwrap();
        let err = j.read(&Since::Start).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        let err = j.append(&started("a", "r1")).unwrap_err().to_string();
        assert!(err.contains("events.jsonl"), "{err}");
        assert!(!tmp.path().join("elsewhere").exists(), "never followed");
    }

    #[test]
    fn concurrent_appends_never_interleave() {
        let (_tmp, j) = journal();
        std::thread::scope(|s| {
            for t in 0..4 {
                let j = &j;
                s.spawn(move || {
                    for i in 0..200 {
                        let mut e = ended("a", &format!("t{t}-{i}"));
                        e.reason = Some("x".repeat(900));
                        j.append(&e).unwrap();
                    }
                });
            }
        });
        let mut since = Since::Start;
        let mut seen = 0;
        loop {
            let r = j.read(&since).unwrap();
            assert!(r.notes.is_empty(), "{:?}", r.notes);
            seen += r.events.len();
            since = r.next;
            if !r.more {
                break;
            }
        }
        assert_eq!(seen, 800);
    }
}
