//! The compact result of a job, as one JSON line for programs or one short
//! line for people, plus the last lines of its log on anything but success.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use crate::protocol::{JobPaths, JobRecord, Outcome};

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

    /// A short line for a person, then the tail indented.
    pub fn to_human(&self) -> String {
        let mut s = format!("{}: {}", self.name, self.outcome);
        if self.running {
            s.push_str(" (still running)");
        }
        match (self.exit_code, self.signal) {
            (Some(c), _) if self.outcome != Outcome::Success => s.push_str(&format!(", exit {c}")),
            (_, Some(sig)) => s.push_str(&format!(", signal {sig}")),
            _ => {}
        }
        if let Some(ms) = self.duration_ms {
            s.push_str(&format!(" in {}", human_ms(ms)));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!(" ({r})"));
        }
        if self.outcome != Outcome::Success {
            s.push_str(&format!("\n  log: {}", self.log));
        }
        if let Some(result) = &self.result {
            s.push_str(&format!("\n  result: {result}"));
        }
        for line in self.tail.iter().flatten() {
            s.push_str(&format!("\n  | {line}"));
        }
        s
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

    /// A short line for a person, then the matching line indented.
    pub fn to_human(&self) -> String {
        let state = if self.running {
            "still running"
        } else {
            "the run has ended"
        };
        format!("{}: matched ({state})\n  | {}", self.name, self.line)
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

/// The last `n` lines of a file, reading backwards from its end so a huge
/// log costs no more than its tail. Lines are cut at [`MAX_TAIL_LINE`].
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let bytes = tail_bytes(path, n)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().map(shorten).collect();
    let skip = lines.len().saturating_sub(n);
    lines.drain(..skip);
    Ok(lines)
}

/// The bytes of the last `n` lines of a file (whole file if shorter).
pub fn tail_bytes(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let start = tail_start(&mut file, n)?;
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

/// The offset at which the last `n` lines of an open file start (0 if it
/// has fewer), found by reading backwards from its end in chunks, so a huge
/// log costs no more than its tail. A newline that ends the file does not
/// start another line.
pub fn tail_start(file: &mut File, n: usize) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut chunk = vec![0u8; CHUNK as usize];
    let mut newlines = 0;
    let mut end = len;
    while end > 0 {
        let from = end.saturating_sub(CHUNK);
        let buf = &mut chunk[..(end - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(buf)?;
        for (i, b) in buf.iter().enumerate().rev() {
            let at = from + i as u64;
            if *b == b'\n' && at + 1 != len {
                newlines += 1;
                if newlines == n {
                    return Ok(at + 1);
                }
            }
        }
        end = from;
    }
    Ok(0)
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
}
