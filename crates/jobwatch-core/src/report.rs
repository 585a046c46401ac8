//! The compact result of a job, as one JSON line for programs (a person's
//! line is the CLI's to render), plus the last lines of its log on anything
//! but success.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use memchr::{memrchr, memrchr2};
use serde::Serialize;

use crate::model::{JobRecord, Outcome};
use crate::protocol::JobPaths;
use crate::protocol::open::open_existing;

/// Longest log line kept in a report, in bytes; longer lines are cut, so a
/// report stays small whatever the job printed.
pub const MAX_TAIL_LINE: usize = 400;

/// One job's result, as printed by `wait`.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// The job's name.
    pub name: String,
    /// How it ended (or `timeout` when a waiter gave up).
    pub outcome: Outcome,
    /// Whether the job is still running (a waiter's `--no-kill` timeout).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
    /// The command's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended the command.
    pub signal: Option<i32>,
    /// Run time in ms.
    pub duration_ms: Option<u64>,
    /// Why it ended so (for anything but success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The log file.
    pub log: String,
    /// The command's own result file, when it wrote one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The last log lines, on anything but success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail: Option<Vec<String>>,
}

impl JobReport {
    /// Builds the report of a job from its (final) record.
    pub fn new(
        paths: &JobPaths,
        outcome: Outcome,
        record: Option<&JobRecord>,
        tail: usize,
    ) -> Self {
        let result = paths.result();
        let tail = (outcome != Outcome::Success && tail > 0)
            .then(|| tail_lines(&paths.log(), tail).unwrap_or_default());
        Self {
            name: paths.name().to_string(),
            outcome,
            running: false,
            exit_code: record.and_then(|r| r.exit_code),
            signal: record.and_then(|r| r.signal),
            duration_ms: record.and_then(|r| r.duration_ms),
            reason: record.and_then(|r| r.reason.clone()),
            log: paths.log().display().to_string(),
            result: result.exists().then(|| result.display().to_string()),
            tail,
        }
    }

    /// One compact JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// The outcome word of a [`MatchReport`]: the waiter's own verdict, not a
/// job outcome (the job may well still run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchOutcome {
    /// A line of the job's log matched `wait --until-log`.
    Matched,
}

/// The result of `wait --until-log` when a line of the run's log matched.
#[derive(Debug, Clone, Serialize)]
pub struct MatchReport {
    /// The job's name.
    pub name: String,
    /// Always `matched`.
    pub outcome: MatchOutcome,
    /// Whether the run was still going when the line was found; `false`
    /// when it had already ended (its exit code and the like are then the
    /// record's).
    pub running: bool,
    /// The command's exit code, when the run had ended.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when the run had ended.
    pub signal: Option<i32>,
    /// Run time in ms, when the run had ended.
    pub duration_ms: Option<u64>,
    /// The log file.
    pub log: String,
    /// The first matching line, cut at [`MAX_TAIL_LINE`] bytes.
    pub line: String,
}

impl MatchReport {
    /// The report of a match in the log at `paths`; `record` is the run's
    /// final record when it had ended.
    pub fn new(paths: &JobPaths, line: &str, running: bool, record: Option<&JobRecord>) -> Self {
        let ended = record.filter(|_| !running);
        Self {
            name: paths.name().to_string(),
            outcome: MatchOutcome::Matched,
            running,
            exit_code: ended.and_then(|r| r.exit_code),
            signal: ended.and_then(|r| r.signal),
            duration_ms: ended.and_then(|r| r.duration_ms),
            log: paths.log().display().to_string(),
            line: shorten(line),
        }
    }

    /// One compact JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// A duration in ms as `1.2s`, `3m 4s` and the like.
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
    }
}

/// The last `n` lines of a file as a terminal would show them, each cut at
/// [`MAX_TAIL_LINE`] bytes.
///
/// A line redrawn with `\r` (a progress bar) shows what follows its last
/// `\r`: its latest state, not the first bytes of a run of updates (a `\r`
/// that ends a line, as in CRLF, redraws nothing). The file is read
/// backwards from its end: whatever the lines' lengths, no more than one
/// chunk plus `n` cut lines is held in memory.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let file = open_existing(path)?;
    let len = file.metadata()?.len();
    let mut back = Backwards::new(&file);
    let mut lines = Vec::new();
    if len == 0 {
        return Ok(lines);
    }
    // The newline that ends the file does not start another line.
    let mut end = len;
    if end > 0 && back.byte_at(end - 1)? == b'\n' {
        end -= 1;
    }
    while lines.len() < n {
        let (line, start) = shown_line(&mut back, end)?;
        lines.push(line);
        if start == 0 {
            break;
        }
        end = start - 1; // the newline before the line
    }
    lines.reverse();
    Ok(lines)
}

/// What a terminal shows of the line that ends at `end` (exclusive, its
/// newline excluded), cut at [`MAX_TAIL_LINE`], and where the line starts.
fn shown_line(back: &mut Backwards<'_>, end: u64) -> std::io::Result<(String, u64)> {
    // Carriage returns that end the line redraw nothing (a newline before
    // the line is no `\r` either, so this never leaves the line).
    let content_end = back
        .rfind(end, |c| c.iter().rposition(|b| *b != b'\r'))?
        .map_or(0, |at| at + 1);
    // The latest state starts after the line's last `\r`, if any.
    let shown_start = back
        .rfind(content_end, |c| memrchr2(b'\r', b'\n', c))?
        .map_or(0, |at| at + 1);
    let line_start = if shown_start > 0 && back.byte_at(shown_start - 1)? == b'\r' {
        back.rfind(shown_start, |c| memrchr(b'\n', c))?
            .map_or(0, |at| at + 1)
    } else {
        shown_start
    };
    // A few bytes past the cut, so that a character straddling it is
    // whole and the cut is marked.
    let take = (content_end - shown_start).min(MAX_TAIL_LINE as u64 + 4);
    let mut bytes = vec![0; take as usize];
    back.file.read_exact_at(&mut bytes, shown_start)?;
    Ok((shorten(&String::from_utf8_lossy(&bytes)), line_start))
}

/// Reads a file backwards one chunk at a time, for searches from its end.
struct Backwards<'f> {
    file: &'f File,
    chunk: Vec<u8>,
    /// The file offset of `chunk[0]`.
    chunk_start: u64,
}

impl<'f> Backwards<'f> {
    const CHUNK: u64 = 64 * 1024;

    fn new(file: &'f File) -> Self {
        Self {
            file,
            chunk: Vec::new(),
            chunk_start: 0,
        }
    }

    /// Loads the chunk that ends at `end` (exclusive) unless the loaded one
    /// holds the byte before `end`.
    fn load_before(&mut self, end: u64) -> std::io::Result<()> {
        let loaded_end = self.chunk_start + self.chunk.len() as u64;
        if self.chunk_start < end && end <= loaded_end {
            return Ok(());
        }
        let from = end.saturating_sub(Self::CHUNK);
        self.chunk.resize((end - from) as usize, 0);
        self.file.read_exact_at(&mut self.chunk, from)?;
        self.chunk_start = from;
        Ok(())
    }

    fn byte_at(&mut self, at: u64) -> std::io::Result<u8> {
        self.load_before(at + 1)?;
        Ok(self.chunk[(at - self.chunk_start) as usize])
    }

    /// The offset of the last byte before `end` that `search` finds in a
    /// chunk (`search` returns its index there).
    fn rfind(
        &mut self,
        mut end: u64,
        search: impl Fn(&[u8]) -> Option<usize>,
    ) -> std::io::Result<Option<u64>> {
        while end > 0 {
            self.load_before(end)?;
            let upto = (end - self.chunk_start) as usize;
            if let Some(i) = search(&self.chunk[..upto]) {
                return Ok(Some(self.chunk_start + i as u64));
            }
            end = self.chunk_start;
        }
        Ok(None)
    }
}

/// Most bytes [`tail_bytes`] returns: the end of a longer tail.
pub const MAX_TAIL_BYTES: u64 = 1 << 20;

/// The bytes of the last `n` lines of a file (whole file if shorter), at
/// most the last [`MAX_TAIL_BYTES`] of them.
pub fn tail_bytes(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    tail_bytes_at_most(path, n, MAX_TAIL_BYTES)
}

/// The bytes of the last `n` lines of a file, at most the last `max` of
/// them: never more than `max` bytes are held, whatever the lines' length.
pub fn tail_bytes_at_most(path: &Path, n: usize, max: u64) -> std::io::Result<Vec<u8>> {
    let mut file = open_existing(path)?;
    let len = file.metadata()?.len();
    let start = tail_start(&mut file, n)?.max(len.saturating_sub(max));
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(len - start).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The offset at which the last `n` lines of an open file start (0 if it
/// has fewer), found by reading backwards from its end in chunks, so a huge
/// log costs no more than its tail. A newline that ends the file does not
/// start another line.
pub fn tail_start(file: &mut File, n: usize) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut back = Backwards::new(file);
    let mut before = len;
    if len > 0 && back.byte_at(len - 1)? == b'\n' {
        before -= 1;
    }
    for _ in 0..n {
        match back.rfind(before, |c| memrchr(b'\n', c))? {
            Some(at) => before = at,
            None => return Ok(0),
        }
    }
    Ok(before + 1)
}

/// A log line cut to at most [`MAX_TAIL_LINE`] bytes (at a character
/// boundary, marked with `…`).
pub fn shorten(line: &str) -> String {
    if line.len() <= MAX_TAIL_LINE {
        return line.to_owned();
    }
    let mut end = MAX_TAIL_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_last_lines_with_or_without_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail_lines(&p, 2).unwrap(), ["b", "c"]);
        assert_eq!(tail_lines(&p, 9).unwrap(), ["a", "b", "c"]);
        std::fs::write(&p, "a\nb\nc").unwrap();
        assert_eq!(tail_lines(&p, 2).unwrap(), ["b", "c"]);
        assert_eq!(tail_bytes(&p, 1).unwrap(), b"c");
        assert!(tail_lines(&p, 0).unwrap().is_empty());
    }

    #[test]
    fn tail_spans_chunks_of_a_large_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let body: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, body).unwrap();
        assert_eq!(
            tail_lines(&p, 3).unwrap(),
            ["line 49997", "line 49998", "line 49999"]
        );
        let long = "é".repeat(1000);
        std::fs::write(&p, &long).unwrap();
        assert!(tail_lines(&p, 1).unwrap()[0].len() <= MAX_TAIL_LINE + 3);
    }

    #[test]
    fn a_carriage_return_line_shows_its_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let progress: String = (1..=200).map(|i| format!("{i}%\r")).collect();
        let body = format!("crlf\r\n{progress}done\nup\rdown\r\r\n\r\n\rlast");
        std::fs::write(&p, body).unwrap();
        assert_eq!(
            tail_lines(&p, 9).unwrap(),
            ["crlf", "done", "down", "", "last"]
        );
        assert_eq!(tail_lines(&p, 2).unwrap(), ["", "last"]);
        std::fs::write(&p, "\r\r\n").unwrap();
        assert_eq!(tail_lines(&p, 3).unwrap(), [""]);
        std::fs::write(&p, "").unwrap();
        assert!(tail_lines(&p, 3).unwrap().is_empty());
    }

    #[test]
    fn a_line_far_longer_than_a_chunk_is_cut_at_its_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let mut body = "a".repeat(300_000);
        body.push('\r');
        body.push_str(&"b".repeat(200_000));
        body.push_str("\nshort\n");
        std::fs::write(&p, body).unwrap();
        let lines = tail_lines(&p, 5).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format!("{}…", "b".repeat(MAX_TAIL_LINE)));
        assert_eq!(lines[1], "short");
        // The raw tail is the end of the lines, at most `max` bytes.
        assert_eq!(tail_bytes_at_most(&p, 2, 10).unwrap(), b"bbb\nshort\n");
        let mut f = File::open(&p).unwrap();
        assert_eq!(tail_start(&mut f, 1).unwrap(), 500_002);
        assert_eq!(tail_start(&mut f, 2).unwrap(), 0);
        assert_eq!(tail_start(&mut f, 0).unwrap(), 500_008);
    }
}
