//! Writing to the caller's stdout and stderr without ever panicking or
//! letting a stalled reader decide when the job ends.
//!
//! `run` and `mcp` keep SIGPIPE ignored (the wrapper must outlive its
//! reader), so a closed pipe turns every write into an `EPIPE` error, which
//! `println!` turns into a panic. Nothing in jobwatch prints with the std
//! macros (the crate denies `clippy::print_stdout` and
//! `clippy::print_stderr`); it prints through this module instead:
//!
//! - [`say`]: a line of output on stdout; a failed write is returned, never
//!   a panic.
//! - [`warn`]: a `jobwatch: ...` diagnostic on stderr; failures ignored (a
//!   diagnostic that cannot be shown is no reason to fail).
//! - [`notice`] and [`notice_within`]: the same for code that must not
//!   block on the caller's terminal (the wrapper while its job runs): the
//!   line is written only if stderr takes it now (or within a bound), else
//!   dropped.

use std::fmt::Display;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// Prints `line` and a newline on stdout. A reader that went away (or a
/// full disk) is returned as an error for callers that care; it never
/// panics.
pub fn say(line: impl Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Prints `jobwatch: MESSAGE` on stderr, in one write; a stderr that cannot
/// take it is ignored.
pub fn warn(message: impl Display) {
    let line = diagnostic(message);
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Prints `jobwatch: MESSAGE` on stderr only if stderr can take it at once;
/// otherwise the line is dropped. For a process whose job must not wait on
/// the caller's terminal.
pub fn notice(message: impl Display) {
    notice_within(message, Duration::ZERO);
}

/// Prints `jobwatch: MESSAGE` on stderr if stderr can take it within
/// `patience`; otherwise the line is dropped. Returns whether it was
/// written.
pub fn notice_within(message: impl Display, patience: Duration) -> bool {
    let line = diagnostic(message);
    let err = io::stderr();
    write_if_ready(err.as_fd(), line.as_bytes(), patience)
}

/// `jobwatch: MESSAGE` and a newline, on one line whatever `message` holds.
fn diagnostic(message: impl Display) -> String {
    let text = message.to_string();
    let one_line: Vec<&str> = text.split_whitespace().collect();
    format!("jobwatch: {}\n", one_line.join(" "))
}

/// The most a [`notice`] writes: a pipe takes up to `PIPE_BUF` bytes at once
/// or not at all, so a line this long never blocks once the pipe is
/// writable.
const ATOMIC_LINE: usize = 4096;

/// Writes `bytes` to `fd` with a single `write(2)`, but only once `poll`
/// says `fd` is writable, waiting at most `patience` for that. A line
/// longer than [`ATOMIC_LINE`] is cut (it still ends with a newline).
pub fn write_if_ready(fd: BorrowedFd<'_>, bytes: &[u8], patience: Duration) -> bool {
    if !writable_within(fd, patience) {
        return false;
    }
    let cut;
    let bytes = if bytes.len() > ATOMIC_LINE {
        cut = [&bytes[..ATOMIC_LINE - 1], b"\n"].concat();
        &cut[..]
    } else {
        bytes
    };
    matches!(rustix::io::write(fd, bytes), Ok(n) if n == bytes.len())
}

/// Whether `fd` can take a write without blocking, waiting up to `patience`.
fn writable_within(fd: BorrowedFd<'_>, patience: Duration) -> bool {
    let timeout = Timespec {
        tv_sec: i64::try_from(patience.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(patience.subsec_nanos()),
    };
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => {
                let got = fds[0].revents();
                return got.contains(PollFlags::OUT)
                    && !got.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL);
            }
            // A signal (the wrapper handles several): a shorter wait is fine.
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::pipe::{PipeFlags, pipe_with};
    use std::time::Instant;

    /// Fills a pipe until a write would block, then makes its write end
    /// blocking again: a write the poll check let through would hang.
    fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).unwrap();
        let chunk = [b'x'; 4096];
        while rustix::io::write(&w, &chunk).is_ok() {}
        while rustix::io::write(&w, b"x").is_ok() {}
        rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::empty()).unwrap();
        (r, w)
    }

    #[test]
    fn a_line_is_written_when_the_pipe_has_room() {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        assert!(write_if_ready(w.as_fd(), b"hello\n", Duration::ZERO));
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello\n");
    }

    #[test]
    fn a_full_pipe_drops_the_line_instead_of_blocking() {
        let (_r, w) = full_pipe();
        assert!(!write_if_ready(w.as_fd(), b"dropped\n", Duration::ZERO));
        let started = Instant::now();
        assert!(!write_if_ready(
            w.as_fd(),
            b"dropped\n",
            Duration::from_millis(30)
        ));
        assert!(started.elapsed() >= Duration::from_millis(30), "it waited");
    }

    #[test]
    fn a_closed_pipe_is_a_failed_write_not_a_panic() {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        drop(r);
        assert!(!write_if_ready(w.as_fd(), b"nobody\n", Duration::ZERO));
    }

    #[test]
    fn a_long_line_is_cut_to_what_a_pipe_takes_at_once() {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        let long = vec![b'y'; 10_000];
        assert!(write_if_ready(w.as_fd(), &long, Duration::ZERO));
        let mut buf = vec![0u8; 20_000];
        let n = rustix::io::read(&r, &mut buf).unwrap();
        assert_eq!(n, ATOMIC_LINE);
        assert_eq!(buf[n - 1], b'\n');
    }

    #[test]
    fn diagnostics_are_one_line() {
        assert_eq!(diagnostic("a\nb  c"), "jobwatch: a b c\n");
    }
}
