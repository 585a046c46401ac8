//! `wait` over MCP: the library's waiter run on a blocking thread in slices
//! no longer than the server's cap, with progress reported while it blocks.
//!
//! A plain tool call waits one slice and answers `running` if the jobs are
//! still at work. A task-augmented call (a client that declared the tasks
//! extension) waits slice after slice until the outcome, the caller's own
//! timeout, or `tasks/cancel`, keeping the task's status message current.
//! Neither ever kills a job: the job's own `timeout` and `stale` do that.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use super::shape;
use super::tools::{self, DEFAULT_WAIT_TAIL, ToolError, WaitParams};
use jobwatch_core::model::JobName;
use jobwatch_core::ops::{
    self,
    wait::{WaitAnswer, WaitRequest},
};
use jobwatch_core::report::{Progress, human_ms};
use jobwatch_core::store::Store;
use jobwatch_core::wait::{WaitError, WaitMode, WaitSpec};

/// A checked `wait` request.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The jobs.
    pub names: Vec<JobName>,
    /// All or any.
    pub mode: WaitMode,
    /// The caller's own limit, if it gave one.
    pub timeout: Option<Duration>,
    /// Log lines on anything but success.
    pub tail: usize,
    /// Return when a line of the (one) job's log matches.
    pub until_log: Option<Regex>,
}

impl Plan {
    /// Checks the parameters of `wait`.
    pub fn new(p: &WaitParams) -> Result<Self, ToolError> {
        let timeout = p
            .timeout
            .as_deref()
            .map(|t| jobwatch_core::spec::duration(t).map_err(|e| format!("timeout: {e}")))
            .transpose()?;
        let names = tools::names(&p.names)?;
        let until_log = match &p.until_log {
            Some(re) => Some(Regex::new(re).map_err(|e| {
                let first = e.to_string();
                let first = first.lines().last().unwrap_or("invalid").trim().to_owned();
                format!("until_log: invalid regex {re:?}: {first}")
            })?),
            None => None,
        };
        let plan = Self {
            names,
            mode: p.mode.unwrap_or_default(),
            timeout,
            tail: p.tail.map_or(DEFAULT_WAIT_TAIL, |n| n as usize),
            until_log,
        };
        // The core's rules, before any wait (a task's too).
        plan.request(Duration::ZERO).check().map_err(wait_error)?;
        Ok(plan)
    }

    /// The wait for one slice of `limit`: never killing when it passes,
    /// never forking a helper (this process lives on).
    fn request(&self, limit: Duration) -> WaitRequest {
        WaitRequest {
            spec: WaitSpec {
                names: self.names.clone(),
                mode: self.mode,
                timeout: Some(limit),
                stale: None,
                poll: None,
                kill_on_timeout: false,
                grace: None,
                exits_after: false,
            },
            tail: self.tail.min(shape::MAX_TAIL_LINES),
            until_log: self.until_log.clone(),
        }
    }
}

/// What one slice of waiting found.
#[derive(Debug)]
pub struct Slice {
    /// The answer: one line per job.
    pub text: String,
    /// Whether the wait is over (an outcome, not `running`).
    pub settled: bool,
}

/// Waits at most `limit` on a blocking thread.
pub async fn wait_slice(
    dir: &Arc<dyn Store>,
    plan: &Plan,
    limit: Duration,
) -> Result<Slice, ToolError> {
    let dir = dir.clone();
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || {
        let answer = ops::wait::wait(&*dir, &plan.request(limit)).map_err(wait_error)?;
        let text = match &answer {
            WaitAnswer::Matched(m) => shape::line(&shape::matched(m)),
            WaitAnswer::Reports { reports, .. } => {
                shape::lines(reports.iter().map(|r| shape::report_line(&*dir, r)))
            }
        };
        Ok(Slice {
            text,
            settled: answer.settled(),
        })
    })
    .await
    .map_err(|e| format!("internal error: {e}"))?
}

/// A waiting error in the tool's words (`until_log` names its parameter).
fn wait_error(e: WaitError) -> ToolError {
    match e {
        WaitError::UntilLogNames(n) => {
            format!("until_log reads one job's log, but {n} names were given")
        }
        other => other.to_string(),
    }
}

/// Waits until the jobs settle, `plan.timeout` passes or `cancelled`
/// resolves (then `None`), in slices of at most `cap`.
pub async fn wait_until_settled(
    dir: &Arc<dyn Store>,
    plan: &Plan,
    cap: Duration,
    cancelled: impl Future<Output = ()>,
) -> Option<Result<String, ToolError>> {
    let started = Instant::now();
    let slices = async {
        loop {
            let left = plan.timeout.map(|t| t.saturating_sub(started.elapsed()));
            let limit = left.map_or(cap, |l| l.min(cap));
            match wait_slice(dir, plan, limit).await {
                Ok(s) if s.settled || left.is_some_and(|l| l <= limit) => return Ok(s.text),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    };
    tokio::select! {
        answer = slices => Some(answer),
        // A slice still blocking ends by itself at the cap; nobody reads it.
        _ = cancelled => None,
    }
}

/// A future that never ends (its output type has no value): raced against
/// a wait, which it outlives.
pub type Forever = Pin<Box<dyn Future<Output = Infallible> + Send>>;

/// Calls `report(message, elapsed)` every `every`, forever: the message
/// names each job still running with its run time and last log line.
pub fn report_progress<F>(
    dir: &Arc<dyn Store>,
    names: &[JobName],
    every: Duration,
    report: F,
) -> Forever
where
    F: Fn(String, Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static,
{
    let dir = dir.clone();
    let names = names.to_vec();
    Box::pin(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let (dir, names) = (dir.clone(), names.clone());
            let message = tokio::task::spawn_blocking(move || progress_message(&*dir, &names))
                .await
                .unwrap_or_default();
            report(message, started.elapsed()).await;
        }
    })
}

/// One line on the jobs still running: name, run time, last log line.
pub fn progress_message(store: &dyn Store, names: &[JobName]) -> String {
    let parts: Vec<String> = names
        .iter()
        .filter(|n| Progress::is_pending(store, n))
        .map(|n| Progress::read(store, n, store.now()))
        .map(|r| {
            let elapsed = r.elapsed_ms.map(human_ms).unwrap_or_default();
            match r.last_line {
                Some(l) => format!("{}: running {elapsed}, last: {l}", r.name),
                None => format!("{}: running {elapsed}", r.name),
            }
        })
        .collect();
    shape::cut(&parts.join("; "), 300)
}
