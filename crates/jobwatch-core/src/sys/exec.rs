//! Running a short command under a deadline: its own process group, output
//! kept in an unlinked temp file, and on timeout SIGKILL to the whole group
//! while its leader is still unreaped (so the group id cannot have been
//! reused), then the leader reaped. Used for preflight checks and fixes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process_group, pidfd_open};

/// How much of a command's output is kept for its tail, in bytes.
const TAIL_BYTES: u64 = 4096;

/// How a bounded command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (not ours).
    Signalled(i32),
    /// It ran past its deadline; its process group was killed.
    TimedOut,
}

/// A bounded command's ending and the end of its combined output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded {
    /// How it ended.
    pub ending: Ending,
    /// The last few KiB of its stdout and stderr, interleaved as written.
    pub output_tail: String,
}

/// Runs `cmd` (stdin from `/dev/null`, stdout and stderr captured) in a new
/// process group and waits at most `timeout` for it to exit.
///
/// Output goes to an unlinked temp file rather than a pipe: a background
/// process the command leaves behind (a fix that starts a server) keeps
/// writing without blocking us and without dying of SIGPIPE when we exit.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> io::Result<Bounded> {
    let mut out = tempfile::tempfile()?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?)
        .process_group(0);
    let mut child = cmd.spawn()?;
    let leader = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    let exited = match pidfd_open(leader, PidfdFlags::empty()) {
        Ok(pidfd) => exits_within(&pidfd, timeout),
        // Without a pidfd, fall back to polling the unreaped child.
        Err(_) => poll_exit(&mut child, timeout)?,
    };
    if !exited {
        // The leader is not reaped yet, so its PID (the group id) is ours.
        let _ = kill_process_group(leader, Signal::KILL);
    }
    let status = child.wait()?;
    let ending = match (exited, status.code(), status.signal()) {
        (false, _, _) => Ending::TimedOut,
        (true, Some(code), _) => Ending::Exited(code),
        (true, None, Some(sig)) => Ending::Signalled(sig),
        (true, None, None) => Ending::Exited(-1),
    };
    Ok(Bounded {
        ending,
        output_tail: tail_of(&mut out),
    })
}

/// Waits until the process behind `pidfd` exits (it becomes readable) or
/// `timeout` passes; true when it exited. Signals interrupting the wait do
/// not shorten or lengthen it.
fn exits_within(pidfd: &impl std::os::fd::AsFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// The fallback for kernels without pidfds: looks at the child every 10 ms
/// without reaping it.
fn poll_exit(child: &mut std::process::Child, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if super::child::peek_exit(child.id() as i32).is_some() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last [`TAIL_BYTES`] of the output file, as text.
fn tail_of(out: &mut File) -> String {
    let mut buf = Vec::new();
    let len = out.seek(SeekFrom::End(0)).unwrap_or(0);
    if out
        .seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .is_ok()
    {
        let _ = out.take(TAIL_BYTES).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether this process may execute `path` (execute permission for this
/// user, as the kernel decides it).
pub fn is_executable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn an_exit_code_and_the_output_are_reported() {
        let b = run_bounded(
            sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(b.ending, Ending::Exited(3));
        assert_eq!(b.output_tail, "out\nerr\n");
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        let script = format!(
            "sleep 300 & echo $! > '{}'; echo started; wait",
            pidfile.display()
        );
        let b = run_bounded(sh(&script), Duration::from_millis(300)).unwrap();
        assert_eq!(b.ending, Ending::TimedOut);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was in the group: it died (at most a zombie
        // waiting for init to reap it).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_owned()));
            match state {
                None => break,
                Some(s) if s.starts_with('Z') || s.starts_with('X') => break,
                Some(_) => {}
            }
            assert!(Instant::now() < deadline, "background sleep {pid} survived");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(b.output_tail.contains("started"));
    }

    #[test]
    fn only_the_tail_of_long_output_is_kept() {
        let b = run_bounded(
            sh("i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(b.ending, Ending::Exited(0));
        assert!(b.output_tail.len() as u64 <= TAIL_BYTES);
        assert!(b.output_tail.ends_with("line1999\n"));
    }
}
