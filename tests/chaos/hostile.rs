//! Hostile entries in the jobs directory and hostile bytes in a log: a
//! FIFO, a device, a directory or a huge file where a job file belongs; a
//! symlink swapped in while a job runs; a line of hundreds of MB; a log that
//! tries to drive the terminal. Every command answers promptly with a clear
//! one-line reason, follows no symlink, holds a bounded amount of memory,
//! and damages nothing.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::support::*;

/// Far longer than any command here needs, far shorter than a hang.
const PROMPT: Duration = Duration::from_secs(20);

/// The address space a command meeting a hostile file may use: an
/// unbounded read fails there instead of taking the machine's memory.
const ADDRESS_SPACE: u64 = 1 << 30;

/// The most resident memory a command may reach while it reads a log of
/// hundreds of MB, in KiB: its ordinary size plus a bounded tail.
const PEAK_RSS_KIB: i64 = 50 * 1024;

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Creates the jobs directory the way jobwatch does.
fn make_jobs_dir(env: &Env) {
    assert_code(&env.jw(&["ls"]), 0);
}

/// `jobwatch --dir DIR ARGS...` with a bounded address space, which must
/// exit within [`PROMPT`].
#[track_caller]
fn jw_prompt(env: &Env, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd();
    cmd.args(args);
    // SAFETY: setrlimit is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(ADDRESS_SPACE),
                maximum: Some(ADDRESS_SPACE),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit).map_err(Into::into)
        });
    }
    ChildGuard::spawn(cmd).finish_within(PROMPT)
}

/// What kind of entry is at `path` (symlinks not followed).
fn kind(path: &Path) -> Option<fs::FileType> {
    fs::symlink_metadata(path).ok().map(|m| m.file_type())
}

/// The one archived copy of `NAME<suffix>` in `history/NAME/`.
#[track_caller]
fn archived(env: &Env, name: &str, suffix: &str) -> PathBuf {
    let folder = env.dir.join("history").join(name);
    let runs: Vec<PathBuf> = fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "one archived run in {}", folder.display());
    runs[0].join(format!("{name}{suffix}"))
}

/// A hostile entry where a job file belongs.
struct Hostile {
    what: &'static str,
    suffix: &'static str,
    make: fn(&Path),
    /// What every reader must say about it.
    says: &'static str,
}

const HOSTILE: [Hostile; 5] = [
    Hostile {
        what: "a FIFO as the status",
        suffix: ".status",
        make: mkfifo,
        says: "it is a FIFO, not a regular file",
    },
    Hostile {
        what: "a FIFO as the record",
        suffix: ".job.json",
        make: mkfifo,
        says: "it is a FIFO, not a regular file",
    },
    Hostile {
        what: "a symlink to /dev/zero as the record",
        suffix: ".job.json",
        make: |p| symlink("/dev/zero", p).unwrap(),
        says: "it is a symlink",
    },
    Hostile {
        what: "a 2 GB sparse record",
        suffix: ".job.json",
        make: |p| File::create(p).unwrap().set_len(2 << 30).unwrap(),
        says: "it is larger than 16 MiB",
    },
    Hostile {
        what: "a directory as the status",
        suffix: ".status",
        make: |p| fs::create_dir(p).unwrap(),
        says: "it is a directory, not a regular file",
    },
];

#[test]
fn every_command_answers_at_once_about_a_fifo_device_huge_file_or_directory_as_a_job_file() {
    for h in HOSTILE {
        let env = Env::new();
        make_jobs_dir(&env);
        let path = env.file("zz", h.suffix);
        (h.make)(&path);
        let made = kind(&path).unwrap();
        let file = format!("zz{}", h.suffix);
        let names_it = |text: &str| text.contains(&file) && text.contains(h.says);

        let ls = jw_prompt(&env, &["ls", "--json"]);
        assert_code(&ls, exit::USAGE);
        let row = json_line(&ls);
        assert_eq!(row["state"], "invalid", "{}: {row}", h.what);
        assert!(
            names_it(row["error"].as_str().unwrap()),
            "{}: {row}",
            h.what
        );

        for args in [&["status", "zz"][..], &["wait", "zz"]] {
            let out = jw_prompt(&env, args);
            assert_code(&out, exit::USAGE);
            assert!(
                names_it(&stderr(&out)),
                "{}: {args:?}\n{}",
                h.what,
                describe(&out)
            );
        }

        let gc = jw_prompt(&env, &["gc", "--older-than", "0s"]);
        assert_code(&gc, 0);
        assert_eq!(kind(&path), Some(made), "{}: gc leaves it alone", h.what);

        // A new run archives it as it is, and runs.
        let run = jw_prompt(&env, &["run", "zz", "--quiet", "--", "true"]);
        assert_code(&run, 0);
        assert_eq!(
            kind(&archived(&env, "zz", h.suffix)),
            Some(made),
            "{}",
            h.what
        );
        let status = json_line(&jw_prompt(&env, &["status", "zz", "--json"]));
        assert_eq!(status["state"], "success", "{}: {status}", h.what);
    }
}

#[test]
fn a_fifo_status_beside_an_empty_record_does_not_freeze_ls_status_wait_gc_or_run() {
    // The issue's reproduction: `mkfifo zz.status; touch zz.job.json; ls`.
    let env = Env::new();
    make_jobs_dir(&env);
    mkfifo(&env.file("zz", ".status"));
    fs::write(env.file("zz", ".job.json"), b"").unwrap();
    for args in [&["ls"][..], &["status", "zz"], &["wait", "zz"]] {
        let out = jw_prompt(&env, args);
        assert_code(&out, exit::USAGE);
        assert!(stderr(&out).contains("zz.job.json"), "{}", describe(&out));
    }
    assert_code(&jw_prompt(&env, &["gc"]), 0);
    assert_code(&jw_prompt(&env, &["run", "zz", "--", "true"]), 0);
    let fifo = archived(&env, "zz", ".status");
    assert!(
        kind(&fifo).unwrap().is_fifo(),
        "the FIFO is archived intact"
    );
}

#[test]
fn a_fifo_kill_request_freezes_neither_the_wrapper_nor_gc() {
    let env = Env::new();
    let d = env.detach("k", FAST_TIMER, &env.gated("k", 0));
    mkfifo(&env.file("k", ".kill"));
    env.release("k");
    // The wrapper reads NAME.kill when its command ends: it must judge the
    // run, not wait for a writer on the FIFO.
    let out = jw_prompt(&env, &["wait", "k", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_line(&out)["outcome"], "success");
    assert_all_gone(&[("wrapper", d.wrapper_pid)]);
    assert_code(&jw_prompt(&env, &["gc"]), 0);
    assert_code(&jw_prompt(&env, &["ls"]), 0);
}

#[test]
fn a_fifo_as_the_log_of_a_failed_job_makes_wait_and_logs_answer_at_once() {
    let env = Env::new();
    assert_code(&env.run("f", &["--quiet"], &sh("echo bad; exit 1")), 1);
    let log = env.file("f", ".log");
    fs::remove_file(&log).unwrap();
    mkfifo(&log);
    let out = jw_prompt(&env, &["wait", "f", "--json"]);
    assert_code(&out, exit::FAILED);
    assert_eq!(json_line(&out)["outcome"], "failed");
    for args in [
        &["logs", "f"][..],
        &["logs", "f", "--tail", "3"],
        &["logs", "f", "--follow"],
    ] {
        let out = jw_prompt(&env, args);
        assert_code(&out, exit::USAGE);
        assert!(
            stderr(&out).contains("f.log: it is a FIFO, not a regular file"),
            "{args:?}\n{}",
            describe(&out)
        );
    }
    assert!(kind(&log).unwrap().is_fifo());
}

#[test]
fn a_fifo_breaker_file_makes_breaker_commands_and_guarded_runs_answer_at_once() {
    let env = Env::new();
    make_jobs_dir(&env);
    fs::create_dir(env.dir.join("breakers")).unwrap();
    let file = env.dir.join("breakers/k.json");
    mkfifo(&file);
    let says = "k.json: it is a FIFO, not a regular file";
    for args in [
        &["breaker", "status"][..],
        &["breaker", "status", "k"],
        &["breaker", "record", "k", "failure"],
        &["run", "x", "--breaker", "k", "--", "true"],
    ] {
        let out = jw_prompt(&env, args);
        assert_code(&out, exit::USAGE);
        assert!(stderr(&out).contains(says), "{args:?}\n{}", describe(&out));
    }
    assert!(
        !env.file("x", ".job.json").exists(),
        "the guarded run never started"
    );
    assert_code(&jw_prompt(&env, &["gc"]), 0);
    // `breaker reset` is the repair: it replaces the FIFO with a closed
    // breaker.
    let reset = jw_prompt(&env, &["breaker", "reset", "k", "--json"]);
    assert_code(&reset, 0);
    assert_eq!(json_line(&reset)["state"], "closed");
    assert!(kind(&file).unwrap().is_file());
}

// ------------------------------------------------------- bounded tails ---

/// A command's exit code, stdout size, stderr, stdout's first bytes and its
/// peak resident memory in KiB (`ru_maxrss` of the reaped process).
struct Measured {
    code: i32,
    stdout_len: u64,
    stdout_head: Vec<u8>,
    stderr: String,
    peak_rss_kib: i64,
}

/// Spawns `cmd`, counts its stdout (keeping only the first 64 KiB, so the
/// test itself holds little), and reaps it with `wait4` for its peak RSS.
#[track_caller]
#[expect(clippy::zombie_processes, reason = "reaped by wait4, for its rusage")]
fn measure(mut cmd: Command) -> Measured {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let counter = thread::spawn(move || {
        let mut head = Vec::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            if head.len() < buf.len() {
                head.extend_from_slice(&buf[..n.min(buf.len() - head.len())]);
            }
            total += n as u64;
        }
        (total, head)
    });
    let errs = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (code, peak) = reap_with_usage(pid, CMD_DEADLINE);
    let (stdout_len, stdout_head) = counter.join().unwrap();
    Measured {
        code,
        stdout_len,
        stdout_head,
        stderr: errs.join().unwrap(),
        peak_rss_kib: peak,
    }
}

/// Waits (up to `deadline`) for `pid` to exit and returns its exit code
/// and `ru_maxrss`; kills it and panics when it takes longer.
#[track_caller]
fn reap_with_usage(pid: i32, deadline: Duration) -> (i32, i64) {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: plain out-parameters, zero-initialized.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid {
            assert!(libc::WIFEXITED(status), "pid {pid} died of a signal");
            return (libc::WEXITSTATUS(status), usage.ru_maxrss);
        }
        if start.elapsed() > deadline {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("pid {pid} did not exit within {deadline:?}");
        }
        thread::sleep(POLL);
    }
}

/// The size of the one long line of [`huge_line_job`].
const HUGE: u64 = 300 << 20;

/// A failed job `big` whose log is one line of [`HUGE`] bytes (sparse:
/// the file is extended while the job waits), then `released`.
fn huge_line_job(env: &Env) {
    let d = env.detach("big", FAST_TIMER, &env.gated("big", 1));
    let log = env.file("big", ".log");
    File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    env.release("big");
    assert_all_gone(&[("wrapper", d.wrapper_pid)]);
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        HUGE + "released\n".len() as u64
    );
}

#[test]
fn wait_and_logs_tail_hold_a_bounded_buffer_of_a_log_with_one_line_of_300_mb() {
    let env = Env::new();
    huge_line_job(&env);

    let mut cmd = env.cmd();
    cmd.args(["wait", "big", "--json"]);
    let wait = measure(cmd);
    assert_eq!(wait.code, exit::FAILED, "{}", wait.stderr);
    let report: Value = serde_json::from_slice(&wait.stdout_head).unwrap();
    let tail = report["tail"].as_array().unwrap();
    assert_eq!(tail.len(), 1, "{report}");
    assert!(
        tail[0].as_str().unwrap().len() <= 403,
        "a cut line: {report}"
    );
    assert!(
        wait.peak_rss_kib < PEAK_RSS_KIB,
        "wait held {} KiB for a 400-byte tail",
        wait.peak_rss_kib
    );

    // `logs --tail` prints the whole last line, streamed, not held.
    let mut cmd = env.cmd();
    cmd.args(["logs", "big", "--tail", "1"]);
    let logs = measure(cmd);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert_eq!(logs.stdout_len, HUGE + "released\n".len() as u64);
    assert!(
        logs.peak_rss_kib < PEAK_RSS_KIB,
        "logs --tail held {} KiB",
        logs.peak_rss_kib
    );
}

#[cfg(feature = "mcp")]
#[test]
#[expect(clippy::zombie_processes, reason = "reaped by wait4, for its rusage")]
fn the_mcp_logs_and_wait_tools_hold_a_bounded_buffer_of_a_log_with_one_line_of_300_mb() {
    use std::io::{BufRead, BufReader, Write};

    let env = Env::new();
    huge_line_job(&env);
    let mut cmd = env.cmd();
    cmd.arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn jobwatch mcp");
    let pid = child.id() as i32;
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    let mut answer = |id: i64| -> Value {
        loop {
            let mut line = String::new();
            assert!(from.read_line(&mut line).unwrap() > 0, "the server closed");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    let mut send = move |v: Value| writeln!(to, "{v}").unwrap();
    send(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "hostile", "version": "0"}}}),
    );
    assert!(answer(1)["result"].is_object());
    send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let call = |id: i64, tool: &str, args: Value| {
        serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}})
    };
    send(call(
        2,
        "logs",
        serde_json::json!({"name": "big", "tail": 5}),
    ));
    let logs = answer(2);
    send(call(3, "wait", serde_json::json!({"names": ["big"]})));
    let wait = answer(3);
    drop(send);
    for v in [&logs, &wait] {
        assert!(v["result"].is_object(), "{v}");
        assert_ne!(v["result"]["isError"], true, "{v}");
    }
    assert!(wait.to_string().contains("failed"), "{wait}");
    let (code, peak) = reap_with_usage(pid, CMD_DEADLINE);
    assert_eq!(code, 0);
    assert!(peak < PEAK_RSS_KIB, "the MCP server held {peak} KiB");
}

// ------------------------------------------------------------ symlinks ---

/// Replaces the entry at `path` with a symlink to `target` in one rename.
fn swap_for_symlink(env: &Env, path: &Path, target: &Path) {
    let staged = env.scratch("staged-link");
    let _ = fs::remove_file(&staged);
    symlink(target, &staged).unwrap();
    fs::rename(&staged, path).unwrap();
}

fn aged_file(env: &Env, name: &str, content: &[u8]) -> (PathBuf, SystemTime) {
    let p = env.scratch(name);
    fs::write(&p, content).unwrap();
    age_file(&p);
    let t = mtime(&p).unwrap();
    (p, t)
}

#[test]
fn a_log_swapped_for_a_symlink_during_the_backoff_is_not_followed_by_the_next_attempt() {
    let env = Env::new();
    let (victim, _) = aged_file(&env, "victim", b"untouched\n");
    let d = env.detach(
        "r",
        &["--retries", "1", "--backoff", "4s"],
        &sh("echo attempt output; exit 1"),
    );
    // The first attempt's log is put aside and a fresh one created before
    // the record lists the attempt; the backoff (2-4 s) follows.
    eventually("the first attempt is put aside", || {
        env.file("r", ".job.json").exists()
            && env.record("r")["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    });
    assert!(env.dir.join("attempts/r/1.log").exists());
    swap_for_symlink(&env, &env.file("r", ".log"), &victim);
    let (out, lines) = env.wait(&["r", "--json"]);
    assert_code(&out, exit::FAILED);
    let line = line_for(&lines, "r");
    assert!(
        line["reason"].as_str().unwrap_or("").contains("symlink"),
        "the next attempt refused to start on the symlink: {line}"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"untouched\n");
    assert!(kind(&env.file("r", ".log")).unwrap().is_symlink());
    assert_all_gone(&[("wrapper", d.wrapper_pid)]);
}

#[test]
fn an_attempt_that_cannot_create_its_log_is_listed_from_when_it_was_tried() {
    let env = Env::new();
    let (victim, _) = aged_file(&env, "victim", b"untouched\n");
    env.detach(
        "r",
        &["--retries", "1", "--backoff", "4s"],
        &sh("sleep 0.2; exit 1"),
    );
    eventually("the first attempt is put aside", || {
        env.file("r", ".job.json").exists()
            && env.record("r")["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    });
    swap_for_symlink(&env, &env.file("r", ".log"), &victim);
    assert_code(&env.wait(&["r"]).0, exit::FAILED);
    let record = env.record("r");
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{record:#}");
    let time = |a: &Value, key: &str| {
        humantime::parse_rfc3339(a[key].as_str().unwrap()).unwrap_or_else(|e| panic!("{key}: {e}"))
    };
    let (first, second) = (&attempts[0], &attempts[1]);
    assert_eq!(second["attempt"], 2);
    assert!(
        time(second, "started_at") >= time(first, "ended_at"),
        "the second attempt was tried after the first ended: {record:#}"
    );
    assert!(
        second["duration_ms"].as_u64().unwrap() < first["backoff_ms"].as_u64().unwrap(),
        "its duration is its own, not the first attempt's and the backoff: {record:#}"
    );
}

#[test]
fn a_symlinked_heartbeat_is_replaced_by_the_wrapper_and_refused_by_beat() {
    let env = Env::new();
    // The wrapper beats every 100 ms (timer liveness): it must replace the
    // symlink, never move its target's mtime.
    let (target, aged) = aged_file(&env, "hb-target", b"");
    env.detach("hb", FAST_TIMER, &env.gated("hb", 0));
    let hb = env.file("hb", ".heartbeat");
    swap_for_symlink(&env, &hb, &target);
    eventually("the wrapper beat again", || {
        mtime(&target) != Some(aged) || kind(&hb).is_some_and(|k| k.is_file())
    });
    assert_eq!(mtime(&target), Some(aged), "the target's mtime moved");
    let status = json_line(&env.jw(&["status", "hb", "--json"]));
    assert_eq!(status["state"], "running", "{status}");
    env.release("hb");
    assert_code(&env.wait(&["hb"]).0, 0);

    // `jobwatch beat` refuses a symlink (the wrapper, with beat liveness and
    // a long interval, does not touch it meanwhile).
    let (target, aged) = aged_file(&env, "beat-target", b"");
    let opts = ["--liveness", "beat", "--heartbeat", "30s", "--stale", "60s"];
    env.detach("cb", &opts, &env.gated("cb", 0));
    let hb = env.file("cb", ".heartbeat");
    swap_for_symlink(&env, &hb, &target);
    let out = env.jw(&["beat", "cb"]);
    assert_usage_error(&out, &["cb.heartbeat", "symlink"]);
    assert_eq!(mtime(&target), Some(aged), "beat moved the target's mtime");
    env.release("cb");
    assert_code(&env.wait(&["cb"]).0, 0);
}

#[test]
fn a_symlink_at_the_status_does_not_turn_a_successful_run_into_lost_or_failed() {
    let env = Env::new();
    let (failed, _) = aged_file(&env, "failed-status", b"FAILED\n");
    let targets = [env.scratch("nowhere"), failed];
    for (i, target) in targets.iter().enumerate() {
        let name = format!("s{i}");
        let d = env.detach(&name, FAST_TIMER, &env.gated(&name, 0));
        swap_for_symlink(&env, &env.file(&name, ".status"), target);
        env.release(&name);
        assert_all_gone(&[("wrapper", d.wrapper_pid)]);
        let status = env.file(&name, ".status");
        assert!(
            kind(&status).unwrap().is_file(),
            "the wrapper wrote a real status for {}",
            target.display()
        );
        let (out, lines) = env.wait(&[&name, "--json"]);
        assert_code(&out, 0);
        assert_eq!(line_for(&lines, &name)["outcome"], "success");
        assert_eq!(env.record(&name)["outcome"], "success");
    }
    assert!(
        !env.scratch("nowhere").exists(),
        "nothing created through it"
    );
    assert_eq!(fs::read(&targets[1]).unwrap(), b"FAILED\n");
}

#[test]
fn symlinked_folders_and_lock_files_keep_every_write_inside_the_jobs_directory() {
    let env = Env::new();
    make_jobs_dir(&env);
    let empty = |p: &Path| fs::read_dir(p).unwrap().next().is_none();

    // attempts/ → elsewhere: the attempt's log is not moved out.
    let attempts = env.scratch("elsewhere-attempts");
    fs::create_dir(&attempts).unwrap();
    symlink(&attempts, env.dir.join("attempts")).unwrap();
    let out = env.run(
        "a",
        &["--quiet", "--retries", "1", "--backoff", "10ms"],
        &sh("exit 1"),
    );
    assert_code(&out, 1);
    assert!(stderr(&out).contains("symlink"), "{}", describe(&out));
    assert!(empty(&attempts), "nothing written through attempts/");
    assert_eq!(
        env.status_file("a").as_deref().map(|s| s.lines().next()),
        Some(Some("FAILED"))
    );

    // history/ → elsewhere: the previous run is not archived out.
    let history = env.scratch("elsewhere-history");
    fs::create_dir(&history).unwrap();
    symlink(&history, env.dir.join("history")).unwrap();
    assert_code(&env.run("h", &["--quiet"], &["true"]), 0);
    let again = env.run("h", &["--quiet"], &["true"]);
    assert_usage_error(&again, &["history", "symlink"]);
    assert!(empty(&history), "nothing moved through history/");
    assert!(env.file("h", ".status").exists(), "the first run stays");

    // NAME.lock → elsewhere: not created through, the run refused.
    let lock_target = env.scratch("lock-target");
    symlink(&lock_target, env.file("l", ".lock")).unwrap();
    let out = env.run("l", &["--quiet"], &["true"]);
    assert_usage_error(&out, &["l.lock", "symlink"]);
    assert!(!lock_target.exists());

    // breakers/ → elsewhere: no breaker state written through it.
    let breakers = env.scratch("elsewhere-breakers");
    fs::create_dir(&breakers).unwrap();
    symlink(&breakers, env.dir.join("breakers")).unwrap();
    let out = env.jw(&["breaker", "record", "k", "failure"]);
    assert_usage_error(&out, &["breakers", "symlink"]);
    assert!(empty(&breakers), "nothing written through breakers/");
}

// ----------------------------------------------------- what is shown ---

#[test]
fn the_failure_tail_shows_the_latest_state_of_carriage_return_progress_lines() {
    let env = Env::new();
    let script = "printf 'error: disk full\\r\\n'; printf 'a 1%%\\ra 2%%\\r\\n'; \
                  i=0; while [ $i -lt 200 ]; do i=$((i+1)); printf 'progress %d%%\\r' $i; done; \
                  printf 'stuck at 200\\n'; exit 1";
    assert_code(&env.run("p", &["--quiet"], &sh(script)), 1);
    let (out, lines) = env.wait(&["p", "--json"]);
    assert_code(&out, exit::FAILED);
    assert_eq!(
        line_for(&lines, "p")["tail"],
        serde_json::json!(["error: disk full", "a 2%", "stuck at 200"])
    );
}

/// Whether util-linux `script` can give a command a pseudo-terminal here.
/// Under `CI=true` it must: the test fails rather than skip.
fn have_script() -> bool {
    let ok = Command::new("script")
        .args(["-qec", "true", "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "script(1) is required under CI=true"
        );
        eprintln!("NOT RUN: util-linux `script` is not available");
    }
    ok
}

/// `jobwatch --dir DIR ARGS...` on a pseudo-terminal; returns what it
/// showed there.
#[track_caller]
fn on_terminal(env: &Env, args: &str, code: i32) -> String {
    let typescript = env.scratch("typescript");
    let line = format!("'{}' --dir '{}' {args}", bin().display(), env.dir.display());
    let mut cmd = env.other("script");
    cmd.arg("-qfec")
        .arg(line)
        .arg(&typescript)
        .env("TERM", "xterm-256color");
    let out = output_of(cmd);
    let shown = String::from_utf8_lossy(&fs::read(&typescript).unwrap()).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args}: {shown:?}");
    shown
}

/// Whether `s` holds a byte a terminal acts on: ESC, BEL, or a C1 control
/// (U+0080..U+009F, e.g. the one-character CSI U+009B). Line ends are fine.
fn drives_terminal(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

#[test]
fn a_log_cannot_drive_the_terminal_through_wait_status_or_kill() {
    if !have_script() {
        return;
    }
    let env = Env::new();
    // A title change (OSC), colours, a bell and a one-character CSI.
    let script =
        "printf '\\033]0;PWNED\\007\\033[31mred\\033[0m text\\007 \\302\\2332J end\\n'; exit 1";
    assert_code(&env.run("t", &["--quiet"], &sh(script)), 1);
    let shown = on_terminal(&env, "wait t --quiet", exit::FAILED);
    assert!(shown.contains("red text"), "{shown:?}");
    assert!(!drives_terminal(&shown), "wait: {shown:?}");

    // A record's reason is shown by `status` and `kill` too.
    let path = env.file("t", ".job.json");
    let mut record = env.record("t");
    record["reason"] = Value::from("\x1b]0;PWNED\x07\x1b[2Jwiped");
    fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    let shown = on_terminal(&env, "status t", 0);
    assert!(shown.contains("wiped"), "{shown:?}");
    assert!(!drives_terminal(&shown), "status: {shown:?}");
    let shown = on_terminal(&env, "kill t", 0);
    assert!(!drives_terminal(&shown), "kill: {shown:?}");
    // An error quoting a hostile record (serde names the unknown word).
    record["outcome"] = Value::from("\x1b]0;PWNED\x07bad");
    fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    for args in ["wait t --quiet", "status t"] {
        let shown = on_terminal(&env, args, exit::USAGE);
        assert!(shown.contains("bad"), "{args}: {shown:?}");
        assert!(!drives_terminal(&shown), "{args}: {shown:?}");
    }
    record["outcome"] = Value::from("failed");
    fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();

    // JSON keeps the text, escaped.
    let (out, lines) = env.wait(&["t", "--json"]);
    assert_code(&out, exit::FAILED);
    assert!(
        stdout(&out).contains(r"\u001b]0;PWNED\u0007"),
        "{}",
        stdout(&out)
    );
    let tail = line_for(&lines, "t")["tail"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tail.starts_with("\x1b]0;PWNED\x07\x1b[31mred"), "{tail:?}");
}

// --------------------------------------------------- the end of time ---

/// The largest mtime Linux keeps: `touch -d @9223372036854775807`.
const END_OF_TIME: &str = "@9223372036854775807";

/// A jobs directory on a filesystem that keeps an mtime at the end of time
/// (tmpfs keeps any; ext4 clamps to the year 2446, where nothing overflows).
fn end_of_time_dir() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("jobwatch-eot-")
        .tempdir_in("/dev/shm")
        .map_err(|e| format!("no tmpfs at /dev/shm ({e})"))?;
    let probe = dir.path().join("probe");
    fs::write(&probe, b"").unwrap();
    let touched = Command::new("touch")
        .args(["-d", END_OF_TIME])
        .arg(&probe)
        .status()
        .map_err(|e| format!("touch(1): {e}"))?;
    let kept = mtime(&probe).and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
    fs::remove_file(&probe).unwrap();
    match kept {
        Some(d) if touched.success() && d.as_secs() == i64::MAX as u64 => Ok(dir),
        _ => Err("/dev/shm does not keep an mtime at the end of time".into()),
    }
}

#[test]
fn a_heartbeat_dated_at_the_end_of_time_does_not_crash_the_wrapper() {
    let env = Env::new();
    let Some(shm) = runnable(end_of_time_dir()) else {
        return;
    };
    let dir = shm.path().join("jobs");
    // An explicit beat from a broken clock: no arithmetic on it may
    // overflow, and the job's own exit still decides its outcome.
    let job =
        format!("touch -d {END_OF_TIME} \"$JOBWATCH_HEARTBEAT\"; sleep 0.5; echo done; exit 0");
    let mut cmd = env.bare();
    cmd.arg("--dir").arg(&dir).args(run_args(
        "eot",
        &["--heartbeat", "100ms", "--stale", "1s", "--quiet"],
        &sh(&job),
        false,
    ));
    let out = ChildGuard::spawn(cmd).finish_within(PROMPT);
    assert_code(&out, 0);
    let status = fs::read_to_string(dir.join("eot.status")).unwrap();
    assert!(status.starts_with("SUCCESS"), "{status}");
}
