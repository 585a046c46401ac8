//! Following one run's `NAME.log` like `tail -F`, and matching its lines.
//!
//! A [`LogFollower`] keeps the log open and remembers how far it has read,
//! so every look reads only the bytes written since the previous one. It is
//! bound to one run (its `job_id`): the run current when it first opened the
//! log, or one it is told. When the file at the path is truncated (shorter
//! than what was read: `copytruncate`) or replaced (another inode), it reads
//! the old descriptor to its end first and then starts again at byte 0 —
//! but only if the file now at the path belongs to the same run. A new run
//! of the name archives the old log and creates a fresh one, and a follower
//! bound to the old run never reads it: the old descriptor keeps reading the
//! archived file, which is where the rest of its run's output is.
//!
//! A [`LineMatcher`] sees a line only once its newline has arrived (or the
//! log has ended), so a marker written in several pieces matches once it is
//! whole, and one never matches half of it.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use regex::Regex;

use super::tail_start;
use crate::model::JobName;
use crate::report::shorten;
use crate::store::file::protocol::open::open_regular;
use crate::store::{RunAt, Store};

/// Longest part of one line kept while its newline has not arrived, in
/// bytes. A longer line is matched on its first 64 KiB as soon as they are
/// there, and the rest of it is skipped: a job printing one endless line
/// cannot make a waiter hold it all in memory.
pub const MAX_PENDING_LINE: usize = 64 * 1024;

/// Bytes read per `read(2)`.
const READ_CHUNK: usize = 64 * 1024;

/// What one step of a look at the log found.
#[derive(Debug, PartialEq, Eq)]
pub enum LogChunk<'a> {
    /// Bytes written since the previous look, in order.
    Bytes(&'a [u8]),
    /// The log was truncated, or replaced by another file of the same run:
    /// what follows is that file from its byte 0.
    Restart,
}

/// A file's identity: a replaced log has another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

struct OpenLog {
    file: File,
    id: FileId,
    offset: u64,
}

/// Follows the log of one run of a job.
pub struct LogFollower<'s> {
    log: PathBuf,
    store: &'s dyn Store,
    name: JobName,
    run: Option<String>,
    open: Option<OpenLog>,
    /// A file at the path known to belong to another run, so that it is
    /// not checked again at every look.
    foreign: Option<FileId>,
    buf: Vec<u8>,
}

impl<'s> LogFollower<'s> {
    /// A follower of the log of `name` in `store`, not yet bound to a run:
    /// it binds to the run whose log it first opens, or to the one given to
    /// [`Self::bind`].
    pub fn new(store: &'s dyn Store, name: &JobName) -> Self {
        Self {
            log: store.log_path(name, &RunAt::Current),
            store,
            name: name.clone(),
            run: None,
            open: None,
            foreign: None,
            buf: vec![0; READ_CHUNK],
        }
    }

    /// The `job_id` of the run followed, once known.
    pub fn run(&self) -> Option<&str> {
        self.run.as_deref()
    }

    /// Binds to run `job_id`, unless already bound.
    pub fn bind(&mut self, job_id: &str) {
        if self.run.is_none() {
            self.run = Some(job_id.to_owned());
        }
    }

    /// Opens the log, if it is there, and skips all but its last `n` lines,
    /// so that following starts with them.
    pub fn start_at_last_lines(&mut self, n: usize) -> io::Result<()> {
        if self.open.is_none() {
            self.open = self.open_own()?;
        }
        if let Some(open) = &mut self.open {
            let start = tail_start(&mut open.file, n)?;
            open.file.seek(SeekFrom::Start(start))?;
            open.offset = start;
        }
        Ok(())
    }

    /// The next piece of what was written since the previous look, or
    /// `None` once everything there is has been read. Call it until `None`
    /// at every look.
    pub fn next_chunk(&mut self) -> io::Result<Option<LogChunk<'_>>> {
        if self.open.is_none() {
            self.open = self.open_own()?;
        }
        let Some(open) = &mut self.open else {
            return Ok(None);
        };
        let n = read_retrying(&mut open.file, &mut self.buf)?;
        if n > 0 {
            open.offset += n as u64;
            return Ok(Some(LogChunk::Bytes(&self.buf[..n])));
        }
        // At the end of the file: only now look for a truncation or a
        // replacement, so that everything in the old file was read first.
        if open.file.metadata()?.len() < open.offset {
            open.file.seek(SeekFrom::Start(0))?;
            open.offset = 0;
            return Ok(Some(LogChunk::Restart));
        }
        if let Some(newer) = self.replacement()? {
            self.open = Some(newer);
            return Ok(Some(LogChunk::Restart));
        }
        Ok(None)
    }

    /// The file now at the path, when it replaced the one open and belongs
    /// to the same run.
    fn replacement(&mut self) -> io::Result<Option<OpenLog>> {
        let at_path = match std::fs::symlink_metadata(&self.log) {
            Ok(meta) => FileId::of(&meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let current = self.open.as_ref().map(|o| o.id);
        if Some(at_path) == current || Some(at_path) == self.foreign {
            return Ok(None);
        }
        self.open_own()
    }

    /// Opens the file at the path if it is the bound run's log (binding to
    /// the current run when unbound).
    ///
    /// A run's record is written before its log is created, and its log is
    /// archived before its record, so whenever the record names the same
    /// run before and after the open, the file opened is that run's log.
    fn open_own(&mut self) -> io::Result<Option<OpenLog>> {
        let before = self.current_run();
        // No symlink followed, no FIFO waited on (protocol §3).
        let file = match open_regular(&self.log) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let after = self.current_run();
        if before != after {
            return Ok(None); // the name is being restarted: look again later
        }
        let id = FileId::of(&file.metadata()?);
        match (&self.run, after) {
            (Some(bound), Some(current)) if *bound != current => {
                self.foreign = Some(id);
                return Ok(None);
            }
            // No record to tell whose log this is: not ours to trust yet.
            (Some(_), None) => return Ok(None),
            (None, Some(current)) => self.run = Some(current),
            _ => {}
        }
        Ok(Some(OpenLog {
            file,
            id,
            offset: 0,
        }))
    }

    fn current_run(&self) -> Option<String> {
        self.store.current_job_id(&self.name)
    }
}

fn read_retrying(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Splits a log into lines as its bytes arrive and remembers the first one
/// that matches a regex.
///
/// Lines are decoded as UTF-8 with invalid bytes replaced, and a `\r`
/// before the newline is dropped, so `$` works on CRLF output.
#[derive(Debug)]
pub struct LineMatcher {
    regex: Regex,
    pending: Vec<u8>,
    /// The current line outgrew [`MAX_PENDING_LINE`]: its head was matched,
    /// and the rest is skipped up to its newline.
    skipping: bool,
    found: Option<String>,
}

impl LineMatcher {
    /// A matcher for `regex`.
    pub fn new(regex: Regex) -> Self {
        Self {
            regex,
            pending: Vec::new(),
            skipping: false,
            found: None,
        }
    }

    /// The first matching line, cut to [`crate::report::MAX_TAIL_LINE`].
    pub fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }

    /// Takes one chunk of a [`LogFollower`].
    pub fn take(&mut self, chunk: LogChunk<'_>) {
        match chunk {
            LogChunk::Bytes(bytes) => self.feed(bytes),
            // What was read of the old file is complete: its last line too.
            LogChunk::Restart => self.finish(),
        }
    }

    /// Takes the next bytes of the log.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while self.found.is_none() && !bytes.is_empty() {
            match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.extend(&bytes[..i]);
                    self.end_line();
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.extend(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// The log has ended (or restarts): a last line without a newline is
    /// complete now.
    pub fn finish(&mut self) {
        self.end_line();
    }

    fn extend(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        let room = MAX_PENDING_LINE - self.pending.len();
        self.pending
            .extend_from_slice(&part[..part.len().min(room)]);
        if self.pending.len() == MAX_PENDING_LINE {
            self.check_pending();
            self.skipping = true;
        }
    }

    fn end_line(&mut self) {
        if !self.skipping && !self.pending.is_empty() {
            self.check_pending();
        }
        self.skipping = false;
    }

    fn check_pending(&mut self) {
        if self.found.is_none() {
            let text = String::from_utf8_lossy(&self.pending);
            let line = text.strip_suffix('\r').unwrap_or(&text);
            if self.regex.is_match(line) {
                self.found = Some(shorten(line));
            }
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::file::protocol::JobPaths;
    use std::io::Write;

    fn matcher(re: &str) -> LineMatcher {
        LineMatcher::new(Regex::new(re).unwrap())
    }

    #[test]
    fn a_marker_in_two_pieces_matches_only_once_whole() {
        let mut m = matcher("^listening on [0-9]+$");
        m.feed(b"starting\nlisten");
        assert_eq!(m.found(), None);
        m.feed(b"ing on 8080");
        assert_eq!(m.found(), None, "no newline yet: the line may go on");
        m.feed(b"\r\nmore\n");
        assert_eq!(m.found(), Some("listening on 8080"));
    }

    #[test]
    fn the_last_line_without_a_newline_matches_at_the_end() {
        let mut m = matcher("done");
        m.feed(b"work\ndone");
        assert_eq!(m.found(), None);
        m.finish();
        assert_eq!(m.found(), Some("done"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut m = matcher("caf. ok");
        m.feed(b"caf\xff ok\n");
        assert_eq!(m.found(), Some("caf\u{fffd} ok"));
    }

    #[test]
    fn an_overlong_line_is_matched_on_its_head_and_its_tail_skipped() {
        let mut m = matcher("^x+$");
        m.feed(&vec![b'x'; MAX_PENDING_LINE + 10]);
        assert!(m.found().is_some(), "the head alone is checked at the cap");
        assert!(m.found().unwrap().len() <= crate::report::MAX_TAIL_LINE + 3);

        let mut m = matcher("tail-marker");
        let mut long = vec![b'x'; MAX_PENDING_LINE];
        long.extend_from_slice(b"tail-marker\nnext\n");
        m.feed(&long);
        assert_eq!(m.found(), None, "past the cap the line is skipped");
        assert!(m.pending.is_empty());
        m.feed(b"tail-marker\n");
        assert_eq!(m.found(), Some("tail-marker"), "the next line counts");
    }

    /// A file store in `dir`, and the paths of its job `j`.
    fn job(dir: &std::path::Path) -> (crate::store::file::FileStore, JobPaths) {
        let store = crate::store::file::FileStore::open(Some(dir)).unwrap();
        let paths = JobPaths::new(store.path(), &JobName::parse("j").unwrap());
        (store, paths)
    }

    fn read_all(f: &mut LogFollower<'_>) -> (Vec<u8>, usize) {
        let (mut bytes, mut restarts) = (Vec::new(), 0);
        while let Some(chunk) = f.next_chunk().unwrap() {
            match chunk {
                LogChunk::Bytes(b) => bytes.extend_from_slice(b),
                LogChunk::Restart => restarts += 1,
            }
        }
        (bytes, restarts)
    }

    #[test]
    fn only_new_bytes_are_read_and_a_truncation_restarts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (store, job) = job(dir.path());
        let mut f = LogFollower::new(&store, job.name());
        assert_eq!(read_all(&mut f), (Vec::new(), 0), "no log yet");
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(job.log())
            .unwrap();
        log.write_all(b"one\ntw").unwrap();
        assert_eq!(read_all(&mut f), (b"one\ntw".to_vec(), 0));
        log.write_all(b"o\n").unwrap();
        assert_eq!(read_all(&mut f), (b"o\n".to_vec(), 0));
        log.set_len(0).unwrap();
        log.write_all(b"3\n").unwrap();
        assert_eq!(read_all(&mut f), (b"3\n".to_vec(), 1));
        assert_eq!(read_all(&mut f), (Vec::new(), 0));
    }

    #[test]
    fn a_replaced_log_is_read_to_its_end_then_the_new_one_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (store, job) = job(dir.path());
        std::fs::write(job.log(), b"first\n").unwrap();
        let mut f = LogFollower::new(&store, job.name());
        assert_eq!(read_all(&mut f).0, b"first\n");
        let mut old = File::options().append(true).open(job.log()).unwrap();
        std::fs::rename(job.log(), dir.path().join("j.log.1")).unwrap();
        old.write_all(b"late\n").unwrap();
        std::fs::write(job.log(), b"second\n").unwrap();
        assert_eq!(read_all(&mut f), (b"late\nsecond\n".to_vec(), 1));
    }

    #[test]
    fn start_at_last_lines_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (store, job) = job(dir.path());
        std::fs::write(job.log(), b"a\nb\nc\n").unwrap();
        let mut f = LogFollower::new(&store, job.name());
        f.start_at_last_lines(2).unwrap();
        assert_eq!(read_all(&mut f).0, b"b\nc\n");
    }
}
