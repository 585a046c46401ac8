//! `jobwatch hook session-end` (opt-in): when the session ends, kill the
//! jobs it started that still run, so no work outlives the agent that was
//! to read its outcome.
//!
//! Claude Code gives SessionEnd hooks 1.5 s by default, less than a kill's
//! grace period; so each kill runs as its own detached `jobwatch kill NAME`
//! (TERM, grace, KILL, `killed` recorded), and the hook returns at once.
//! Only the session's own run of a name is killed: a name started again
//! since (by anyone) is left alone.

use std::path::Path;
use std::process::{Command, Stdio};

use clap::Args;

use super::input::Common;
use super::look::{View, look};
use super::session::{SessionStore, TrackedJob};
use super::{HookContext, HookOutput};
use crate::cli::args::duration;
use crate::cli::args::ms;
use jobwatch_core::sys::child::detach_into_new_session;

/// Options of `hook session-end`.
#[derive(Debug, Args)]
pub struct SessionEndArgs {
    /// Time between SIGTERM and SIGKILL (default: each job's own).
    #[arg(long, value_name = "D")]
    grace: Option<String>,
}

/// The jobs to kill: those that still run.
pub fn to_kill<'a>(jobs: &'a [TrackedJob], views: &[View]) -> Vec<&'a TrackedJob> {
    jobs.iter()
        .zip(views)
        .filter(|(_, v)| matches!(v, View::Running { .. }))
        .map(|(j, _)| j)
        .collect()
}

/// Runs the hook.
pub fn run(ctx: &HookContext, args: &SessionEndArgs, common: &Common) -> HookOutput {
    let grace = match args.grace.as_deref().map(duration).transpose() {
        Ok(g) => g,
        Err(why) => return HookOutput::note(format!("--grace: {why}; nothing killed")),
    };
    let store = SessionStore::new(&ctx.store);
    let jobs = match store.load(&common.session) {
        Ok(f) => f.unreported(),
        Err(e) => return HookOutput::note(e),
    };
    let views: Vec<View> = jobs.iter().map(look).collect();
    let mut failed = Vec::new();
    for job in to_kill(&jobs, &views) {
        if let Err(e) = spawn_kill(&ctx.exe, &job.dir, &job.name, grace) {
            failed.push(format!("cannot kill {}: {e}", job.name));
        }
    }
    if failed.is_empty() {
        HookOutput::quiet()
    } else {
        HookOutput::note(failed.join("; "))
    }
}

/// Starts `jobwatch --dir DIR kill NAME` in its own session, so it
/// finishes whatever happens to this hook.
fn spawn_kill(
    exe: &Path,
    dir: &Path,
    name: &str,
    grace: Option<std::time::Duration>,
) -> std::io::Result<()> {
    let mut cmd = Command::new(exe);
    cmd.arg("--dir").arg(dir).arg("kill").arg(name);
    if let Some(g) = grace {
        cmd.arg(format!("--grace={}ms", ms(g)));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach_into_new_session(&mut cmd);
    // Not waited for: it outlives this hook by design, and its parent
    // becomes init (or the nearest subreaper), which reaps it.
    cmd.spawn().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_running_jobs_are_killed() {
        let job = |n: &str| TrackedJob {
            name: n.into(),
            job_id: n.into(),
            dir: "/j".into(),
            started_at: String::new(),
            via: "mcp".into(),
            reported: None,
        };
        let jobs = [job("a"), job("b"), job("c")];
        let views = [
            View::Running {
                recheck_in: Duration::from_secs(1),
            },
            View::Gone,
            View::Running {
                recheck_in: Duration::from_secs(1),
            },
        ];
        let names: Vec<&str> = to_kill(&jobs, &views)
            .iter()
            .map(|j| j.name.as_str())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }
}
