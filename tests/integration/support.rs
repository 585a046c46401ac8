//! Shared helpers for the integration tests.
//!
//! Every test builds an [`Env`]: a private temp directory whose `jobs/`
//! subdirectory (created by jobwatch itself) is passed with `--dir`. Every
//! process the test starts carries a unique `JOBWATCH_TEST_TAG` in its
//! environment; when the `Env` is dropped (also on panic) every process that
//! still carries the tag is SIGKILLed, so no test leaves orphans behind.
//!
//! Nothing here sleeps for a guessed time: asynchronous conditions are polled
//! with [`wait_until`] against a generous deadline.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tempfile::TempDir;

/// How long any asynchronous condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// How long one jobwatch invocation may take before the test fails.
pub const CMD_DEADLINE: Duration = Duration::from_secs(60);
/// Polling interval of [`wait_until`].
pub const POLL: Duration = Duration::from_millis(20);

/// Short settings so that hung/lost detection happens within a second or two.
pub const FAST: &[&str] = &["--heartbeat", "100ms", "--stale", "1s", "--grace", "300ms"];

/// wait's documented exit codes.
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const HUNG: i32 = 3;
    pub const LOST: i32 = 4;
    pub const KILLED: i32 = 5;
    pub const SKIPPED: i32 = 8;
    pub const TIMEOUT: i32 = 124;
}

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("jobwatch")
}

/// Path of the lean detached wrapper built beside [`bin`].
pub fn wrapper_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("jobwatch-wrapper")
}

/// The executable process `pid` runs (`/proc/PID/exe`).
pub fn exe_of(pid: i32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/exe")).expect("the process's executable")
}

/// Polls `cond` every ~20 ms until it holds; panics naming `what` after
/// `deadline`.
#[track_caller]
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        thread::sleep(POLL);
    }
}

/// [`wait_until`] with the default [`DEADLINE`].
#[track_caller]
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    wait_until(what, DEADLINE, cond)
}

/// Polls `f` until it yields a value; panics naming `what` after [`DEADLINE`].
#[track_caller]
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    wait_until(what, DEADLINE, || {
        out = f();
        out.is_some()
    });
    out.unwrap()
}

// ---------------------------------------------------------------- /proc ---

/// The fields of `/proc/PID/stat` after the `)` that closes the command name
/// (index 0 is the state, 1 the ppid, 2 the pgrp, 19 the start time).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// The process state letter (`R`, `S`, `Z`, ...), or `None` when there is no
/// such process.
pub fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// True when `pid` no longer runs: no `/proc` entry, or a zombie.
pub fn is_gone(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X') | Some('x'))
}

/// True when `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    !is_gone(pid)
}

/// The process group of `pid`.
pub fn pgid_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// What `ps` shows of process `pid`: its whole command line.
pub fn ps_args(pid: i32) -> String {
    let out = Command::new("ps")
        .args(["-o", "args=", "-p", &pid.to_string()])
        .output()
        .expect("ps runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The arguments of process `pid` after its program (from
/// `/proc/PID/cmdline`).
pub fn argv_after_program(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The parent of `pid`.
pub fn ppid_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Whether `pid` holds an inotify descriptor with at least one watch (its
/// fdinfo lists an `inotify wd:` line per watch).
pub fn has_inotify_watch(pid: i32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
            && fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .is_ok_and(|info| info.lines().any(|l| l.starts_with("inotify wd:")))
    })
}

/// Whether `pid` holds an inotify descriptor at all.
pub fn has_inotify_fd(pid: i32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
    })
}

/// Syscall numbers of poll(2) and ppoll(2) on this architecture.
#[cfg(target_arch = "x86_64")]
const POLL_SYSCALLS: &[u64] = &[7, 271];
#[cfg(target_arch = "aarch64")]
const POLL_SYSCALLS: &[u64] = &[73];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const POLL_SYSCALLS: &[u64] = &[];

/// Whether the main thread of `pid` is blocked in poll(2)/ppoll(2): from
/// `/proc/PID/syscall` (the number of the syscall it sleeps in), else from
/// its wait channel.
pub fn blocked_in_poll(pid: i32) -> bool {
    if proc_state(pid) != Some('S') {
        return false;
    }
    if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/syscall"))
        && let Some(Ok(nr)) = s.split_whitespace().next().map(str::parse::<u64>)
        && !POLL_SYSCALLS.is_empty()
    {
        return POLL_SYSCALLS.contains(&nr);
    }
    fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("poll"))
}

/// Waits until `pid` (a `jobwatch wait`) is really waiting: it has its
/// inotify watch on the jobs directory and sleeps in poll on it.
#[track_caller]
pub fn await_blocked_on_events(pid: i32) {
    eventually(
        &format!("pid {pid} holds an inotify watch and is blocked in poll"),
        || has_inotify_watch(pid) && blocked_in_poll(pid),
    );
}

/// Waits until every PID in `pids` is gone (absent or zombie).
#[track_caller]
pub fn assert_all_gone(pids: &[(&str, i32)]) {
    for (what, pid) in pids {
        let what = format!("the {what} (pid {pid}) is gone");
        eventually(&what, || is_gone(*pid));
    }
}

/// Sends `sig` to one process.
pub fn signal(pid: i32, sig: rustix::process::Signal) {
    let p = rustix::process::Pid::from_raw(pid).expect("pid must be positive");
    rustix::process::kill_process(p, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig:?}): {e}"));
}

/// Reads a PID that a job script writes with `echo $! > FILE`, waiting until
/// the file holds one complete line.
#[track_caller]
pub fn read_pid(path: &Path) -> i32 {
    wait_for(&format!("{} holds a pid", path.display()), || {
        let s = fs::read_to_string(path).ok()?;
        if !s.ends_with('\n') {
            return None;
        }
        s.trim().parse().ok()
    })
}

/// The process tree of a job started from [`Env::tree_script`]: a leader
/// shell, a child shell, and the child's grandchild `sleep 300`.
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    pub leader: i32,
    pub child: i32,
    pub grandchild: i32,
}

impl Tree {
    pub fn pids(&self) -> [(&'static str, i32); 3] {
        [
            ("job leader", self.leader),
            ("child", self.child),
            ("grandchild", self.grandchild),
        ]
    }

    #[track_caller]
    pub fn assert_alive(&self) {
        for (what, pid) in self.pids() {
            assert!(is_alive(pid), "the {what} (pid {pid}) should still run");
        }
    }

    #[track_caller]
    pub fn assert_gone(&self) {
        assert_all_gone(&self.pids());
    }
}

// ------------------------------------------------------- capabilities ---

/// Whether this is a CI run (`CI=true`, as `.ci/run` is run): CI installs
/// every tool the tests use and runs as root, so a test that cannot get its
/// capability there is broken, not skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// How many tests of this binary have reported [`not_run`] so far.
static NOT_RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Declares that the calling test cannot run here, because `why`; the test
/// must return right after. Under CI this is a failure (a panic naming the
/// reason). Elsewhere it writes a loud line straight to the process's
/// stderr, which the test harness does not capture (its capture covers only
/// the `print!` macros), so a `cargo test` that says `ok` for this test
/// still shows that it did not run, with a running count.
#[track_caller]
pub fn not_run(why: &str) {
    use std::io::Write;
    let test = thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    if in_ci() {
        panic!("{test} cannot run under CI=true: {why}");
    }
    let n = NOT_RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** NOT RUN ({n} so far in this test binary): {test}: {why} \
         (it would fail under CI=true) ***"
    );
}

/// `Some(v)` when `capability` is available; else reports [`not_run`] with
/// its reason and gives `None`, so a test starts with
/// `let Some(x) = runnable(...) else { return };`.
#[track_caller]
pub fn runnable<T>(capability: Result<T, String>) -> Option<T> {
    match capability {
        Ok(v) => Some(v),
        Err(why) => {
            not_run(&why);
            None
        }
    }
}

/// Whether strace(1) is installed and may trace here, also attach to a
/// running process (ptrace can be forbidden in a container, or restricted
/// by yama); checked once.
pub fn strace() -> Result<(), String> {
    static OK: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    OK.get_or_init(|| {
        let out = Command::new("strace")
            .args(["-qq", "-f", "-e", "trace=none", "true"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("strace(1) is not installed ({e}): apt-get install strace"))?;
        let scope = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").unwrap_or_default();
        if out.status.success() && (is_root() || scope.trim().is_empty() || scope.trim() == "0") {
            Ok(())
        } else if out.status.success() {
            Err(format!(
                "strace -p cannot attach to a running process here (yama ptrace_scope {})",
                scope.trim()
            ))
        } else {
            Err(format!(
                "strace(1) cannot trace here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
    .clone()
}

/// `strace -f -qq -p PID -o LOG ARGS...`, attached: returns once every
/// thread of `pid` is traced, so what the test does next is seen. Stop it
/// with [`detach_strace`] (SIGTERM detaches and resumes the tracee); if
/// dropped, the guard SIGKILLs it, which also detaches.
#[track_caller]
pub fn attach_strace(env: &Env, pid: i32, log: &Path, args: &[&str]) -> ChildGuard {
    let mut cmd = env.other("strace");
    cmd.args(["-f", "-qq", "-p", &pid.to_string(), "-o"])
        .arg(log)
        .args(args);
    let mut tracer = ChildGuard::spawn(cmd);
    eventually(
        &format!("strace has attached to every thread of {pid}"),
        || {
            assert!(tracer.is_running(), "strace exited before attaching");
            traced_by(pid).is_some_and(|tracers| tracers.iter().all(|t| *t == tracer.pid()))
        },
    );
    tracer
}

/// Stops a tracer started by [`attach_strace`], which lets its tracee go on,
/// and returns the trace it wrote.
#[track_caller]
pub fn detach_strace(tracer: ChildGuard, log: &Path) -> String {
    signal(tracer.pid(), rustix::process::Signal::TERM);
    let _ = tracer.finish();
    fs::read_to_string(log).unwrap_or_default()
}

/// The `TracerPid` of every thread of `pid` (`None` when it is gone).
fn traced_by(pid: i32) -> Option<Vec<i32>> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks
        .flatten()
        .map(|t| {
            let status = fs::read_to_string(t.path().join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

// ------------------------------------------------------------ processes ---

/// A spawned process whose stdout/stderr are drained by background threads;
/// dropped without [`ChildGuard::finish`], it is SIGKILLed and reaped.
pub struct ChildGuard {
    child: Option<Child>,
    out: Option<mpsc::Receiver<Vec<u8>>>,
    err: Option<mpsc::Receiver<Vec<u8>>>,
    what: String,
}

fn drain(r: Option<impl Read + Send + 'static>) -> Option<mpsc::Receiver<Vec<u8>>> {
    let mut r = r?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    Some(rx)
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured.
    pub fn spawn(cmd: Command) -> Self {
        Self::spawn_with_stdin(cmd, Stdio::null())
    }

    /// Spawns `cmd` reading `stdin` (e.g. a file), stdout/stderr captured.
    pub fn spawn_with_stdin(mut cmd: Command, stdin: impl Into<Stdio>) -> Self {
        let what = format!("{cmd:?}");
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        Self {
            child: Some(child),
            out,
            err,
            what,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// True while the process has not exited (it is reaped if it has).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Waits (up to `deadline`) for the process to exit and for its stdout and
    /// stderr to reach end of file; panics if either takes too long.
    #[track_caller]
    pub fn finish_within(mut self, deadline: Duration) -> Output {
        let start = Instant::now();
        let mut child = self.child.take().unwrap();
        let status: ExitStatus = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {deadline:?}", self.what);
            }
            thread::sleep(POLL);
        };
        let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>, name: &str| -> Vec<u8> {
            let Some(rx) = rx else { return Vec::new() };
            let left = deadline.saturating_sub(start.elapsed()) + Duration::from_secs(5);
            rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{} exited ({status}) but its {name} stayed open: a process it left behind \
                     still holds the pipe",
                    self.what
                )
            })
        };
        let stdout = collect(self.out.take(), "stdout");
        let stderr = collect(self.err.take(), "stderr");
        Output {
            status,
            stdout,
            stderr,
        }
    }

    #[track_caller]
    pub fn finish(self) -> Output {
        self.finish_within(CMD_DEADLINE)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` to completion (stdin closed) with [`CMD_DEADLINE`].
#[track_caller]
pub fn output_of(cmd: Command) -> Output {
    ChildGuard::spawn(cmd).finish()
}

// ---------------------------------------------------------- output utils ---

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code; panics (with the output) when the process died of a signal.
#[track_caller]
pub fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("process died of a signal: {}", describe(o)))
}

/// A readable dump of an `Output` for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// Asserts the exit code, printing everything on mismatch.
#[track_caller]
pub fn assert_code(o: &Output, expected: i32) {
    assert_eq!(
        o.status.code(),
        Some(expected),
        "expected exit code {expected}\n{}",
        describe(o)
    );
}

/// Asserts exit code 2 and that stderr mentions every one of `needles`.
#[track_caller]
pub fn assert_usage_error(o: &Output, needles: &[&str]) {
    assert_code(o, exit::USAGE);
    let err = stderr(o);
    assert!(
        !err.trim().is_empty(),
        "expected an error message on stderr\n{}",
        describe(o)
    );
    let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(
        lines,
        1,
        "expected a one-line error on stderr\n{}",
        describe(o)
    );
    for n in needles {
        assert!(
            err.contains(n),
            "stderr should mention {n:?}\n{}",
            describe(o)
        );
    }
}

/// Parses every non-empty stdout line as one JSON object.
#[track_caller]
pub fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}\n{}", describe(o)))
        })
        .collect()
}

/// The single JSON line on stdout.
#[track_caller]
pub fn json_line(o: &Output) -> Value {
    let mut v = json_lines(o);
    assert_eq!(
        v.len(),
        1,
        "expected exactly one JSON line\n{}",
        describe(o)
    );
    v.pop().unwrap()
}

/// The JSON line whose `name` is `name`.
#[track_caller]
pub fn line_for<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no JSON line for job {name:?} in {lines:#?}"))
}

/// `v[key]` as an i32 (panics when it is not an integer).
#[track_caller]
pub fn int(v: &Value, key: &str) -> i32 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} should be an integer in {v:#}")) as i32
}

/// Compares two paths after resolving symlinks (a temp dir may sit behind one).
pub fn same_path(a: impl AsRef<Path>, b: impl AsRef<Path>) -> bool {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
    canon(a.as_ref()) == canon(b.as_ref())
}

pub fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).ok()?.modified().ok()
}

/// Sets a file's mtime to one hour ago.
pub fn age_file(path: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    let f = fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(past).expect("set_modified");
}

// ------------------------------------------------------------------ Env ---

/// One test's private world: a temp dir, the jobs dir inside it, and the
/// tag that marks every process the test starts.
pub struct Env {
    /// `<tmp>/jobs`, passed as `--dir`; jobwatch creates it.
    pub dir: PathBuf,
    tag: String,
    tmp: TempDir,
}

impl Env {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("jobwatch-it-")
            .tempdir()
            .expect("tempdir");
        let tag = tmp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Self {
            dir: tmp.path().join("jobs"),
            tag,
            tmp,
        }
    }

    /// The scratch directory (parent of the jobs dir); job scripts see it
    /// as `$T`.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A scratch file path.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// A job file: `<dir>/<name><suffix>` (suffix like `.status`).
    pub fn file(&self, name: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{name}{suffix}"))
    }

    /// Applies the test's environment to any command (tag, `$T`, no
    /// inherited `JOBWATCH_DIR`, and no `JOBWATCH_STORE`: these suites test
    /// the jobs directory, whatever store the developer's shell selects).
    pub fn prepare(&self, cmd: &mut Command) {
        cmd.env("JOBWATCH_TEST_TAG", &self.tag)
            .env("T", self.root())
            .env("JW", bin())
            .env_remove("JOBWATCH_DIR")
            .env_remove("JOBWATCH_STORE")
            .current_dir(self.root());
    }

    /// `jobwatch` without `--dir` (for tests of the option itself).
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new(bin());
        self.prepare(&mut cmd);
        cmd
    }

    /// `jobwatch --dir <dir>`.
    pub fn cmd(&self) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--dir").arg(&self.dir);
        cmd
    }

    /// Any other program, with the test's environment.
    pub fn other(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.prepare(&mut cmd);
        cmd
    }

    /// Runs `jobwatch --dir <dir> ARGS...` to completion.
    #[track_caller]
    pub fn jw(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.args(args);
        output_of(cmd)
    }

    /// Spawns `jobwatch --dir <dir> ARGS...` in the background.
    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        let mut cmd = self.cmd();
        cmd.args(args);
        ChildGuard::spawn(cmd)
    }

    /// `run NAME OPTS... -- CMD...` in the foreground.
    #[track_caller]
    pub fn run<S: AsRef<str>>(&self, name: &str, opts: &[&str], command: &[S]) -> Output {
        self.jw(&run_args(name, opts, command, false))
    }

    /// `run NAME --detach OPTS... -- CMD...`; asserts it succeeded and printed
    /// one JSON line naming the job.
    #[track_caller]
    pub fn detach<S: AsRef<str>>(&self, name: &str, opts: &[&str], command: &[S]) -> Detached {
        let out = self.jw(&run_args(name, opts, command, true));
        assert_code(&out, 0);
        let json = json_line(&out);
        assert_eq!(json["name"], name, "detach output names the job: {json}");
        Detached {
            pid: int(&json, "pid"),
            wrapper_pid: int(&json, "wrapper_pid"),
            json,
        }
    }

    /// `wait ARGS...`, returning the output and its JSON lines.
    #[track_caller]
    pub fn wait(&self, args: &[&str]) -> (Output, Vec<Value>) {
        let mut a = vec!["wait"];
        a.extend_from_slice(args);
        let out = self.jw(&a);
        let lines = json_lines(&out);
        (out, lines)
    }

    /// `NAME.job.json`, parsed.
    #[track_caller]
    pub fn record(&self, name: &str) -> Value {
        let path = self.file(name, ".job.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()))
    }

    /// The full content of `NAME.status`, if it exists.
    pub fn status_file(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.file(name, ".status")).ok()
    }

    /// Waits until `NAME.status` exists and returns its first line.
    #[track_caller]
    pub fn await_status(&self, name: &str) -> String {
        let text = wait_for(&format!("{name}.status exists"), || self.status_file(name));
        text.lines().next().unwrap_or("").to_owned()
    }

    /// The content of `NAME.log` (empty when missing).
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.file(name, ".log")).unwrap_or_default()
    }

    /// Writes an executable shell script into the scratch dir; returns its path.
    pub fn script(&self, file: &str, body: &str) -> String {
        let path = self.scratch(file);
        fs::write(&path, body).expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
        path.to_string_lossy().into_owned()
    }

    /// A job that blocks until the test calls [`Env::release`] with the same
    /// gate name, then prints `released` and exits with `code`.
    pub fn gated(&self, gate: &str, code: i32) -> Vec<String> {
        let go = self.scratch(&format!("{gate}.go"));
        sh(&format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done; echo released; exit {code}",
            go.display()
        ))
    }

    /// Opens the gate of [`Env::gated`].
    pub fn release(&self, gate: &str) {
        fs::write(self.scratch(&format!("{gate}.go")), b"go").expect("write gate");
    }

    /// A script whose leader shell starts a child shell, which starts a
    /// grandchild `sleep 300`; all three PIDs land in `$T/<prefix>.*.pid`.
    /// `child_prelude` runs first in the child (e.g. `trap "" TERM`), and
    /// `grandchild` is the command started in the background (default
    /// `sleep 300`).
    pub fn tree_script(&self, prefix: &str, child_prelude: &str, grandchild: &str) -> Vec<String> {
        let child = self.script(
            &format!("{prefix}.child.sh"),
            &format!(
                "{child_prelude}\n{grandchild} &\necho $! > \"$T/{prefix}.grandchild.pid\"\n\
                 echo $$ > \"$T/{prefix}.child.pid\"\nwait\n"
            ),
        );
        let leader = self.script(
            &format!("{prefix}.leader.sh"),
            &format!(
                "sh '{child}' &\necho $$ > \"$T/{prefix}.leader.pid\"\necho tree started\nwait\n"
            ),
        );
        vec!["sh".into(), leader]
    }

    /// The default tree: plain `sleep 300` grandchild, nothing special.
    pub fn tree(&self, prefix: &str) -> Vec<String> {
        self.tree_script(prefix, "", "sleep 300")
    }

    /// Reads the three PIDs of a tree started with [`Env::tree_script`].
    #[track_caller]
    pub fn tree_pids(&self, prefix: &str) -> Tree {
        Tree {
            leader: read_pid(&self.scratch(&format!("{prefix}.leader.pid"))),
            child: read_pid(&self.scratch(&format!("{prefix}.child.pid"))),
            grandchild: read_pid(&self.scratch(&format!("{prefix}.grandchild.pid"))),
        }
    }

    /// PIDs of every live (non-zombie) process carrying this test's tag.
    pub fn tagged_processes(&self) -> Vec<i32> {
        let needle = format!("JOBWATCH_TEST_TAG={}", self.tag);
        let me = std::process::id() as i32;
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != me && is_alive(pid))
            .filter(|&pid| {
                fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Kill whatever the test left running (a wrapper may fork while we
        // scan, so repeat a few times).
        for _ in 0..10 {
            let left = self.tagged_processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
            thread::sleep(POLL);
        }
        // Let a slow `rm -rf` succeed even if a test chmod-ed something.
        let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700));
    }
}

/// The result of `run --detach`.
#[derive(Debug, Clone)]
pub struct Detached {
    pub json: Value,
    /// The command's PID (group leader).
    pub pid: i32,
    pub wrapper_pid: i32,
}

/// Builds `run NAME [--detach] OPTS... -- CMD...`.
pub fn run_args<'a, S: AsRef<str>>(
    name: &'a str,
    opts: &[&'a str],
    command: &'a [S],
    detach: bool,
) -> Vec<&'a str> {
    let mut a = vec!["run", name];
    if detach {
        a.push("--detach");
    }
    a.extend_from_slice(opts);
    a.push("--");
    a.extend(command.iter().map(|s| s.as_ref()));
    a
}

/// `["sh", "-c", script]`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// `FAST` settings with `--liveness timer`: the job counts as alive while its
/// wrapper is, so a silent process tree is never reported hung by accident.
pub const FAST_TIMER: &[&str] = &[
    "--liveness",
    "timer",
    "--heartbeat",
    "100ms",
    "--stale",
    "1s",
    "--grace",
    "300ms",
];

/// Spawns `sleep 300` in its own process group, unrelated to any job.
pub fn unrelated_sleeper(env: &Env) -> ChildGuard {
    use std::os::unix::process::CommandExt;
    let mut cmd = env.other("sleep");
    cmd.arg("300").process_group(0);
    ChildGuard::spawn(cmd)
}

/// A PID that belonged to a process that has exited and been reaped.
pub fn dead_pid(env: &Env) -> i32 {
    let mut cmd = env.other("true");
    cmd.arg("dead");
    let child = ChildGuard::spawn(cmd);
    let pid = child.pid();
    let _ = child.finish();
    assert!(proc_state(pid).is_none(), "pid {pid} should be free");
    pid
}

/// Makes a value that is certainly not the start time `v`.
fn wrong_start_time(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_u64() => Value::from(n.as_u64().unwrap() + 1_000_000),
        Value::Number(n) if n.is_i64() => Value::from(n.as_i64().unwrap() + 1_000_000),
        Value::Number(n) => Value::from(n.as_f64().unwrap() + 1_000_000.0),
        Value::String(s) => match s.parse::<u64>() {
            Ok(n) => Value::from((n + 1_000_000).to_string()),
            Err(_) => {
                // e.g. a timestamp: change its first digit.
                let mut done = false;
                let t: String = s
                    .chars()
                    .map(|c| {
                        if !done && c.is_ascii_digit() {
                            done = true;
                            if c == '1' { '2' } else { '1' }
                        } else {
                            c
                        }
                    })
                    .collect();
                Value::from(if done { t } else { format!("{s}-wrong") })
            }
        },
        other => panic!("unexpected child_start_time {other}"),
    }
}

/// Writes the files of a job `name` whose wrapper died long ago and whose
/// recorded child PID and PGID are `victim` — a live process that is *not*
/// the job (the recorded start time is wrong). The record is a real one
/// (from a short job run first), rewritten with serde_json.
pub fn write_stale_record(env: &Env, name: &str, victim: i32) {
    let template = format!("{name}-template");
    assert_code(&env.run(&template, FAST, &["true"]), 0);
    let mut rec = env.record(&template);
    let obj = rec.as_object_mut().expect("job.json is an object");
    for key in [
        "name",
        "wrapper_pid",
        "child_pid",
        "child_start_time",
        "pgid",
        "outcome",
    ] {
        assert!(obj.contains_key(key), "job.json lacks {key}: {obj:#?}");
    }
    obj.insert("name".into(), Value::from(name));
    obj.insert("wrapper_pid".into(), Value::from(dead_pid(env)));
    obj.insert("child_pid".into(), Value::from(victim));
    obj.insert("pgid".into(), Value::from(victim));
    let wrong = wrong_start_time(&obj["child_start_time"]);
    obj.insert("child_start_time".into(), wrong);
    for key in ["ended_at", "exit_code", "signal", "outcome", "duration_ms"] {
        if obj.contains_key(key) {
            obj.insert(key.into(), Value::Null);
        }
    }
    fs::write(
        env.file(name, ".job.json"),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    fs::write(env.file(name, ".pid"), format!("{victim}\n")).unwrap();
    fs::write(env.file(name, ".log"), b"").unwrap();
    fs::write(env.file(name, ".lock"), b"").unwrap();
    fs::write(env.file(name, ".heartbeat"), b"").unwrap();
    age_file(&env.file(name, ".heartbeat"));
}

/// How far process `pid` has read the file at `path`: the position of its
/// open descriptor on it (from `/proc/PID/fdinfo`), or `None` while it has
/// none open. Lets a test wait until a follower has read what is there.
pub fn read_offset(pid: i32, path: &Path) -> Option<u64> {
    let want = path.canonicalize().ok()?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten().find_map(|fd| {
        if fs::read_link(fd.path()).ok()? != want {
            return None;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("pos:"))
            .and_then(|p| p.trim().parse().ok())
    })
}

/// Waits until process `pid` has read all of the file at `path` as it is
/// now (its descriptor's position is the file's length).
#[track_caller]
pub fn await_read_to_end(pid: i32, path: &Path) {
    let what = format!("pid {pid} has read {} to its end", path.display());
    eventually(&what, || {
        let len = fs::metadata(path).map(|m| m.len()).ok();
        len.is_some() && read_offset(pid, path) == len
    });
}
