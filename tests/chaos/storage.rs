//! Storage that refuses writes: a read-only jobs directory and a full disk.
//! Either way: a clear one-line error, exit 2, and no damaged file.
//!
//! Root ignores permission bits, so as root the directory is made read-only
//! with a read-only bind mount (else `chattr +i`), and the disk is filled in
//! a small tmpfs. Where none of that is possible the test reports itself as
//! not run ([`not_run`]): loudly, and as a failure under `CI=true` (CI runs
//! as root, where both work).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::crash::assert_no_temp_files;
use crate::support::*;

/// Runs a system tool; true when it succeeded.
fn tool(program: &str, args: &[&str], path: &Path) -> bool {
    Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Undoes whatever made a directory refuse writes, also on panic.
struct Undo(Vec<(&'static str, Vec<&'static str>, PathBuf)>);

impl Drop for Undo {
    fn drop(&mut self) {
        for (program, args, path) in self.0.drain(..).rev() {
            tool(program, &args, &path);
        }
    }
}

/// Makes `dir` refuse writes; `Err` names why that is impossible here.
fn make_read_only(dir: &Path) -> Result<(Undo, &'static str), String> {
    if !is_root() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o500)).map_err(|e| e.to_string())?;
        return Ok((
            Undo(vec![("chmod", vec!["700"], dir.to_owned())]),
            "mode 0500",
        ));
    }
    if tool(
        "mount",
        &["--bind", dir.to_str().expect("UTF-8 temp path")],
        dir,
    ) {
        let undo = Undo(vec![("umount", vec!["-l"], dir.to_owned())]);
        if tool("mount", &["-o", "remount,bind,ro"], dir) {
            return Ok((undo, "read-only bind mount"));
        }
    }
    if tool("chattr", &["+i"], dir) {
        return Ok((
            Undo(vec![("chattr", vec!["-i"], dir.to_owned())]),
            "chattr +i",
        ));
    }
    Err("running as root, and neither a read-only bind mount nor chattr +i is available".into())
}

/// Every file under `dir` (history included) with its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[track_caller]
fn assert_refused(out: &std::process::Output) {
    assert_code(out, exit::USAGE);
    let err = stderr(out);
    assert!(
        [
            "Read-only file system",
            "Permission denied",
            "Operation not permitted"
        ]
        .iter()
        .any(|m| err.contains(m)),
        "the error names the cause\n{}",
        describe(out)
    );
    assert_eq!(err.trim().lines().count(), 1, "one line\n{}", describe(out));
}

#[test]
fn a_read_only_jobs_dir_gives_a_clear_error_and_keeps_every_file() {
    let env = Env::new();
    assert_code(&env.run("done", FAST, &["echo", "kept"]), 0);
    let before = snapshot(&env.dir);
    let Some((_undo, how)) = runnable(make_read_only(&env.dir)) else {
        return;
    };
    eprintln!("read-only jobs dir via {how}");

    assert_refused(&env.run("fresh", FAST, &["true"]));
    assert_refused(&env.run("done", FAST, &["true"]));
    let status = env.jw(&["status", "--json"]);
    assert_code(&status, 0);
    assert_eq!(line_for(&json_lines(&status), "done")["state"], "success");
    assert_eq!(
        snapshot(&env.dir),
        before,
        "no file changed, appeared or vanished"
    );
}

/// A small tmpfs mounted on the jobs dir, unmounted on drop.
fn small_tmpfs(dir: &Path) -> Result<Undo, String> {
    if !is_root() {
        return Err("mounting a tmpfs needs root".into());
    }
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    if !tool(
        "mount",
        &["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"],
        dir,
    ) {
        return Err("mount -t tmpfs failed (no CAP_SYS_ADMIN here?)".into());
    }
    Ok(Undo(vec![("umount", vec!["-l"], dir.to_owned())]))
}

/// Writes zeros into `DIR/fill` until the filesystem refuses more.
fn fill(dir: &Path) {
    let mut f = fs::File::create(dir.join("fill")).expect("create fill");
    let chunk = [0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.write_all(&chunk[..1]);
}

#[track_caller]
fn assert_no_space_error(out: &std::process::Output) {
    assert_code(out, exit::USAGE);
    assert!(
        stderr(out).contains("No space left on device"),
        "{}",
        describe(out)
    );
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_no_damaged_file() {
    let env = Env::new();
    let Some(_mount) = runnable(small_tmpfs(&env.dir)) else {
        return;
    };
    assert_code(&env.run("done", FAST, &["echo", "kept"]), 0);
    let calm = ["--liveness", "timer", "--stale", "60s", "--grace", "300ms"];
    let pending = env.detach("pending", &calm, &env.gated("g", 0));
    fill(&env.dir);

    // Starting anything now fails cleanly.
    assert_no_space_error(&env.run("fresh", FAST, &["true"]));
    assert!(!env.file("fresh", ".job.json").exists(), "no half-made run");
    // Restarting a finished name fails too; its last run stays whole in history.
    assert_no_space_error(&env.run("done", FAST, &["true"]));
    let history: Vec<PathBuf> = fs::read_dir(env.dir.join("history/done"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let kept = env.file("done", ".status").exists()
        || history.iter().any(|h| {
            fs::read_to_string(h.join("done.status")).is_ok_and(|s| s.starts_with("SUCCESS\n"))
        });
    assert!(
        kept,
        "the finished run is still in place or whole in history"
    );
    assert_no_temp_files(&env);

    // The running job ends while the disk is full: whatever its wrapper
    // manages to write, every file stays readable and consistent.
    env.release("g");
    eventually("the wrapper has exited", || is_gone(pending.wrapper_pid));
    let status = env.jw(&["status", "--json"]);
    assert_code(&status, 0);
    let state = line_for(&json_lines(&status), "pending")["state"].clone();
    assert!(
        state == "success" || state == "lost",
        "pending reads as {state}"
    );
    eprintln!("a job that ended on a full disk reads as {state}");
    assert_no_temp_files(&env);

    // With space again, the job's outcome is settled for good.
    fs::remove_file(env.dir.join("fill")).unwrap();
    let (out, lines) = env.wait(&["pending", "--json"]);
    let outcome = line_for(&lines, "pending")["outcome"].clone();
    assert_eq!(outcome, state, "{}", describe(&out));
    crate::crash::assert_consistent_finish(&env, "pending", state.as_str().unwrap());
    assert_code(&env.run("fresh", FAST, &["true"]), 0);
}
