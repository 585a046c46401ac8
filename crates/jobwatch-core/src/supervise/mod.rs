//! The wrapper: claims a job name, starts the command in its own process
//! group with its output going straight to `NAME.log`, keeps the heartbeat
//! honest, enforces the time limit and the stale threshold itself, forwards
//! signals, and writes the final record and status.
//!
//! Theory of operation: [`start`] does everything up to a running command
//! whose files exist (so a detached caller may return); [`Supervisor::run_to_end`]
//! is an event loop that sleeps on a self-pipe fed by SIGCHLD/TERM/INT/HUP
//! and wakes at the next heartbeat sample, stale deadline or time limit.
//! The command is not reaped until its leftovers are killed, so its PID and
//! process-group id stay reserved for every signal the wrapper sends.

mod tee;

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use crate::breaker::{self, Admission, BreakerError, BreakerSpec, BreakerView, RunRef};
use crate::classify::{JobState, classify};
use crate::kill::{DETACHED_WRAPPER_ENV, JOB_ID_ENV, JobTarget, escalate_after, terminate};
use crate::liveness::{Observation, ProgressTracker};
use crate::model::{Attempt, JobEnd, JobName, JobRecord, Outcome, Settings};
use crate::model::{Finalizer, KillRequest, RECORD_VERSION, archive_label, rfc3339, unix_ms};
use crate::recover::finish_lost;
use crate::retry;
use crate::store::{Claim, ClaimError, ClaimWait, Hold, Holder, RunAt, Store, StoreError};
use crate::sys::child::{ExitStatus, SignalPipe, become_subreaper, peek_exit, reap, reap_orphans};
use crate::sys::cpu::{Look, TreeCpu};
use crate::sys::proc::{self, ProcessId};
use crate::sys::stdio::notice;

pub use tee::Tee;

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The job's name.
    pub name: JobName,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Supervision policy.
    pub settings: Settings,
    /// Copy the command's output to stdout as well (foreground runs).
    pub echo_output: bool,
    /// The circuit breaker that admits this job and counts its outcome.
    pub breaker: Option<BreakerSpec>,
}

/// Starting a job failed; nothing was left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A live wrapper already runs this name.
    #[error("job {name} is already running{}", pid.map(|p| format!(" (wrapper pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// The job.
        name: String,
        /// Its wrapper, if the record tells.
        pid: Option<i32>,
    },
    /// Another jobwatch process (not a wrapper) kept the name's lock for
    /// longer than a run waits: finishing a lost run, or `gc`.
    #[error("job {name} is being finished or cleaned up by another jobwatch process; try again")]
    Busy {
        /// The job.
        name: String,
    },
    /// The command could not be executed; the job is recorded as failed.
    #[error("cannot run {command:?}: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The OS error.
        source: io::Error,
    },
    /// The previous run's files could not be made safe to replace.
    #[error("job {name}: cannot retire the previous run: {reason}")]
    Previous {
        /// The job.
        name: String,
        /// Why.
        reason: String,
    },
    /// The job's circuit breaker is open; nothing was started or changed.
    #[error("{}", breaker_refusal(.0))]
    BreakerOpen(Box<BreakerView>),
    /// The job's circuit breaker could not be read or updated.
    #[error(transparent)]
    Breaker(#[from] BreakerError),
    /// The job's state could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another I/O failure, with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl StartError {
    /// The exit status a shell would use for this failure: 127 for a
    /// missing program, 126 for one that cannot be executed, else `None`.
    pub fn shell_code(&self) -> Option<u8> {
        match self {
            StartError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Some(127)
            }
            StartError::Spawn { .. } => Some(126),
            _ => None,
        }
    }
}

/// One line that says why a breaker refused, and what would let it admit.
fn breaker_refusal(view: &BreakerView) -> String {
    let last = view
        .last
        .as_ref()
        .and_then(|l| {
            let job = l.job.as_deref()?;
            let outcome = l.outcome?;
            Some(format!("; last: {job} {outcome}"))
        })
        .unwrap_or_default();
    let when = match (view.trial_in_ms, &view.trial_job) {
        (_, Some(job)) if view.state == crate::breaker::ViewState::HalfOpen => {
            format!("its trial run {job} is still running")
        }
        (Some(ms), _) => format!(
            "a trial run is allowed in {}",
            humantime::format_duration(Duration::from_secs(ms.div_ceil(1000)))
        ),
        (None, _) => "no cooldown is set".to_owned(),
    };
    format!(
        "breaker {} is open after {} consecutive failure(s){last}; {when}; `jobwatch breaker reset {}` closes it",
        view.key, view.consecutive_failures, view.key
    )
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// A started job under supervision, holding its name's claim.
pub struct Supervisor<'s> {
    store: &'s dyn Store,
    claim: Box<dyn Claim + 's>,
    spec: RunSpec,
    record: JobRecord,
    child: Child,
    me: ProcessId,
    /// Samples the job tree's CPU time (cheaply while it is idle).
    cpu: TreeCpu,
    signals: SignalPipe,
    /// When the current attempt started (its time limit counts from here).
    started: Instant,
    attempt_started: SystemTime,
    tee: Option<Tee>,
}

/// Claims the name, retires a previous run, writes the job's state and
/// starts the command.
pub fn start(store: &dyn Store, spec: RunSpec) -> Result<Supervisor<'_>, StartError> {
    // Claiming creates state (the file store's NAME.lock): a run the
    // breaker refuses must not leave even that behind for a name never run.
    refuse_if_breaker_open(store, &spec)?;
    let mut claim = claim(store, &spec.name)?;
    let job_id = proc::random_id();
    admit_through_breaker(store, &spec, &job_id)?;
    retire_previous(store, claim.as_mut(), spec.settings.grace())?;

    let now = SystemTime::now();
    let me = proc::myself();
    let mut record = JobRecord {
        version: RECORD_VERSION,
        name: spec.name.to_string(),
        job_id,
        command: spec
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        cwd: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        host: proc::hostname().to_owned(),
        boot_id: proc::boot_id().to_owned(),
        pid_ns: proc::pid_namespace(),
        wrapper_pid: me.pid,
        wrapper_start_time: me.start_time,
        child_pid: None,
        child_start_time: None,
        pgid: None,
        settings: spec.settings,
        started_at: rfc3339(now),
        started_unix_ms: unix_ms(now),
        ended_at: None,
        exit_code: None,
        signal: None,
        outcome: None,
        duration_ms: None,
        reason: None,
        finalized_by: None,
        breaker: spec.breaker.as_ref().map(|b| b.key.to_string()),
        attempt: 1,
        max_attempts: spec.settings.max_attempts(),
        attempts: Vec::new(),
    };
    // The record comes first: from here on a reader sees a running job,
    // never job files without a record (which would read as invalid).
    claim.write_record(&record)?;
    let log = create_log(store, &spec.name)?;
    claim.reset_beat()?;

    become_subreaper().map_err(io_err("cannot become a child subreaper"))?;
    let signals = SignalPipe::install().map_err(io_err("cannot install signal handlers"))?;
    let child = match spawn_command(store, &spec, &record, &log) {
        Ok(child) => child,
        Err(source) => {
            record_spawn_failure(store, claim.as_mut(), &mut record, &source)?;
            return Err(StartError::Spawn {
                command: record.command.first().cloned().unwrap_or_default(),
                source,
            });
        }
    };
    if let Err(e) = record_child(claim.as_mut(), &mut record, &child) {
        // A command nobody can find in the files must not run on.
        let target = JobTarget {
            wrapper: Some(me),
            ..crate::recover::target_of(&record)
        };
        terminate(&target, Signal::KILL, Duration::ZERO, &mut || false);
        reap(child.id() as i32);
        return Err(e.into());
    }
    let tee = start_tee(store, &spec);
    Ok(Supervisor {
        store,
        claim,
        spec,
        record,
        child,
        me,
        cpu: TreeCpu::for_wrapper(me.pid),
        signals,
        started: Instant::now(),
        attempt_started: now,
        tee,
    })
}

/// Turns the job away, before any of its files is touched, when its
/// breaker (if any) would refuse it.
fn refuse_if_breaker_open(store: &dyn Store, spec: &RunSpec) -> Result<(), StartError> {
    let Some(b) = &spec.breaker else {
        return Ok(());
    };
    match breaker::refusal(store, &b.key, b.policy)? {
        Some(view) => Err(StartError::BreakerOpen(Box::new(view))),
        None => Ok(()),
    }
}

/// Asks the job's breaker (if any) whether it may start; an open breaker
/// refuses before any of the job's files change.
fn admit_through_breaker(
    store: &dyn Store,
    spec: &RunSpec,
    job_id: &str,
) -> Result<(), StartError> {
    let Some(b) = &spec.breaker else {
        return Ok(());
    };
    let run = RunRef {
        job: spec.name.to_string(),
        job_id: job_id.to_owned(),
    };
    match breaker::admit(store, &b.key, &run, b.policy)? {
        Admission::Admitted | Admission::Trial => Ok(()),
        Admission::Refused(view) => Err(StartError::BreakerOpen(view)),
    }
}

/// Records a freshly spawned command in the record (and the file store's
/// `NAME.pid`), made durable: from here on a reader can find and judge it.
fn record_child(
    claim: &mut dyn Claim,
    record: &mut JobRecord,
    child: &Child,
) -> Result<(), StoreError> {
    let child_id = proc::identify(child.id() as i32).unwrap_or(ProcessId {
        pid: child.id() as i32,
        start_time: 0,
    });
    record.child_pid = Some(child_id.pid);
    record.child_start_time = Some(child_id.start_time);
    record.pgid = Some(child_id.pid);
    claim.mark_spawned(record)
}

fn start_tee(store: &dyn Store, spec: &RunSpec) -> Option<Tee> {
    spec.echo_output
        .then(|| Tee::start(&store.log_path(&spec.name, &RunAt::Current)).ok())
        .flatten()
}

/// Claims the name. A live wrapper holds it for its job's whole life: that
/// is "already running". Anyone else (`gc`, or a waiter finishing a lost
/// run) holds it briefly, so a run waits a moment for them.
fn claim<'s>(store: &'s dyn Store, name: &JobName) -> Result<Box<dyn Claim + 's>, StartError> {
    store
        .claim(name, ClaimWait::Briefly(BRIEF_HOLDER_WAIT))
        .map_err(|e| match e {
            ClaimError::AlreadyRunning { name, pid } => StartError::AlreadyRunning {
                name: name.to_string(),
                pid,
            },
            ClaimError::Held { name } => StartError::Busy {
                name: name.to_string(),
            },
            ClaimError::Store(e) => StartError::Store(e),
        })
}

/// How long `run` waits for a lock holder that is not a live wrapper.
const BRIEF_HOLDER_WAIT: Duration = Duration::from_secs(2);

/// Moves the previous run into history. A run left without a status (its
/// wrapper died: we hold the claim) is first finished: from its record when
/// that holds the outcome, else as `lost` with its remaining processes
/// killed, so nothing of it is lost or left running.
fn retire_previous(
    store: &dyn Store,
    claim: &mut dyn Claim,
    grace: Duration,
) -> Result<(), StartError> {
    let name = claim.name().clone();
    let previous = |reason: String| StartError::Previous {
        name: name.to_string(),
        reason,
    };
    let state = classify(claim.snapshot(), store.now(), None);
    // The claim proves nothing about a wrapper on another host (a shared
    // directory): never take over a run that may still be alive there.
    if let Some(r) = state.record()
        && r.outcome.is_none()
        && store.holder(r) == Holder::Elsewhere
    {
        return Err(previous(format!(
            "its last run has no status and runs (or ran) on host {}; finish it there, or `jobwatch kill {}` there",
            r.host, name
        )));
    }
    let label_time = match &state {
        JobState::Missing => return Ok(()),
        JobState::Lost { record }
        | JobState::Recorded { record }
        | JobState::Running { record, .. }
        | JobState::Hung { record, .. } => {
            // Under our claim a "running" record can only be a dead wrapper
            // whose PID check raced; finish it the same way. A record that
            // holds an outcome gets its status from it: it is not lost.
            let why = "the wrapper vanished without a status; found when the name was reused";
            finish_lost(store, claim, (**record).clone(), grace, why)
                .map_err(|e| previous(e.to_string()))?
                .started()
        }
        other => other
            .record()
            .map(JobRecord::started)
            .unwrap_or_else(SystemTime::now),
    };
    claim
        .archive_current(&archive_label(label_time))
        .map_err(|e| previous(e.to_string()))?;
    Ok(())
}

/// The current run's log, created if missing, opened for appending: every
/// writer's bytes land at the end, whoever else writes. Never through a
/// symlink (§3): a log swapped for one fails the attempt loudly.
fn create_log(store: &dyn Store, name: &JobName) -> Result<File, StartError> {
    store.logs().open_for_append(name).map_err(io_err(format!(
        "cannot create {}",
        store.log_path(name, &RunAt::Current).display()
    )))
}

fn spawn_command(
    store: &dyn Store,
    spec: &RunSpec,
    record: &JobRecord,
    log: &File,
) -> io::Result<Child> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .env("JOBWATCH_NAME", spec.name.as_str())
        .envs(store.job_env(&spec.name))
        .env(JOB_ID_ENV, &record.job_id)
        // The mark of a detached wrapper is the wrapper's alone: its job is
        // not another run's wrapper.
        .env_remove(DETACHED_WRAPPER_ENV)
        .spawn()
}

fn record_spawn_failure(
    store: &dyn Store,
    claim: &mut dyn Claim,
    record: &mut JobRecord,
    err: &io::Error,
) -> Result<(), StartError> {
    record.finish(
        &spawn_failure(record, err),
        Finalizer::Wrapper,
        SystemTime::now(),
    );
    write_final(store, claim, record)?;
    Ok(())
}

/// How a job ends whose command cannot be executed: failed, with the exit
/// code a shell would give (127 not found, 126 not executable).
fn spawn_failure(record: &JobRecord, err: &io::Error) -> JobEnd {
    let code = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    JobEnd {
        outcome: Outcome::Failed,
        exit_code: Some(code),
        signal: None,
        reason: Some(format!(
            "cannot run {:?}: {err}",
            record.command.first().map_or("", String::as_str)
        )),
    }
}

/// Writes a finished record, reports it to its breaker, then commits the
/// status (the completion flag comes last, so whoever sees it also sees the
/// breaker's new state). A breaker that cannot be updated is reported on
/// stderr; it never costs the job its result.
fn write_final(
    store: &dyn Store,
    claim: &mut dyn Claim,
    record: &JobRecord,
) -> Result<(), StoreError> {
    claim.write_record(record)?;
    if let Err(e) = breaker::record_job(store, record) {
        notice(format_args!("{}: {e}", record.name));
    }
    claim.commit(record)?;
    Ok(())
}

/// Why the wrapper itself killed the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillCause {
    Timeout,
    Hung,
    Signal(i32),
    /// A kill request (`NAME.kill`) for this run, made while the command
    /// ran: the wrapper carries it out should its requester go away.
    Request,
    /// The store can no longer vouch for the claim ([`Hold::Losing`]: an
    /// etcd store cut off from its cluster): the job is stopped before
    /// another host may report the run lost (issue 11).
    Fenced,
}

impl Supervisor<'_> {
    /// The job's record as written at start.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    /// The job's log (the current attempt's).
    pub fn log_path(&self) -> std::path::PathBuf {
        self.store.log_path(&self.spec.name, &RunAt::Current)
    }

    /// The echo of the job's output (foreground runs), for the caller to
    /// [`Tee::finish`] once [`Supervisor::run_to_end`] has returned.
    pub fn echo(&self) -> Option<Tee> {
        self.tee.clone()
    }

    /// Supervises the command until it ends (running it again while it
    /// fails and retries are left), then writes the final record and
    /// status. Returns the final record.
    pub fn run_to_end(mut self) -> Result<JobRecord, StoreError> {
        // `ended_attempt`: whether `end` is how an attempt ended, rather
        // than an interrupted backoff (whose attempt is already listed).
        let (end, ended_attempt) = loop {
            let end = self.run_attempt();
            if !self.worth_retrying(&end) {
                break (end, true);
            }
            let delay = retry::jittered_delay(
                &self.record.settings,
                self.record.attempt,
                retry::random_u64(),
            );
            if let Err(e) = self.put_attempt_aside(&end, Some(delay)) {
                // Another attempt would lose this one's log, and leaving
                // without a status would lose the job's result: the job
                // ends with this attempt's outcome.
                notice(format_args!("{}: {e}; not retrying", self.record.name));
                break (end, true);
            }
            if let Some(interrupted) = self.back_off(delay) {
                break (interrupted, false);
            }
            if let Err(e) = self.start_next_attempt() {
                break (e, true);
            }
        };
        let mut record = self.record.clone();
        let now = SystemTime::now();
        if record.max_attempts > 1 && ended_attempt {
            record
                .attempts
                .push(attempt_of(&record, self.attempt_started, &end, now, None));
        }
        record.finish(&end, Finalizer::Wrapper, now);
        if self.claim.finished() {
            // Someone judged this run over while it lived (only possible
            // where flock does not work, e.g. some network filesystems):
            // leave their consistent record and status alone.
            notice(format_args!(
                "{}: a status was written while the job ran; its own ending ({}) is not recorded",
                record.name, end.outcome
            ));
            return Ok(record);
        }
        write_final(self.store, self.claim.as_mut(), &record)?;
        Ok(record)
    }

    /// Runs the current attempt's command to its end and judges it.
    fn run_attempt(&mut self) -> JobEnd {
        let (exit, cause) = self.supervise();
        let pid = self.child.id() as i32;
        self.kill_leftovers();
        reap(pid);
        // Never waits: the echo catches up on its own thread.
        if let Some(tee) = &self.tee {
            tee.attempt_ended();
        }
        self.verdict(exit, cause)
    }

    /// A failed, hung or timed-out attempt is run again while retries are
    /// left, unless someone asked for the job to stop.
    fn worth_retrying(&self, end: &JobEnd) -> bool {
        self.record.attempt < self.record.max_attempts
            && retry::is_retryable(end.outcome)
            && self.kill_request().is_none()
            && !self.claim.finished()
    }

    /// Records a finished attempt and moves its log to
    /// `attempts/NAME/K.log`, so the next attempt starts a fresh `NAME.log`
    /// and no attempt's output is lost (a log someone removed leaves
    /// nothing to move). On error the attempt is not recorded.
    fn put_attempt_aside(
        &mut self,
        end: &JobEnd,
        delay: Option<Duration>,
    ) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let attempt = attempt_of(&self.record, self.attempt_started, end, now, delay);
        let k = self.record.attempt;
        // A fresh log exists throughout, so readers of the log never find
        // it missing between attempts; the next attempt appends to it.
        let logs = self.store.logs();
        logs.put_attempt_aside(&self.spec.name, k)
            .map_err(|source| StoreError::Io {
                context: format!(
                    "cannot write {}",
                    logs.attempt_log(&self.spec.name, k).display()
                ),
                source,
            })?;
        self.record.attempts.push(attempt);
        if let Some(tee) = &self.tee {
            tee.notice(format!(
                "{} attempt {k}/{} {}{}; retrying in {}",
                self.record.name,
                self.record.max_attempts,
                end.outcome,
                end.exit_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default(),
                humantime::format_duration(Duration::from_millis(
                    delay.unwrap_or_default().as_millis() as u64
                ))
            ));
        }
        let record = self.record.clone();
        self.claim.write_record(&record).inspect_err(|_| {
            self.record.attempts.pop();
        })
    }

    /// Waits out the backoff while beating (the wrapper is idle on purpose,
    /// which is not a hang). A signal to the wrapper or a kill request ends
    /// the job instead; returns how.
    fn back_off(&mut self, delay: Duration) -> Option<JobEnd> {
        let until = Instant::now() + delay;
        // Often enough that no waiter's own --stale mistakes the pause for
        // a hang.
        let heartbeat = self.record.settings.heartbeat().min(BACKOFF_BEAT);
        let mut next_beat = Instant::now();
        loop {
            if let Some(sig) = self.signals.take_terminating() {
                return Some(JobEnd {
                    outcome: Outcome::Killed,
                    exit_code: None,
                    signal: None,
                    reason: Some(format!(
                        "the wrapper received signal {sig} while waiting to retry"
                    )),
                });
            }
            if let Hold::Losing { reason, .. } = self.claim.hold() {
                return Some(fenced_end(reason));
            }
            if let Some(req) = self.kill_request() {
                return Some(JobEnd {
                    outcome: req.outcome,
                    exit_code: None,
                    signal: None,
                    reason: Some(req.reason),
                });
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            if now >= next_beat {
                self.beat(SystemTime::now());
                next_beat = now + heartbeat;
            }
            // Kill requests are files, not signals: look for one often.
            self.signals.wait_also(
                until
                    .min(next_beat)
                    .saturating_duration_since(now)
                    .min(BACKOFF_TICK),
                self.claim.wake_fd(),
            );
        }
    }

    /// Starts the next attempt with a fresh log, heartbeat and time limit.
    /// A command that can no longer be executed ends the job.
    fn start_next_attempt(&mut self) -> Result<(), JobEnd> {
        self.record.attempt += 1;
        let fresh = create_log(self.store, &self.spec.name)
            .map_err(|e| failed_to_start(e.to_string()))
            .and_then(|log| {
                self.claim
                    .reset_beat()
                    .map_err(|e| failed_to_start(e.to_string()))?;
                Ok(log)
            })?;
        self.attempt_started = SystemTime::now();
        self.started = Instant::now();
        let child = spawn_command(self.store, &self.spec, &self.record, &fresh)
            .map_err(|e| spawn_failure(&self.record, &e))?;
        self.child = child;
        if let Err(e) = record_child(self.claim.as_mut(), &mut self.record, &self.child) {
            // A command nobody can find in the files must not run on.
            let pid = self.child.id() as i32;
            self.kill_leftovers();
            reap(pid);
            return Err(failed_to_start(e.to_string()));
        }
        if let Some(tee) = &self.tee {
            tee.follow(&self.log_path());
        }
        // A kill request written after the backoff's last look may have
        // missed this attempt (its killer searched for the job's processes
        // before this one existed): honour it now, and the attempt's
        // verdict reports it.
        if self.kill_request().is_some() {
            self.kill_leftovers();
        }
        Ok(())
    }

    /// The kill request stored for this run, if any (one meant for an
    /// earlier run of the name is ignored).
    fn kill_request(&self) -> Option<KillRequest> {
        self.claim
            .kill_request()
            .filter(|req| req.job_id == self.record.job_id)
    }

    /// The job's processes; the wrapper also owns every descendant of its
    /// own (it is their subreaper) and must never signal itself.
    fn target(&self) -> JobTarget {
        JobTarget {
            wrapper: Some(self.me),
            ..crate::recover::target_of(&self.record)
        }
    }

    /// The event loop: returns how the command ended and whether the
    /// wrapper killed it.
    fn supervise(&mut self) -> (ExitStatus, Option<KillCause>) {
        let settings = self.record.settings;
        let child = self.child.id() as i32;
        let deadline = settings.timeout().and_then(|t| self.started.checked_add(t));
        let mut tracker = ProgressTracker::new(settings.liveness, &self.observe(Look::Routine));
        let mut next_sample = Instant::now() + settings.heartbeat();
        let mut cause: Option<KillCause> = None;
        loop {
            if let Some(exit) = peek_exit(child) {
                return (exit, cause);
            }
            // Also consumes the claim's wake-up (see `wait_also` below).
            let hold = self.claim.hold();
            // Once killed, only the exit is awaited, which SIGCHLD reports.
            let mut wake = Duration::from_secs(1);
            if cause.is_none() {
                if let Hold::Losing { within, .. } = hold {
                    cause = Some(KillCause::Fenced);
                    self.fence(within);
                    continue;
                }
                match self.check_limits(&mut tracker, &mut next_sample, deadline) {
                    Ok(_) if self.live_kill_request().is_some() => {
                        cause = Some(KillCause::Request);
                        self.carry_out_request();
                        continue;
                    }
                    Ok(stale_at) => wake = next_wake(next_sample, deadline, stale_at),
                    Err(c) => {
                        cause = Some(c);
                        self.kill_for(c);
                        continue;
                    }
                }
            }
            self.signals.wait_also(wake, self.claim.wake_fd());
            reap_orphans(child);
        }
    }

    /// Stops the job before the store could let another host report it
    /// lost: SIGTERM, then SIGKILL within the time the claim has left.
    fn fence(&mut self, within: Duration) {
        let child = self.child.id() as i32;
        let signals = &self.signals;
        let grace = self.record.settings.grace().min(within / 2);
        terminate(&self.target(), Signal::TERM, grace, &mut || {
            reap_orphans(child);
            signals.take_terminating().is_some()
        });
    }

    /// Checks signals, the time limit and progress; returns a reason to
    /// kill, or else when the job becomes stale without further progress.
    fn check_limits(
        &mut self,
        tracker: &mut ProgressTracker,
        next_sample: &mut Instant,
        deadline: Option<Instant>,
    ) -> Result<SystemTime, KillCause> {
        if let Some(sig) = self.signals.take_terminating() {
            return Err(KillCause::Signal(sig));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(KillCause::Timeout);
        }
        let stale = self.record.settings.stale();
        let mut stale_at = self.last_beat() + stale;
        if now >= *next_sample || SystemTime::now() >= stale_at {
            // A fresh look before any verdict: progress since the last
            // sample still counts.
            *next_sample = now + self.record.settings.heartbeat();
            // A hung verdict rests only on a full look (see sys::cpu): a
            // cheap sample that leaves the job stale is followed by one.
            for look in [Look::Routine, Look::Verdict] {
                let progress = tracker.progress_since_last(&self.observe(look));
                if let Some(t) = progress {
                    self.beat(t);
                }
                // Without progress the heartbeat moved only if someone else
                // beat, which matters only once the deadline has passed.
                if progress.is_some() || SystemTime::now() >= stale_at {
                    stale_at = self.last_beat() + stale;
                }
                if SystemTime::now() < stale_at {
                    return Ok(stale_at);
                }
            }
            return Err(KillCause::Hung);
        }
        Ok(stale_at)
    }

    /// A kill request for this run that decides its outcome: one written
    /// while the command ran (§9.4).
    fn live_kill_request(&self) -> Option<KillRequest> {
        self.kill_request().filter(KillRequest::decides_outcome)
    }

    /// Carries out a kill request made while the command runs. Its requester
    /// sends the TERM right after writing it (a second TERM from here could
    /// make a job's handler run twice); the wrapper gives the job the
    /// request's grace from the moment it saw it, then sends SIGKILL, so the
    /// job ends even if the requester went away (an MCP client that left, a
    /// `jobwatch kill` that was itself killed). A second TERM, INT or HUP to
    /// the wrapper cuts the grace short.
    fn carry_out_request(&mut self) {
        let Some(req) = self.live_kill_request() else {
            return;
        };
        let grace = req.grace(self.record.settings.grace());
        let child = self.child.id() as i32;
        let signals = &self.signals;
        let target = self.target();
        escalate_after(&target, grace, &mut || {
            reap_orphans(child);
            signals.take_terminating().is_some()
        });
    }

    fn kill_for(&mut self, cause: KillCause) {
        let first = match cause {
            KillCause::Signal(sig) => crate::sys::signal::from_number(sig).unwrap_or(Signal::TERM),
            KillCause::Timeout | KillCause::Hung | KillCause::Request | KillCause::Fenced => {
                Signal::TERM
            }
        };
        let child = self.child.id() as i32;
        let signals = &self.signals;
        let target = self.target();
        terminate(&target, first, self.record.settings.grace(), &mut || {
            reap_orphans(child);
            signals.take_terminating().is_some()
        });
    }

    /// After the command exits, its group and escaped descendants must not
    /// outlive the job (a lost or finished job leaves no orphans).
    fn kill_leftovers(&mut self) {
        let child = self.child.id() as i32;
        let target = self.target();
        terminate(
            &target,
            Signal::TERM,
            self.record.settings.grace(),
            &mut || {
                reap_orphans(child);
                false
            },
        );
        reap_orphans(child);
    }

    fn verdict(&self, exit: ExitStatus, cause: Option<KillCause>) -> JobEnd {
        let (exit_code, signal) = match exit {
            ExitStatus::Code(c) => (Some(c), None),
            ExitStatus::Signal(s) => (None, Some(s)),
        };
        let settings = self.record.settings;
        let (outcome, reason) = match cause {
            Some(KillCause::Timeout) => (
                Outcome::Timeout,
                Some(format!(
                    "ran longer than its time limit of {}",
                    humantime::format_duration(settings.timeout().unwrap_or_default())
                )),
            ),
            Some(KillCause::Hung) => (
                Outcome::Hung,
                Some(format!(
                    "no progress ({} liveness) for {}",
                    settings.liveness.as_str(),
                    humantime::format_duration(settings.stale())
                )),
            ),
            Some(KillCause::Signal(sig)) => (
                Outcome::Killed,
                Some(format!(
                    "the wrapper received signal {sig}; forwarded to the job"
                )),
            ),
            Some(KillCause::Fenced) => {
                let reason = match self.claim.hold() {
                    Hold::Losing { reason, .. } => reason,
                    Hold::Held => "the store could no longer vouch for its claim".to_owned(),
                };
                let end = fenced_end(reason);
                (end.outcome, end.reason)
            }
            // A request made after the command had exited does not decide:
            // the exit came first and keeps its own outcome.
            Some(KillCause::Request) | None => match self.live_kill_request() {
                Some(req) => (req.outcome, Some(req.reason)),
                None if exit_code == Some(0) => (Outcome::Success, None),
                None => (Outcome::Failed, None),
            },
        };
        JobEnd {
            outcome,
            exit_code,
            signal,
            reason,
        }
    }

    fn observe(&mut self, look: Look) -> Observation {
        let (log_len, log_mtime) = self.store.logs().output_mark(&self.spec.name);
        Observation {
            at: SystemTime::now(),
            log_len,
            log_mtime,
            cpu_ticks: self
                .record
                .settings
                .liveness
                .counts_cpu()
                .then(|| self.tree_cpu_ticks(look)),
        }
    }

    /// CPU used by the job: every live descendant of the wrapper (the
    /// subreaper sees the whole tree), plus children the wrapper reaped.
    fn tree_cpu_ticks(&mut self, look: Look) -> u64 {
        self.cpu.sample_now(look).ticks
    }

    /// The last recorded progress (the job's start if the heartbeat file is
    /// gone).
    fn last_beat(&self) -> SystemTime {
        self.heartbeat_mtime().unwrap_or(self.record.started())
    }

    fn heartbeat_mtime(&self) -> Option<SystemTime> {
        self.claim.last_beat()
    }

    /// Moves the progress mark forward to `t` (never backwards: an explicit
    /// beat may already be newer).
    fn beat(&self, t: SystemTime) {
        let _ = self.claim.beat(t);
    }
}

/// How a run ends whose wrapper stopped it because its store could no
/// longer vouch for its claim: `lost`, which is what every other host
/// reports once the claim is gone.
fn fenced_end(why: String) -> JobEnd {
    JobEnd {
        outcome: Outcome::Lost,
        exit_code: None,
        signal: None,
        reason: Some(format!(
            "{why}; the wrapper killed the job so that it does not run on after being reported lost"
        )),
    }
}

/// How often a backing-off wrapper looks for a kill request.
const BACKOFF_TICK: Duration = Duration::from_millis(50);
/// The longest a backing-off wrapper goes without a beat.
const BACKOFF_BEAT: Duration = Duration::from_secs(1);

/// A finished attempt, for the record's `attempts` list.
fn attempt_of(
    record: &JobRecord,
    started: SystemTime,
    end: &JobEnd,
    now: SystemTime,
    backoff: Option<Duration>,
) -> Attempt {
    Attempt {
        attempt: record.attempt,
        started_at: rfc3339(started),
        ended_at: rfc3339(now),
        duration_ms: now.duration_since(started).unwrap_or_default().as_millis() as u64,
        outcome: end.outcome,
        exit_code: end.exit_code,
        signal: end.signal,
        reason: end.reason.clone(),
        backoff_ms: backoff.map(|d| d.as_millis() as u64),
    }
}

/// A job that could not start its next attempt for a reason other than
/// its command.
fn failed_to_start(why: String) -> JobEnd {
    JobEnd {
        outcome: Outcome::Failed,
        exit_code: None,
        signal: None,
        reason: Some(format!("cannot start the next attempt: {why}")),
    }
}

/// How long the wrapper may sleep: until the next progress sample, the time
/// limit or the stale deadline, whichever comes first (a signal wakes it
/// earlier).
fn next_wake(next_sample: Instant, deadline: Option<Instant>, stale_at: SystemTime) -> Duration {
    let now = Instant::now();
    let mut wake = next_sample.saturating_duration_since(now);
    if let Some(d) = deadline {
        wake = wake.min(d.saturating_duration_since(now));
    }
    let until_stale = stale_at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    wake.min(until_stale).max(Duration::from_millis(1))
}
