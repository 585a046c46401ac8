//! The spinner `wait` shows while it blocks on a terminal: the job names,
//! the time waited and the newest line of the jobs' logs, on stderr.
//!
//! It runs on its own thread and only reads: the waiter does not know it
//! exists. Dropping the [`Spinner`] stops the thread and clears the line
//! before anything else is printed.

use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use jobwatch_core::model::JobName;
use jobwatch_core::store::{RunAt, Store};

/// How often the spinner turns.
const TICK: Duration = Duration::from_millis(120);
/// How often the log's last line is read again: a few times per second.
const LOG_REFRESH: Duration = Duration::from_millis(400);
/// The most of a log read to find its last line.
const TAIL_WINDOW: u64 = 4096;
/// Names shown before the rest are summed up as `+N`.
const NAMES_SHOWN: usize = 3;

/// A running spinner; dropping it clears it.
pub struct Spinner {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts a spinner for `names` when `wanted` and stderr is a terminal
    /// that can redraw a line (not `TERM=dumb`); otherwise does nothing.
    pub fn start(store: &dyn Store, names: &[JobName], wanted: bool) -> Option<Spinner> {
        if !wanted || !std::io::stderr().is_terminal() || dumb_terminal() {
            return None;
        }
        let logs: Vec<PathBuf> = names
            .iter()
            .map(|n| store.log_path(n, &RunAt::Current))
            .collect();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
            .with_style(style(colour_allowed()))
            .with_prefix(label(names));
        // The first frame is drawn before the wait begins, so even a wait
        // that returns at once shows (and clears) one.
        bar.set_message(newest_line(&logs).unwrap_or_default());
        bar.tick();
        let (stop, stopped) = mpsc::channel::<()>();
        let on_failure = bar.clone();
        let spawned = thread::Builder::new()
            .name("wait-progress".into())
            .spawn(move || {
                let mut last_read = Instant::now();
                loop {
                    if last_read.elapsed() >= LOG_REFRESH {
                        bar.set_message(newest_line(&logs).unwrap_or_default());
                        last_read = Instant::now();
                    }
                    bar.tick();
                    match stopped.recv_timeout(TICK) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
                bar.finish_and_clear();
            });
        let Ok(thread) = spawned else {
            on_failure.finish_and_clear();
            return None;
        };
        Some(Spinner {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether colour may be used: `NO_COLOR` unset or empty
/// (<https://no-color.org>).
pub fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

fn style(colour: bool) -> ProgressStyle {
    let template = if colour {
        "{spinner:.cyan} {prefix:.bold} {elapsed_precise:.dim} {wide_msg}"
    } else {
        "{spinner} {prefix} {elapsed_precise} {wide_msg}"
    };
    ProgressStyle::with_template(template).expect("a valid template")
}

fn label(names: &[JobName]) -> String {
    let mut shown: Vec<&str> = names
        .iter()
        .take(NAMES_SHOWN)
        .map(JobName::as_str)
        .collect();
    let more = names.len().saturating_sub(NAMES_SHOWN);
    let more = format!("+{more}");
    if names.len() > NAMES_SHOWN {
        shown.push(&more);
    }
    shown.join(" ")
}

/// The last line of the most recently written log.
fn newest_line(logs: &[PathBuf]) -> Option<String> {
    let newest = logs
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _): &(SystemTime, _)| *t)?
        .1;
    last_line(newest)
}

/// The last non-empty line of a file, read from at most its last
/// [`TAIL_WINDOW`] bytes; what a `\r`-redrawn progress bar shows last;
/// colour codes and control characters dropped so the spinner's own line
/// stays intact.
fn last_line(path: &Path) -> Option<String> {
    // A FIFO or a symlink at the log's place must not stall the spinner.
    let mut f = jobwatch_core::logs::open_log_file(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL_WINDOW)))
        .ok()?;
    let mut buf = Vec::with_capacity(TAIL_WINDOW as usize);
    f.take(TAIL_WINDOW).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let text = console::strip_ansi_codes(&text);
    let line = text
        .split(['\n', '\r'])
        .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
        .rfind(|l| !l.trim().is_empty())?;
    Some(line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_skips_blank_lines_redraws_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "first\nsecond\n\n").unwrap();
        assert_eq!(last_line(&p).as_deref(), Some("second"));
        std::fs::write(&p, "building 10%\rbuilding 90%\r").unwrap();
        assert_eq!(last_line(&p).as_deref(), Some("building 90%"));
        std::fs::write(&p, "\x1b[31mred\x1b[0m\n").unwrap();
        assert_eq!(last_line(&p).as_deref(), Some("red"));
        std::fs::write(&p, "tab\there\x07\n").unwrap();
        assert_eq!(last_line(&p).as_deref(), Some("tabhere"));
        std::fs::write(&p, "").unwrap();
        assert_eq!(last_line(&p), None);
    }

    #[test]
    fn last_line_reads_only_the_tail_of_a_long_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "x".repeat(100_000)).unwrap();
        assert_eq!(last_line(&p).unwrap().len(), TAIL_WINDOW as usize);
    }

    #[test]
    fn many_names_are_summed_up() {
        let names: Vec<JobName> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| JobName::parse(n).unwrap())
            .collect();
        assert_eq!(label(&names[..2]), "a b");
        assert_eq!(label(&names), "a b c +2");
    }
}
