//! Killing a job's whole process tree, and nothing else.
//!
//! A process belongs to the job when one of these holds in a fresh `/proc`
//! snapshot:
//! - it is in the job's process group and the group leader (the command) is
//!   still the process recorded, live or zombie: while the leader's PID is
//!   taken, its group id cannot have been reused;
//! - its environment carries the job's `JOBWATCH_JOB_ID` (how descendants
//!   that left the group with `setsid` are found after their parent died);
//! - it descends from one of the above, or from the wrapper itself (a child
//!   subreaper, so orphans of the job re-parent to it).
//!
//! A detached wrapper of another run (`jobwatch run --detach` from inside
//! the job) is never a member, nor is anything below it: that run is its own
//! supervised job. It is recognised as a session leader whose initial
//! environment carries [`DETACHED_WRAPPER_ENV`].
//!
//! The group is signalled with `killpg` (atomic, catches a fork in flight);
//! every other member through a pidfd after re-checking its start time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::model::JobRecord;
use crate::sys::proc::{ProcInfo, ProcessId, Snapshot, has_env};
use crate::sys::signal::{Delivery, signal_group, signal_process};

/// Environment variable carrying the job's run id into its processes.
pub const JOB_ID_ENV: &str = "JOBWATCH_JOB_ID";

/// Set (to `1`) in the initial environment of a detached wrapper, and in
/// no other process (the wrapper removes it from its command's): it marks
/// a supervised run of its own, which another job's kill must leave alone.
pub const DETACHED_WRAPPER_ENV: &str = "JOBWATCH_DETACHED_WRAPPER";

/// How long SIGKILL rounds go on before survivors are reported.
const KILL_ROUNDS_LIMIT: Duration = Duration::from_secs(5);

/// How often membership is re-checked while waiting for processes to die.
const RECHECK: Duration = Duration::from_millis(10);

/// Whether the command of the run's current attempt has exited: it is a
/// zombie its wrapper has not reaped yet, or it is gone (reaped, or its PID
/// reused). While the wrapper backs off between attempts (the attempt is
/// already listed in `attempts`) this says nothing: `false`.
///
/// A run whose command exited is finishing, not hung: its wrapper kills the
/// leftovers, then commits the exit's outcome. An exit that happened before
/// any kill request wins (§9.4 of the protocol).
pub fn command_exited(record: &JobRecord) -> bool {
    let (Some(pid), Some(start_time)) = (record.child_pid, record.child_start_time) else {
        return false;
    };
    // Another host's (or PID namespace's) PIDs cannot be looked at here.
    if crate::sys::proc::place_of_record(record) != crate::sys::proc::Place::Here {
        return false;
    }
    let between_attempts = record.attempts.len() >= record.attempt as usize;
    // A start time of 0 was unreadable at spawn: it proves nothing.
    start_time != 0
        && !between_attempts
        && !crate::sys::proc::is_alive(ProcessId { pid, start_time })
}

/// Who belongs to one job.
#[derive(Debug, Clone)]
pub struct JobTarget {
    /// The run id in the job's environment.
    pub job_id: String,
    /// The command (process-group leader) as recorded.
    pub leader: Option<ProcessId>,
    /// When the caller is the wrapper: its own identity (its descendants are
    /// the job's, and it must never signal itself).
    pub wrapper: Option<ProcessId>,
    /// No process of the job started before this (clock ticks since boot):
    /// the command's start time, or the wrapper's when the command's was
    /// never recorded. Bounds the environment reads; `None` skips them.
    pub born_after: Option<u64>,
}

/// The job's live processes at one moment.
#[derive(Debug, Default)]
pub struct Members {
    /// Whether the leader was verified, so the whole group may be signalled.
    pub group: Option<ProcessId>,
    /// Every live member, including those in the group.
    pub procs: Vec<ProcInfo>,
}

impl Members {
    /// Whether no member is alive.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }
}

/// Finds the job's live processes in a fresh snapshot.
pub fn find_members(target: &JobTarget) -> Members {
    members_in(&snapshot_for(target), target)
}

/// The processes to look among. The job's own wrapper is a child
/// subreaper: every process the job started stays below it until the
/// wrapper reaps it (an orphan re-parents to it, `setsid` or not), so its
/// own tree holds every member, and walking that tree costs a few reads
/// where a scan of `/proc` reads every process on the machine (a thousand
/// wrappers ending at once would each read them all, several times).
/// Anyone else, or a kernel without children files, scans `/proc`.
fn snapshot_for(target: &JobTarget) -> Snapshot {
    let me = std::process::id() as i32;
    if target.wrapper.is_some_and(|w| w.pid == me)
        && is_child_subreaper()
        && let Some(tree) = Snapshot::below(me)
    {
        return tree;
    }
    Snapshot::take()
}

/// Whether this process is a child subreaper (the wrapper becomes one
/// before it spawns the command; a failure there leaves it not one). The
/// kernel answers a flag, which rustix hands back as a PID of 1.
fn is_child_subreaper() -> bool {
    matches!(rustix::process::child_subreaper(), Ok(Some(_)))
}

fn members_in(snap: &Snapshot, target: &JobTarget) -> Members {
    let me = std::process::id() as i32;
    let wrapper_pid = target.wrapper.map(|w| w.pid);
    let leader = target
        .leader
        .filter(|l| snap.procs().iter().any(|p| p.id == *l));
    let other_run = |p: &ProcInfo| Some(p.id.pid) != wrapper_pid && is_detached_wrapper(p);
    let mut roots: Vec<ProcInfo> = Vec::new();
    if let Some(l) = leader {
        roots.extend(
            snap.procs()
                .iter()
                .filter(|p| p.pgrp == l.pid && !other_run(p)),
        );
    }
    // Only processes born after the job started can carry its id; that
    // bound keeps the environment reads few.
    if let Some(born) = target.born_after {
        roots.extend(snap.procs().iter().filter(|p| {
            p.id.start_time >= born
                && !p.is_dead()
                && Some(p.id.pid) != wrapper_pid
                && has_env(p.id.pid, JOB_ID_ENV, &target.job_id)
                && !other_run(p)
        }));
    }
    let mut root_pids: Vec<i32> = roots.iter().map(|p| p.id.pid).collect();
    root_pids.extend(wrapper_pid);
    let mut seen = HashSet::new();
    let procs = roots
        .into_iter()
        .chain(snap.descendants_short_of(&root_pids, other_run))
        .filter(|p| !p.is_dead() && p.id.pid != me && Some(p.id.pid) != wrapper_pid)
        .filter(|p| seen.insert(p.id))
        .collect();
    Members {
        group: leader,
        procs,
    }
}

/// Whether `p` is a detached jobwatch wrapper: a session leader (it called
/// `setsid`) started with [`DETACHED_WRAPPER_ENV`]. Only session leaders
/// have their environment read, so the check costs little in a big tree.
fn is_detached_wrapper(p: &ProcInfo) -> bool {
    p.session == p.id.pid && has_env(p.id.pid, DETACHED_WRAPPER_ENV, "1")
}

/// Sends `sig` to every member: once to the group, individually to the rest.
pub fn signal_members(members: &Members, sig: Signal) {
    let group_sent = members
        .group
        .is_some_and(|leader| signal_group(leader, sig) == Delivery::Sent);
    for p in &members.procs {
        let covered = group_sent && members.group.is_some_and(|l| l.pid == p.pgrp);
        if !covered {
            signal_process(p.id, sig);
        }
    }
}

/// What a termination achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillReport {
    /// Processes found when it began.
    pub found: usize,
    /// Whether SIGKILL was needed after the grace period.
    pub escalated: bool,
    /// PIDs still alive at the end (uninterruptible sleep, another user's).
    pub survivors: Vec<i32>,
}

/// Terminates the job's process tree: `first` (usually SIGTERM) to all,
/// up to `grace` for them to exit, then SIGKILL until none is left.
///
/// `tick` runs at every re-check (the wrapper reaps orphans there); when it
/// returns `true` the grace period is cut short (a second Ctrl-C).
pub fn terminate(
    target: &JobTarget,
    first: Signal,
    grace: Duration,
    tick: &mut dyn FnMut() -> bool,
) -> KillReport {
    let members = find_members(target);
    let report = KillReport {
        found: members.procs.len(),
        ..KillReport::default()
    };
    if members.is_empty() {
        return report;
    }
    let Some(opening) = opening_signals(first, grace) else {
        return kill_until_gone(target, report);
    };
    for sig in opening {
        signal_members(&members, sig);
    }
    wait_out_grace(target, grace, tick, report)
}

/// The signals a termination opens with, before its grace period: `first`
/// (TERM, or the signal a wrapper received and forwards), then SIGCONT. A
/// stopped process cannot act on the signal until it runs again (as
/// systemd does): continuing it gives its handler the grace period. `None`
/// when there is no grace to give (a zero grace, or `first` is KILL): the
/// tree is killed at once.
pub fn opening_signals(first: Signal, grace: Duration) -> Option<[Signal; 2]> {
    (!grace.is_zero() && first != Signal::KILL).then_some([first, Signal::CONT])
}

/// Carries out a kill someone else began: the first signal was theirs, so
/// only waits up to `grace` for the members to go, then sends SIGKILL until
/// none is left. `tick` is as for [`terminate`].
pub fn escalate_after(
    target: &JobTarget,
    grace: Duration,
    tick: &mut dyn FnMut() -> bool,
) -> KillReport {
    let report = KillReport {
        found: find_members(target).procs.len(),
        ..KillReport::default()
    };
    if report.found == 0 {
        return report;
    }
    wait_out_grace(target, grace, tick, report)
}

/// Re-checks the members every [`RECHECK`] until none is left (done) or the
/// grace period ends (or `tick` cuts it short), then kills what is left.
fn wait_out_grace(
    target: &JobTarget,
    grace: Duration,
    tick: &mut dyn FnMut() -> bool,
    mut report: KillReport,
) -> KillReport {
    // A grace too long for the clock never runs out.
    let deadline = Instant::now().checked_add(grace);
    loop {
        let cut_short = tick();
        if find_members(target).is_empty() {
            return report;
        }
        if cut_short || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        std::thread::sleep(RECHECK);
    }
    report.escalated = true;
    kill_until_gone(target, report)
}

fn kill_until_gone(target: &JobTarget, mut report: KillReport) -> KillReport {
    let deadline = Instant::now() + KILL_ROUNDS_LIMIT;
    loop {
        let members = find_members(target);
        if members.is_empty() {
            report.survivors.clear();
            return report;
        }
        signal_members(&members, Signal::KILL);
        if Instant::now() >= deadline {
            report.survivors = members.procs.iter().map(|p| p.id.pid).collect();
            return report;
        }
        std::thread::sleep(RECHECK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, start: u64, ppid: i32, pgrp: i32, state: char) -> ProcInfo {
        ProcInfo {
            id: ProcessId {
                pid,
                start_time: start,
            },
            ppid,
            pgrp,
            // No session leaders here: their environment would be read.
            session: 1,
            state,
            own_ticks: 0,
            reaped_children_ticks: 0,
            threads: 1,
        }
    }

    /// A job whose command was PID 100, started at tick 50.
    fn leader_100_started_at_50() -> JobTarget {
        JobTarget {
            job_id: "no-such-id".into(),
            leader: Some(ProcessId {
                pid: 100,
                start_time: 50,
            }),
            wrapper: None,
            born_after: None,
        }
    }

    fn pids(m: &Members) -> Vec<i32> {
        let mut v: Vec<i32> = m.procs.iter().map(|p| p.id.pid).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_termination_opens_with_its_signal_then_sigcont_unless_it_kills_at_once() {
        let grace = Duration::from_secs(5);
        assert_eq!(
            opening_signals(Signal::TERM, grace),
            Some([Signal::TERM, Signal::CONT])
        );
        assert_eq!(
            opening_signals(Signal::INT, grace),
            Some([Signal::INT, Signal::CONT]),
            "a forwarded signal is continued the same way"
        );
        assert_eq!(opening_signals(Signal::TERM, Duration::ZERO), None);
        assert_eq!(opening_signals(Signal::KILL, grace), None);
    }

    #[test]
    fn a_verified_leader_brings_its_group_and_their_descendants() {
        let snap = Snapshot::from_procs(vec![
            proc(100, 50, 1, 100, 'S'),
            proc(101, 51, 100, 100, 'S'),
            proc(102, 52, 101, 102, 'S'), // left the group (setsid), still a descendant
            proc(200, 10, 1, 200, 'S'),   // unrelated
        ]);
        let m = members_in(&snap, &leader_100_started_at_50());
        assert_eq!(m.group.map(|g| g.pid), Some(100));
        assert_eq!(pids(&m), [100, 101, 102]);
    }

    #[test]
    fn a_reused_leader_pid_brings_nothing() {
        // PID 100 now belongs to a process that started at another time.
        let snap = Snapshot::from_procs(vec![
            proc(100, 999, 1, 100, 'S'),
            proc(101, 1000, 100, 100, 'S'),
        ]);
        let m = members_in(&snap, &leader_100_started_at_50());
        assert!(m.group.is_none());
        assert!(m.is_empty(), "{:?}", pids(&m));
    }

    #[test]
    fn zombies_are_dead_and_a_zombie_leader_still_guards_the_group() {
        let snap = Snapshot::from_procs(vec![
            proc(100, 50, 1, 100, 'Z'),
            proc(101, 51, 1, 100, 'S'),
            proc(103, 53, 1, 100, 'Z'),
        ]);
        let m = members_in(&snap, &leader_100_started_at_50());
        assert_eq!(m.group.map(|g| g.pid), Some(100));
        assert_eq!(pids(&m), [101]);
    }
}
