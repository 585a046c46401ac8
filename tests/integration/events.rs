//! `jobwatch events`: the event journal (`events.jsonl`, protocol §18) and
//! its follower. Every outcome is one `started` and one `ended`; a
//! follower misses nothing between its replay and its live part, sees each
//! of many concurrent ends once, resumes from a cursor without repeats,
//! ends quietly when its reader goes away, reads past a torn line, goes on
//! across gc's rotation, and repairs an `ended` lost with its wrapper.
//!
//! Races are made deterministic by holding the follower, never by sleeping:
//! its stdout is a pipe nobody reads until it is blocked writing its
//! history, and strace kills a wrapper exactly at its journal write.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use rustix::process::Signal;
use serde_json::Value;

use crate::support::*;

/// `events.jsonl` of the test's jobs directory.
fn journal(env: &Env) -> PathBuf {
    env.dir.join("events.jsonl")
}

/// The events of `name` among `lines`, as `(event, outcome)` words.
fn of<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["name"] == name).collect()
}

/// `events --json ARGS...` to its end: its lines.
#[track_caller]
fn history(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["events", "--json"];
    a.extend_from_slice(args);
    let out = env.jw(&a);
    assert_code(&out, 0);
    json_lines(&out)
}

/// Whether the main thread of `pid` is blocked in write(2) (on its full
/// stdout pipe).
fn blocked_in_write(pid: i32) -> bool {
    #[cfg(target_arch = "aarch64")]
    const WRITE: u64 = 64;
    #[cfg(not(target_arch = "aarch64"))]
    const WRITE: u64 = 1;
    proc_state(pid) == Some('S')
        && fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()) == Some(WRITE))
}

/// A running `jobwatch events --follow --json ...`.
struct Follower {
    child: Child,
    stdout: Option<ChildStdout>,
    lines: Option<mpsc::Receiver<String>>,
    stderr: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Follower {
    /// Starts it; its stdout is read only once [`Follower::read`] is called.
    fn start(env: &Env, args: &[&str]) -> Self {
        let mut cmd = env.cmd();
        cmd.args(["events", "--follow", "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn jobwatch events");
        let stdout = child.stdout.take();
        let mut err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut buf);
            let _ = tx.send(buf);
        });
        Self {
            child,
            stdout,
            lines: None,
            stderr: Some(rx),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Starts reading its stdout, line by line.
    fn read(&mut self) {
        let stdout = self.stdout.take().expect("not read yet");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.lines = Some(rx);
    }

    /// The next line it prints, parsed.
    #[track_caller]
    fn next(&mut self) -> Value {
        if self.lines.is_none() {
            self.read();
        }
        let line = self
            .lines
            .as_ref()
            .unwrap()
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("the follower printed no line within {DEADLINE:?}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The next `n` lines.
    #[track_caller]
    fn take(&mut self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.next()).collect()
    }

    /// Lines up to and including the `ended` of `name`.
    #[track_caller]
    fn until_ended(&mut self, name: &str) -> Vec<Value> {
        let mut lines = Vec::new();
        loop {
            let line = self.next();
            let done = line["name"] == name && line["event"] == "ended";
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Runs job `name` and checks that its two events are the very next
    /// lines: nothing before them is repeated or late.
    #[track_caller]
    fn sentinel(&mut self, env: &Env, name: &str) {
        assert_code(&env.run(name, &[], &["true"]), 0);
        self.next_are(name);
    }

    /// Checks that the next two lines are `name`'s start and end.
    #[track_caller]
    fn next_are(&mut self, name: &str) {
        let lines = self.take(2);
        assert_eq!(
            (lines[0]["name"].as_str(), lines[0]["event"].as_str()),
            (Some(name), Some("started")),
            "the next line is the sentinel's start: {lines:?}"
        );
        assert_eq!(lines[1]["name"], name, "{lines:?}");
        assert_eq!(lines[1]["event"], "ended", "{lines:?}");
    }

    /// Stops it and returns what it said on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self.stderr.take().unwrap().recv_timeout(DEADLINE);
        String::from_utf8_lossy(&err.unwrap_or_default()).into_owned()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends raw bytes to the journal, as another writer (or a crash) would.
fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// A gate many jobs wait on without using the CPU: each job reads a line
/// from a FIFO; the test writes one line per job at once. (A polling gate
/// for 16 jobs would load a small machine enough to disturb other tests.)
struct Gate {
    path: PathBuf,
}

impl Gate {
    fn new(env: &Env, name: &str) -> Self {
        let path = env.scratch(&format!("{name}.fifo"));
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        Self { path }
    }

    /// A job that waits for the gate, then exits 0.
    fn job(&self) -> Vec<String> {
        sh(&format!("read go < '{}'; exit 0", self.path.display()))
    }

    /// Lets `n` jobs through at once. The returned writer keeps the FIFO
    /// open, so a job that opens it late still finds its line: keep it
    /// until the jobs have ended.
    #[track_caller]
    fn release(&self, n: usize) -> fs::File {
        let mut w = wait_for("a job waits at the gate", || {
            fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)
                .ok()
        });
        w.write_all("go\n".repeat(n).as_bytes()).unwrap();
        w
    }
}

/// A valid journal line, as another writer of protocol §18 would append.
fn line(event: &str, name: &str, job_id: &str, extra: &str) -> String {
    format!(
        "{{\"event\":\"{event}\",\"name\":\"{name}\",\"job_id\":\"{job_id}\",\"at\":\"2033-05-18T03:33:20.000Z\",\"host\":\"elsewhere\"{extra}}}\n"
    )
}

#[test]
fn each_outcome_is_one_started_and_one_ended_event_with_its_facts() {
    let env = Env::new();
    assert_code(&env.run("ok", &[], &["true"]), 0);
    assert_code(&env.run("bad", &[], &sh("echo boom; exit 3")), 3);
    assert_code(
        &env.run(
            "slow",
            &["--timeout", "300ms", "--grace", "300ms"],
            &["sleep", "30"],
        ),
        exit::TIMEOUT,
    );
    assert_code(&env.run("stuck", FAST, &["sleep", "30"]), exit::HUNG);
    env.detach("victim", FAST_TIMER, &["sleep", "300"]);
    assert_code(&env.jw(&["kill", "victim"]), 0);
    // Lost: the wrapper is SIGKILLed; a waiter finishes the run.
    let d = env.detach("orphan", FAST_TIMER, &["sleep", "300"]);
    signal(d.wrapper_pid, Signal::KILL);
    assert_all_gone(&[("wrapper", d.wrapper_pid)]);
    let (out, _) = env.wait(&["orphan"]);
    assert_code(&out, exit::LOST);

    let lines = history(&env, &[]);
    assert_eq!(lines.len(), 12, "{lines:#?}");
    for (name, outcome) in [
        ("ok", "success"),
        ("bad", "failed"),
        ("slow", "timeout"),
        ("stuck", "hung"),
        ("victim", "killed"),
        ("orphan", "lost"),
    ] {
        let events = of(&lines, name);
        assert_eq!(events.len(), 2, "{name}: {events:#?}");
        let (started, ended) = (events[0], events[1]);
        assert_eq!(started["event"], "started", "{name}");
        assert_eq!(ended["event"], "ended", "{name}");
        let job_id = env.record(name)["job_id"].clone();
        assert_eq!(started["job_id"], job_id, "{name}");
        assert_eq!(ended["job_id"], job_id, "{name}");
        assert_eq!(ended["outcome"], outcome, "{name}");
        assert!(started.get("outcome").is_none(), "{name}: {started}");
        for e in [started, ended] {
            assert!(e["host"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
            assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
            assert!(e["cursor"].as_str().is_some_and(|c| c.contains(':')), "{e}");
        }
        assert!(ended["duration_ms"].is_u64(), "{name}: {ended}");
        let by = if name == "orphan" {
            "waiter"
        } else {
            "wrapper"
        };
        assert_eq!(ended["finalized_by"], by, "{name}: {ended}");
    }
    assert_eq!(of(&lines, "ok")[1]["exit_code"], 0);
    assert_eq!(of(&lines, "bad")[1]["exit_code"], 3);
    assert_eq!(of(&lines, "slow")[1]["signal"], 15);
    assert!(of(&lines, "slow")[1]["reason"].is_string());
    assert!(of(&lines, "stuck")[1]["reason"].is_string());
    assert!(of(&lines, "orphan")[1]["reason"].is_string());
    // Every cursor is new, and resumes right after its own line.
    let cursors: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l["cursor"].as_str().unwrap())
        .collect();
    assert_eq!(cursors.len(), lines.len());
    let rest = history(&env, &["--since", lines[4]["cursor"].as_str().unwrap()]);
    assert_eq!(rest, lines[5..]);
}

#[test]
fn jobs_that_end_while_a_follower_replays_its_history_reach_it_live_exactly_once() {
    let env = Env::new();
    assert_code(&env.run("first", &[], &["true"]), 0);
    // A history longer than a pipe holds (other writers' runs, all over).
    let mut old = String::new();
    for i in 0..400 {
        old.push_str(&line("started", &format!("h{i}"), &format!("hist-{i}"), ""));
        old.push_str(&line(
            "ended",
            &format!("h{i}"),
            &format!("hist-{i}"),
            ",\"outcome\":\"success\",\"exit_code\":0",
        ));
    }
    append_raw(&journal(&env), old.as_bytes());
    let names: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    let gate = Gate::new(&env, "go");
    for name in &names {
        env.detach(name, FAST_TIMER, &gate.job());
    }
    // Held at the switch: the history is read, and writing it blocks on the
    // pipe nobody reads yet.
    let mut follower = Follower::start(&env, &[]);
    eventually("the follower is blocked writing its history", || {
        blocked_in_write(follower.pid())
    });
    // The jobs end now, after the follower's last read of the history and
    // before it is live.
    let _open = gate.release(names.len());
    for name in &names {
        env.await_status(name);
    }
    eventually("every end is in the journal", || {
        let text = fs::read_to_string(journal(&env)).unwrap_or_default();
        names.iter().all(|n| {
            text.lines().any(|l| {
                l.contains("\"event\":\"ended\"") && l.contains(&format!("\"name\":\"{n}\""))
            })
        })
    });
    let mut lines = Vec::new();
    while names.iter().any(|n| {
        !lines
            .iter()
            .any(|l: &Value| l["name"] == *n && l["event"] == "ended")
    }) {
        lines.push(follower.next());
    }
    follower.sentinel(&env, "sentinel");
    assert_eq!(lines.len(), 2 + 800 + 10, "every event once");
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["first", "h0", "h399"])
    {
        let events: Vec<&str> = of(&lines, name)
            .iter()
            .map(|l| l["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, ["started", "ended"], "{name}");
    }
    assert!(follower.stop().is_empty());
}

#[test]
fn a_follower_sees_each_of_many_concurrently_ending_jobs_exactly_once() {
    let env = Env::new();
    let names: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    let gate = Gate::new(&env, "all");
    for name in &names {
        env.detach(name, FAST_TIMER, &gate.job());
    }
    let mut follower = Follower::start(&env, &[]);
    let started = follower.take(names.len());
    assert!(
        started.iter().all(|l| l["event"] == "started"),
        "{started:?}"
    );
    await_blocked_on_events(follower.pid());
    let _open = gate.release(names.len());
    let mut ended = Vec::new();
    while ended.len() < names.len() {
        let l = follower.next();
        assert_eq!(l["event"], "ended", "{l}");
        ended.push(l["name"].as_str().unwrap().to_owned());
    }
    ended.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(ended, want, "each end exactly once");
    follower.sentinel(&env, "sentinel");
    assert!(follower.stop().is_empty());
}

#[test]
fn a_restarted_follower_resumes_after_its_last_cursor_without_repeats_or_gaps() {
    let env = Env::new();
    assert_code(&env.run("a", &[], &["true"]), 0);
    assert_code(&env.run("b", &[], &["false"]), 1);
    let mut first = Follower::start(&env, &[]);
    let seen = first.take(4);
    let last = seen[3]["cursor"].as_str().unwrap().to_owned();
    drop(first);
    // Something happens while nobody follows.
    assert_code(&env.run("c", &[], &["true"]), 0);
    let mut again = Follower::start(&env, &["--since", &last]);
    let lines = again.until_ended("c");
    assert_eq!(lines.len(), 2, "only c, once: {lines:?}");
    assert_eq!(lines[0]["name"], "c");
    again.sentinel(&env, "sentinel");
    // Without --follow, the same resumption.
    let rest = history(&env, &["--since", seen[1]["cursor"].as_str().unwrap()]);
    let names: Vec<&str> = rest.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "b", "c", "c", "sentinel", "sentinel"]);
    // `now` skips the history.
    let mut fresh = Follower::start(&env, &["--since", "now"]);
    fresh.sentinel(&env, "later");
}

#[test]
fn a_follower_whose_reader_goes_away_ends_quietly_with_exit_0() {
    let env = Env::new();
    assert_code(&env.run("a", &[], &["true"]), 0);
    // Idle: the reader leaves and no event comes; the hang-up alone ends it.
    let mut idle = Follower::start(&env, &[]);
    let mut reader = BufReader::new(idle.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"started\""), "{first}");
    await_blocked_on_events(idle.pid());
    drop(reader);
    let status = wait_for("the follower exits", || idle.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{status}");
    assert_eq!(idle.stop(), "", "quietly");

    // A one-shot read whose stdout is already closed: its write fails with
    // EPIPE (SIGPIPE ignored), and it ends with 0, not by the signal.
    let (read_end, write_end) = rustix::pipe::pipe().unwrap();
    drop(read_end);
    let mut cmd = env.cmd();
    cmd.args(["events", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let status = wait_for("the one-shot read exits", || child.try_wait().unwrap());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{status}: {err}");
    assert_eq!(err, "", "quietly");

    // Writing: the reader leaves, then an event comes.
    let mut busy = Follower::start(&env, &["--since", "now"]);
    await_blocked_on_events(busy.pid());
    drop(busy.stdout.take());
    assert_code(&env.run("b", &[], &["true"]), 0);
    let status = wait_for("the follower exits", || busy.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{status}");
    assert_eq!(busy.stop(), "", "quietly");
}

#[test]
fn a_torn_last_line_in_the_journal_is_skipped_and_the_events_after_it_are_read() {
    let env = Env::new();
    assert_code(&env.run("a", &[], &["true"]), 0);
    // A writer died in the middle of its line.
    append_raw(
        &journal(&env),
        b"{\"event\":\"ended\",\"name\":\"x\",\"job_",
    );
    let out = env.jw(&["events", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_lines(&out).len(), 2);
    assert_eq!(
        stderr(&out),
        "",
        "a line that may still be written is no error"
    );
    let mut follower = Follower::start(&env, &[]);
    assert_eq!(follower.take(2).len(), 2);
    // The next append lands right after the torn bytes.
    assert_code(&env.run("b", &[], &["true"]), 0);
    let b = follower.take(2);
    assert_eq!(
        (b[0]["name"].as_str(), b[0]["event"].as_str()),
        (Some("b"), Some("started"))
    );
    assert_eq!(b[1]["event"], "ended");
    // A malformed line between events is skipped, with a note.
    append_raw(&journal(&env), b"not an event\n");
    follower.sentinel(&env, "c");
    let all = history(&env, &[]);
    assert_eq!(all.len(), 6, "{all:?}");
    let out = env.jw(&["events", "--json"]);
    assert!(
        stderr(&out).contains("skipped 1 malformed line"),
        "{}",
        describe(&out)
    );
    assert!(follower.stop().contains("skipped 1 malformed line"));
}

/// Makes the journal as large as gc's rotation size with a padding line
/// (blank lines are no events).
fn grow_past_rotation(env: &Env) {
    let mut pad = vec![b' '; 1 << 20];
    pad.push(b'\n');
    append_raw(&journal(env), &pad);
}

#[test]
fn gc_rotates_a_large_journal_and_followers_and_cursors_go_on_across_it() {
    let env = Env::new();
    assert_code(&env.run("a", &[], &["true"]), 0);
    let mut follower = Follower::start(&env, &[]);
    let a = follower.take(2);
    let at_a = a[1]["cursor"].as_str().unwrap().to_owned();
    grow_past_rotation(&env);
    let out = env.jw(&["gc", "--dry-run", "--json"]);
    assert_code(&out, 0);
    assert!(
        json_lines(&out)
            .iter()
            .any(|l| l["kind"] == "event_journal"),
        "{}",
        describe(&out)
    );
    assert!(
        !env.dir.join("events.1.jsonl").exists(),
        "a dry run moves nothing"
    );
    let out = env.jw(&["gc", "--json"]);
    assert_code(&out, 0);
    assert!(
        json_lines(&out)
            .iter()
            .any(|l| l["kind"] == "event_journal")
    );
    assert!(env.dir.join("events.1.jsonl").exists());
    assert!(
        fs::metadata(journal(&env)).unwrap().len() < 1024,
        "a fresh journal"
    );
    // The live follower goes on into the new file; a cursor into the old
    // one resumes across the rotation.
    follower.sentinel(&env, "b");
    let names: Vec<String> = history(&env, &["--since", &at_a])
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["name"].as_str().unwrap(),
                l["event"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["b started", "b ended"]);
    // Rotated once more, the file of that cursor is gone: the read starts
    // at the oldest event kept, and says so.
    grow_past_rotation(&env);
    assert_code(&env.jw(&["gc"]), 0);
    follower.sentinel(&env, "c");
    let out = env.jw(&["events", "--json", "--since", &at_a]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("no longer kept"),
        "{}",
        describe(&out)
    );
    let names: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["b", "b", "c", "c"]);
    assert!(follower.stop().is_empty());
}

#[test]
fn an_end_lost_with_its_wrapper_between_status_and_journal_is_appended_once_by_a_follower() {
    let Some(()) = runnable(strace()) else {
        return;
    };
    let env = Env::new();
    // The wrapper is killed as it enters its second write to the journal:
    // the first is the `started`, the second the `ended`, after the status.
    let mut cmd = env.other("strace");
    cmd.args(["-qq", "-f", "-o", "/dev/null", "-P"])
        .arg(journal(&env))
        .args([
            "-e",
            "trace=write",
            "-e",
            "inject=write:error=EIO:signal=KILL:when=2",
        ])
        .arg(bin())
        .arg("--dir")
        .arg(&env.dir)
        .args(["run", "crashy", "--", "true"]);
    let _ = ChildGuard::spawn(cmd).finish();
    assert_eq!(env.await_status("crashy"), "SUCCESS");
    let before = history(&env, &[]);
    let words: Vec<&str> = before
        .iter()
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        words,
        ["started"],
        "the ended event was lost with its wrapper"
    );

    let mut follower = Follower::start(&env, &[]);
    let lines = follower.until_ended("crashy");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ended = &lines[1];
    assert_eq!(ended["outcome"], "success");
    assert_eq!(ended["exit_code"], 0);
    assert_eq!(ended["finalized_by"], "wrapper");
    assert_eq!(ended["job_id"], env.record("crashy")["job_id"]);
    // Another follower, and the first one, add nothing more.
    let mut second = Follower::start(&env, &[]);
    assert_eq!(second.until_ended("crashy").len(), 2);
    second.sentinel(&env, "sentinel");
    follower.next_are("sentinel");
    let err = follower.stop();
    assert!(err.contains("appended the missing ended event"), "{err}");
    let all = history(&env, &[]);
    assert_eq!(of(&all, "crashy").len(), 2, "{all:?}");
}

#[test]
fn a_follower_finishes_a_run_whose_wrapper_vanished_and_streams_its_lost_end() {
    let env = Env::new();
    let d = env.detach("orphan", FAST_TIMER, &["sleep", "300"]);
    let mut follower = Follower::start(&env, &["--since", "now"]);
    await_blocked_on_events(follower.pid());
    signal(d.wrapper_pid, Signal::KILL);
    let ended = follower.next();
    assert_eq!(ended["name"], "orphan", "{ended}");
    assert_eq!(ended["event"], "ended", "{ended}");
    assert_eq!(ended["outcome"], "lost", "{ended}");
    assert_eq!(ended["finalized_by"], "waiter", "{ended}");
    // Its leftover command was killed, as a waiter would.
    assert_all_gone(&[("job", d.pid)]);
    assert_eq!(env.await_status("orphan"), "FAILED");
    follower.sentinel(&env, "sentinel");
}

#[test]
fn events_on_a_terminal_are_short_lines_that_cannot_drive_it() {
    let script = Command::new("script")
        .args(["-qec", "true", "/dev/null"])
        .stdin(Stdio::null())
        .output();
    let works = match script {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`script -qec true /dev/null` failed ({})",
            o.status
        )),
        Err(e) => Err(format!(
            "util-linux `script` is not installed ({e}): apt-get install bsdutils"
        )),
    };
    if runnable(works).is_none() {
        return;
    }
    let env = Env::new();
    assert_code(&env.run("bad", &[], &["false"]), 1);
    // Another writer's line with a hostile reason.
    append_raw(
        &journal(&env),
        line(
            "ended",
            "evil",
            "r1",
            ",\"outcome\":\"killed\",\"reason\":\"\\u001b]0;pwned\\u0007\\u001b[31mred\\u009b2J\"",
        )
        .as_bytes(),
    );
    let typescript = env.scratch("typescript");
    let mut cmd = env.other("script");
    cmd.arg("-qfec")
        .arg(format!(
            "'{}' --dir '{}' events",
            bin().display(),
            env.dir.display()
        ))
        .arg(&typescript)
        .env("TERM", "xterm-256color");
    assert_code(&output_of(cmd), 0);
    let shown = String::from_utf8_lossy(&fs::read(&typescript).unwrap()).into_owned();
    assert!(shown.contains("bad started on "), "{shown}");
    assert!(shown.contains("bad failed, exit 1 in "), "{shown}");
    assert!(shown.contains("evil killed (red)"), "{shown}");
    assert!(
        !shown.contains('\x1b') && !shown.contains('\u{9b}'),
        "{shown:?}"
    );
    assert!(
        !shown.contains("\"cursor\""),
        "no JSON on a terminal: {shown}"
    );
}

#[test]
fn a_cursor_taken_now_lets_a_follower_started_later_miss_nothing_in_between() {
    let env = Env::new();
    let out = env.jw(&["events", "--cursor"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "start\n", "an empty journal");
    let empty = stdout(&out).trim().to_owned();
    assert_code(&env.run("a", &[], &["true"]), 0);
    let out = env.jw(&["events", "--cursor"]);
    assert_code(&out, 0);
    let after_a = stdout(&out).trim().to_owned();
    assert_eq!(
        after_a,
        history(&env, &[])[1]["cursor"],
        "the end is a's end"
    );
    // What happens between taking the cursor and following is not missed
    // (a watcher that expired, re-armed from its cursor).
    assert_code(&env.run("b", &[], &["false"]), 1);
    let mut follower = Follower::start(&env, &["--since", &after_a]);
    let lines = follower.until_ended("b");
    let names: Vec<&str> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "b"]);
    follower.sentinel(&env, "c");
    let from_start = history(&env, &["--since", &empty]);
    assert_eq!(from_start.len(), 6);
    let out = env.jw(&["events", "--cursor", "--follow"]);
    assert_usage_error(&out, &["--cursor", "--follow"]);
}

#[test]
fn a_journal_that_cannot_be_written_never_costs_a_job_its_result() {
    let env = Env::new();
    assert_code(&env.run("first", &[], &["true"]), 0);
    // Something that is not a file where the journal belongs.
    fs::remove_file(journal(&env)).unwrap();
    fs::create_dir(journal(&env)).unwrap();
    let out = env.run("bad", &[], &sh("exit 3"));
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("is not in the event journal"),
        "the lost events are reported: {}",
        describe(&out)
    );
    assert_eq!(env.await_status("bad"), "FAILED");
    assert_eq!(env.record("bad")["outcome"], "failed");
    let (out, lines) = env.wait(&["bad"]);
    assert_code(&out, 1);
    assert_eq!(lines[0]["exit_code"], 3);
    // The reader says what is wrong, on one line.
    let out = env.jw(&["events"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("events.jsonl"), "{}", describe(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", describe(&out));
}
