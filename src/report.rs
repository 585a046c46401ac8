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
    const CHUNK: u64 = 64 * 1024;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // n lines need n+1 newlines when the file ends with one.
    while start > 0 && buf.iter().filter(|b| **b == b'\n').count() <= n {
        let read_from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - read_from) as usize];
        file.seek(SeekFrom::Start(read_from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = read_from;
    }
    let text_end = if buf.ends_with(b"\n") {
        buf.len() - 1
    } else {
        buf.len()
    };
    let mut newlines = 0;
    let mut cut = 0;
    for (i, b) in buf[..text_end].iter().enumerate().rev() {
        if *b == b'\n' {
            newlines += 1;
            if newlines == n {
                cut = i + 1;
                break;
            }
        }
    }
    Ok(buf.split_off(cut))
}

fn shorten(line: &str) -> String {
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
