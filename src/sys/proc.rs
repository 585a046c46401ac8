//! Reading processes from `/proc`: identity (PID plus start time), parent,
//! group, state and CPU time.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use procfs::process::Process;

/// A process's identity: a PID is only meaningful with its start time,
/// because PIDs are reused (here `pid_max` may be as low as 32768).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The PID.
    pub pid: i32,
    /// Start time in clock ticks since boot, from `/proc/PID/stat`.
    pub start_time: u64,
}

/// One process as seen in `/proc` at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    /// PID and start time.
    pub id: ProcessId,
    /// Parent PID.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// State letter (`R`, `S`, `D`, `Z`, …).
    pub state: char,
    /// CPU time the process itself used, in clock ticks.
    pub own_ticks: u64,
    /// CPU time of its children that it has reaped, in clock ticks.
    pub reaped_children_ticks: u64,
}

impl ProcInfo {
    /// A zombie (or dead) process has exited; it only waits to be reaped.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads one process; `None` when it does not exist (or vanished mid-read).
pub fn read_proc(pid: i32) -> Option<ProcInfo> {
    let stat = Process::new(pid).ok()?.stat().ok()?;
    Some(to_info(&stat))
}

fn to_info(stat: &procfs::process::Stat) -> ProcInfo {
    ProcInfo {
        id: ProcessId {
            pid: stat.pid,
            start_time: stat.starttime,
        },
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        state: stat.state,
        own_ticks: stat.utime + stat.stime,
        reaped_children_ticks: (stat.cutime.max(0) + stat.cstime.max(0)) as u64,
    }
}

/// Whether `id` names a live (not zombie) process: same PID, same start time.
pub fn is_alive(id: ProcessId) -> bool {
    read_proc(id.pid).is_some_and(|p| p.id.start_time == id.start_time && !p.is_dead())
}

/// The identity of a PID right now.
pub fn identify(pid: i32) -> Option<ProcessId> {
    read_proc(pid).map(|p| p.id)
}

/// Every process in `/proc` at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    procs: Vec<ProcInfo>,
}

impl Snapshot {
    /// Scans `/proc`. Processes that vanish during the scan are skipped.
    pub fn take() -> Self {
        let procs = match procfs::process::all_processes() {
            Ok(iter) => iter
                .filter_map(|p| p.ok()?.stat().ok())
                .map(|s| to_info(&s))
                .collect(),
            Err(_) => Vec::new(),
        };
        Self { procs }
    }

    /// A snapshot made of given processes (for tests of the rules above it).
    pub fn from_procs(procs: Vec<ProcInfo>) -> Self {
        Self { procs }
    }

    /// All processes.
    pub fn procs(&self) -> &[ProcInfo] {
        &self.procs
    }

    /// The processes descending from any of `roots` (the roots excluded),
    /// following parent links in this snapshot.
    pub fn descendants_of(&self, roots: &[i32]) -> Vec<ProcInfo> {
        let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
        for p in &self.procs {
            children.entry(p.ppid).or_default().push(p);
        }
        let mut out = Vec::new();
        let mut stack: Vec<i32> = roots.to_vec();
        while let Some(pid) = stack.pop() {
            for child in children.get(&pid).into_iter().flatten() {
                if !out.iter().any(|p: &ProcInfo| p.id == child.id) {
                    out.push(**child);
                    stack.push(child.id.pid);
                }
            }
        }
        out
    }
}

/// Whether the process's initial environment holds `key=value`. Unreadable
/// environments (another user's process, a setuid program) count as no.
pub fn has_env(pid: i32, key: &str, value: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{key}={value}");
    env.split(|b| *b == 0)
        .any(|entry| OsStr::from_bytes(entry) == OsStr::new(&wanted))
}

/// The kernel's boot id: PIDs and start times from another boot mean nothing.
/// Read once per process: every job classification compares against it.
pub fn boot_id() -> &'static str {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    BOOT_ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

/// A fresh random id for a job run.
pub fn random_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            format!("{}-{}", std::process::id(), t.as_nanos())
        })
}

/// This machine's host name, read once per process.
pub fn hostname() -> &'static str {
    static HOSTNAME: OnceLock<String> = OnceLock::new();
    HOSTNAME.get_or_init(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
}

/// The PIDs of this process's children (of every thread), from
/// `/proc/self/task/*/children`; used by the wrapper to reap orphans.
pub fn own_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    pids
}

/// This process's own identity.
pub fn myself() -> ProcessId {
    let pid = std::process::id() as i32;
    identify(pid).unwrap_or(ProcessId { pid, start_time: 0 })
}
