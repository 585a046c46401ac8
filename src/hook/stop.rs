//! `jobwatch hook stop`, registered with `asyncRewake: true`: Claude Code
//! runs it in the background when the model ends its turn, and wakes the
//! model with its stderr when it exits 2.
//!
//! If none of the session's unreported jobs runs, it exits 0 at once (a
//! job that ended unreported is reported at once instead). Otherwise it
//! waits, woken by the same inotify events as `wait`, for the first to end
//! — killing nothing — and exits 2 with one line ([`super::line`]). The
//! next stop re-arms for the rest. Each outcome is claimed in the session
//! file before it is reported, so it is reported once even when stop hooks
//! of several turns wait on the same job. It also stops waiting (exit 0)
//! when Claude Code, its parent, has gone.

use std::time::{Duration, Instant};

use super::input::Common;
use super::line::wake_line;
use super::look::{Ending, View, look};
use super::session::{SessionStore, TrackedJob};
use super::{HookContext, HookOutput};
use jobwatch_core::model::JobName;
use jobwatch_core::store::file::{FileStore, FileWatch};
use jobwatch_core::store::{Store, Watch, WatchFor};

/// How long a job may be missing (its name mid-restart) before it is
/// reported gone.
pub const GONE_LIMIT: Duration = Duration::from_secs(5);

/// Poll interval when the session's jobs live in several directories (one
/// inotify watch covers one directory).
const MULTI_DIR_POLL: Duration = Duration::from_millis(250);

/// What to do after one look at every job.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Report the job at this index.
    Report(usize),
    /// Nothing ended: look again within this long (or on an event).
    Wait(Duration),
    /// Nothing left to wait for.
    Done,
}

/// Decides from one look at each job (`gone_for`: how long each has been
/// missing). The first ended job in the session's order is reported; a
/// job missing for [`GONE_LIMIT`] counts as ended.
pub fn decide(views: &[View], gone_for: &[Option<Duration>]) -> Decision {
    let ended = views.iter().zip(gone_for).position(|(v, g)| match v {
        View::Ended(_) => true,
        View::Gone => g.is_some_and(|g| g >= GONE_LIMIT),
        View::Running { .. } => false,
    });
    if let Some(i) = ended {
        return Decision::Report(i);
    }
    views
        .iter()
        .map(|v| match v {
            View::Running { recheck_in } => *recheck_in,
            _ => Duration::from_millis(50),
        })
        .min()
        .map_or(Decision::Done, Decision::Wait)
}

/// The jobs that still run (or may, being briefly missing), except `but`.
fn still_running(views: &[View], but: usize) -> usize {
    views
        .iter()
        .enumerate()
        .filter(|(i, v)| *i != but && !matches!(v, View::Ended(_)))
        .count()
}

/// What a job that vanished without a trace is reported as.
fn gone_ending(job: &TrackedJob) -> Ending {
    Ending {
        name: job.name.clone(),
        outcome: "gone".into(),
        exit_code: None,
        signal: None,
        duration_ms: None,
        reason: Some("its files were removed (jobwatch gc, or by hand); outcome unknown".into()),
        log: job.dir.join(format!("{}.log", job.name)),
        tail: Vec::new(),
    }
}

/// Runs the hook.
pub fn run(ctx: &HookContext, common: &Common) -> HookOutput {
    let store = SessionStore::new(&ctx.store);
    let mut jobs = match store.load(&common.session) {
        Ok(f) => f.unreported(),
        Err(e) => return HookOutput::note(e),
    };
    if jobs.is_empty() {
        return HookOutput::quiet();
    }
    let parent = rustix::process::getppid();
    let wakeups = wakeups_for(&jobs);
    let mut missing_since: Vec<Option<Instant>> = vec![None; jobs.len()];
    loop {
        let views: Vec<View> = jobs.iter().map(look).collect();
        let now = Instant::now();
        for (since, view) in missing_since.iter_mut().zip(&views) {
            *since = match view {
                View::Gone => Some(since.unwrap_or(now)),
                _ => None,
            };
        }
        let gone_for: Vec<Option<Duration>> =
            missing_since.iter().map(|s| s.map(|s| now - s)).collect();
        let recheck = match decide(&views, &gone_for) {
            Decision::Done => return HookOutput::quiet(),
            Decision::Wait(d) => d,
            Decision::Report(i) => {
                let ending = match &views[i] {
                    View::Ended(e) => (**e).clone(),
                    _ => gone_ending(&jobs[i]),
                };
                let job_id = jobs[i].job_id.clone();
                let claimed = store.update(&common.session, false, |f| {
                    let won = f.claim(&job_id, &ending.outcome);
                    (won, won)
                });
                match claimed {
                    Ok(true) => {
                        return HookOutput::wake(wake_line(&ending, still_running(&views, i)));
                    }
                    // Another hook reported it: wait on for the rest.
                    Ok(false) => {
                        jobs.remove(i);
                        missing_since.remove(i);
                        continue;
                    }
                    Err(e) => return HookOutput::note(e),
                }
            }
        };
        if rustix::process::getppid() != parent {
            return HookOutput::note("Claude Code has gone; stopped waiting");
        }
        wakeups.wait(recheck);
    }
}

/// Events on the jobs' directory; polling when they span several.
fn wakeups_for(jobs: &[TrackedJob]) -> Box<dyn Watch> {
    let first = &jobs[0].dir;
    if jobs.iter().any(|j| &j.dir != first) {
        return Box::new(FileWatch::Poll(MULTI_DIR_POLL));
    }
    let names: Vec<JobName> = jobs
        .iter()
        .filter_map(|j| JobName::parse(&j.name).ok())
        .collect();
    let store = FileStore::already_checked(first);
    store.watch(
        &names,
        WatchFor {
            exits_after: true,
            ..WatchFor::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended() -> View {
        View::Ended(Box::new(Ending {
            name: "a".into(),
            outcome: "failed".into(),
            exit_code: Some(1),
            signal: None,
            duration_ms: None,
            reason: None,
            log: "/j/a.log".into(),
            tail: vec![],
        }))
    }

    fn running(ms: u64) -> View {
        View::Running {
            recheck_in: Duration::from_millis(ms),
        }
    }

    #[test]
    fn nothing_to_watch_is_done_at_once() {
        assert_eq!(decide(&[], &[]), Decision::Done);
    }

    #[test]
    fn the_first_ended_job_is_reported_before_any_wait() {
        let views = [running(100), ended(), ended()];
        assert_eq!(decide(&views, &[None; 3]), Decision::Report(1));
        assert_eq!(still_running(&views, 1), 1);
    }

    #[test]
    fn running_jobs_are_waited_for_until_the_soonest_recheck() {
        let views = [running(900), running(300)];
        assert_eq!(
            decide(&views, &[None, None]),
            Decision::Wait(Duration::from_millis(300))
        );
    }

    #[test]
    fn a_missing_job_is_waited_for_briefly_then_reported_gone() {
        let views = [View::Gone, running(2000)];
        assert_eq!(
            decide(&views, &[Some(Duration::from_millis(10)), None]),
            Decision::Wait(Duration::from_millis(50))
        );
        assert_eq!(
            decide(&views, &[Some(GONE_LIMIT), None]),
            Decision::Report(0)
        );
    }
}
