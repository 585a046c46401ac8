//! What every section shares: paths of the tools, a scratch directory, the
//! job-side helper modes, and small process utilities.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Opts;
use crate::pueue::Pueue;

/// The jobwatch binary built with this bench (release profile).
pub const JOBWATCH: &str = env!("CARGO_BIN_EXE_jobwatch");

/// The tools under test and a private scratch directory.
pub struct Ctx {
    /// This bench binary (re-executed as the timed job).
    pub me: PathBuf,
    /// `bench/plain-pattern/`.
    pub plain: PathBuf,
    /// A running private pueue daemon, when `--pueue-bin` was given.
    pub pueue: Option<Pueue>,
    tmp: tempfile::TempDir,
}

impl Ctx {
    /// Sets up the scratch directory and starts pueued if asked to.
    pub fn new(opts: &Opts) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("jobwatch-bench-")
            .tempdir()
            .expect("temp dir");
        let pueue = opts
            .pueue_bin
            .as_ref()
            .map(|bin| Pueue::start(bin, &tmp.path().join("pueue")));
        Self {
            me: std::env::current_exe().expect("own path"),
            plain: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/plain-pattern"),
            pueue,
            tmp,
        }
    }

    /// A fresh directory inside the scratch area.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    /// `jobwatch --dir DIR ARGS...`, output discarded.
    pub fn jw(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(JOBWATCH);
        c.arg("--dir").arg(dir).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// A shell command for a job that sleeps `delay` and then records its
    /// exit time into `stamp` as its last act.
    pub fn exiting_job(&self, delay: Duration, stamp: &Path) -> String {
        format!(
            "sleep {:.3}; exec '{}' --emit-exit-time '{}'",
            delay.as_secs_f64(),
            self.me.display(),
            stamp.display()
        )
    }

    /// `bench/plain-pattern/<script>`.
    pub fn plain_script(&self, script: &str) -> PathBuf {
        self.plain.join(script)
    }
}

/// Writes the current time (ns since the epoch) to `path`.
pub fn write_now(path: &Path) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::fs::write(path, now.as_nanos().to_string()).expect("write time");
}

/// Reads a time written by [`write_now`].
pub fn read_time(path: &Path) -> SystemTime {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    UNIX_EPOCH + Duration::from_nanos(text.trim().parse().expect("nanoseconds"))
}

/// Job mode: prints one line (progress), records the time, then blocks
/// forever without output or CPU: a deadlock.
pub fn print_then_hang(stamp: &Path) -> ! {
    println!("working");
    std::io::stdout().flush().expect("flush");
    write_now(stamp);
    hang()
}

/// Job mode: computes for 300 ms (progress by CPU), records the time, then
/// blocks forever.
pub fn burn_then_hang(stamp: &Path) -> ! {
    let start = std::time::Instant::now();
    let mut x: u64 = 1;
    while start.elapsed() < Duration::from_millis(300) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(x);
    write_now(stamp);
    hang()
}

fn hang() -> ! {
    loop {
        std::thread::park();
    }
}

/// A deterministic pseudo-random delay in `[lo, lo + span)`, so that polling
/// waiters see job ends at every phase of their poll interval.
pub fn spread(i: usize, lo: Duration, span: Duration) -> Duration {
    // Golden-ratio sequence: evenly spread, no crate needed.
    let frac = (i as f64 * 0.618_033_988_749_895).fract();
    lo + span.mul_f64(frac)
}

/// Elapsed time from `from` to `to` (zero if the clock says otherwise).
pub fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

/// Runs a command to completion; panics with its name when it cannot start.
pub fn status_of(mut c: Command) -> std::process::ExitStatus {
    c.status()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// Fields 14..17 (utime, stime, cutime, cstime) of `/proc/PID/stat`, in ticks.
pub fn cpu_ticks(pid: i32) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, so utime (14) is index 11.
    let n = |i: usize| {
        f.get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .map(|v| v.max(0) as u64)
    };
    Some([n(11)?, n(12)?, n(13)?, n(14)?])
}

/// Time the process has run on a CPU, in ns (`/proc/PID/schedstat`):
/// nanosecond resolution where `stat`'s utime/stime count 10 ms ticks.
pub fn cpu_ns(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A `VmHWM`/`VmRSS`-style field of `/proc/PID/status`, in kB.
pub fn proc_status_kb(pid: i32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Polls `f` every 10 ms until it returns something, up to `deadline`.
pub fn poll<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Prints progress to stderr (the table goes to stdout).
pub fn note(msg: &str) {
    eprintln!("bench: {msg}");
}
