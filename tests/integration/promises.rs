//! Promises of README.md and docs/protocol.md that no other module checks:
//! exec failures, forwarded signals, another host's run, newer records,
//! `logs --follow` on a lost run, explicit beats, a waiter across a
//! vanished run, polling on a network filesystem, the default jobs
//! directory, `kill` of a finished job, file modes and the job's stdin.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;
use serde_json::Value;

use crate::support::*;

// ------------------------------------------------------- exec failures ---

#[test]
fn a_command_that_cannot_be_executed_exits_127_or_126_and_never_writes_a_pid_file() {
    let env = Env::new();
    let not_exec = env.scratch("not-executable");
    fs::write(&not_exec, "echo never\n").unwrap();
    fs::set_permissions(&not_exec, fs::Permissions::from_mode(0o644)).unwrap();
    let not_exec = not_exec.to_string_lossy().into_owned();
    let cases = [
        ("notfound", "/nonexistent/command".to_owned(), 127),
        ("noexec", not_exec, 126),
    ];
    for (name, command, code) in &cases {
        for detach in [false, true] {
            let out = env.jw(&run_args(name, &[], &[command.as_str()], detach));
            assert_code(&out, *code);
            assert!(
                stderr(&out).contains(command.as_str()),
                "the error names the command\n{}",
                describe(&out)
            );
            assert!(
                !env.file(name, ".pid").exists(),
                "{name}: no NAME.pid for a command that never ran"
            );
            assert_eq!(env.await_status(name), "FAILED");
            let rec = env.record(name);
            assert_eq!(rec["outcome"], "failed", "{rec:#}");
            assert_eq!(rec["exit_code"], *code, "{rec:#}");
            assert!(rec["child_pid"].is_null(), "{rec:#}");
            let (w, _) = env.wait(&[name]);
            assert_code(&w, exit::FAILED);
        }
    }
}

// ------------------------------------------------------------- signals ---

/// A job whose leader shell runs a child shell in the foreground; each
/// traps `sig`, notes it in the log and exits 0. The child can only note it
/// if the signal reached the whole group (the leader runs its trap only
/// once its foreground child has exited).
fn trapping_pair(env: &Env, sig: &str) -> Vec<String> {
    let child = env.script(
        &format!("child-{sig}.sh"),
        &format!(
            "trap 'echo child-got-{sig}; exit 0' {sig}\ntouch \"$T/{sig}.ready\"\n\
             while :; do sleep 0.05; done\n"
        ),
    );
    sh(&format!(
        "trap 'echo leader-got-{sig}; exit 0' {sig}; sh '{child}'; echo child-ended"
    ))
}

#[test]
fn sigint_and_sighup_to_the_wrapper_are_forwarded_to_the_jobs_group() {
    let env = Env::new();
    for (sig, signal_number) in [("INT", Signal::INT), ("HUP", Signal::HUP)] {
        let name = format!("fwd-{sig}");
        let d = env.detach(&name, &["--grace", "20s"], &trapping_pair(&env, sig));
        eventually("the job has set its traps", || {
            env.scratch(&format!("{sig}.ready")).exists()
        });
        signal(d.wrapper_pid, signal_number);
        let (w, lines) = env.wait(&[&name]);
        assert_code(&w, exit::KILLED);
        assert_eq!(line_for(&lines, &name)["outcome"], "killed");
        let log = env.log(&name);
        assert!(
            log.contains(&format!("child-got-{sig}")) && log.contains(&format!("leader-got-{sig}")),
            "the same signal reached every member of the group: {log:?}"
        );
        assert_eq!(env.record(&name)["exit_code"], 0);
    }
}

#[test]
fn a_second_signal_to_a_killing_wrapper_ends_the_grace_at_once() {
    let env = Env::new();
    let ready = env.scratch("stubborn.ready");
    // Notes TERM and carries on: only SIGKILL ends it.
    let job = sh(&format!(
        "trap 'echo got-TERM' TERM; touch '{}'; while :; do sleep 0.05; done",
        ready.display()
    ));
    let d = env.detach("stubborn", &["--grace", "120s"], &job);
    eventually("the job has set its trap", || ready.exists());
    signal(d.wrapper_pid, Signal::TERM);
    eventually("the TERM was forwarded: the grace runs", || {
        env.log("stubborn").contains("got-TERM")
    });
    assert!(is_alive(d.pid), "the job outlives its TERM");
    signal(d.wrapper_pid, Signal::INT);
    // Far sooner than the 120 s grace.
    assert_all_gone(&[("job", d.pid)]);
    let (w, _) = env.wait(&["stubborn"]);
    assert_code(&w, exit::KILLED);
    let rec = env.record("stubborn");
    assert_eq!(rec["outcome"], "killed", "{rec:#}");
    assert_eq!(rec["signal"], 9, "{rec:#}");
}

// --------------------------------------------------------- other hosts ---

/// Every file under `dir` with its content and mtime.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), (fs::read(&p).expect("read"), mtime(&p)));
            }
        }
    }
    out
}

#[test]
fn another_hosts_unfinished_run_is_refused_by_run_and_kill_and_reported_lost_by_wait_untouched() {
    let env = Env::new();
    let mut victim = unrelated_sleeper(&env);
    // A real record whose wrapper long stopped beating, moved to a host
    // that is not this one.
    write_stale_record(&env, "far", victim.pid());
    let path = env.file("far", ".job.json");
    let mut rec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    rec["host"] = "far-away.invalid".into();
    fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    age_file(&env.file("far", ".log"));
    let before = snapshot(&env.dir);

    let out = env.run("far", &[], &sh("touch \"$T/ran\""));
    assert_usage_error(&out, &["far-away.invalid"]);
    assert!(!env.scratch("ran").exists(), "the new run did not start");

    let out = env.jw(&["kill", "far", "--grace", "300ms"]);
    assert_usage_error(&out, &["runs on host far-away.invalid"]);

    let (w, lines) = env.wait(&["far", "--grace", "300ms"]);
    assert_code(&w, exit::LOST);
    assert_eq!(line_for(&lines, "far")["outcome"], "lost");

    let status = env.jw(&["status", "far", "--json"]);
    assert_eq!(json_line(&status)["state"], "lost");
    assert!(victim.is_running(), "nothing was signalled");
    assert_eq!(
        snapshot(&env.dir),
        before,
        "nothing was written, moved or touched"
    );
}

// ------------------------------------------------------ record version ---

#[test]
fn a_record_of_a_newer_version_is_invalid_with_its_message() {
    let env = Env::new();
    assert_code(&env.run("future", &["--quiet"], &["true"]), 0);
    let path = env.file("future", ".job.json");
    let mut rec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    rec["version"] = 2.into();
    fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();

    let message = "record version 2 is newer than this jobwatch understands (1)";
    let out = env.jw(&["status", "future", "--json"]);
    assert_usage_error(&out, &[message]);
    let line = json_line(&out);
    assert_eq!(line["state"], "invalid", "{line:#}");
    assert!(
        line["error"].as_str().unwrap_or_default().contains(message),
        "{line:#}"
    );
    let (w, _) = env.wait(&["future"]);
    assert_usage_error(&w, &[message]);
}

// ------------------------------------------------ logs --follow, lost ---

#[test]
fn logs_follow_on_a_lost_run_exits_4_and_kills_nothing() {
    let env = Env::new();
    let job = sh("echo before-the-crash; exec sleep 300");
    let d = env.detach("crashed", FAST_TIMER, &job);
    eventually("the job printed", || {
        env.log("crashed").contains("before-the-crash")
    });
    signal(d.wrapper_pid, Signal::KILL);
    eventually("the wrapper is gone", || is_gone(d.wrapper_pid));

    let out = env.jw(&["logs", "crashed", "--follow"]);
    assert_code(&out, exit::LOST);
    assert!(
        stdout(&out).contains("before-the-crash"),
        "{}",
        describe(&out)
    );
    assert!(is_alive(d.pid), "logs --follow killed the job");
    assert_eq!(
        env.status_file("crashed"),
        None,
        "logs --follow wrote a status"
    );
    assert!(
        env.record("crashed")["outcome"].is_null(),
        "nor a final record"
    );
    // wait, unlike logs, finishes it.
    assert_code(&env.wait(&["crashed", "--grace", "300ms"]).0, exit::LOST);
    assert_all_gone(&[("job", d.pid)]);
}

// ------------------------------------------------------------ liveness ---

#[test]
fn explicit_beats_keep_a_silent_idle_job_alive_in_every_liveness_mode() {
    let env = Env::new();
    let modes = ["auto", "output", "cpu", "beat", "timer"];
    let mut jobs = Vec::new();
    for mode in modes {
        // Silent, idle, one process: nothing but the beats shows progress.
        let opts = [
            "--liveness",
            mode,
            "--heartbeat",
            "100ms",
            "--stale",
            "2s",
            "--grace",
            "300ms",
        ];
        let d = env.detach(mode, &opts, &["sleep", "300"]);
        jobs.push((mode, d));
    }
    // Beat from outside for well over twice the stale threshold: every
    // round touches each heartbeat (fast, so no job waits long for its
    // beat), and `jobwatch beat` beats one job in turn.
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(5) {
        for (mode, _) in &jobs {
            let f = fs::File::options()
                .write(true)
                .open(env.file(mode, ".heartbeat"))
                .unwrap();
            f.set_modified(SystemTime::now()).unwrap();
        }
        let (mode, _) = &jobs[round % jobs.len()];
        assert_code(&env.jw(&["beat", mode]), 0);
        for (mode, _) in &jobs {
            if let Some(status) = env.status_file(mode) {
                panic!(
                    "{mode}: a beating job was ended: {status:?} {}",
                    env.record(mode)
                );
            }
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    for (mode, d) in &jobs {
        assert!(is_alive(d.pid), "{mode}: the job still runs");
        assert_eq!(env.status_file(mode), None, "{mode}");
        assert_code(&env.jw(&["kill", mode, "--grace", "300ms"]), 0);
    }
}

#[test]
fn the_wrapper_never_moves_the_heartbeat_backwards() {
    let env = Env::new();
    let ahead = Duration::from_secs(2);
    let job = sh("while :; do echo tick; sleep 0.05; done");
    let modes = ["output", "timer"];
    for mode in modes {
        let opts = ["--liveness", mode, "--heartbeat", "100ms", "--stale", "60s"];
        env.detach(mode, &opts, &job);
        let hb = env.file(mode, ".heartbeat");
        let first = mtime(&hb).unwrap();
        eventually(&format!("{mode}: the wrapper moves the heartbeat"), || {
            mtime(&hb).is_some_and(|m| m > first)
        });
    }
    // A beat from the future: every sample until then is older, and must
    // be skipped, not written over it.
    let future = SystemTime::now() + ahead;
    for mode in modes {
        fs::File::options()
            .write(true)
            .open(env.file(mode, ".heartbeat"))
            .unwrap()
            .set_modified(future)
            .unwrap();
    }
    eventually("the wrappers move the heartbeats past that beat", || {
        modes.iter().all(|mode| {
            let m = mtime(&env.file(mode, ".heartbeat")).unwrap();
            assert!(m >= future, "{mode}: the heartbeat went backwards");
            m > future
        })
    });
    for mode in modes {
        assert_code(&env.jw(&["kill", mode, "--grace", "300ms"]), 0);
    }
}

// ------------------------------------------------------ vanished runs ---

/// Moves NAME's files (all but the lock) into `to` in the order an archive
/// moves them (§6.3: the record last, so the run never reads as `invalid`
/// on the way), so the name reads as `missing`; returns what was moved.
fn hide_files(env: &Env, name: &str, to: &Path) -> Vec<String> {
    fs::create_dir_all(to).unwrap();
    let mut moved = Vec::new();
    for suffix in [".pid", ".heartbeat", ".log", ".job.json"] {
        let file = format!("{name}{suffix}");
        if fs::rename(env.dir.join(&file), to.join(&file)).is_ok() {
            moved.push(file);
        }
    }
    moved
}

#[test]
fn a_waiter_tolerates_a_vanished_run_for_5_s_then_reports_it_missing() {
    let Some(()) = runnable(strace()) else {
        return;
    };
    let env = Env::new();
    env.detach("back", &[], &env.gated("back", 0));
    env.detach("gone", &[], &env.gated("gone", 0));
    let back = env.spawn(&["wait", "back"]);
    let gone = env.spawn(&["wait", "gone"]);
    await_blocked_on_events(back.pid());
    await_blocked_on_events(gone.pid());

    // `back` vanishes (as in the middle of a restart) and returns.
    let trace = env.scratch("back.strace");
    let tracer = attach_strace(&env, back.pid(), &trace, &["-e", "trace=openat,open"]);
    let held = env.scratch("held");
    let moved = hide_files(&env, "back", &held);
    assert!(moved.contains(&"back.job.json".to_owned()), "{moved:?}");
    eventually("the waiter has looked and found back missing", || {
        fs::read_to_string(&trace).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("back.job.json") && l.contains("ENOENT"))
        })
    });
    detach_strace(tracer, &trace);
    // Back in the order a new run writes them: the record first.
    for file in moved.iter().rev() {
        fs::rename(held.join(file), env.dir.join(file)).unwrap();
    }
    env.release("back");
    let out = back.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&json_lines(&out), "back")["outcome"], "success");

    // `gone` vanishes for good: missing, but only after 5 s.
    let hidden_at = Instant::now();
    hide_files(&env, "gone", &env.scratch("lost-for-good"));
    let out = gone.finish();
    let after = hidden_at.elapsed();
    assert_usage_error(&out, &["no job named gone"]);
    assert!(
        after >= Duration::from_secs(5),
        "reported missing after only {after:?}"
    );
}

// ---------------------------------------------------- polling fallback ---

/// Syscall numbers of nanosleep(2) and clock_nanosleep(2).
#[cfg(target_arch = "x86_64")]
const SLEEP_SYSCALLS: &[u64] = &[35, 230];
#[cfg(target_arch = "aarch64")]
const SLEEP_SYSCALLS: &[u64] = &[101, 115];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SLEEP_SYSCALLS: &[u64] = &[];

/// Whether `pid`'s main thread sleeps on a timer (a poll interval).
fn blocked_in_sleep(pid: i32) -> bool {
    if proc_state(pid) != Some('S') {
        return false;
    }
    if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/syscall"))
        && let Some(Ok(nr)) = s.split_whitespace().next().map(str::parse::<u64>)
        && !SLEEP_SYSCALLS.is_empty()
    {
        return SLEEP_SYSCALLS.contains(&nr);
    }
    fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("nanosleep"))
}

/// Waits until `pid` (a waiter) sleeps between polls, and checks that
/// neither it nor a helper it forked holds an inotify descriptor.
#[track_caller]
fn assert_polls_without_inotify(env: &Env, pid: i32) {
    eventually(&format!("waiter {pid} sleeps between polls"), || {
        blocked_in_sleep(pid)
    });
    let waiter_and_helpers = env
        .tagged_processes()
        .into_iter()
        .filter(|&p| p == pid || ppid_of(p) == Some(pid));
    for p in waiter_and_helpers {
        assert!(
            !has_inotify_fd(p),
            "pid {p} holds an inotify descriptor: the waiter did not fall back to polling"
        );
    }
}

#[test]
fn wait_poll_uses_no_inotify_and_still_sees_the_outcome() {
    let env = Env::new();
    env.detach("polled", &[], &env.gated("polled", 0));
    let waiter = env.spawn(&["wait", "polled", "--poll", "50ms"]);
    assert_polls_without_inotify(&env, waiter.pid());
    env.release("polled");
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&json_lines(&out), "polled")["outcome"], "success");
}

/// A FUSE mount (bindfs) of `source` on `target`, unmounted on drop.
struct Fuse(PathBuf);

impl Fuse {
    fn mount(env: &Env, source: &Path, target: &Path) -> Result<Self, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse here".into());
        }
        let mut cmd = env.other("bindfs");
        cmd.arg(source).arg(target);
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => {
                return Err(format!(
                    "bindfs is not installed ({e}): apt-get install bindfs"
                ));
            }
        };
        if !out.status.success() {
            return Err(format!(
                "bindfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(target.to_owned()))
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        // Lazily: a process of the test may still hold a file there; the
        // Env kills it next.
        let unmounted = Command::new("fusermount")
            .arg("-uz")
            .arg(&self.0)
            .output()
            .is_ok_and(|o| o.status.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        }
    }
}

#[test]
fn a_waiter_on_a_fuse_jobs_directory_polls_instead_of_using_inotify() {
    let env = Env::new();
    let source = env.scratch("backing");
    let mount = env.scratch("fuse");
    for d in [&source, &mount] {
        fs::create_dir(d).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let Some(_fuse) = runnable(Fuse::mount(&env, &source, &mount)) else {
        return;
    };
    let on_fuse = |args: &[&str]| {
        let mut cmd = env.bare();
        cmd.arg("--dir").arg(&mount).args(args);
        cmd
    };
    let job = env.gated("fused", 0);
    let mut start = vec!["run", "fused", "--detach", "--"];
    start.extend(job.iter().map(String::as_str));
    assert_code(&output_of(on_fuse(&start)), 0);
    assert!(
        source.join("fused.job.json").exists(),
        "the job lives on the mount"
    );

    let waiter = ChildGuard::spawn(on_fuse(&["wait", "fused"]));
    assert_polls_without_inotify(&env, waiter.pid());
    env.release("fused");
    let out = waiter.finish();
    assert_code(&out, exit::SUCCESS);
    assert_eq!(line_for(&json_lines(&out), "fused")["outcome"], "success");
}

// --------------------------------------------------- the jobs directory ---

#[test]
fn the_jobs_dir_defaults_to_xdg_state_home_then_home() {
    let env = Env::new();
    let xdg = env.scratch("xdg");
    let home = env.scratch("home");
    // A name, the variables set and removed, and where its files must land.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a Path)], &'a [&'a str], PathBuf);
    let runs: [Case; 3] = [
        (
            "via-xdg",
            &[("XDG_STATE_HOME", &xdg), ("HOME", &home)],
            &[],
            xdg.join("jobwatch"),
        ),
        (
            "via-home",
            &[("HOME", &home)],
            &["XDG_STATE_HOME"],
            home.join(".local/state/jobwatch"),
        ),
        (
            // An empty variable counts as unset.
            "via-home-empty",
            &[
                ("HOME", &home),
                ("XDG_STATE_HOME", Path::new("")),
                ("JOBWATCH_DIR", Path::new("")),
            ],
            &[],
            home.join(".local/state/jobwatch"),
        ),
    ];
    for (name, set, unset, expected) in runs {
        let mut cmd = env.bare();
        for (k, v) in set {
            cmd.env(k, v);
        }
        for k in unset {
            cmd.env_remove(k);
        }
        cmd.args(["run", name, "--quiet", "--", "true"]);
        assert_code(&output_of(cmd), 0);
        assert!(
            expected.join(format!("{name}.status")).exists(),
            "{name} ran in {}",
            expected.display()
        );
        let mode = fs::metadata(&expected).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is created private", expected.display());
    }

    let mut cmd = env.bare();
    cmd.env_remove("XDG_STATE_HOME")
        .env_remove("HOME")
        .args(["status"]);
    assert_usage_error(
        &output_of(cmd),
        &["cannot find a jobs directory: set --dir, $JOBWATCH_DIR or $HOME"],
    );
}

#[test]
fn a_group_writable_or_non_directory_jobs_dir_is_refused() {
    let env = Env::new();
    let group = env.scratch("group-writable");
    fs::create_dir(&group).unwrap();
    fs::set_permissions(&group, fs::Permissions::from_mode(0o770)).unwrap();
    let file = env.scratch("a-file");
    fs::write(&file, "").unwrap();
    let cases = [
        (&group, "writable by group or others (mode 0770)"),
        (&file, "is not a directory"),
    ];
    for (dir, message) in cases {
        for args in [
            &["status"][..],
            &["run", "x", "--", "sh", "-c", "touch \"$T/ran\""],
        ] {
            let mut cmd = env.bare();
            cmd.arg("--dir").arg(dir).args(args);
            let out = output_of(cmd);
            assert_usage_error(&out, &[message, &dir.to_string_lossy()]);
        }
    }
    assert!(!env.scratch("ran").exists(), "nothing ran");
    assert_eq!(
        fs::read_dir(&group).unwrap().count(),
        0,
        "nothing was written"
    );
}

// ----------------------------------------------------------------- kill ---

#[test]
fn kill_of_a_finished_job_exits_0_and_changes_nothing() {
    let env = Env::new();
    assert_code(&env.run("over", &["--quiet"], &sh("exit 3")), 3);
    let before = snapshot(&env.dir);
    let out = env.jw(&["kill", "over"]);
    assert_code(&out, 0);
    let line = json_line(&out);
    assert_eq!(
        line["outcome"], "failed",
        "it reports the real outcome: {line:#}"
    );
    assert_eq!(snapshot(&env.dir), before, "nothing was written");
}

// ---------------------------------------------------------- file modes ---

#[test]
fn every_file_jobwatch_creates_is_0600_and_every_directory_0700() {
    let env = Env::new();
    // With umask 0 nothing hides a file created with a wider mode.
    let jw = |args: &str| {
        let mut cmd = env.other("sh");
        cmd.arg("-c")
            .arg(format!("umask 000; exec \"$JW\" --dir \"$T/jobs\" {args}"));
        output_of(cmd)
    };
    assert_code(
        &jw("run m --quiet --retries 1 --backoff 10ms --breaker key -- sh -c 'exit 1'"),
        1,
    );
    let out = jw("run m --detach --liveness timer -- sleep 300");
    assert_code(&out, 0);
    assert_code(&jw("kill m --grace 300ms"), 0);
    assert_code(&jw("wait m"), exit::KILLED);
    assert_code(&jw("run m --quiet -- true"), 0);
    assert!(env.dir.join("history/m").is_dir(), "an archived run exists");
    assert!(env.dir.join("breakers").is_dir(), "a breaker exists");

    let mut stack = vec![env.dir.clone()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "directory {} has mode {mode:o}", d.display());
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                assert_eq!(mode, 0o600, "file {} has mode {mode:o}", p.display());
                files += 1;
            }
        }
    }
    assert!(files > 10, "only {files} files checked");
}

// --------------------------------------------------------------- stdin ---

#[test]
fn the_jobs_stdin_is_dev_null_whatever_the_callers_is() {
    let env = Env::new();
    let job = "readlink /proc/self/fd/0; cat; echo end-of-input";
    for (name, detach) in [("fg", ""), ("bg", "--detach")] {
        // The caller's stdin is a pipe with data in it.
        let mut cmd = env.other("sh");
        cmd.arg("-c").arg(format!(
            "echo from-the-caller | \"$JW\" --dir \"$T/jobs\" run {name} {detach} -- sh -c '{job}'"
        ));
        assert_code(&output_of(cmd), 0);
        assert_code(&env.wait(&[name]).0, exit::SUCCESS);
        let log = env.log(name);
        assert!(
            log.starts_with("/dev/null\n") && log.contains("end-of-input"),
            "{name}: {log:?}"
        );
        assert!(!log.contains("from-the-caller"), "{name}: {log:?}");
    }
}
