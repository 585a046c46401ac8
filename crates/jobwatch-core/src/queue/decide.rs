//! The queue's decisions, as pure functions of a queue document, facts
//! about runs, and the time: which slots are free again (and what must be
//! done about a run that holds one without running), which waiting jobs
//! may start (first come first, among those whose dependencies are met),
//! which must end without running (`skipped`, and the like), a job's
//! position, and whether a dependency would close a cycle.
//!
//! Facts come through [`Facts`]: over a real store ([`super::facts`]) or a
//! table in a test. Nothing here reads, writes or spawns.

use std::collections::{HashMap, HashSet};

use super::{AfterWhen, Dep, Holding, QueueDoc, Waiting};
use crate::breaker::Starter;
use crate::model::{JobName, Outcome};

/// What is known about one run (a name and, when known, a `job_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFact {
    /// It has ended, so.
    Ended(Outcome),
    /// It runs (or its live wrapper is committing its outcome).
    Running,
    /// Observers call it hung: no progress, and its wrapper did not act.
    Hung,
    /// Its wrapper is gone without a status: a finisher must complete it
    /// (finish it as lost, or commit its recorded outcome).
    Unfinished,
    /// It has not started: it waits in a queue (its queued document holds
    /// it).
    Queued,
    /// Nowhere to be found: not current, not in history, not queued.
    Absent,
    /// Its state cannot be trusted; why.
    Invalid(String),
}

/// The facts a decision needs, looked up as it goes (only what it asks
/// for is read).
pub trait Facts {
    /// Run `job_id` of `name` (`None`: the name's current run, for a
    /// dependency on a run that left a status and no record).
    fn run(&mut self, name: &JobName, job_id: Option<&str>) -> RunFact;
    /// Whether `starter`, which took a turn at `granted_unix_ms`, may still
    /// be starting the job: it runs (a process on another host cannot be
    /// checked: until [`super::START_PATIENCE`] has passed).
    fn alive(&mut self, starter: &Starter, granted_unix_ms: u64) -> bool;
}

/// A job to end without running it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The job.
    pub name: JobName,
    /// Its run.
    pub job_id: String,
    /// The outcome to record.
    pub outcome: Outcome,
    /// One line on why.
    pub reason: String,
}

/// What one look at a queue decided.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The queue as it is to be written (`None`: unchanged).
    pub doc: Option<QueueDoc>,
    /// Detached jobs granted a turn by this process: start them.
    pub start: Vec<Holding>,
    /// Runs holding a slot whose wrapper is gone: finish them.
    pub finish: Vec<(JobName, String)>,
    /// Runs holding a slot that observers call hung: kill them.
    pub kill_hung: Vec<(JobName, String)>,
    /// Jobs to end without running.
    pub end: Vec<Ending>,
}

impl Plan {
    /// Whether anything is to be done besides writing the document.
    pub fn acts(&self) -> bool {
        !self.start.is_empty()
            || !self.finish.is_empty()
            || !self.kill_hung.is_empty()
            || !self.end.is_empty()
    }
}

/// Why a waiting job cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// A dependency has not ended.
    Dependency(JobName),
    /// Every slot of the queue is taken.
    Slots,
}

/// What a waiting job's dependencies say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every one has ended as it needs to.
    Ready,
    /// This one has not ended yet.
    Waiting(JobName),
    /// It can never run: why (a dependency that had to succeed did not).
    Skip(String),
}

/// The verdict of a job's dependencies (skipped propagation: a dependency
/// that was itself skipped did not succeed, so with `success` its
/// dependents are skipped in turn).
pub fn readiness(after: &[Dep], facts: &mut dyn Facts) -> Readiness {
    let mut waiting = None;
    for d in after {
        let fact = facts.run(&d.name, d.job_id.as_deref());
        match (fact, d.when) {
            (RunFact::Ended(Outcome::Success), _) | (RunFact::Ended(_), AfterWhen::Done) => {}
            (RunFact::Ended(o), AfterWhen::Success) => {
                return Readiness::Skip(format!("dependency {} ended {o}", d.name));
            }
            // A run that vanished (gc removed it) or whose state cannot be
            // trusted has ended as far as `done` cares; `success` cannot
            // be told, so it is not met.
            (RunFact::Absent, AfterWhen::Done) | (RunFact::Invalid(_), AfterWhen::Done) => {}
            (RunFact::Absent, AfterWhen::Success) => {
                return Readiness::Skip(format!(
                    "dependency {}'s run is gone, so its success cannot be told",
                    d.name
                ));
            }
            (RunFact::Invalid(why), AfterWhen::Success) => {
                return Readiness::Skip(format!("dependency {} is invalid: {why}", d.name));
            }
            (RunFact::Running | RunFact::Hung | RunFact::Unfinished | RunFact::Queued, _) => {
                waiting.get_or_insert_with(|| d.name.clone());
            }
        }
    }
    match waiting {
        Some(name) => Readiness::Waiting(name),
        None => Readiness::Ready,
    }
}

/// One look at queue `doc` by process `me` (`can_start`: whether it can
/// start detached jobs; without, only foreground jobs are granted turns):
/// slots whose runs ended are freed; a run that holds one and needs acting
/// on is handed to the caller (finish, kill); a turn whose starter went
/// away before the job started ends the job `lost`; then the waiting jobs,
/// first come first, are granted the free turns when their dependencies
/// are met (a job waiting for a dependency lets the next one pass), and
/// those that can never run are handed over to end (`skipped`).
pub fn decide(
    doc: &QueueDoc,
    facts: &mut dyn Facts,
    me: &Starter,
    now_ms: u64,
    can_start: bool,
) -> Plan {
    let mut plan = Plan::default();
    let mut new = doc.clone();
    let limited = doc.size.is_some();
    new.holders.retain(|h| {
        match facts.run(&h.name, Some(&h.job_id)) {
            // The slot is free again. A run whose state cannot be trusted
            // is judged by no one: it holds nothing.
            RunFact::Ended(_) | RunFact::Invalid(_) => false,
            // Without a limit a turn only needs keeping until the job has
            // started.
            RunFact::Running if !limited => false,
            RunFact::Running => true,
            RunFact::Hung => {
                plan.kill_hung.push((h.name.clone(), h.job_id.clone()));
                true
            }
            RunFact::Unfinished => {
                plan.finish.push((h.name.clone(), h.job_id.clone()));
                true
            }
            RunFact::Queued | RunFact::Absent => {
                if !facts.alive(&h.starter, h.granted_unix_ms) {
                    plan.end.push(Ending {
                        name: h.name.clone(),
                        job_id: h.job_id.clone(),
                        outcome: Outcome::Lost,
                        reason: format!(
                            "the jobwatch process that took its turn (pid {} on {}) went away before the job started",
                            h.starter.pid, h.starter.host
                        ),
                    });
                }
                true
            }
        }
    });
    let mut free = doc
        .size
        .map(|n| (n as usize).saturating_sub(new.holders.len()));
    let mut kept = Vec::with_capacity(new.waiting.len());
    for w in std::mem::take(&mut new.waiting) {
        // A job that cannot get a turn on this look and has no dependency
        // to judge is kept as it is, unread: a look at a long queue costs
        // the jobs it grants, not the jobs that wait.
        let no_turn = free == Some(0) || (w.foreground.is_none() && !can_start);
        if no_turn && w.after.is_empty() {
            kept.push(w);
            continue;
        }
        match facts.run(&w.name, Some(&w.job_id)) {
            RunFact::Queued => {}
            // Started or ended meanwhile (its document is gone with it):
            // it no longer waits.
            RunFact::Ended(_)
            | RunFact::Running
            | RunFact::Hung
            | RunFact::Unfinished
            | RunFact::Invalid(_) => continue,
            RunFact::Absent => {
                plan.end.push(ending(
                    &w,
                    Outcome::Lost,
                    "its queued run spec is gone".into(),
                ));
                kept.push(w);
                continue;
            }
        }
        act_on_dependencies(&w.after, facts, &mut plan);
        match readiness(&w.after, facts) {
            Readiness::Skip(why) => {
                plan.end.push(ending(&w, Outcome::Skipped, why));
                kept.push(w);
                continue;
            }
            Readiness::Waiting(_) => {
                kept.push(w);
                continue;
            }
            Readiness::Ready => {}
        }
        if free == Some(0) || (w.foreground.is_none() && !can_start) {
            kept.push(w);
            continue;
        }
        if let Some(fg) = &w.foreground
            && !facts.alive(fg, now_ms)
        {
            let why = "the foreground `jobwatch run` that queued it ended before it started";
            plan.end.push(ending(&w, Outcome::Killed, why.into()));
            kept.push(w);
            continue;
        }
        let holding = Holding {
            name: w.name.clone(),
            job_id: w.job_id.clone(),
            granted_unix_ms: now_ms,
            starter: w.foreground.clone().unwrap_or_else(|| me.clone()),
        };
        if w.foreground.is_none() {
            plan.start.push(holding.clone());
        }
        new.holders.push(holding);
        if let Some(f) = free.as_mut() {
            *f -= 1;
        }
    }
    new.waiting = kept;
    if new != *doc {
        plan.doc = Some(new);
    }
    plan
}

/// A dependency whose wrapper died without a status, or that observers
/// call hung, would keep its dependents waiting for ever: like a waiter,
/// the dispatcher finishes it (`lost`, or its recorded outcome) or kills
/// it (`hung`).
fn act_on_dependencies(after: &[Dep], facts: &mut dyn Facts, plan: &mut Plan) {
    for d in after {
        let Some(job_id) = &d.job_id else { continue };
        let entry = (d.name.clone(), job_id.clone());
        let list = match facts.run(&d.name, Some(job_id)) {
            RunFact::Unfinished => &mut plan.finish,
            RunFact::Hung => &mut plan.kill_hung,
            _ => continue,
        };
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
}

fn ending(w: &Waiting, outcome: Outcome, reason: String) -> Ending {
    Ending {
        name: w.name.clone(),
        job_id: w.job_id.clone(),
        outcome,
        reason,
    }
}

/// Where job `job_id` stands in `doc`: `Some(0)` once it holds a turn,
/// else its place among the waiting jobs, from 1 (first come first).
pub fn position(doc: &QueueDoc, job_id: &str) -> Option<usize> {
    if doc.holders.iter().any(|h| h.job_id == job_id) {
        return Some(0);
    }
    doc.waiting
        .iter()
        .position(|w| w.job_id == job_id)
        .map(|i| i + 1)
}

/// The path of the dependency cycle that queuing job `name` after `after`
/// would close, if any (`[a, b, a]`: a after b, b after a), by name:
/// `edges` gives, for every job still queued, the names it waits for. (A
/// dependency is bound to a run when its job is queued, so a cycle could
/// never deadlock; it is refused all the same, as a plan that says both
/// "a after b" and "b after a" is a mistake.)
pub fn find_cycle(
    name: &JobName,
    after: &[JobName],
    edges: &HashMap<JobName, Vec<JobName>>,
) -> Option<Vec<JobName>> {
    fn walk(
        node: &JobName,
        target: &JobName,
        edges: &HashMap<JobName, Vec<JobName>>,
        seen: &mut HashSet<JobName>,
        path: &mut Vec<JobName>,
    ) -> bool {
        path.push(node.clone());
        if node == target {
            return true;
        }
        if seen.insert(node.clone()) {
            for next in edges.get(node).into_iter().flatten() {
                if walk(next, target, edges, seen, path) {
                    return true;
                }
            }
        }
        path.pop();
        false
    }
    let mut seen = HashSet::new();
    let mut path = vec![name.clone()];
    after
        .iter()
        .any(|dep| walk(dep, name, edges, &mut seen, &mut path))
        .then_some(path)
}

/// What a waiting job waits for, in a few words: `slot gpu (2/2 taken)`,
/// `build (running)`.
pub fn waiting_for(doc: &QueueDoc, w: &Waiting, facts: &mut dyn Facts) -> String {
    match readiness(&w.after, facts) {
        Readiness::Waiting(dep) => {
            let state = match facts.run(
                &dep,
                w.after
                    .iter()
                    .find(|d| d.name == dep)
                    .and_then(|d| d.job_id.as_deref()),
            ) {
                RunFact::Queued => "queued",
                RunFact::Hung => "hung",
                _ => "running",
            };
            format!("{dep} ({state})")
        }
        Readiness::Skip(why) => format!("nothing: it is to be skipped ({why})"),
        Readiness::Ready => match doc.size {
            Some(n) => format!("a slot of {} ({}/{n} taken)", doc.key, doc.holders.len()),
            None => "its turn to be started".to_owned(),
        },
    }
}
