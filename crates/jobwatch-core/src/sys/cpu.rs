//! The CPU time of a job's process tree, sampled cheaply enough that a
//! thousand idle jobs cost next to nothing.
//!
//! # What is measured
//!
//! The *tree total* of protocol §7: utime+stime+cutime+cstime of every
//! descendant of the wrapper that `/proc` still lists (zombies included),
//! plus the wrapper's own cutime+cstime, in clock ticks. The wrapper is a
//! subreaper, so its descendants are the whole job. The liveness tracker
//! counts a new maximum of this total as progress.
//!
//! # Why not scan `/proc` at every sample
//!
//! The only way to find every descendant without help from the kernel is to
//! read the stat line of every process on the machine (3 to 15 µs each
//! here). N wrappers sampling every heartbeat read N × (all processes)
//! files: the cost grows with the square of the number of jobs; 300 idle
//! jobs took 19 % of a core.
//!
//! # How a sample is taken, cheapest first
//!
//! 1. **Quiet proof**: one `clock_gettime` of each known member's CPU clock
//!    (nanoseconds, all its threads, live and dead; under 1 µs, no file
//!    opened) and one `getrusage` for the wrapper's reaped children. When
//!    nothing changed since a *confirmed* discovery (below), the tree and its
//!    total are exactly what that discovery found, and the sample reuses
//!    them. An idle job costs this and nothing else.
//! 2. **Known members**: when a member's clock moved, it ran. Its stat lines
//!    are read again; if their total (with the wrapper's reaped ticks) is
//!    above the highest total seen, that is progress, found without looking
//!    for new processes. A total over known members can only be lower than
//!    the tree's, so it never shows progress that did not happen.
//! 3. **Discovery**: otherwise (a member ran yet shows no new ticks: it may
//!    have forked a process that now does the work, or it exited) the tree
//!    is found again by walking `/proc/PID/task/TID/children` down from the
//!    wrapper, or, on a kernel without those files (no
//!    `CONFIG_PROC_CHILDREN`), by a full scan. After a discovery each
//!    member's CPU clock is recorded.
//!
//! A sample for a verdict ([`Look::Verdict`]) is always a full scan.
//!
//! # Why the quiet proof is sound
//!
//! A process's CPU clock moves whenever any of its threads runs at all, and
//! forking, creating a thread, reaping a child and exiting all need it to
//! run. A process joins the tree only by being forked by a process of the
//! tree, or by being reparented to the wrapper (or to a subreaper inside the
//! tree) when its parent exits. So if, since its clock was recorded, no
//! member ran or vanished and the wrapper reaped nothing, the tree gained no
//! process through a member, and nothing of it changed — unless a process
//! outside the member list ran: one the discovery missed (both methods can
//! miss a process forked or reparented while they run). A discovery is
//! therefore only trusted once *confirmed*: the next discovery found exactly
//! the same members (PID and start time), with exactly the same clocks, and
//! the same reaped total. Each method finds every process that is in the
//! tree for the whole discovery and keeps its parent meanwhile. A process
//! the first discovery missed is either still there during the second
//! (found, so the lists differ), or it changed parent or vanished, which
//! needs a process of the tree to exit or reap, that is to run: a member
//! (its clock differs), or another missed process, to which the same
//! applies, down to a missed process forked by a member (which ran). With
//! identical clocks no member ran from the first discovery to the end of the
//! second, so nothing was missed, and no process of the tree has run since,
//! as long as the clocks stay the same.
//!
//! # Why no hung verdict rests on a cheap sample
//!
//! The wrapper's hung decision is always preceded by a fresh full scan
//! ([`Look::Verdict`]): every process in `/proc` is read, so a grandchild
//! born after the last discovery that burns CPU while the known members
//! sleep is counted before any hung verdict, whatever the cheaper samples
//! concluded (and were the quiet proof wrong on some kernel, a job would at
//! worst have its heartbeat moved late, never be killed as hung while
//! working). The cheaper samples only decide when the heartbeat moves
//! between verdicts. Their one inexactness: a process born after the last
//! discovery has its ticks counted at the next discovery, and so dated by
//! that sample, up to an interval later than they were used — the same lag
//! as every CPU sample has (protocol §7).
//!
//! Setting `JOBWATCH_CPU_SAMPLER=full-scan` in the wrapper's environment
//! makes every sample a full scan, as before this module: a fallback for an
//! exotic kernel, and the bench's baseline.

use std::sync::OnceLock;

use super::proc::{ProcInfo, ProcessId, Snapshot, read_proc, walk_descendants};

/// The environment variable that selects the sampler: `full-scan` makes
/// every sample read all of `/proc` (the old behaviour).
pub const SAMPLER_ENV: &str = "JOBWATCH_CPU_SAMPLER";

/// How thorough a sample must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// A sample between verdicts: may rest on the quiet proof or on the
    /// known members.
    Routine,
    /// The sample a hung verdict rests on: a fresh scan of all of `/proc`.
    Verdict,
}

/// How a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Nothing ran since a confirmed discovery: its total, reused.
    Quiet,
    /// The known members' stat lines showed progress.
    Members,
    /// The tree was found again through the children files.
    Walk,
    /// The tree was found again by reading every process in `/proc`.
    Scan,
}

/// One sample of the tree total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The tree total, in clock ticks.
    pub ticks: u64,
    /// How it was taken.
    pub method: Method,
}

/// What the sampler needs to know about processes. [`Kernel`] asks the
/// kernel; tests give synthetic process tables.
pub trait ProcessTable {
    /// CPU time of process `pid` in nanoseconds, all its threads, live and
    /// dead; `None` when there is no such process.
    fn cpu_clock_ns(&mut self, pid: i32) -> Option<u64>;
    /// The stat line of process `pid`, if it exists.
    fn stat(&mut self, pid: i32) -> Option<ProcInfo>;
    /// CPU ticks of the sampling process's own reaped children.
    fn own_reaped_ticks(&mut self) -> u64;
    /// The descendants of `root`, found through the children files; `None`
    /// when the kernel has none.
    fn walk(&mut self, root: i32) -> Option<Vec<ProcInfo>>;
    /// The descendants of `root`, found by reading every process.
    fn scan(&mut self, root: i32) -> Vec<ProcInfo>;
}

/// Samples the CPU total of the tree below `root` (the wrapper).
#[derive(Debug)]
pub struct TreeCpu {
    root: i32,
    always_scan: bool,
    /// The highest total returned: the bar the known members must pass.
    highest: u64,
    known: Option<Known>,
}

/// What the last discovery found.
#[derive(Debug)]
struct Known {
    /// Sorted by PID.
    members: Vec<Member>,
    reaped: u64,
    total: u64,
    /// The discovery before found the same members, clocks and reaped total.
    confirmed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    id: ProcessId,
    /// Its CPU clock read after the discovery; `None` when it was gone.
    clock: Option<u64>,
}

impl TreeCpu {
    /// A sampler of the tree below `root`; `always_scan` makes every sample
    /// a full scan.
    pub fn new(root: i32, always_scan: bool) -> Self {
        Self {
            root,
            always_scan,
            highest: 0,
            known: None,
        }
    }

    /// A sampler of the tree below the wrapper `root`, honouring
    /// [`SAMPLER_ENV`].
    pub fn for_wrapper(root: i32) -> Self {
        let always_scan = std::env::var_os(SAMPLER_ENV).is_some_and(|v| v == "full-scan");
        Self::new(root, always_scan)
    }

    /// Takes a sample from the running kernel.
    pub fn sample_now(&mut self, look: Look) -> Sample {
        self.sample(look, &mut Kernel)
    }

    /// Takes a sample of at least the thoroughness `look` asks for.
    pub fn sample(&mut self, look: Look, table: &mut impl ProcessTable) -> Sample {
        let reaped = table.own_reaped_ticks();
        let sample = self.take(look, reaped, table);
        self.highest = self.highest.max(sample.ticks);
        sample
    }

    fn take(&mut self, look: Look, reaped: u64, table: &mut impl ProcessTable) -> Sample {
        if look == Look::Verdict || self.always_scan {
            let procs = table.scan(self.root);
            return self.discovered(&procs, reaped, Method::Scan, table);
        }
        if let Some(known) = &self.known {
            if known.unchanged(reaped, table) {
                if known.confirmed {
                    return Sample {
                        ticks: known.total,
                        method: Method::Quiet,
                    };
                }
            } else {
                let ticks = known.members_total(reaped, table);
                if ticks > self.highest {
                    return Sample {
                        ticks,
                        method: Method::Members,
                    };
                }
            }
        }
        match table.walk(self.root) {
            Some(procs) => self.discovered(&procs, reaped, Method::Walk, table),
            None => {
                let procs = table.scan(self.root);
                self.discovered(&procs, reaped, Method::Scan, table)
            }
        }
    }

    /// Records a discovery's members with their clocks (read after it: a
    /// member that runs from here on shows a different clock) and returns
    /// its total.
    fn discovered(
        &mut self,
        procs: &[ProcInfo],
        reaped: u64,
        method: Method,
        table: &mut impl ProcessTable,
    ) -> Sample {
        let total = reaped + procs.iter().map(tree_ticks).sum::<u64>();
        if self.always_scan {
            // The old sampler kept nothing between samples.
            return Sample {
                ticks: total,
                method,
            };
        }
        let mut members: Vec<Member> = procs
            .iter()
            .map(|p| Member {
                id: p.id,
                clock: table.cpu_clock_ns(p.id.pid),
            })
            .collect();
        members.sort_unstable_by_key(|m| m.id.pid);
        let confirmed = members.iter().all(|m| m.clock.is_some())
            && self
                .known
                .as_ref()
                .is_some_and(|k| k.reaped == reaped && k.members == members);
        self.known = Some(Known {
            members,
            reaped,
            total,
            confirmed,
        });
        Sample {
            ticks: total,
            method,
        }
    }
}

impl Known {
    /// Whether no member ran or vanished and the wrapper reaped nothing
    /// since the discovery (stops at the first member that ran).
    fn unchanged(&self, reaped: u64, table: &mut impl ProcessTable) -> bool {
        self.reaped == reaped
            && self
                .members
                .iter()
                .all(|m| m.clock.is_some() && table.cpu_clock_ns(m.id.pid) == m.clock)
    }

    /// The total over the members still there (same PID and start time).
    fn members_total(&self, reaped: u64, table: &mut impl ProcessTable) -> u64 {
        reaped
            + self
                .members
                .iter()
                .filter_map(|m| table.stat(m.id.pid).filter(|p| p.id == m.id))
                .map(|p| tree_ticks(&p))
                .sum::<u64>()
    }
}

/// A process's share of the tree total: its own ticks and those of the
/// children it reaped.
fn tree_ticks(p: &ProcInfo) -> u64 {
    p.own_ticks + p.reaped_children_ticks
}

// ---------------------------------------------------------------------------
// The running kernel.

/// The running kernel as a [`ProcessTable`].
#[derive(Debug, Default)]
pub struct Kernel;

impl ProcessTable for Kernel {
    fn cpu_clock_ns(&mut self, pid: i32) -> Option<u64> {
        process_cpu_clock_ns(pid)
    }

    fn stat(&mut self, pid: i32) -> Option<ProcInfo> {
        read_proc(pid)
    }

    fn own_reaped_ticks(&mut self) -> u64 {
        own_reaped_ticks()
    }

    fn walk(&mut self, root: i32) -> Option<Vec<ProcInfo>> {
        walk_descendants(root)
    }

    fn scan(&mut self, root: i32) -> Vec<ProcInfo> {
        Snapshot::take().descendants_of(&[root])
    }
}

/// Process `pid`'s CPU clock in nanoseconds (every thread, live and dead;
/// readable for any process, zombies included), or `None` when it is gone.
///
/// The clock id is the kernel's `(~pid << 3) | CPUCLOCK_SCHED`, built the
/// way glibc's `clock_getcpuclockid` builds it, without the extra syscall
/// that call spends validating it. Neither rustix nor libc's safe surface
/// offers another process's CPU clock, hence the raw call.
pub fn process_cpu_clock_ns(pid: i32) -> Option<u64> {
    const CPUCLOCK_SCHED: libc::clockid_t = 2;
    if pid <= 0 {
        return None;
    }
    let clock = (!(pid as libc::clockid_t) << 3) | CPUCLOCK_SCHED;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// This process's reaped children's CPU time in clock ticks, as
/// `/proc/self/stat` gives it (cutime + cstime), from one `getrusage`
/// instead of opening and parsing that file.
pub fn own_reaped_ticks() -> u64 {
    // SAFETY: getrusage fills the struct it is given; all-zero is a valid
    // `rusage`.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    timeval_ticks(usage.ru_utime) + timeval_ticks(usage.ru_stime)
}

/// A `timeval` in clock ticks, rounded down as the kernel rounds cutime
/// and cstime for `/proc/PID/stat` (both come from the same nanoseconds).
fn timeval_ticks(t: libc::timeval) -> u64 {
    let micros = t.tv_sec.max(0) as u64 * 1_000_000 + t.tv_usec.max(0) as u64;
    micros / (1_000_000 / ticks_per_second())
}

/// `sysconf(_SC_CLK_TCK)`: the unit of `/proc/PID/stat`'s times (100 on
/// every Linux ABI, asked once anyway).
fn ticks_per_second() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 { hz as u64 } else { 100 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const WRAPPER: i32 = 100;

    /// A synthetic process table: processes with stat fields and CPU
    /// clocks, plus counters of what the sampler read.
    #[derive(Default)]
    struct Table {
        procs: BTreeMap<i32, (ProcInfo, u64)>,
        reaped: u64,
        walk_available: bool,
        next_start: u64,
        scans: usize,
        walks: usize,
        stats: usize,
    }

    impl Table {
        fn new() -> Self {
            Self {
                walk_available: true,
                next_start: 1000,
                ..Self::default()
            }
        }

        /// `parent` forks `pid` (forking makes the parent run).
        fn spawn(&mut self, pid: i32, parent: i32) {
            self.next_start += 1;
            let info = ProcInfo {
                id: ProcessId {
                    pid,
                    start_time: self.next_start,
                },
                ppid: parent,
                pgrp: pid,
                session: pid,
                state: 'S',
                own_ticks: 0,
                reaped_children_ticks: 0,
                threads: 1,
            };
            self.procs.insert(pid, (info, 1));
            self.run(parent, 0);
        }

        /// `pid` runs for `ticks` (any run moves its clock).
        fn run(&mut self, pid: i32, ticks: u64) {
            if let Some((info, clock)) = self.procs.get_mut(&pid) {
                info.own_ticks += ticks;
                *clock += 1 + ticks * 10_000_000;
            }
        }

        /// `pid` exits and its parent (which runs to do so) reaps it; the
        /// wrapper's reaping moves the ticks to the wrapper's total.
        fn exit_and_reap(&mut self, pid: i32) {
            let (info, _) = self.procs.remove(&pid).expect("exists");
            let ticks = tree_ticks(&info);
            if info.ppid == WRAPPER {
                self.reaped += ticks;
            } else {
                self.run(info.ppid, 0);
                let parent = &mut self.procs.get_mut(&info.ppid).expect("parent").0;
                parent.reaped_children_ticks += ticks;
            }
        }

        fn descendants(&self, root: i32) -> Vec<ProcInfo> {
            let all: Vec<ProcInfo> = self.procs.values().map(|(p, _)| *p).collect();
            Snapshot::from_procs(all).descendants_of(&[root])
        }

        fn true_total(&self) -> u64 {
            self.reaped
                + self
                    .descendants(WRAPPER)
                    .iter()
                    .map(tree_ticks)
                    .sum::<u64>()
        }
    }

    impl ProcessTable for Table {
        fn cpu_clock_ns(&mut self, pid: i32) -> Option<u64> {
            self.procs.get(&pid).map(|(_, c)| *c)
        }
        fn stat(&mut self, pid: i32) -> Option<ProcInfo> {
            self.stats += 1;
            self.procs.get(&pid).map(|(p, _)| *p)
        }
        fn own_reaped_ticks(&mut self) -> u64 {
            self.reaped
        }
        fn walk(&mut self, root: i32) -> Option<Vec<ProcInfo>> {
            self.walks += 1;
            self.walk_available.then(|| self.descendants(root))
        }
        fn scan(&mut self, root: i32) -> Vec<ProcInfo> {
            self.scans += 1;
            self.descendants(root)
        }
    }

    /// The wrapper with a leader (200) and its child (300), both asleep.
    fn sleeping_job() -> (TreeCpu, Table) {
        let mut t = Table::new();
        t.spawn(200, WRAPPER);
        t.spawn(300, 200);
        t.run(200, 5);
        t.run(300, 7);
        (TreeCpu::new(WRAPPER, false), t)
    }

    fn routine(s: &mut TreeCpu, t: &mut Table) -> Sample {
        s.sample(Look::Routine, t)
    }

    #[test]
    fn an_idle_tree_is_found_twice_then_sampled_without_reading_any_process() {
        let (mut s, mut t) = sleeping_job();
        assert_eq!(routine(&mut s, &mut t).method, Method::Walk, "first look");
        assert_eq!(routine(&mut s, &mut t).method, Method::Walk, "confirms");
        let (walks, stats) = (t.walks, t.stats);
        for _ in 0..100 {
            let sample = routine(&mut s, &mut t);
            assert_eq!(
                sample,
                Sample {
                    ticks: 12,
                    method: Method::Quiet
                }
            );
        }
        assert_eq!((t.walks, t.scans, t.stats), (walks, 0, stats));
    }

    #[test]
    fn a_verdict_sample_always_reads_all_of_proc() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        routine(&mut s, &mut t);
        let v = s.sample(Look::Verdict, &mut t);
        assert_eq!(
            v,
            Sample {
                ticks: 12,
                method: Method::Scan
            }
        );
        assert_eq!(t.scans, 1);
        assert_eq!(
            routine(&mut s, &mut t).method,
            Method::Quiet,
            "still confirmed"
        );
    }

    #[test]
    fn a_grandchild_born_while_the_tree_was_quiet_is_found_at_the_next_sample() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        routine(&mut s, &mut t);
        assert_eq!(routine(&mut s, &mut t).method, Method::Quiet);
        // The child forks a grandchild, which burns while everyone else sleeps.
        t.spawn(400, 300);
        t.run(400, 30);
        let sample = routine(&mut s, &mut t);
        assert_eq!(
            sample,
            Sample {
                ticks: 42,
                method: Method::Walk
            }
        );
        t.run(400, 1);
        let next = routine(&mut s, &mut t);
        assert_eq!(
            next,
            Sample {
                ticks: 43,
                method: Method::Members
            },
            "now known"
        );
    }

    #[test]
    fn a_grandchild_the_quiet_proof_missed_is_still_counted_before_a_verdict() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        routine(&mut s, &mut t);
        // Impossible in a real kernel (a fork makes its parent run), so it
        // stands for any flaw of the proof: a grandchild whose birth left
        // every known clock as it was.
        let start = t.next_start + 1;
        let info = ProcInfo {
            id: ProcessId {
                pid: 400,
                start_time: start,
            },
            ppid: 300,
            pgrp: 200,
            session: 200,
            state: 'R',
            own_ticks: 30,
            reaped_children_ticks: 0,
            threads: 1,
        };
        t.procs.insert(400, (info, 300_000_000));
        assert_eq!(
            routine(&mut s, &mut t).ticks,
            12,
            "the cheap look misses it"
        );
        let v = s.sample(Look::Verdict, &mut t);
        assert_eq!(
            v,
            Sample {
                ticks: 42,
                method: Method::Scan
            }
        );
    }

    #[test]
    fn a_grandchild_that_burned_and_was_reaped_between_samples_counts() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        routine(&mut s, &mut t);
        t.spawn(400, 300);
        t.run(400, 9);
        t.exit_and_reap(400);
        let sample = routine(&mut s, &mut t);
        assert_eq!(
            sample,
            Sample {
                ticks: 21,
                method: Method::Members
            }
        );
        assert_eq!(sample.ticks, t.true_total());
    }

    #[test]
    fn a_member_reaped_by_the_wrapper_moves_its_ticks_without_looking_like_progress() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        routine(&mut s, &mut t);
        // The child is orphaned, then exits; the wrapper reaps it.
        t.procs.get_mut(&300).unwrap().0.ppid = WRAPPER;
        t.exit_and_reap(300);
        let sample = routine(&mut s, &mut t);
        assert_eq!(sample.ticks, 12, "same total, now in the wrapper's");
        assert_ne!(sample.method, Method::Quiet, "the tree changed");
    }

    #[test]
    fn a_reused_pid_is_not_a_member() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        routine(&mut s, &mut t);
        // The child vanishes (its ticks lost, as when the kernel reaps an
        // ignored child) and a stranger with CPU to spare takes its PID.
        let (mut info, _) = t.procs.remove(&300).unwrap();
        info.id.start_time = 99_999;
        info.ppid = 1;
        info.own_ticks = 500;
        t.procs.insert(300, (info, 5_000_000_000));
        let sample = routine(&mut s, &mut t);
        assert_eq!(sample.ticks, 5, "only the leader is left of the job");
    }

    #[test]
    fn a_tree_that_changed_between_two_discoveries_is_not_trusted() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        t.spawn(400, 300);
        assert_eq!(routine(&mut s, &mut t).method, Method::Walk);
        assert_eq!(routine(&mut s, &mut t).method, Method::Walk, "confirms now");
        assert_eq!(routine(&mut s, &mut t).method, Method::Quiet);
    }

    #[test]
    fn without_children_files_a_discovery_scans() {
        let (mut s, mut t) = sleeping_job();
        t.walk_available = false;
        assert_eq!(routine(&mut s, &mut t).method, Method::Scan);
        assert_eq!(routine(&mut s, &mut t).method, Method::Scan);
        assert_eq!(routine(&mut s, &mut t).method, Method::Quiet);
        assert_eq!(t.scans, 2);
    }

    #[test]
    fn a_member_that_runs_without_new_ticks_makes_the_sampler_look_again() {
        let (mut s, mut t) = sleeping_job();
        routine(&mut s, &mut t);
        routine(&mut s, &mut t);
        t.run(200, 0);
        assert_eq!(
            routine(&mut s, &mut t),
            Sample {
                ticks: 12,
                method: Method::Walk
            }
        );
    }

    #[test]
    fn the_full_scan_mode_scans_every_time() {
        let (_, mut t) = sleeping_job();
        let mut s = TreeCpu::new(WRAPPER, true);
        for _ in 0..5 {
            assert_eq!(
                routine(&mut s, &mut t),
                Sample {
                    ticks: 12,
                    method: Method::Scan
                }
            );
        }
        assert_eq!(t.scans, 5);
    }

    #[test]
    fn a_deadlocked_tree_never_shows_a_new_total() {
        let (mut s, mut t) = sleeping_job();
        let first = routine(&mut s, &mut t).ticks;
        for i in 0..20 {
            let look = if i % 5 == 4 {
                Look::Verdict
            } else {
                Look::Routine
            };
            assert_eq!(s.sample(look, &mut t).ticks, first);
        }
    }

    #[test]
    fn the_kernel_clock_of_a_child_is_readable_until_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        assert!(
            process_cpu_clock_ns(pid).is_some(),
            "a live child has a clock"
        );
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_eq!(process_cpu_clock_ns(pid), None, "a reaped child has none");
    }

    #[test]
    fn reaped_ticks_from_getrusage_equal_those_of_proc_self_stat() {
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .expect("run a busy child");
        assert!(status.success());
        // Other tests reap children concurrently: compare between two stat
        // reads that agree.
        let me = std::process::id() as i32;
        let stat = || read_proc(me).expect("own stat").reaped_children_ticks;
        for _ in 0..100 {
            let (before, ticks, after) = (stat(), own_reaped_ticks(), stat());
            if before == after {
                assert_eq!(ticks, before);
                return;
            }
        }
        panic!("this process's reaped ticks never held still over two reads");
    }

    #[test]
    fn the_kernel_walk_finds_this_process_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let me = std::process::id() as i32;
        let found = if super::super::proc::has_children_files() {
            walk_descendants(me).expect("children files")
        } else {
            Kernel.scan(me)
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.iter().any(|p| p.id.pid == pid), "{found:?}");
    }
}
