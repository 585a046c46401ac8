//! Queued starts: `run NAME --after …`/`--slot …` and the MCP `start`
//! tool's `after`/`slot` (detached or in the foreground), and how this
//! process starts the queued jobs its dispatches grant ([`Spawner`], the
//! detached start of [`super::start`]). The queue itself is
//! [`crate::queue`].

use std::time::Duration;

use super::Context;
use super::start::{self, FailureKind, Foreground, StartError, Wrapper};
use crate::model::{JobName, JobRecord};
use crate::queue::{
    self, After, Env, Pending, QueueError, SlotRequest, Spawn, SpawnFailure, Submit, Submitted,
    Turn,
};
use crate::report::{Queued, Started};
use crate::spec::RunSpec;
use crate::store::{SAFETY_RECHECK, Store, WatchFor};

/// Starts queued jobs as detached jobs: this executable as `__wrapper`,
/// handed the stored spec, in the queuing process's environment. Its
/// wrappers are reaped by a thread each (a long-lived dispatcher such as
/// the MCP server collects no zombies).
#[derive(Debug, Clone)]
pub struct Spawner {
    wrapper: Wrapper,
}

impl Spawn for Spawner {
    fn spawn(
        &self,
        store: &dyn Store,
        spec: &RunSpec,
        env: Option<&Env>,
    ) -> Result<Started, SpawnFailure> {
        let ctx = Context {
            store,
            wrapper: &self.wrapper,
        };
        match start::detached_in(&ctx, spec, env.map(|e| e.0.as_slice())) {
            Ok(d) => Ok(d.reap_in_background()),
            Err(StartError::Refused(f))
                if matches!(f.kind, FailureKind::AlreadyRunning | FailureKind::Busy) =>
            {
                Err(SpawnFailure::Busy(f.message))
            }
            Err(e) => Err(SpawnFailure::Refused(e.to_string())),
        }
    }
}

/// Makes `wrapper` the way this process starts the queued jobs its
/// dispatches grant (once, at startup; the binary gives its own
/// `__wrapper`).
pub fn install(wrapper: Wrapper) {
    queue::install(Box::new(Spawner { wrapper }));
}

/// What to queue: the job, its dependencies, its slot group.
#[derive(Debug, Clone)]
pub struct QueueRun {
    /// The job.
    pub spec: RunSpec,
    /// `--after`.
    pub after: Vec<After>,
    /// `--slot`.
    pub slot: Option<SlotRequest>,
}

impl QueueRun {
    /// Whether the run must be queued (it has dependencies or a slot).
    pub fn is_queued(&self) -> bool {
        !self.after.is_empty() || self.slot.is_some()
    }
}

/// What a queued detached start came to.
#[derive(Debug)]
pub enum DetachedQueued {
    /// It started at once.
    Started(Started),
    /// It waits.
    Queued(Queued),
    /// It ended at once without running (a dependency had not succeeded).
    Ended(Box<JobRecord>),
}

/// `run --detach` with `--after`/`--slot` (and the MCP `start` tool with
/// `after`/`slot`): queues the job with this process's environment; it
/// starts at once when its dependencies have ended and a turn is free.
pub fn detached(store: &dyn Store, req: QueueRun) -> Result<DetachedQueued, StartError> {
    let submitted = queue::submit(
        store,
        Submit {
            spec: req.spec,
            after: req.after,
            slot: req.slot,
            foreground: false,
            env: Some(queue::this_environment()),
        },
    )?;
    Ok(match submitted {
        Submitted::Started { started, .. } => DetachedQueued::Started(started),
        Submitted::Queued(p) => DetachedQueued::Queued(queued_report(&p)),
        // Granted, started or ended by another dispatcher meanwhile (its
        // turn came at once from a process that looked at the same time):
        // what its run is now.
        Submitted::Granted { spec } | Submitted::Ended { spec } => now_of(store, &spec)?,
    })
}

/// How long [`now_of`] waits for a starting run's command to be spawned.
const STARTING_PATIENCE: Duration = Duration::from_secs(5);

/// Where `spec`'s queued run stands now, when this process did not start
/// it: ended, running (started by another dispatcher), or still waiting
/// (its turn has come: a wrapper is starting it).
fn now_of(store: &dyn Store, spec: &RunSpec) -> Result<DetachedQueued, StartError> {
    let job_id = spec.ticket.as_ref().map(|t| t.job_id.as_str());
    let read = || {
        store
            .snapshot(&spec.name)
            .record
            .ok()
            .flatten()
            .filter(|r| Some(r.job_id.as_str()) == job_id)
    };
    // A run whose wrapper has written its first record and not yet
    // spawned its command has no PID to report: wait (woken by the
    // store) for the record that has one, a short while at most.
    let watch = store.watch(std::slice::from_ref(&spec.name), WatchFor::default());
    let until = std::time::Instant::now() + STARTING_PATIENCE;
    let mut record = read();
    while let Some(r) = &record
        && r.outcome.is_none()
        && r.child_pid.is_none()
    {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        watch.wait(left.min(SAFETY_RECHECK));
        record = read();
    }
    if let Some(r) = record {
        if r.outcome.is_some() {
            return Ok(DetachedQueued::Ended(Box::new(r)));
        }
        return Ok(DetachedQueued::Started(Started {
            name: r.name.clone(),
            pid: r.child_pid.unwrap_or(0),
            wrapper_pid: r.wrapper_pid,
            log: store
                .log_path(&spec.name, &crate::store::RunAt::Current)
                .display()
                .to_string(),
        }));
    }
    match queue::pending(store, &spec.name) {
        Some(p) => Ok(DetachedQueued::Queued(queued_report(&p))),
        None => Err(StartError::NotStarted {
            message: format!(
                "job {}: its queued run neither started nor waits any more",
                spec.name
            ),
        }),
    }
}

/// The record of `spec`'s queued run once it has one.
fn ended_record(store: &dyn Store, spec: &RunSpec) -> Option<JobRecord> {
    let job_id = &spec.ticket.as_ref()?.job_id;
    store
        .snapshot(&spec.name)
        .record
        .ok()
        .flatten()
        .filter(|r| &r.job_id == job_id && r.outcome.is_some())
}

/// A queued job's line: where it waits.
pub fn queued_report(p: &Pending) -> Queued {
    Queued {
        name: p.job.name.to_string(),
        queued: true,
        job_id: p.job.job_id.clone(),
        queue: (p.job.queue != queue::AFTER_ONLY).then(|| p.job.queue.clone()),
        position: p.position,
        after: p.job.after.iter().map(|d| d.name.to_string()).collect(),
        waiting_for: queue::describe(p),
    }
}

/// A foreground `run` with `--after`/`--slot`: queues the job, waits in
/// this process for its turn (woken when its dependencies or the runs
/// holding its queue's turns change; told where it stands by `queued`),
/// then runs it here. A job that ends without running (skipped) returns
/// its record as a foreground run would.
pub fn foreground(
    store: &dyn Store,
    req: QueueRun,
    queued: &mut dyn FnMut(&Queued),
) -> Result<Foreground, StartError> {
    let echo = req.spec.echo_output;
    let submitted = queue::submit(
        store,
        Submit {
            spec: req.spec,
            after: req.after,
            slot: req.slot,
            foreground: true,
            env: None,
        },
    )?;
    let mut spec = match submitted {
        Submitted::Granted { spec } => *spec,
        Submitted::Queued(p) => {
            queued(&queued_report(&p));
            let spec = queue::read_queued(store, &p.job.name)
                .ok()
                .flatten()
                .map(|j| j.spec)
                .ok_or_else(|| StartError::Queue(QueueError::Busy(p.job.name.clone())))?;
            if !wait_for_turn(store, &spec) {
                return ended_without_running(store, &spec);
            }
            spec
        }
        Submitted::Started { spec, .. } | Submitted::Ended { spec } => {
            return ended_without_running(store, &spec);
        }
    };
    spec.echo_output = echo;
    start::foreground(store, spec)
}

/// Sleeps until `spec`'s turn comes (`true`) or it ends without running.
fn wait_for_turn(store: &dyn Store, spec: &RunSpec) -> bool {
    loop {
        let watch = store.watch(&queue::wakers(store, spec), WatchFor::default());
        match queue::foreground_turn(store, spec) {
            Turn::Granted => return true,
            Turn::Ended => return false,
            Turn::Waiting(_) => {}
        }
        watch.wait(SAFETY_RECHECK);
    }
}

fn ended_without_running(store: &dyn Store, spec: &RunSpec) -> Result<Foreground, StartError> {
    let record = ended_record(store, spec)
        .ok_or_else(|| StartError::Queue(QueueError::Busy(spec.name.clone())))?;
    Ok(Foreground {
        log: store.log_path(&spec.name, &crate::store::RunAt::Current),
        record,
        echo_complete: true,
    })
}

/// Kills `name`'s queued run without its ever running (outcome `killed`),
/// if it has one that has not started; `None` when it has none (or it is
/// starting: then it is killed as a running job).
pub fn kill_queued(store: &dyn Store, name: &JobName, reason: &str) -> Option<JobRecord> {
    let p = queue::pending(store, name)?;
    let ending = queue::decide::Ending {
        name: name.clone(),
        job_id: p.job.job_id.clone(),
        outcome: crate::model::Outcome::Killed,
        reason: reason.to_owned(),
    };
    match queue::end_unstarted(store, &p.job.queue, &ending) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            crate::sys::stdio::warn(format_args!("cannot remove {name} from its queue: {e}"));
            return None;
        }
    }
    queue::dispatch(store);
    let record = store.snapshot(name).record.ok().flatten()?;
    (record.job_id == p.job.job_id).then_some(record)
}

/// How long a queued job a waiter's time limit ended had waited: for its
/// reason.
pub fn waited(p: &Pending, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(p.job.queued_unix_ms))
}
