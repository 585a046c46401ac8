//! Reading processes from `/proc`: identity (PID plus start time), parent,
//! group, state and CPU time.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

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
    /// Session (equal to the PID for a session leader).
    pub session: i32,
    /// State letter (`R`, `S`, `D`, `Z`, …).
    pub state: char,
    /// CPU time the process itself used, in clock ticks.
    pub own_ticks: u64,
    /// CPU time of its children that it has reaped, in clock ticks.
    pub reaped_children_ticks: u64,
    /// Number of threads (`num_threads`); each thread has its own children.
    pub threads: u32,
}

impl ProcInfo {
    /// A zombie (or dead) process has exited; it only waits to be reaped.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads one process; `None` when it does not exist (or vanished mid-read).
pub fn read_proc(pid: i32) -> Option<ProcInfo> {
    read_stat(pid, &mut Vec::with_capacity(512))
}

/// Reads `/proc/PID/stat` into `buf` (reused across calls) and parses it.
///
/// Hand-rolled rather than through the procfs crate because this is the hot
/// path of every `/proc` scan (each job end, each kill round, the wrapper's
/// verdict samples): one open, one read and one close per process. procfs
/// also opens the process directory and stats both; `read_to_end` adds an
/// fstat and an lseek for its size hint and a second read to see the end of
/// file, which a stat line (always ending in a newline, one `seq_file`
/// record) does not need.
fn read_stat(pid: i32, buf: &mut Vec<u8>) -> Option<ProcInfo> {
    read_whole(&format!("/proc/{pid}/stat"), buf)?;
    parse_stat(buf)
}

/// Reads a small `/proc` file whose content ends with a newline into `buf`:
/// usually one `read`; more only when the first did not end with a newline.
fn read_whole(path: &str, buf: &mut Vec<u8>) -> Option<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = file.read(&mut chunk).ok()?;
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || buf.ends_with(b"\n") {
            return Some(());
        }
    }
}

/// Parses `/proc/PID/stat` (proc_pid_stat(5)). The command name may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(bytes: &[u8]) -> Option<ProcInfo> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&bytes[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let mut fields = std::str::from_utf8(bytes.get(close + 1..)?)
        .ok()?
        .split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 (ppid) to 22 (starttime), numbered as in proc_pid_stat(5).
    let mut n = [0i64; 23];
    for slot in &mut n[4..=22] {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(ProcInfo {
        id: ProcessId {
            pid,
            start_time: n[22].max(0) as u64,
        },
        ppid: n[4] as i32,
        pgrp: n[5] as i32,
        session: n[6] as i32,
        state,
        own_ticks: (n[14].max(0) + n[15].max(0)) as u64,
        reaped_children_ticks: (n[16].max(0) + n[17].max(0)) as u64,
        threads: n[20].clamp(0, i64::from(u32::MAX)) as u32,
    })
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
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self::default();
        };
        let mut buf = Vec::with_capacity(512);
        let procs = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| read_stat(pid, &mut buf))
            .collect();
        Self { procs }
    }

    /// The descendants of `root` (the root excluded), found through the
    /// children files instead of reading every process: what a child
    /// subreaper needs to see of its own tree, at a cost that grows with
    /// the tree, not with the machine. `None` when the kernel has no
    /// children files.
    pub fn below(root: i32) -> Option<Self> {
        walk_descendants(root).map(|procs| Self { procs })
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
        self.descendants_short_of(roots, |_| false)
    }

    /// Like [`Self::descendants_of`], but a process for which `stop` holds
    /// is neither included nor descended into: its subtree is not ours.
    pub fn descendants_short_of(
        &self,
        roots: &[i32],
        stop: impl Fn(&ProcInfo) -> bool,
    ) -> Vec<ProcInfo> {
        let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
        for p in &self.procs {
            children.entry(p.ppid).or_default().push(p);
        }
        let mut out = Vec::new();
        let mut stack: Vec<i32> = roots.to_vec();
        while let Some(pid) = stack.pop() {
            for child in children.get(&pid).into_iter().flatten() {
                if stop(child) {
                    continue;
                }
                if !out.iter().any(|p: &ProcInfo| p.id == child.id) {
                    out.push(**child);
                    stack.push(child.id.pid);
                }
            }
        }
        out
    }
}

/// The descendants of `root` found by reading children files from `root`
/// down (the root excluded); `None` when the kernel has no children
/// files ([`has_children_files`]).
pub fn walk_descendants(root: i32) -> Option<Vec<ProcInfo>> {
    let mut pending = Vec::new();
    // The root's children may hang under any of its threads (an orphan is
    // reparented to some live thread of the subreaper): list them all.
    children_of(root, u32::MAX, &mut pending)?;
    let mut found: Vec<ProcInfo> = Vec::new();
    while let Some(pid) = pending.pop() {
        // Gone since it was listed: it exited and was reaped.
        let Some(p) = read_proc(pid) else { continue };
        let parent_known = p.ppid == root || found.iter().any(|q| q.id.pid == p.ppid);
        // A PID reused by a process outside the tree is not a member.
        if !parent_known || found.iter().any(|q| q.id.pid == p.id.pid) {
            continue;
        }
        if !p.is_dead() {
            children_of(pid, p.threads, &mut pending)?;
        }
        found.push(p);
    }
    Some(found)
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

/// This process's PID namespace: the inode of `/proc/self/ns/pid`. PIDs
/// are only comparable within one namespace. Read once per process.
pub fn pid_namespace() -> Option<u64> {
    static PID_NS: OnceLock<Option<u64>> = OnceLock::new();
    *PID_NS.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
    })
}

/// Where a process recorded on (host, boot, PID namespace) is, seen from
/// this process: only `Here` may its PIDs be looked at or signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// This host, this boot, this PID namespace.
    Here,
    /// This host before a reboot: every process of then is gone.
    EarlierBoot,
    /// Another host, or another PID namespace on this one (a container):
    /// it may run, but cannot be checked or signalled from here.
    Elsewhere,
}

/// Where a process recorded with this host name, boot id and PID
/// namespace (`None`: not recorded, an older record) is.
pub fn place_of(host: &str, boot_id: &str, pid_ns: Option<u64>) -> Place {
    if host != hostname() {
        return Place::Elsewhere;
    }
    if boot_id != self::boot_id() {
        return Place::EarlierBoot;
    }
    match (pid_ns, pid_namespace()) {
        (Some(theirs), Some(ours)) if theirs != ours => Place::Elsewhere,
        _ => Place::Here,
    }
}

/// Where the processes of a run's record are (see [`place_of`]).
pub fn place_of_record(record: &crate::model::JobRecord) -> Place {
    place_of(&record.host, &record.boot_id, record.pid_ns)
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
    let mut pids = Vec::new();
    children_of_every_thread("/proc/self/task", &mut pids);
    pids
}

/// Whether this kernel lists each thread's children in
/// `/proc/PID/task/TID/children` (`CONFIG_PROC_CHILDREN`, which most
/// distribution kernels enable). Probed once per process.
pub fn has_children_files() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let me = std::process::id();
        std::path::Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
    })
}

/// The PIDs of the children of `pid`, a process with `threads` threads
/// (children belong to the thread that forked them), appended to `out`.
/// `None` when the kernel has no children files ([`has_children_files`]);
/// a process that is gone has no children.
pub fn children_of(pid: i32, threads: u32, out: &mut Vec<i32>) -> Option<()> {
    if !has_children_files() {
        return None;
    }
    if threads <= 1 {
        // One thread: its id is the PID; no need to list the task folder.
        read_pid_list(&format!("/proc/{pid}/task/{pid}/children"), out);
    } else {
        children_of_every_thread(&format!("/proc/{pid}/task"), out);
    }
    Some(())
}

fn children_of_every_thread(task_dir: &str, out: &mut Vec<i32>) {
    let Ok(tasks) = std::fs::read_dir(task_dir) else {
        return;
    };
    for task in tasks.flatten() {
        if let Some(path) = task.path().join("children").to_str() {
            read_pid_list(path, out);
        }
    }
}

/// Appends the space-separated PIDs of a `children` file to `out`.
fn read_pid_list(path: &str, out: &mut Vec<i32>) {
    let mut buf = Vec::with_capacity(64);
    if read_whole(path, &mut buf).is_some() {
        out.extend(
            buf.split(|b| b.is_ascii_whitespace())
                .filter_map(|p| std::str::from_utf8(p).ok()?.parse::<i32>().ok()),
        );
    }
}

/// This process's own identity.
pub fn myself() -> ProcessId {
    let pid = std::process::id() as i32;
    identify(pid).unwrap_or(ProcessId { pid, start_time: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_boot_and_pid_namespace_is_here() {
        let (host, boot, ns) = (hostname(), boot_id(), pid_namespace());
        assert!(ns.is_some(), "/proc/self/ns/pid is readable");
        assert_eq!(place_of(host, boot, ns), Place::Here);
        // An older record, without a namespace: judged as before.
        assert_eq!(place_of(host, boot, None), Place::Here);
        assert_eq!(place_of("another-host", boot, ns), Place::Elsewhere);
        assert_eq!(place_of(host, "another-boot", ns), Place::EarlierBoot);
        // Another container on this kernel, with the same host name.
        let other = ns.map(|n| n + 1);
        assert_eq!(place_of(host, boot, other), Place::Elsewhere);
    }

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let line =
            b"4242 (a) (b c) S 17 4242 4242 0 -1 4194304 90 0 0 0 7 3 2 1 20 0 1 0 123456 1 2 3\n";
        let p = parse_stat(line).expect("parses");
        assert_eq!(
            p.id,
            ProcessId {
                pid: 4242,
                start_time: 123456
            }
        );
        assert_eq!((p.ppid, p.pgrp, p.session, p.state), (17, 4242, 4242, 'S'));
        assert_eq!((p.own_ticks, p.reaped_children_ticks), (10, 3));
        assert_eq!(p.threads, 1);
    }

    #[test]
    fn truncated_or_garbage_stat_is_none_not_a_panic() {
        for bad in [
            &b""[..],
            b"12 (x",
            b"12 (x) S 1 2",
            b"x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19",
            b"\xff)",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_this_process() {
        let me = read_proc(std::process::id() as i32).expect("own stat");
        assert_eq!(me.id.pid, std::process::id() as i32);
        assert!(!me.is_dead());
        assert!(Snapshot::take().procs().iter().any(|p| p.id == me.id));
    }
}
