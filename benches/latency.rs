//! Completion-detection latency of `jobwatch wait`: from the moment the
//! job's command exits to the moment a waiting `jobwatch wait` process has
//! returned to its caller, which is the delay an automated loop sees.
//!
//! The job's last act is to write its own exit time (this binary re-executed
//! with `--emit-exit-time FILE`), so the figure includes everything jobwatch
//! does: the wrapper noticing the exit, killing leftovers, writing the final
//! record and status (with fsyncs), the waiter's wake-up and its exit.
//!
//! `wait --until-log` is timed the same way, from the moment the job writes
//! a marker line to its log (this binary re-executed with `--emit-marker`
//! takes the time just before the write) to the moment a waiting
//! `jobwatch wait --until-log` process has returned `matched`.
//!
//! Run: `cargo bench --bench latency` (JOBWATCH_BENCH_RUNS=N to change the
//! number of runs, default 20). Prints one table; nothing is asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const JOBWATCH: &str = env!("CARGO_BIN_EXE_jobwatch");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--emit-exit-time") {
        emit_exit_time(Path::new(&args[2]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--emit-marker") {
        emit_marker(Path::new(&args[2]), Path::new(&args[3]));
        return;
    }
    let runs: usize = std::env::var("JOBWATCH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("jobs");
    let me = std::env::current_exe().expect("own path");

    let mut rows = Vec::new();
    for (label, poll) in [("wait (inotify)", None), ("wait --poll 1s", Some("1s"))] {
        let mut total = Vec::new();
        let mut wrapper = Vec::new();
        for i in 0..runs {
            let name = format!(
                "lat{}-{i}",
                total.len() + if poll.is_some() { 1000 } else { 0 }
            );
            let s = measure_once(&dir, &me, &name, poll);
            total.push(s.exit_to_return);
            wrapper.push(s.exit_to_record);
        }
        rows.push((format!("{label}: job exit -> wait returned"), total));
        rows.push((
            format!("{label}: job exit -> wrapper saw it (ended_at)"),
            wrapper,
        ));
    }
    let marker = (0..runs)
        .map(|i| measure_marker_once(&dir, &me, &format!("mark-{i}")))
        .collect();
    rows.push((
        "wait --until-log (inotify): marker written -> returned".to_owned(),
        marker,
    ));
    print_table(runs, &rows);
}

struct Sample {
    exit_to_return: Duration,
    exit_to_record: Duration,
}

fn measure_once(dir: &Path, me: &Path, name: &str, poll: Option<&str>) -> Sample {
    let stamp = dir.with_file_name(format!("{name}.exit"));
    // The pause lets `wait` start and settle before the job ends: the figure
    // is the wake-up delay, not the wait command's start-up.
    let script = format!(
        "sleep 0.3; exec '{}' --emit-exit-time '{}'",
        me.display(),
        stamp.display()
    );
    start_detached(dir, name, &script);
    let mut wait = Command::new(JOBWATCH);
    wait.arg("--dir").arg(dir).args(["wait", name, "--json"]);
    if let Some(p) = poll {
        wait.args(["--poll", p]);
    }
    let status = wait.stdout(Stdio::null()).status().expect("wait");
    let returned = SystemTime::now();
    assert!(status.success(), "wait reported a failure");
    let exited = read_exit_time(&stamp);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("{name}.job.json"))).expect("record"),
    )
    .expect("record json");
    let ended =
        humantime::parse_rfc3339(record["ended_at"].as_str().expect("ended_at")).expect("rfc3339");
    Sample {
        exit_to_return: returned.duration_since(exited).unwrap_or_default(),
        exit_to_record: ended.duration_since(exited).unwrap_or_default(),
    }
}

/// Starts `sh -c SCRIPT` as a detached job.
fn start_detached(dir: &Path, name: &str, script: &str) {
    let started = Command::new(JOBWATCH)
        .arg("--dir")
        .arg(dir)
        .args(["run", name, "--detach", "--", "sh", "-c", script])
        .stdout(Stdio::null())
        .status()
        .expect("run --detach");
    assert!(started.success(), "run --detach failed");
}

/// One `wait --until-log` run: the job prints its marker 0.3 s after
/// starting (so the waiter is settled), then stays until released.
fn measure_marker_once(dir: &Path, me: &Path, name: &str) -> Duration {
    let stamp = dir.with_file_name(format!("{name}.marker"));
    let go = dir.with_file_name(format!("{name}.go"));
    let script = format!(
        "sleep 0.3; exec '{}' --emit-marker '{}' '{}'",
        me.display(),
        stamp.display(),
        go.display()
    );
    start_detached(dir, name, &script);
    let status = Command::new(JOBWATCH)
        .arg("--dir")
        .arg(dir)
        .args(["wait", name, "--json", "--until-log", "^READY$"])
        .stdout(Stdio::null())
        .status()
        .expect("wait --until-log");
    let returned = SystemTime::now();
    assert!(status.success(), "wait --until-log reported a failure");
    std::fs::write(&go, b"go").expect("release the job");
    let written = read_stamp_when_there(&stamp);
    let ended = Command::new(JOBWATCH)
        .arg("--dir")
        .arg(dir)
        .args(["wait", name])
        .stdout(Stdio::null())
        .status()
        .expect("wait");
    assert!(ended.success(), "the marker job failed");
    returned.duration_since(written).unwrap_or_default()
}

/// In the job: take the time, write the marker line (one write), record
/// the time (atomically: the bench may already be looking), then stay
/// until released so the match is made while the job runs.
fn emit_marker(stamp: &Path, go: &Path) {
    use std::io::Write;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::io::stdout()
        .lock()
        .write_all(b"READY\n")
        .expect("write the marker");
    let tmp = stamp.with_extension("tmp");
    std::fs::write(&tmp, now.as_nanos().to_string()).expect("write marker time");
    std::fs::rename(&tmp, stamp).expect("publish marker time");
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_stamp_when_there(path: &PathBuf) -> SystemTime {
    for _ in 0..2000 {
        if path.exists() {
            return read_exit_time(path);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no marker time in {}", path.display());
}

fn emit_exit_time(path: &Path) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::fs::write(path, now.as_nanos().to_string()).expect("write exit time");
}

fn read_exit_time(path: &PathBuf) -> SystemTime {
    let nanos: u64 = std::fs::read_to_string(path)
        .expect("exit time")
        .trim()
        .parse()
        .expect("nanos");
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn print_table(runs: usize, rows: &[(String, Vec<Duration>)]) {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    println!("completion-detection latency, {runs} runs each (ms)");
    println!(
        "(--poll 1s: the job ends 0.3 s after wait starts, so each poll run finds it at the first tick after 1 s)"
    );
    println!(
        "{:55} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "measure", "min", "p50", "p90", "p99", "max"
    );
    for (label, samples) in rows {
        let mut s = samples.clone();
        s.sort();
        println!(
            "{:55} {:>8} {:>8} {:>8} {:>8} {:>8}",
            label,
            ms(s[0]),
            ms(percentile(&s, 0.5)),
            ms(percentile(&s, 0.9)),
            ms(percentile(&s, 0.99)),
            ms(s[s.len() - 1])
        );
    }
}
