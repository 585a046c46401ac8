//! Tails of logs: the last lines of a file as a terminal would show them,
//! read backwards from its end, so a huge log costs no more than its tail
//! and one endless line is never held whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use memchr::{memrchr, memrchr2};

use super::open_log_file as open_existing;
use crate::report::{MAX_TAIL_LINE, shorten};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

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
