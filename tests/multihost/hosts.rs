//! Simulated hosts for the multi-host tests: each host is a PID namespace
//! (with its own /proc) and a UTS namespace (with its own host name) kept
//! alive by a sleeping PID 1, with its own jobs directory. Commands run in
//! it through `nsenter`, so a wrapper started there, its job and its
//! waiters see only that host's processes, and jobwatch records that
//! host's name and PID namespace. Killing the namespace's PID 1 kills
//! everything in it at once: a host that dies.
//!
//! The network and the filesystem are shared (every host reaches the
//! cluster on 127.0.0.1; each keeps its logs in its own directory).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn jobwatch() -> &'static str {
    env!("CARGO_BIN_EXE_jobwatch")
}

/// Whether hosts can be simulated here (root, unshare, nsenter): prints
/// why not and returns false, or fails under `CI=true`.
pub fn available(test: &str) -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--uts", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("nsenter")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let why = "cannot simulate hosts: `unshare --pid --fork --mount-proc --uts` (root) and nsenter are needed";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}");
    }
    let _ = writeln!(std::io::stderr(), "NOT RUN: {test}: {why}");
    false
}

/// One simulated host.
pub struct Host {
    /// Its host name.
    pub name: String,
    unshare: Child,
    init: u32,
    dir: tempfile::TempDir,
    /// The store URL its commands use.
    pub store: String,
    env: Vec<(String, String)>,
}

impl Host {
    /// Starts a host named `name` whose commands use `store`.
    pub fn start(name: &str, store: &str) -> Host {
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--uts", "--", "sh", "-c"])
            .arg(format!("hostname {name} && exec sleep 1000000"))
            .stdin(Stdio::null())
            // It complains when its namespace is killed (a host crash).
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let init = eventually(Duration::from_secs(10), "the host's PID 1", || {
            let text = std::fs::read_to_string(&children).ok()?;
            let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
            // Up once its host name is set (it then execs sleep).
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "sleep").then_some(pid)
        });
        Host {
            name: name.to_owned(),
            unshare,
            init,
            dir: tempfile::Builder::new()
                .prefix(&format!("jobwatch-host-{name}-"))
                .tempdir()
                .expect("jobs dir"),
            store: store.to_owned(),
            env: Vec::new(),
        }
    }

    /// This host's jobs directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `jobwatch --dir DIR ARGS…` on this host, with `JOBWATCH_STORE`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.init.to_string())
            .args(["--pid", "--uts", "--mount", "--"])
            .arg(jobwatch())
            .arg("--dir")
            .arg(self.dir.path())
            .args(args)
            .env("JOBWATCH_STORE", &self.store)
            .env_remove("RUST_BACKTRACE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `jobwatch ARGS…` here to its end, at most `within`.
    pub fn run(&self, args: &[&str], within: Duration) -> Output {
        finish(self.cmd(args).spawn().expect("nsenter"), within)
    }

    /// Starts `jobwatch ARGS…` here without waiting.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).spawn().expect("nsenter")
    }

    /// Starts a detached job here: `run NAME --detach FLAGS… -- COMMAND…`.
    pub fn start_job(&self, name: &str, flags: &[&str], command: &[&str]) {
        let mut args = vec!["run", name, "--detach", "--json"];
        args.extend_from_slice(flags);
        args.push("--");
        args.extend_from_slice(command);
        let out = self.run(&args, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}: start {name}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The host dies: every process in it is killed at once (SIGKILL of its
    /// PID 1), as a crash or power loss would.
    pub fn crash(&mut self) {
        // SAFETY: kill(2) on a process we started (the namespace's init).
        unsafe {
            libc::kill(self.init as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.unshare.wait();
    }

    /// The path of a file in this host's jobs directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Waits for `child` at most `within` (then kills it and panics).
pub fn finish(child: Child, within: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("a command did not finish within {within:?}");
        }
    }
}

/// Polls `f` every 10 ms until it returns `Some`, at most `within`.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The JSON lines of a command's stdout.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// The one JSON line of a command's stdout.
pub fn json(out: &Output) -> serde_json::Value {
    let lines = json_lines(out);
    assert_eq!(
        lines.len(),
        1,
        "one line expected; stdout {:?}, stderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    lines.into_iter().next().unwrap()
}

/// A gate a job waits on (`until [ -e GATE ]`), opened by the test: the
/// job ends exactly when the test says, never after a guessed sleep.
pub struct Gate(PathBuf);

impl Gate {
    /// A closed gate in `dir`.
    pub fn new(dir: &Path, name: &str) -> Gate {
        Gate(dir.join(format!("gate-{name}")))
    }

    /// The shell test that waits for it.
    pub fn wait_cmd(&self) -> String {
        format!("until [ -e {} ]; do sleep 0.02; done", self.0.display())
    }

    /// Opens it.
    pub fn open(&self) {
        std::fs::write(&self.0, b"").expect("open gate");
    }
}
