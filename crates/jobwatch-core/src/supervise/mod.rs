//! The wrapper: claims a job name, starts the command in its own process
//! group with its output going straight to `NAME.log`, keeps the heartbeat
//! honest, enforces the time limit and the stale threshold itself, forwards
//! signals, and writes the final record and status.
//!
//! # Theory of operation
//!
//! [`start`] does everything up to a running command whose state exists, so
//! that a detached caller may return as soon as it does:
//! 1. admission (`admission.rs`): the breaker is asked before anything is
//!    written, the name is claimed (the claim is the lock, held for the
//!    job's whole life), and the breaker admits the run under the claim;
//! 2. the previous run is retired under the claim (`retire.rs`): finished if
//!    its wrapper died without a status, then archived;
//! 3. the record comes first, then the log and a fresh progress mark; the
//!    wrapper becomes a child subreaper (the job's orphans are its own) and
//!    catches its signals on a self-pipe; the first attempt's command is
//!    spawned (`attempts.rs`) and recorded with its PID (the start commit
//!    point).
//!
//! [`Supervisor::run_to_end`] then runs the event loop (`event_loop.rs`),
//! which turns the wrapper's inputs (the command's exit, signals, timers,
//! kill requests, CPU and output samples) into events for a pure state
//! machine (`machine.rs`) and carries out what it decides: sampling, beats,
//! terminating the tree, reaping, putting an attempt aside, starting the
//! next one, and at last committing the outcome (record, breaker, status).
//! The command is not reaped until its leftovers are killed, so its PID
//! and process-group id stay reserved for every signal the wrapper sends.

mod admission;
mod attempts;
mod event_loop;
mod machine;
mod retire;
mod tee;

use std::io;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use crate::breaker::{self, BreakerError, BreakerView};
use crate::kill::{JobTarget, terminate};
use crate::model::{Attempt, Finalizer, JobEnd, JobName, JobRecord, RECORD_VERSION};
use crate::model::{rfc3339, unix_ms};
use crate::store::{Claim, RunAt, Store, StoreError};
use crate::sys::child::{SignalPipe, become_subreaper, reap};
use crate::sys::cpu::TreeCpu;
use crate::sys::proc::{self, ProcessId};
use crate::sys::stdio::notice;
use machine::Now;

pub(crate) use retire::retire_previous;
pub use tee::Tee;

/// What to run, and how: the core's one run spec ([`crate::spec`]).
pub use crate::spec::RunSpec;

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
    #[error("{}", admission::breaker_refusal(.0))]
    BreakerOpen(Box<BreakerView>),
    /// The job's circuit breaker could not be read or updated.
    #[error(transparent)]
    Breaker(#[from] BreakerError),
    /// The job's state could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name's queue does not admit this run (a queued job whose turn
    /// was taken back, or a plain run of a queued name).
    #[error(transparent)]
    Queue(#[from] crate::queue::Refusal),
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
    /// The current attempt's command.
    child: Child,
    me: ProcessId,
    /// Samples the job tree's CPU time (cheaply while it is idle).
    cpu: TreeCpu,
    signals: SignalPipe,
    /// When the first attempt started: its entry in `attempts` and its time
    /// limit count from here.
    first_attempt: Now,
    tee: Option<Tee>,
}

/// Claims the name, retires a previous run, writes the job's state and
/// starts the command.
pub fn start(store: &dyn Store, spec: RunSpec) -> Result<Supervisor<'_>, StartError> {
    // Claiming creates state (the file store's NAME.lock): a run the
    // breaker refuses must not leave even that behind for a name never run.
    admission::refuse_if_breaker_open(store, &spec)?;
    let mut claim = admission::claim(store, &spec.name)?;
    crate::queue::admit(store, claim.as_ref(), &spec)?;
    // A queued job's run was named when it was queued: waiters wait for it.
    let job_id = spec
        .ticket
        .as_ref()
        .map_or_else(proc::random_id, |t| t.job_id.clone());
    admission::admit_through_breaker(store, &spec, &job_id)?;
    retire::retire_previous(store, claim.as_mut(), spec.settings.grace())?;

    let now = SystemTime::now();
    let me = proc::myself();
    let mut record = start_record(&spec, job_id, me, now);
    // The record comes first: from here on a reader sees a running job,
    // never job files without a record (which would read as invalid).
    // Not durable yet (the commit point rewrites it, synced): a crash
    // before then leaves a start nobody was told of (protocol §6.1).
    claim.write_start_record(&record)?;
    crate::queue::started(store, &spec);
    let log = attempts::create_log(store, &spec.name)?;
    claim.reset_beat()?;

    become_subreaper().map_err(io_err("cannot become a child subreaper"))?;
    let signals = SignalPipe::install().map_err(io_err("cannot install signal handlers"))?;
    let child = match attempts::spawn_command(store, &spec, &record, &log) {
        Ok(child) => child,
        Err(source) => {
            record_spawn_failure(store, claim.as_mut(), &mut record, &source)?;
            return Err(StartError::Spawn {
                command: record.command.first().cloned().unwrap_or_default(),
                source,
            });
        }
    };
    if let Err(e) = attempts::record_child(claim.as_mut(), &mut record, &child) {
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
        first_attempt: Now {
            wall: now,
            mono: Instant::now(),
        },
        tee,
    })
}

/// The record of a run about to start: no command yet, no outcome.
fn start_record(spec: &RunSpec, job_id: String, me: ProcessId, now: SystemTime) -> JobRecord {
    JobRecord {
        breaker: spec.breaker.as_ref().map(|b| b.key.to_string()),
        attempt: 1,
        ..record_held_by(&spec.name, job_id, Some(spec), me, now)
    }
}

/// A run's record held by process `me` of this host, started `now`: the
/// spec's command, directory and settings (`run`'s defaults without one),
/// attempt 0, no breaker, nothing spawned and nothing ended yet. The
/// wrapper's start record, and the record of a queued job that ends before
/// it runs, are this; tests and benches build their records from it too.
pub fn record_held_by(
    name: &JobName,
    job_id: String,
    spec: Option<&RunSpec>,
    me: ProcessId,
    now: SystemTime,
) -> JobRecord {
    let settings = spec.map_or_else(crate::spec::default_settings, |s| s.settings);
    JobRecord {
        version: RECORD_VERSION,
        name: name.to_string(),
        job_id,
        command: spec.map_or_else(Vec::new, |s| {
            s.command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        }),
        cwd: spec.map_or_else(String::new, |s| s.cwd.display().to_string()),
        host: proc::hostname().to_owned(),
        boot_id: proc::boot_id().to_owned(),
        pid_ns: proc::pid_namespace(),
        wrapper_pid: me.pid,
        wrapper_start_time: me.start_time,
        child_pid: None,
        child_start_time: None,
        pgid: None,
        settings,
        started_at: rfc3339(now),
        started_unix_ms: unix_ms(now),
        ended_at: None,
        exit_code: None,
        signal: None,
        outcome: None,
        duration_ms: None,
        reason: None,
        finalized_by: None,
        breaker: None,
        attempt: 0,
        max_attempts: settings.max_attempts(),
        attempts: Vec::new(),
    }
}

fn start_tee(store: &dyn Store, spec: &RunSpec) -> Option<Tee> {
    spec.echo_output
        .then(|| Tee::start(&store.log_path(&spec.name, &RunAt::Current)).ok())
        .flatten()
}

/// A command that cannot be executed ends the job at once, `failed`, with
/// the code a shell would give; its record and status are written.
fn record_spawn_failure(
    store: &dyn Store,
    claim: &mut dyn Claim,
    record: &mut JobRecord,
    err: &io::Error,
) -> Result<(), StartError> {
    record.finish(
        &attempts::spawn_failure(record, err),
        Finalizer::Wrapper,
        SystemTime::now(),
    );
    write_final(store, claim, record)?;
    Ok(())
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
        event_loop::run(&mut self)
    }

    /// The end (§6.4 steps 4-6): the final record, listing the last attempt
    /// of a job that may take several, then the breaker, then the status.
    fn commit(
        &mut self,
        end: &JobEnd,
        last_attempt: Option<Attempt>,
        at: SystemTime,
    ) -> Result<JobRecord, StoreError> {
        let mut record = self.record.clone();
        record.attempts.extend(last_attempt);
        record.finish(end, Finalizer::Wrapper, at);
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
}
