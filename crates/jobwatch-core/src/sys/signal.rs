//! Sending signals without ever hitting the wrong process: each target is
//! pinned with a pidfd, its start time re-checked, then signalled through
//! the pidfd, so a PID reused between check and signal cannot be hit.

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::proc::{ProcessId, read_proc};

/// What became of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The signal was delivered to the process we meant.
    Sent,
    /// The process no longer exists (or is a zombie): nothing to do.
    Gone,
    /// The PID now belongs to another process: it was not signalled.
    Reused,
    /// The kernel refused (e.g. another user's process).
    Refused,
}

/// Sends `sig` to exactly the process `id`, never to a reuse of its PID.
pub fn signal_process(id: ProcessId, sig: Signal) -> Delivery {
    let Some(pid) = Pid::from_raw(id.pid) else {
        return Delivery::Gone;
    };
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return Delivery::Gone,
    };
    // The pidfd now refers to whichever process holds the PID; confirm it
    // is ours before using it.
    match read_proc(id.pid) {
        None => return Delivery::Gone,
        Some(p) if p.id.start_time != id.start_time => return Delivery::Reused,
        Some(p) if p.is_dead() => return Delivery::Gone,
        Some(_) => {}
    }
    match pidfd_send_signal(&fd, sig) {
        Ok(()) => Delivery::Sent,
        Err(rustix::io::Errno::SRCH) => Delivery::Gone,
        Err(_) => Delivery::Refused,
    }
}

/// Sends `sig` to the whole process group `leader.pid`, but only while its
/// leader `leader` still exists (live or zombie), which guarantees the
/// group id has not been reused.
pub fn signal_group(leader: ProcessId, sig: Signal) -> Delivery {
    let Some(pid) = Pid::from_raw(leader.pid) else {
        return Delivery::Gone;
    };
    match read_proc(leader.pid) {
        None => return Delivery::Gone,
        Some(p) if p.id.start_time != leader.start_time => return Delivery::Reused,
        Some(_) => {}
    }
    match rustix::process::kill_process_group(pid, sig) {
        Ok(()) => Delivery::Sent,
        Err(rustix::io::Errno::SRCH) => Delivery::Gone,
        Err(_) => Delivery::Refused,
    }
}

/// A signal number as rustix's type (`None` for an invalid number).
pub fn from_number(n: i32) -> Option<Signal> {
    Signal::from_named_raw(n)
}

/// Lets a closed stdout end this process quietly, as it ends `cat` or
/// `ls`, instead of going on with work nobody reads. Only for commands
/// whose output is the whole point: the wrapper must survive its reader
/// (its job goes on), so it keeps Rust's default of ignoring SIGPIPE and
/// writes through `sys::stdio`, which turns a closed pipe into an error
/// instead of a panic.
pub fn exit_on_broken_pipe() {
    // SAFETY: restoring the default disposition of one signal; no handler
    // runs, and nothing else in this process manages SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Ignores SIGPIPE again (after [`exit_on_broken_pipe`]): for a command
/// that streams until its reader goes away and must then end with its own
/// exit code (`events --follow` exits 0), a write to a closed pipe becomes
/// an `EPIPE` error it handles instead of a death by signal.
pub fn ignore_broken_pipe() {
    // SAFETY: setting the disposition of one signal to "ignore"; no
    // handler runs, and nothing else in this process manages SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
