//! How long `jobwatch gc` takes over a large history: 1,000 archived runs
//! (10 names × 100 runs, each a real record, status, log, pid and
//! heartbeat), timed as a whole process as a user or cron would run it.
//!
//! Run: `cargo bench --bench gc` (JOBWATCH_BENCH_RUNS=N archived runs per
//! name, default 100). Prints one table; nothing is asserted.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOBWATCH: &str = env!("CARGO_BIN_EXE_jobwatch");
const NAMES: usize = 10;
const REPEAT: usize = 5;

fn main() {
    let per_name: usize = std::env::var("JOBWATCH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().expect("temp dir");
    let template = tmp.path().join("template");
    jw(
        &template,
        &[
            "run",
            "t",
            "--quiet",
            "--",
            "sh",
            "-c",
            "echo one line of output",
        ],
    );

    let cases: [(&str, &[&str]); 3] = [
        (
            "gc --keep 1000 (reads every run, removes none)",
            &["gc", "--keep", "1000"],
        ),
        (
            "gc --keep 0 --dry-run (plans every removal)",
            &["gc", "--keep", "0", "--dry-run"],
        ),
        (
            "gc --keep 0 (removes every archived run)",
            &["gc", "--keep", "0"],
        ),
    ];
    println!(
        "{} archived runs ({NAMES} names x {per_name}), median of {REPEAT}:",
        NAMES * per_name
    );
    for (label, args) in cases {
        let mut times = Vec::new();
        for i in 0..REPEAT {
            let dir = tmp.path().join(format!("jobs-{label:.8}-{i}"));
            populate(&template, &dir, per_name);
            let start = Instant::now();
            jw(&dir, args);
            times.push(start.elapsed());
            let _ = fs::remove_dir_all(&dir);
        }
        times.sort();
        println!("  {label:<52} {:>8.1} ms", ms(times[REPEAT / 2]));
    }
}

/// A jobs dir whose names each have `per_name` archived copies of the
/// template's run, with distinct labels.
fn populate(template: &Path, dir: &Path, per_name: usize) {
    for n in 0..NAMES {
        let name = format!("job{n}");
        for r in 0..per_name {
            let run = dir.join("history").join(&name).join(format!(
                "20260101T{:02}{:02}00.000Z",
                r / 60,
                r % 60
            ));
            fs::create_dir_all(&run).expect("run folder");
            for suffix in [".job.json", ".status", ".log", ".pid", ".heartbeat"] {
                let from = template.join(format!("t{suffix}"));
                let text = fs::read_to_string(&from).expect("template file");
                let text = text.replace("\"name\": \"t\"", &format!("\"name\": \"{name}\""));
                fs::write(run.join(format!("{name}{suffix}")), text).expect("run file");
            }
        }
    }
}

fn jw(dir: &Path, args: &[&str]) {
    let status = Command::new(JOBWATCH)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run jobwatch");
    assert!(status.code().is_some(), "jobwatch {args:?} died");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
