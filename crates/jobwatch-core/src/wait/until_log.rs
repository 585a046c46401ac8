//! `wait --until-log`: return as soon as a line of a run's log matches a
//! regex, or with the run's real outcome if it ends first.
//!
//! The log is read from byte 0 of the bound run's log (a marker printed
//! before the wait began counts), then only its new bytes, as log writes
//! wake the waiter. The job's state is re-read only when a state file
//! changes (or at the usual safety recheck), so a chatty log costs a read
//! of its new bytes per wake-up and nothing more.

use std::time::Instant;

use regex::Regex;

use super::bound::{Located, Look, LookSchedule, locate, own_verdict};
use super::{Step, Verdict, WaitError, WaitSpec, bound_step, time_out};
use crate::classify::{JobState, classify};
use crate::logs::{LineMatcher, LogFollower};
use crate::model::{JobName, JobRecord};
use crate::recover::RecoverError;
use crate::store::{RunAt, Store, Wake, WatchFor};

/// A line of the bound run's log matched.
#[derive(Debug, Clone)]
pub struct LogMatch {
    /// The job.
    pub name: JobName,
    /// Which run: the current one, or one archived meanwhile.
    pub at: RunAt,
    /// The first matching line, cut to [`crate::report::MAX_TAIL_LINE`].
    pub line: String,
    /// Whether the run was still going when the line was found.
    pub running: bool,
    /// The run's final record, when it had ended.
    pub record: Option<JobRecord>,
}

/// How `wait --until-log` ended.
#[derive(Debug, Clone)]
pub enum LogWait {
    /// A line matched.
    Matched(LogMatch),
    /// The run ended (or the wait timed out) without a matching line.
    Ended(Verdict),
}

/// Waits until a line of the log of the one job in `spec.names` matches
/// `pattern`, or the job reaches an outcome; `spec` applies as for
/// [`super::wait`] (timeout, stale, poll, kills, grace). The wait is bound
/// to the run current when it begins: a line of an earlier run's log never
/// matches, and if the name is restarted meanwhile the bound run's own
/// outcome is returned.
pub fn wait_until_log(
    store: &dyn Store,
    spec: &WaitSpec,
    pattern: &Regex,
) -> Result<LogWait, WaitError> {
    let [name] = spec.names.as_slice() else {
        return Err(WaitError::UntilLogNames(spec.names.len()));
    };
    let watch = store.watch(
        &spec.names,
        WatchFor {
            log_writes: true,
            poll: spec.poll,
            exits_after: spec.exits_after,
            ..WatchFor::default()
        },
    );
    let mut log = LogFollower::new(store, name);
    let mut lines = LineMatcher::new(pattern.clone());
    // A limit too far away for the clock never comes.
    let deadline = spec.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut first_pass = true;
    let mut schedule = LookSchedule::new();
    let mut wake = Wake::State;
    loop {
        // The log before the state: a line written before the job ended
        // counts even when the end is seen in the same look.
        scan(store, name, &mut log, &mut lines)?;
        if let Some(line) = lines.found() {
            return Ok(LogWait::Matched(matched(store, name, &mut log, line)));
        }
        if schedule.due(wake) {
            match look(store, name, spec, first_pass, &mut log)? {
                Look::Ended(v) => return finish(store, name, &mut log, &mut lines, *v),
                Look::Pending(recheck_in) => schedule.pending(recheck_in),
                Look::Vanished if schedule.vanished() => {}
                Look::Vanished => return Err(RecoverError::Missing(name.to_string()).into()),
            }
            first_pass = false;
        }
        let mut sleep = schedule.until_next();
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return timed_out(store, name, spec, &mut log, &mut lines);
            }
            sleep = sleep.min(left);
        }
        wake = watch.wait(sleep);
    }
}

/// Looks at the bound run once and acts on it as a plain wait does.
fn look(
    store: &dyn Store,
    name: &JobName,
    spec: &WaitSpec,
    first_pass: bool,
    log: &mut LogFollower<'_>,
) -> Result<Look, RecoverError> {
    Ok(match bound_step(store, name, spec, first_pass, log)? {
        Step::Done(v) => Look::Ended(v),
        Step::Pending { recheck_in } => Look::Pending(recheck_in),
        Step::Vanished => Look::Vanished,
    })
}

/// Reads what is new in the log into the matcher.
fn scan(
    store: &dyn Store,
    name: &JobName,
    log: &mut LogFollower<'_>,
    lines: &mut LineMatcher,
) -> Result<(), WaitError> {
    while lines.found().is_none() {
        match log.next_chunk() {
            Ok(Some(chunk)) => lines.take(chunk),
            Ok(None) => break,
            Err(source) => {
                return Err(WaitError::Log {
                    path: store.log_path(name, &RunAt::Current).display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// The run ended: its log is complete, and its last line counts even
/// without a newline.
fn finish(
    store: &dyn Store,
    name: &JobName,
    log: &mut LogFollower<'_>,
    lines: &mut LineMatcher,
    v: Verdict,
) -> Result<LogWait, WaitError> {
    scan(store, name, log, lines)?;
    lines.finish();
    Ok(match lines.found() {
        Some(line) => LogWait::Matched(LogMatch {
            name: v.name,
            at: v.at,
            line: line.to_owned(),
            running: v.running,
            record: v.record,
        }),
        None => LogWait::Ended(v),
    })
}

/// The waiter's own limit passed: a line that arrived at the last moment
/// still counts; else the job is timed out as by a plain wait.
fn timed_out(
    store: &dyn Store,
    name: &JobName,
    spec: &WaitSpec,
    log: &mut LogFollower<'_>,
    lines: &mut LineMatcher,
) -> Result<LogWait, WaitError> {
    scan(store, name, log, lines)?;
    if let Some(line) = lines.found() {
        return Ok(LogWait::Matched(matched(store, name, log, line)));
    }
    if let Located::Archived(v) = locate(store, name, log) {
        return Ok(LogWait::Ended(*v));
    }
    let runs = [log.run().map(str::to_owned)];
    let verdict = time_out(store, std::slice::from_ref(name), vec![None], &runs, spec)?;
    Ok(LogWait::Ended(
        verdict
            .into_iter()
            .next()
            .expect("time_out gives one verdict per job"),
    ))
}

/// The match report, with whether the run still goes (read, not acted on).
fn matched(store: &dyn Store, name: &JobName, log: &mut LogFollower<'_>, line: &str) -> LogMatch {
    let ended = |v: Verdict| LogMatch {
        name: v.name,
        at: v.at,
        line: line.to_owned(),
        running: false,
        record: v.record,
    };
    if let Located::Archived(v) = locate(store, name, log) {
        return ended(*v);
    }
    match classify(store.snapshot(name), store.now(), None) {
        JobState::Finished { outcome, record } => {
            let v = Verdict::ended(name, RunAt::Current, outcome, record.map(|r| *r));
            match own_verdict(store, log, v) {
                Some(v) => ended(v),
                None => still_running(name, line),
            }
        }
        _ => still_running(name, line),
    }
}

fn still_running(name: &JobName, line: &str) -> LogMatch {
    LogMatch {
        name: name.clone(),
        at: RunAt::Current,
        line: line.to_owned(),
        running: true,
        record: None,
    }
}
