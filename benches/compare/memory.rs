//! Wrapper memory: what each running job's wrapper costs while its job
//! runs, with many jobs at once (so shared pages are shared), for the lean
//! `jobwatch-wrapper` that `jobwatch` finds beside itself and for the
//! fallback, `jobwatch __wrapper` (a copy of `jobwatch` alone in a
//! directory, as an install without the wrapper would run).
//!
//! Each job runs `sleep` with the default settings except `--stale 2h`.
//! The figures are read one heartbeat and a second after the last start, so
//! every wrapper has sampled its job at least once: VmRSS (`/proc/PID/status`,
//! what `ps` and `top` show) and PSS (`/proc/PID/smaps_rollup`: the shared
//! pages divided among the processes that map them, the memory a job really
//! adds), each the mean over the wrappers. Every job is ended at the end,
//! also when the bench fails (`idle_jobs::Jobs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Opts;
use crate::idle_jobs::Jobs;
use crate::stats::{Row, Value};
use crate::util::{Ctx, JOBWATCH, note, proc_status_kb};

const SECTION: &str = "6. wrapper memory (running `sleep` jobs)";
/// The default heartbeat: every wrapper has sampled once more after it.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Which wrapper the jobs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrapper {
    /// `jobwatch __wrapper`: the whole front end's binary.
    Fallback,
    /// `jobwatch-wrapper` beside `jobwatch`.
    Lean,
}

impl Wrapper {
    fn label(self) -> &'static str {
        match self {
            Wrapper::Fallback => "`jobwatch __wrapper` (fallback)",
            Wrapper::Lean => "`jobwatch-wrapper`",
        }
    }
}

/// The fallback's figures, then the lean wrapper's beside them.
pub fn run(ctx: &Ctx, opts: &Opts) -> Vec<Row> {
    let n = opts.memory_jobs;
    if n == 0 {
        return Vec::new();
    }
    let alone = ctx.dir("memory-fallback-bin");
    let lone_jobwatch = alone.join("jobwatch");
    std::fs::copy(JOBWATCH, &lone_jobwatch).expect("copy jobwatch alone");
    let mut rows = measure(ctx, n, Wrapper::Fallback, &lone_jobwatch, None);
    let baseline = |what: &str| format!("{n} jobs, {}: {what}", Wrapper::Fallback.label());
    rows.extend(measure(
        ctx,
        n,
        Wrapper::Lean,
        Path::new(JOBWATCH),
        Some(&baseline),
    ));
    rows
}

fn measure(
    ctx: &Ctx,
    n: usize,
    wrapper: Wrapper,
    jobwatch: &Path,
    baseline: Option<&dyn Fn(&str) -> String>,
) -> Vec<Row> {
    let dir = ctx.dir(&format!("memory-{n}-{wrapper:?}"));
    let lifetime = n as f64 * 0.1 + HEARTBEAT.as_secs_f64() + 120.0;
    note(&format!("memory: starting {n} jobs ({})", wrapper.label()));
    let mut jobs = Jobs::new(&dir);
    let mut wrappers = Vec::new();
    for i in 0..n {
        let name = format!("mem{i:04}");
        let out = Command::new(jobwatch)
            .arg("--dir")
            .arg(&dir)
            .args(["run", &name, "--detach", "--stale", "2h", "--", "sleep"])
            .arg(format!("{lifetime:.0}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run --detach");
        assert!(out.status.success(), "run --detach {name} failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run JSON");
        let pid = |key: &str| v[key].as_i64().expect(key) as i32;
        jobs.add(name, pid("wrapper_pid"), pid("pid"));
        wrappers.push(pid("wrapper_pid"));
    }
    let expected = match wrapper {
        Wrapper::Fallback => jobwatch.to_owned(),
        Wrapper::Lean => jobwatch.with_file_name("jobwatch-wrapper"),
    };
    assert_eq!(
        exe_of(wrappers[0]),
        std::fs::canonicalize(&expected).expect("the wrapper's path"),
        "the jobs did not get the wrapper measured"
    );
    note(&format!(
        "memory: {n} started; settling for one heartbeat, then reading"
    ));
    std::thread::sleep(HEARTBEAT + Duration::from_secs(1));
    let mean = |f: &dyn Fn(i32) -> Option<u64>| {
        let kb: Vec<u64> = wrappers
            .iter()
            .map(|&p| f(p).unwrap_or_else(|| panic!("wrapper {p} has ended")))
            .collect();
        kb.iter().sum::<u64>() as f64 / kb.len() as f64 / 1024.0
    };
    let rss = mean(&|p| proc_status_kb(p, "VmRSS:"));
    let pss = mean(&|p| smaps_rollup_kb(p, "Pss:"));
    note("memory: ending them");
    jobs.end_all();
    let row = |what: &str, value: f64| Row {
        section: SECTION,
        label: format!("{n} jobs, {}: {what}", wrapper.label()),
        value: Value::Amount { value, unit: "MB" },
        baseline: baseline.map(|b| b(what)),
    };
    vec![
        row("VmRSS per wrapper (mean)", rss),
        row("PSS per wrapper (mean)", pss),
    ]
}

/// The executable of process `pid`.
fn exe_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("the wrapper's executable")
}

/// A field of `/proc/PID/smaps_rollup`, in kB.
fn smaps_rollup_kb(pid: i32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
