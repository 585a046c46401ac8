//! The wrapper's side of process management: becoming a subreaper, learning
//! that the command exited without reaping it (so its PID, and therefore its
//! process-group id, cannot be reused while we still signal the group),
//! reaping orphans, and turning signals into wake-ups of the event loop.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, WaitId, WaitIdOptions, WaitOptions, waitid, waitpid};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGURG};

use super::proc::own_children;

/// How the command ended, as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

/// Makes orphaned descendants of this process re-parent to it instead of to
/// PID 1, so that the wrapper sees (and reaps) the whole job tree.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(Into::into)
}

/// Whether child `pid` has exited; it is left unreaped (a zombie) so that
/// its PID stays reserved until [`reap`] is called.
pub fn peek_exit(pid: i32) -> Option<ExitStatus> {
    let pid = Pid::from_raw(pid)?;
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    let status = waitid(WaitId::Pid(pid), opts).ok()??;
    if let Some(code) = status.exit_status() {
        Some(ExitStatus::Code(code))
    } else {
        status.terminating_signal().map(ExitStatus::Signal)
    }
}

/// Reaps child `pid` (after [`peek_exit`] said it exited).
pub fn reap(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = waitpid(Some(pid), WaitOptions::empty());
    }
}

/// Reaps every exited child except `keep`; orphans of the job re-parented to
/// the subreaper would otherwise linger as zombies.
pub fn reap_orphans(keep: i32) {
    // The wrapper calls this at every wake-up, and almost always no child
    // has exited: one `waitid` that reaps nothing says so, where listing
    // the children opens a file per thread and a folder.
    let exited = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    if !matches!(waitid(WaitId::All, exited), Ok(Some(_))) {
        return;
    }
    for pid in own_children() {
        if pid == keep {
            continue;
        }
        if let Some(p) = Pid::from_raw(pid) {
            let _ = waitpid(Some(p), WaitOptions::NOHANG);
        }
    }
}

/// Signals that the wrapper handles: their arrival wakes [`SignalPipe::wait`].
pub struct SignalPipe {
    read: UnixStream,
    last_terminating: Arc<AtomicUsize>,
}

impl SignalPipe {
    /// Installs handlers for SIGCHLD, SIGTERM, SIGINT and SIGHUP, and for
    /// SIGURG: a killer sends it after writing a kill request, to have the
    /// request looked at now (it only wakes the wrapper).
    pub fn install() -> io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let last_terminating = Arc::new(AtomicUsize::new(0));
        for sig in [SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGURG] {
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal_hook::flag::register_usize(sig, Arc::clone(&last_terminating), sig as usize)?;
        }
        Ok(Self {
            read,
            last_terminating,
        })
    }

    /// Sleeps until a handled signal arrives or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        self.wait_also(timeout, None);
    }

    /// [`SignalPipe::wait`], also woken when `other` becomes readable (a
    /// store claim's wake-up: its owner consumes it).
    pub fn wait_also(&self, timeout: Duration, other: Option<std::os::fd::BorrowedFd<'_>>) {
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as i64,
        };
        // No allocation on the idle path: one or two descriptors in place.
        let (mut one, mut both);
        let fds: &mut [PollFd<'_>] = match &other {
            Some(fd) => {
                both = [
                    PollFd::new(&self.read, PollFlags::IN),
                    PollFd::new(fd, PollFlags::IN),
                ];
                &mut both
            }
            None => {
                one = [PollFd::new(&self.read, PollFlags::IN)];
                &mut one
            }
        };
        // A timeout left nothing to read: no syscall to find that out.
        if poll(fds, Some(&ts)) != Ok(0) {
            self.drain();
        }
    }

    fn drain(&self) {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Takes the last terminating signal (TERM, INT, HUP) received since the
    /// previous call, if any.
    pub fn take_terminating(&self) -> Option<i32> {
        match self.last_terminating.swap(0, Ordering::SeqCst) {
            0 => None,
            n => Some(n as i32),
        }
    }
}

/// Makes a command start in a new session: no controlling terminal, so the
/// caller's terminal closing (SIGHUP) never reaches it.
pub fn detach_into_new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
}

/// Makes this process the leader of a new session, with no controlling
/// terminal. A detached wrapper calls it first thing. It fails only for a
/// process that leads its group already (a wrapper started by hand from a
/// shell), which then stays where it is.
pub fn leave_spawners_session() {
    let _ = rustix::process::setsid();
}

/// Detaches this process's stdin and stdout from its spawner (the pipes
/// that carried the run spec and the readiness line) and sends stderr to
/// `log`, so that the spawner can exit and later diagnostics are kept with
/// the job.
pub fn release_stdio(log: &std::path::Path) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
    }
    if let Ok(log) = crate::logs::append_to_log_file(log) {
        let _ = rustix::stdio::dup2_stderr(&log);
    }
}

/// Takes this process's stdout for a protocol that owns it (`jobwatch mcp`):
/// returns a private duplicate of it and points fd 1 at stderr, so a stray
/// print anywhere in the process lands in the diagnostics instead of
/// corrupting the protocol stream.
pub fn take_stdout_for_protocol() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    let private = stdout.as_fd().try_clone_to_owned()?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    Ok(std::fs::File::from(private))
}

/// Makes the last close of an inotify descriptor happen outside this
/// process. That close waits for a kernel grace period (milliseconds), and a
/// parent sees its child's exit only after all the child's files are
/// closed. A helper forked now holds a second reference until this process
/// has exited (EOF on a pipe whose write end this process keeps open for
/// good), so this process's own close never is the last one.
///
/// Forked when the descriptor is created, not when it is dropped: the fork
/// then costs nothing on the path from a job's end to the caller learning
/// of it. Only for a process that exits soon after it is done with `fd`.
pub fn hold_until_exit(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, IntoRawFd};
    let Ok((read_end, write_end)) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
    else {
        return;
    };
    let keep = [read_end.as_raw_fd(), fd.as_raw_fd()];
    // SAFETY: after fork the child only calls async-signal-safe functions
    // (close, close_range, read, _exit) and allocates nothing, which is
    // sound even when the parent has other threads.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let read_fd = read_end.into_raw_fd();
        close_all_but(keep);
        let mut byte = 0u8;
        // Returns at EOF: this process has exited, its references are gone.
        // SAFETY: reading one byte into a local buffer.
        while unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) } > 0 {}
        // SAFETY: ends the helper without running Rust's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(read_end);
    if pid > 0 {
        // Open until this process exits: its close is the helper's signal.
        let _ = write_end.into_raw_fd();
    }
}

/// In a forked child: closes every descriptor except `keep`.
fn close_all_but(mut keep: [i32; 2]) {
    keep.sort_unstable();
    let mut from: u32 = 0;
    for k in keep {
        if k as u32 > from {
            close_range(from, k as u32 - 1);
        }
        from = k as u32 + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range only closes descriptors of this (forked) process.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if r != 0 {
        for fd in first..=last.min(1024) {
            // SAFETY: closing descriptors this forked child owns.
            unsafe { libc::close(fd as i32) };
        }
    }
}
