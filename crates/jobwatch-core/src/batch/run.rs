//! The executor of a batch: starts the plan's jobs as dependencies,
//! concurrency and slot groups allow, runs each job's judge after it
//! succeeds, reads its cost, removes its worktree, halts early when told,
//! and stops everything on an interrupt.
//!
//! It reaches jobs only through the [`Launcher`] trait (start, wait for any
//! of several, kill, look), so the same executor runs over detached
//! jobwatch jobs today ([`super::launch::Detached`]) and over any other
//! operations layer that offers these four operations; its tests use an
//! in-memory launcher.
//!
//! Rules:
//! - a job starts once every dependency has ended; with `KEY` (or
//!   `KEY:success`) each must have passed, else the job ends `skipped`;
//!   with `KEY:done` any ending will do;
//! - at most `concurrency` jobs run at once, and at most a group's size of
//!   its jobs; a job holds its slot until its judge has run;
//! - a job's judge (job `NAME.judge`, in the same directory and worktree)
//!   runs after the job succeeds; the job passes when the judge does;
//! - resume: a job whose name already ended (with its judge, if any) is not
//!   run again, its result is reused; `--rerun failed` runs again those
//!   that did not pass, `--rerun all` everything; a job that was killed is
//!   always run again; one still running is waited for;
//! - `halt`: failures (fail, hung, timeout, lost) of jobs run now are
//!   counted; at the limit nothing more starts (`soon`), and running jobs
//!   are killed too (`now`); what never started ends `skipped`;
//! - an interrupt kills every running job of the batch (recorded
//!   `killed`), starts nothing more, and skips the rest.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::plan::{AfterCondition, HaltLimit, HaltWhen, JobSpec, Keep, Plan};
use super::table::{JobOutcome, JobResult, JudgeResult, Verdict};
use super::worktree::{Source, Worktree};
use crate::model::{JobName, Outcome, Settings};
use crate::spec::RunSpec;

/// With `halt: {fail: N%}`, the share is judged once this many jobs ended.
pub const HALT_PERCENT_MIN_DONE: usize = 3;

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// The job.
    pub name: JobName,
    /// Its outcome.
    pub outcome: Outcome,
    /// The command's exit code.
    pub exit_code: Option<i32>,
    /// Run time in ms.
    pub duration_ms: Option<u64>,
    /// When it started, ms since the Unix epoch.
    pub started_unix_ms: Option<u64>,
    /// Attempts it took.
    pub attempts: u32,
    /// Why it ended so.
    pub reason: Option<String>,
    /// Its log.
    pub log: Option<PathBuf>,
    /// Where its result file is (`$JOBWATCH_RESULT`), written or not.
    pub result_file: Option<PathBuf>,
    /// Its result file as JSON, when it wrote valid JSON there.
    pub result: Option<serde_json::Value>,
}

impl Ended {
    /// When it ended, ms since the Unix epoch.
    pub fn ended_unix_ms(&self) -> Option<u64> {
        Some(self.started_unix_ms? + self.duration_ms?)
    }
}

/// What a job name's files say now.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// No job of that name.
    Missing,
    /// It runs.
    Running,
    /// It ended.
    Ended(Box<Ended>),
}

/// A launcher could not do what was asked; one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(pub String);

/// The four operations the executor needs from the jobs' world.
pub trait Launcher: Sync {
    /// Starts `job` as an ordinary job; returns once it runs.
    fn start(&self, job: &RunSpec) -> Result<(), LaunchError>;
    /// Blocks until at least one of `names` has ended (woken by events,
    /// not by polling); returns every one that has.
    fn wait_any(&self, names: &[JobName]) -> Result<Vec<Ended>, LaunchError>;
    /// Kills a running job, recording `killed` and `reason`; `grace`
    /// overrides the job's own grace period. Returns once it has ended.
    fn kill(
        &self,
        name: &JobName,
        reason: &str,
        grace: Option<Duration>,
    ) -> Result<(), LaunchError>;
    /// What `name`'s files say now.
    fn look(&self, name: &JobName) -> Result<Seen, LaunchError>;
}

/// Which earlier results a run does not reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rerun {
    /// Reuse every result (only killed and never-run jobs run).
    #[default]
    None,
    /// Run again the jobs that did not pass.
    Failed,
    /// Run everything again.
    All,
}

/// What became of a batch.
#[derive(Debug, Clone)]
pub struct BatchRun {
    /// Every job's result, in plan order.
    pub results: Vec<JobResult>,
    /// An interrupt stopped it.
    pub interrupted: bool,
    /// `halt` stopped it: why.
    pub halted: Option<String>,
}

/// A snapshot for live progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Jobs in the plan.
    pub total: usize,
    /// Jobs with a result.
    pub done: usize,
    /// Of those, results reused from an earlier run.
    pub resumed: usize,
    /// Of those, jobs that did not pass.
    pub failed: usize,
    /// Jobs running now (a job running its judge included).
    pub running: usize,
    /// Jobs not started yet.
    pub queued: usize,
}

/// Stops a batch from another thread (a signal handler's): marks it
/// interrupted and kills its running jobs. A job is either started before
/// the interrupt (and then killed by it) or never: starting and
/// interrupting take the same lock.
#[derive(Debug, Default)]
pub struct Stopper {
    state: Mutex<StopState>,
}

#[derive(Debug, Default)]
struct StopState {
    interrupted: bool,
    interrupts: u32,
    running: BTreeSet<JobName>,
}

impl Stopper {
    /// A stopper for one batch.
    pub fn new() -> Stopper {
        Stopper::default()
    }

    /// Interrupts the batch: kills every running job (in parallel). A
    /// second interrupt kills without a grace period.
    pub fn interrupt(&self, launcher: &dyn Launcher) {
        let (names, grace) = {
            let mut s = self.lock();
            s.interrupted = true;
            s.interrupts += 1;
            let grace = (s.interrupts > 1).then_some(Duration::ZERO);
            (s.running.iter().cloned().collect::<Vec<_>>(), grace)
        };
        std::thread::scope(|scope| {
            for name in &names {
                scope.spawn(move || {
                    if let Err(e) = launcher.kill(name, "the batch was interrupted", grace) {
                        crate::sys::stdio::warn(format_args!("cannot kill {name}: {e}"));
                    }
                });
            }
        });
    }

    /// Whether the batch was interrupted.
    pub fn is_interrupted(&self) -> bool {
        self.lock().interrupted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StopState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `start` for `name` unless interrupted, registering it as
    /// running; `None` when interrupted.
    fn start(
        &self,
        name: &JobName,
        start: impl FnOnce() -> Result<(), LaunchError>,
    ) -> Option<Result<(), LaunchError>> {
        let mut s = self.lock();
        if s.interrupted {
            return None;
        }
        let r = start();
        if r.is_ok() {
            s.running.insert(name.clone());
        }
        Some(r)
    }

    fn adopt(&self, name: &JobName) {
        self.lock().running.insert(name.clone());
    }

    fn ended(&self, name: &JobName) {
        self.lock().running.remove(name);
    }
}

/// Executing a batch failed outright (not one of its jobs).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BatchError(pub String);

/// Where one job is.
#[derive(Debug)]
enum State {
    /// Not started.
    Waiting,
    /// The job itself runs.
    Main,
    /// Its judge runs; the job ended so.
    Judge(Box<Ended>),
    /// It has a result.
    Done(Box<JobResult>),
}

/// The executor's view of a batch.
struct Batch<'a> {
    plan: &'a Plan,
    launcher: &'a dyn Launcher,
    stopper: &'a Stopper,
    source: Option<&'a Source>,
    states: Vec<State>,
    worktrees: HashMap<usize, Worktree>,
    halted: Option<String>,
    /// Failures among jobs that ended in this run (for halt).
    failures: usize,
    /// Jobs that ended in this run with a verdict (for halt's percentage).
    ended_now: usize,
}

/// Runs the plan's jobs; returns every job's result. `source` is the
/// resolved worktree source when the plan has one; `progress` is told of
/// every change.
pub fn execute(
    plan: &Plan,
    launcher: &dyn Launcher,
    stopper: &Stopper,
    source: Option<&Source>,
    rerun: Rerun,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BatchRun, BatchError> {
    let mut b = Batch {
        plan,
        launcher,
        stopper,
        source,
        states: Vec::with_capacity(plan.jobs.len()),
        worktrees: HashMap::new(),
        halted: None,
        failures: 0,
        ended_now: 0,
    };
    for job in &plan.jobs {
        let state = b.resume(job, rerun)?;
        b.states.push(state);
    }
    loop {
        b.settle_waiting();
        progress(&b.progress());
        let running = b.running_names();
        if running.is_empty() {
            break;
        }
        let ended = match launcher.wait_any(&running) {
            Ok(ended) => ended,
            Err(e) => b.ended_on_error(&running, e)?,
        };
        for e in ended {
            b.on_ended(e);
        }
        if let Some(why) = b.halt_reached() {
            b.halt(why);
        }
    }
    let results = b
        .states
        .into_iter()
        .map(|s| match s {
            State::Done(r) => *r,
            other => unreachable!("every job has a result at the end, not {other:?}"),
        })
        .collect();
    Ok(BatchRun {
        results,
        interrupted: stopper.is_interrupted(),
        halted: b.halted,
    })
}

impl Batch<'_> {
    /// The state a job starts in: a reused result, adopted as running, or
    /// waiting to run.
    fn resume(&self, job: &JobSpec, rerun: Rerun) -> Result<State, BatchError> {
        let look = |n: &JobName| {
            self.launcher
                .look(n)
                .map_err(|e| BatchError(format!("cannot look at job {n}: {e}")))
        };
        let main = match look(&job.name)? {
            Seen::Missing => return Ok(State::Waiting),
            Seen::Running => {
                self.stopper.adopt(&job.name);
                return Ok(State::Main);
            }
            Seen::Ended(e) => e,
        };
        if main.outcome == Outcome::Killed || rerun == Rerun::All {
            return Ok(State::Waiting);
        }
        let judge = match (&job.judge, main.outcome) {
            (Some(judge), Outcome::Success) => match look(&judge.name)? {
                Seen::Running => {
                    self.stopper.adopt(&judge.name);
                    return Ok(State::Judge(main));
                }
                // A judge counts only for the run it judged, and a killed
                // judge gave no verdict: run the job (and so its judge)
                // again, in a fresh worktree if it had one.
                Seen::Ended(j)
                    if j.outcome != Outcome::Killed
                        && j.started_unix_ms >= main.ended_unix_ms() =>
                {
                    Some(j)
                }
                _ => return Ok(State::Waiting),
            },
            _ => None,
        };
        let mut result = result_of(job, &main, judge.as_deref());
        result.resumed = true;
        if rerun == Rerun::Failed && result.verdict() != Verdict::Pass {
            return Ok(State::Waiting);
        }
        Ok(State::Done(Box::new(result)))
    }

    fn stopping(&self) -> bool {
        self.halted.is_some() || self.stopper.is_interrupted()
    }

    /// Skips what can no longer run and starts what can, in plan order.
    fn settle_waiting(&mut self) {
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.states.len() {
                if !matches!(self.states[i], State::Waiting) {
                    continue;
                }
                if self.stopping() {
                    let why = if self.stopper.is_interrupted() {
                        "the batch was interrupted before it started".to_owned()
                    } else {
                        format!(
                            "the batch halted before it started: {}",
                            self.halted.as_deref().unwrap_or("")
                        )
                    };
                    self.finish(i, skipped(&self.plan.jobs[i], why));
                    changed = true;
                    continue;
                }
                match self.readiness(i) {
                    Ready::Blocked => {}
                    Ready::Skip(why) => {
                        self.finish(i, skipped(&self.plan.jobs[i], why));
                        changed = true;
                    }
                    Ready::Go => {
                        if self.has_slot(i) {
                            self.start_main(i);
                            changed = true;
                        }
                    }
                }
            }
        }
    }

    fn readiness(&self, i: usize) -> Ready {
        let mut blocked = false;
        for dep in &self.plan.jobs[i].after {
            match &self.states[dep.index] {
                State::Done(r) => {
                    let v = r.verdict();
                    if dep.when == AfterCondition::Success && v != Verdict::Pass {
                        return Ready::Skip(format!(
                            "dependency {} did not pass ({})",
                            dep.name,
                            v.as_str()
                        ));
                    }
                }
                _ => blocked = true,
            }
        }
        if blocked { Ready::Blocked } else { Ready::Go }
    }

    fn is_running(&self, i: usize) -> bool {
        matches!(self.states[i], State::Main | State::Judge(_))
    }

    fn has_slot(&self, i: usize) -> bool {
        let running: Vec<usize> = (0..self.states.len())
            .filter(|&j| self.is_running(j))
            .collect();
        if running.len() >= self.plan.concurrency {
            return false;
        }
        match &self.plan.jobs[i].group {
            None => true,
            Some(g) => {
                let in_group = running
                    .iter()
                    .filter(|&&j| {
                        self.plan.jobs[j]
                            .group
                            .as_ref()
                            .is_some_and(|o| o.name == g.name)
                    })
                    .count();
                in_group < g.size
            }
        }
    }

    fn running_names(&self) -> Vec<JobName> {
        self.states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                State::Main => Some(self.plan.jobs[i].name.clone()),
                State::Judge(_) => self.plan.jobs[i].judge.as_ref().map(|j| j.name.clone()),
                _ => None,
            })
            .collect()
    }

    fn start_main(&mut self, i: usize) {
        let plan = self.plan;
        let job = &plan.jobs[i];
        let cwd = match self.workdir(i) {
            Ok(cwd) => cwd,
            Err(why) => {
                self.finish(i, skipped(job, why));
                return;
            }
        };
        let launch = RunSpec {
            breaker: job.breaker.clone(),
            ..run_spec(&job.name, &job.run, &cwd, &job.env, job.settings)
        };
        match self
            .stopper
            .start(&job.name, || self.launcher.start(&launch))
        {
            Some(Ok(())) => self.states[i] = State::Main,
            Some(Err(e)) => {
                // A wrapper that could not run the command still recorded
                // the job (failed); anything else never started.
                let result = match self.launcher.look(&job.name) {
                    Ok(Seen::Ended(ended)) if ended.outcome != Outcome::Killed => {
                        result_of(job, &ended, None)
                    }
                    _ => skipped(job, format!("not started: {e}")),
                };
                self.finish(i, result);
            }
            None => {
                self.finish(
                    i,
                    skipped(job, "the batch was interrupted before it started".into()),
                );
            }
        }
    }

    /// The job's working directory, in a new worktree if it runs in one.
    fn workdir(&mut self, i: usize) -> Result<PathBuf, String> {
        let plan = self.plan;
        let job = &plan.jobs[i];
        let base = match (job.worktree, self.source) {
            (true, Some(source)) => {
                let wt = source
                    .add(&job.name)
                    .map_err(|e| format!("not started: {e}"))?;
                let cwd = wt.cwd.clone();
                self.worktrees.insert(i, wt);
                cwd
            }
            _ => self.plan.base_dir.clone(),
        };
        Ok(match &job.cwd {
            Some(c) => base.join(c),
            None => base,
        })
    }

    fn on_ended(&mut self, e: Ended) {
        let Some(i) = self.index_of_running(&e.name) else {
            return;
        };
        self.stopper.ended(&e.name);
        let plan = self.plan;
        let job = &plan.jobs[i];
        match std::mem::replace(&mut self.states[i], State::Waiting) {
            State::Main => match &job.judge {
                Some(judge) if e.outcome == Outcome::Success => {
                    let settings = Settings {
                        retries: 0,
                        ..job.settings
                    };
                    let dir = self.judge_dir(i, &e);
                    let env = judge_env(job, &e);
                    let launch = run_spec(&judge.name, &judge.run, &dir, &env, settings);
                    match self
                        .stopper
                        .start(&judge.name, || self.launcher.start(&launch))
                    {
                        Some(Ok(())) => self.states[i] = State::Judge(Box::new(e)),
                        Some(Err(err)) => {
                            let mut r = result_of(job, &e, None);
                            r.judge = Some(JudgeResult {
                                outcome: Outcome::Failed,
                                exit_code: None,
                            });
                            r.reason = Some(format!("the judge did not start: {err}"));
                            self.finish(i, r);
                        }
                        None => {
                            let mut r = result_of(job, &e, None);
                            r.judge = Some(JudgeResult {
                                outcome: Outcome::Killed,
                                exit_code: None,
                            });
                            r.reason = Some("interrupted before the judge ran".into());
                            self.finish(i, r);
                        }
                    }
                }
                _ => {
                    let r = result_of(job, &e, None);
                    self.finish(i, r);
                }
            },
            State::Judge(main) => {
                let r = result_of(job, &main, Some(&e));
                self.finish(i, r);
            }
            other => self.states[i] = other,
        }
    }

    /// The judge runs where its job ran.
    fn judge_dir(&self, i: usize, _main: &Ended) -> PathBuf {
        let job = &self.plan.jobs[i];
        let base = self
            .worktrees
            .get(&i)
            .map_or_else(|| self.plan.base_dir.clone(), |wt| wt.cwd.clone());
        match &job.cwd {
            Some(c) => base.join(c),
            None => base,
        }
    }

    fn index_of_running(&self, name: &JobName) -> Option<usize> {
        (0..self.states.len()).find(|&i| match &self.states[i] {
            State::Main => &self.plan.jobs[i].name == name,
            State::Judge(_) => self.plan.jobs[i]
                .judge
                .as_ref()
                .is_some_and(|j| &j.name == name),
            _ => false,
        })
    }

    /// Records a job's result: its worktree goes (or stays), halt counts.
    fn finish(&mut self, i: usize, mut result: JobResult) {
        let verdict = result.verdict();
        if let Some(wt) = self.worktrees.remove(&i) {
            let keep = match self.plan.worktree.as_ref().map_or(Keep::None, |w| w.keep) {
                Keep::All => true,
                Keep::Failed => verdict.counts_as_failure(),
                Keep::None => false,
            };
            if keep {
                result.worktree = Some(wt.path.display().to_string());
            } else if let Some(source) = self.source
                && let Err(e) = source.remove(&wt)
            {
                crate::sys::stdio::warn(format_args!("{}: {e}", result.name));
            }
        }
        if !result.resumed && verdict != Verdict::Skipped && verdict != Verdict::Killed {
            self.ended_now += 1;
            if verdict.counts_as_failure() {
                self.failures += 1;
            }
        }
        self.states[i] = State::Done(Box::new(result));
    }

    /// Why `halt` stops the batch now, if it does.
    fn halt_reached(&self) -> Option<String> {
        let halt = self.plan.halt?;
        if self.halted.is_some() {
            return None;
        }
        match halt.fail {
            HaltLimit::Count(n) if self.failures >= n as usize => {
                Some(format!("{} job(s) failed; halt.fail is {n}", self.failures))
            }
            HaltLimit::Percent(p)
                if self.ended_now >= HALT_PERCENT_MIN_DONE
                    && self.failures * 100 >= p as usize * self.ended_now =>
            {
                Some(format!(
                    "{} of {} jobs failed; halt.fail is {p}%",
                    self.failures, self.ended_now
                ))
            }
            _ => None,
        }
    }

    fn halt(&mut self, why: String) {
        let now = self.plan.halt.is_some_and(|h| h.when == HaltWhen::Now);
        self.halted = Some(why.clone());
        if now {
            let reason = format!("the batch halted: {why}");
            let launcher = self.launcher;
            let names = self.running_names();
            std::thread::scope(|scope| {
                for name in &names {
                    let reason = &reason;
                    scope.spawn(move || {
                        if let Err(e) = launcher.kill(name, reason, None) {
                            crate::sys::stdio::warn(format_args!("cannot kill {name}: {e}"));
                        }
                    });
                }
            });
        }
    }

    /// After a failed wait: the running jobs that cannot be looked at are
    /// recorded `lost` with the error; if none can be blamed, the batch
    /// stops with it.
    fn ended_on_error(
        &mut self,
        running: &[JobName],
        e: LaunchError,
    ) -> Result<Vec<Ended>, BatchError> {
        let mut ended = Vec::new();
        for name in running {
            match self.launcher.look(name) {
                Ok(Seen::Running) => {}
                Ok(Seen::Ended(done)) => ended.push(*done),
                Ok(Seen::Missing) | Err(_) => ended.push(Ended {
                    name: name.clone(),
                    outcome: Outcome::Lost,
                    exit_code: None,
                    duration_ms: None,
                    started_unix_ms: None,
                    attempts: 1,
                    reason: Some(format!("cannot follow the job: {e}")),
                    log: None,
                    result_file: None,
                    result: None,
                }),
            }
        }
        if ended.is_empty() {
            return Err(BatchError(format!(
                "waiting for the batch's jobs failed: {e}"
            )));
        }
        Ok(ended)
    }

    fn progress(&self) -> Progress {
        let mut p = Progress {
            total: self.states.len(),
            ..Progress::default()
        };
        for s in &self.states {
            match s {
                State::Waiting => p.queued += 1,
                State::Main | State::Judge(_) => p.running += 1,
                State::Done(r) => {
                    p.done += 1;
                    p.resumed += usize::from(r.resumed);
                    p.failed += usize::from(r.verdict() != Verdict::Pass);
                }
            }
        }
        p
    }
}

enum Ready {
    Go,
    Blocked,
    Skip(String),
}

/// The run spec of a batch job (or judge): its command in `cwd` (made
/// absolute where the batch stands), with `env` added.
fn run_spec(
    name: &JobName,
    command: &[String],
    cwd: &Path,
    env: &[(String, String)],
    settings: Settings,
) -> RunSpec {
    RunSpec {
        env: env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        settings,
        ..RunSpec::new(
            name.clone(),
            command.iter().map(Into::into).collect(),
            crate::spec::absolute(cwd),
        )
    }
}

/// What the judge is told about the job it judges, besides the job's own
/// environment.
fn judge_env(job: &JobSpec, main: &Ended) -> Vec<(String, String)> {
    let mut env = job.env.clone();
    env.push(("JOBWATCH_JUDGED_NAME".into(), job.name.to_string()));
    if let Some(log) = &main.log {
        env.push(("JOBWATCH_JUDGED_LOG".into(), log.display().to_string()));
    }
    if let Some(result) = &main.result_file {
        env.push((
            "JOBWATCH_JUDGED_RESULT".into(),
            result.display().to_string(),
        ));
    }
    env
}

/// A job's result from how it (and its judge) ended.
fn result_of(job: &JobSpec, main: &Ended, judge: Option<&Ended>) -> JobResult {
    let judge = judge.map(|j| JudgeResult {
        outcome: j.outcome,
        exit_code: j.exit_code,
    });
    let reason = main.reason.clone();
    JobResult {
        name: job.name.to_string(),
        key: job.key.clone(),
        cell: job.cell.clone(),
        repeat: job.repeat,
        outcome: main.outcome.into(),
        exit_code: main.exit_code,
        duration_ms: main.duration_ms,
        judge,
        cost: job
            .cost
            .as_ref()
            .and_then(|c| main.result.as_ref().and_then(|r| c.read(r))),
        attempts: main.attempts,
        reason,
        log: main.log.as_ref().map(|l| l.display().to_string()),
        worktree: None,
        resumed: false,
    }
}

fn skipped(job: &JobSpec, why: String) -> JobResult {
    JobResult {
        name: job.name.to_string(),
        key: job.key.clone(),
        cell: job.cell.clone(),
        repeat: job.repeat,
        outcome: JobOutcome::Skipped,
        exit_code: None,
        duration_ms: None,
        judge: None,
        cost: None,
        attempts: 0,
        reason: Some(why),
        log: None,
        worktree: None,
        resumed: false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::path::Path;

    use super::*;

    /// How a fake job ends: outcome, exit code, duration, result JSON.
    type Script = HashMap<String, (Outcome, Option<serde_json::Value>)>;

    /// An in-memory launcher: jobs end in the order they started, each as
    /// its script says (success by default); it records what ran and the
    /// most that ran at once, per group prefix too.
    #[derive(Default)]
    struct Fake {
        script: Script,
        inner: Mutex<FakeState>,
        /// A clock: every job ends later than the one before.
        clock: std::sync::atomic::AtomicU64,
    }

    #[derive(Default)]
    struct FakeState {
        running: VecDeque<JobName>,
        started: Vec<RunSpec>,
        killed: Vec<String>,
        max_running: usize,
        files: HashMap<JobName, Seen>,
    }

    impl Fake {
        fn new(script: &[(&str, Outcome)]) -> Fake {
            Fake {
                script: script
                    .iter()
                    .map(|(n, o)| (n.to_string(), (*o, None)))
                    .collect(),
                ..Fake::default()
            }
        }
        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.inner.lock().unwrap()
        }
        fn started(&self) -> Vec<String> {
            self.state()
                .started
                .iter()
                .map(|l| l.name.to_string())
                .collect()
        }
        fn ended(&self, name: &JobName, outcome: Outcome) -> Ended {
            Ended {
                name: name.clone(),
                outcome,
                exit_code: match outcome {
                    Outcome::Success => Some(0),
                    Outcome::Failed => Some(1),
                    _ => None,
                },
                duration_ms: Some(10),
                started_unix_ms: Some(
                    self.clock
                        .fetch_add(100, std::sync::atomic::Ordering::SeqCst),
                ),
                attempts: 1,
                reason: None,
                log: None,
                result_file: None,
                result: self.script.get(name.as_str()).and_then(|(_, r)| r.clone()),
            }
        }
    }

    impl Launcher for Fake {
        fn start(&self, job: &RunSpec) -> Result<(), LaunchError> {
            if job.name.as_str().starts_with("refused") {
                return Err(LaunchError("breaker open".into()));
            }
            let mut s = self.state();
            s.running.push_back(job.name.clone());
            s.max_running = s.max_running.max(s.running.len());
            s.started.push(job.clone());
            s.files.insert(job.name.clone(), Seen::Running);
            Ok(())
        }
        fn wait_any(&self, names: &[JobName]) -> Result<Vec<Ended>, LaunchError> {
            let mut s = self.state();
            let i = s
                .running
                .iter()
                .position(|n| names.contains(n))
                .expect("waiting on a running job");
            let name = s.running.remove(i).unwrap();
            let outcome = if s.killed.contains(&name.to_string()) {
                Outcome::Killed
            } else {
                self.script
                    .get(name.as_str())
                    .map_or(Outcome::Success, |(o, _)| *o)
            };
            let e = self.ended(&name, outcome);
            s.files.insert(name, Seen::Ended(Box::new(e.clone())));
            Ok(vec![e])
        }
        fn kill(&self, name: &JobName, _: &str, _: Option<Duration>) -> Result<(), LaunchError> {
            self.state().killed.push(name.to_string());
            Ok(())
        }
        fn look(&self, name: &JobName) -> Result<Seen, LaunchError> {
            Ok(self
                .state()
                .files
                .get(name)
                .cloned()
                .unwrap_or(Seen::Missing))
        }
    }

    fn plan(text: &str) -> Plan {
        Plan::parse(text, Path::new("plan.yaml"), Path::new("/base")).unwrap()
    }

    fn run(p: &Plan, fake: &Fake, rerun: Rerun) -> BatchRun {
        execute(p, fake, &Stopper::new(), None, rerun, &mut |_| {}).unwrap()
    }

    fn verdicts(r: &BatchRun) -> Vec<(String, &'static str)> {
        r.results
            .iter()
            .map(|j| (j.name.clone(), j.verdict().as_str()))
            .collect()
    }

    #[test]
    fn concurrency_bounds_the_jobs_running_at_once() {
        let p = plan("concurrency: 3\nrepeat: 10\njobs:\n  a: {run: [\"{repeat}\"]}\n");
        let fake = Fake::new(&[]);
        let r = run(&p, &fake, Rerun::None);
        assert_eq!(fake.state().max_running, 3);
        assert_eq!(r.results.len(), 10);
        assert!(r.results.iter().all(|j| j.verdict() == Verdict::Pass));
        assert_eq!(fake.started().len(), 10);
    }

    #[test]
    fn a_group_bounds_its_own_jobs_within_the_concurrency() {
        let p = plan(
            "concurrency: 8\nrepeat: 6\njobs:\n  \
             gpu: {run: [\"{repeat}\"], group: \"gpu:2\"}\n  \
             cpu: {run: [\"{repeat}\"]}\n",
        );
        let fake = Fake::new(&[]);
        // Track the most gpu jobs running at once.
        let mut max_gpu = 0;
        let r = execute(&p, &fake, &Stopper::new(), None, Rerun::None, &mut |_| {
            let s = fake.state();
            let gpu = s
                .running
                .iter()
                .filter(|n| n.as_str().starts_with("gpu"))
                .count();
            max_gpu = max_gpu.max(gpu);
        })
        .unwrap();
        assert_eq!(max_gpu, 2);
        assert_eq!(fake.state().max_running, 8, "cpu jobs fill the other slots");
        assert_eq!(r.results.len(), 12);
    }

    #[test]
    fn dependencies_run_first_and_a_failed_one_skips_its_dependents() {
        let p = plan(
            "matrix: {t: [x, y]}\njobs:\n  \
             build: {run: [\"{t}\"]}\n  \
             test: {run: [\"{t}\"], after: [build]}\n  \
             report: {run: [r], after: [\"test:done\"]}\n",
        );
        let fake = Fake::new(&[("build-y", Outcome::Failed)]);
        let r = run(&p, &fake, Rerun::None);
        assert_eq!(
            verdicts(&r),
            [
                ("build-x".into(), "pass"),
                ("build-y".into(), "fail"),
                ("test-x".into(), "pass"),
                ("test-y".into(), "skipped"),
                ("report".into(), "pass"),
            ]
        );
        let started = fake.started();
        let pos = |n: &str| started.iter().position(|s| s == n);
        assert!(pos("build-x") < pos("test-x"));
        assert_eq!(pos("test-y"), None);
        assert_eq!(
            started.last().map(String::as_str),
            Some("report"),
            "done: runs after a skip"
        );
        assert_eq!(
            r.results[3].reason.as_deref(),
            Some("dependency build-y did not pass (fail)")
        );
        assert_eq!(r.results[3].outcome, JobOutcome::Skipped);
    }

    #[test]
    fn the_judge_runs_after_success_only_and_decides_the_verdict() {
        let p = plan(
            "matrix: {t: [a, b, c]}\njobs:\n  \
             solve: {run: [\"{t}\"], judge: [check, \"{t}\"], cost: usage.usd, env: {K: v}}\n",
        );
        let mut fake = Fake::new(&[
            ("solve-b.judge", Outcome::Failed),
            ("solve-c", Outcome::Failed),
        ]);
        fake.script.insert(
            "solve-a".into(),
            (
                Outcome::Success,
                Some(serde_json::json!({"usage": {"usd": 0.25}})),
            ),
        );
        let r = run(&p, &fake, Rerun::None);
        assert_eq!(
            verdicts(&r),
            [
                ("solve-a".into(), "pass"),
                ("solve-b".into(), "fail"),
                ("solve-c".into(), "fail")
            ]
        );
        assert_eq!(r.results[0].cost, Some(0.25));
        assert_eq!(r.results[1].cost, None);
        assert_eq!(
            r.results[1].judge.as_ref().unwrap().outcome,
            Outcome::Failed
        );
        assert!(r.results[2].judge.is_none(), "no judge after a failure");
        let started = fake.started();
        assert!(!started.contains(&"solve-c.judge".to_string()));
        let judge = fake
            .state()
            .started
            .iter()
            .find(|l| l.name.as_str() == "solve-a.judge")
            .cloned()
            .unwrap();
        assert_eq!(judge.command, ["check", "a"]);
        assert_eq!(judge.cwd, Path::new("/base"));
        assert!(judge.env.contains(&("K".into(), "v".into())));
        assert!(
            judge
                .env
                .contains(&("JOBWATCH_JUDGED_NAME".into(), "solve-a".into()))
        );
    }

    #[test]
    fn halt_soon_starts_nothing_more_after_the_limit() {
        let p =
            plan("concurrency: 1\nrepeat: 5\nhalt: {fail: 2}\njobs:\n  a: {run: [\"{repeat}\"]}\n");
        let fake = Fake::new(&[("a-1", Outcome::Failed), ("a-2", Outcome::Hung)]);
        let r = run(&p, &fake, Rerun::None);
        assert_eq!(fake.started(), ["a-1", "a-2"]);
        assert_eq!(
            verdicts(&r).iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            ["fail", "hung", "skipped", "skipped", "skipped"]
        );
        assert_eq!(r.halted.as_deref(), Some("2 job(s) failed; halt.fail is 2"));
        assert!(r.results[2].reason.as_deref().unwrap().contains("halted"));
    }

    #[test]
    fn halt_now_kills_the_running_jobs() {
        let p = plan(
            "concurrency: 3\nrepeat: 5\nhalt: {fail: 1, when: now}\njobs:\n  a: {run: [\"{repeat}\"]}\n",
        );
        let fake = Fake::new(&[("a-1", Outcome::Failed)]);
        let r = run(&p, &fake, Rerun::None);
        let mut killed = fake.state().killed.clone();
        killed.sort();
        assert_eq!(killed, ["a-2", "a-3"]);
        assert_eq!(
            verdicts(&r).iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            ["fail", "killed", "killed", "skipped", "skipped"]
        );
    }

    #[test]
    fn halt_by_percentage_waits_for_enough_jobs() {
        let p = plan(
            "concurrency: 1\nrepeat: 6\nhalt: {fail: 50%}\njobs:\n  a: {run: [\"{repeat}\"]}\n",
        );
        // 1 of 1, 1 of 2 are 50% or more, but fewer than 3 jobs ended;
        // 2 of 3 is.
        let fake = Fake::new(&[("a-1", Outcome::Failed), ("a-3", Outcome::Failed)]);
        let r = run(&p, &fake, Rerun::None);
        assert_eq!(fake.started(), ["a-1", "a-2", "a-3"]);
        assert_eq!(
            r.halted.as_deref(),
            Some("2 of 3 jobs failed; halt.fail is 50%")
        );
    }

    #[test]
    fn resume_reuses_finished_jobs_and_rerun_failed_runs_the_rest() {
        let p = plan("repeat: 4\njobs:\n  a: {run: [\"{repeat}\"], judge: [j]}\n");
        let fake = Fake::new(&[("a-2", Outcome::Failed), ("a-3.judge", Outcome::Failed)]);
        let first = run(&p, &fake, Rerun::None);
        assert_eq!(
            verdicts(&first).iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            ["pass", "fail", "fail", "pass"]
        );
        fake.state().started.clear();
        // a-4 was killed since: it runs again even without --rerun.
        let a4 = JobName::parse("a-4").unwrap();
        let killed = fake.ended(&a4, Outcome::Killed);
        fake.state().files.insert(a4, Seen::Ended(Box::new(killed)));
        let again = run(&p, &fake, Rerun::None);
        assert_eq!(fake.started(), ["a-4", "a-4.judge"]);
        assert!(again.results[..3].iter().all(|r| r.resumed));
        assert_eq!(verdicts(&again), verdicts(&first));

        fake.state().started.clear();
        let failed = run(&p, &fake, Rerun::Failed);
        assert_eq!(fake.started(), ["a-2", "a-3", "a-3.judge"]);
        assert!(failed.results[0].resumed && !failed.results[1].resumed);

        fake.state().started.clear();
        run(&p, &fake, Rerun::All);
        assert_eq!(fake.started().len(), 4 + 3, "a-2 fails: no judge");
    }

    #[test]
    fn resume_adopts_a_job_still_running() {
        let p = plan("jobs:\n  a: {run: [x]}\n  b: {run: [y], after: [a]}\n");
        let fake = Fake::new(&[]);
        let a = JobName::parse("a").unwrap();
        fake.state().files.insert(a.clone(), Seen::Running);
        fake.state().running.push_back(a);
        let r = run(&p, &fake, Rerun::None);
        assert_eq!(fake.started(), ["b"], "a is waited for, not started again");
        assert_eq!(verdicts(&r), [("a".into(), "pass"), ("b".into(), "pass")]);
    }

    #[test]
    fn an_interrupt_kills_what_runs_and_skips_the_rest() {
        let p = plan("concurrency: 2\nrepeat: 4\njobs:\n  a: {run: [\"{repeat}\"]}\n");
        let fake = Fake::new(&[]);
        let stopper = Stopper::new();
        let mut interrupted = false;
        let r = execute(&p, &fake, &stopper, None, Rerun::None, &mut |pr| {
            if pr.running == 2 && !interrupted {
                interrupted = true;
                stopper.interrupt(&fake);
            }
        })
        .unwrap();
        assert!(r.interrupted);
        let mut killed = fake.state().killed.clone();
        killed.sort();
        assert_eq!(killed, ["a-1", "a-2"]);
        assert_eq!(
            verdicts(&r).iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            ["killed", "killed", "skipped", "skipped"]
        );
        assert_eq!(fake.started(), ["a-1", "a-2"]);
    }

    #[test]
    fn a_refused_start_is_a_skip_with_the_reason() {
        let p = plan("jobs:\n  refused: {run: [x]}\n  next: {run: [y], after: [refused]}\n");
        let fake = Fake::new(&[]);
        let r = run(&p, &fake, Rerun::None);
        assert_eq!(
            verdicts(&r),
            [("refused".into(), "skipped"), ("next".into(), "skipped")]
        );
        assert_eq!(
            r.results[0].reason.as_deref(),
            Some("not started: breaker open")
        );
    }

    #[test]
    fn progress_counts_add_up() {
        let p = plan("concurrency: 2\nrepeat: 3\njobs:\n  a: {run: [\"{repeat}\"]}\n");
        let fake = Fake::new(&[("a-1", Outcome::Failed)]);
        let mut seen = Vec::new();
        execute(&p, &fake, &Stopper::new(), None, Rerun::None, &mut |pr| {
            seen.push(*pr)
        })
        .unwrap();
        assert!(seen.iter().all(|pr| pr.done + pr.running + pr.queued == 3));
        assert_eq!(
            seen[0],
            Progress {
                total: 3,
                running: 2,
                queued: 1,
                ..Progress::default()
            }
        );
        let last = seen.last().unwrap();
        assert_eq!((last.done, last.failed, last.running), (3, 1, 0));
    }
}
