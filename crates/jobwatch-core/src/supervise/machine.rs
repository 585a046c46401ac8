//! The wrapper's decisions, as a pure state machine: [`decide`] takes the
//! wrapper's [`State`], one [`Event`] and the time, and returns the
//! [`Action`]s to carry out. It does no I/O and reads no clock, so every
//! rule of protocol §6.4 (the end), §7 (liveness), §9 (killing) and §14
//! (retries) is tested below on plain data, without a process, a file or a
//! sleep.
//!
//! What the machine needs to know from the world it asks for: an action
//! such as [`Action::Sample`], [`Action::ReadBeat`] or
//! [`Action::ReadKillRequest`] is answered by the event loop with the
//! matching event ([`Event::Sampled`], [`Event::LastBeat`],
//! [`Event::KillRequest`]) before anything else happens. So the wrapper
//! reads exactly what the phase needs at each wake-up, and nothing more
//! (idle wrappers are many: issue 14).
//!
//! The life of a run, one [`Phase`] at a time:
//!
//! ```text
//! Spawning ─Spawned─▶ Starting ─first look─▶ Running ─limit, hang, signal, request─▶ Killing
//!    ▲                                          │                                       │ Terminated
//!    │                                          │ Exited                                ▼
//!    │ StartAttempt                             ▼                    Exited          Killed
//!    └──────────── BackingOff ◀──retry──── Exited ◀───────────────────────────────────┘
//!                      │ signal, request        │ no retry
//!                      ▼                        ▼
//!                  Finished ◀───────────────────┘  (Commit)
//! ```
//!
//! A store that can lose the name's claim while the wrapper lives (etcd,
//! cut off from its cluster) says so early ([`Event::ClaimLosing`]): the
//! job is then killed (Running → Killing), a kill under way keeps at most
//! the time left, and a backoff ends; the run ends `lost`, never retried
//! (self-fencing, docs/multi-host.md).

use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use super::attempts::attempt_of;
use crate::liveness::{Observation, ProgressTracker, WrapperVerdict, wrapper_verdict};
use crate::model::{Attempt, JobEnd, KillRequest, Outcome, Settings};
use crate::retry;
use crate::sys::child::ExitStatus;
use crate::sys::cpu::Look;

/// How often a backing-off wrapper looks for a kill request.
const BACKOFF_TICK: Duration = Duration::from_millis(50);
/// The longest a backing-off wrapper goes without a beat.
const BACKOFF_BEAT: Duration = Duration::from_secs(1);
/// How long a wrapper that killed its command sleeps while it waits for the
/// exit (SIGCHLD wakes it sooner).
const KILLED_WAKE: Duration = Duration::from_secs(1);
/// The shortest sleep of a running wrapper.
const MIN_WAKE: Duration = Duration::from_millis(1);

/// A moment on both clocks: the wall clock dates progress (mtimes), the
/// monotonic clock runs the time limit, the samples and the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// The wall clock.
    pub wall: SystemTime,
    /// The monotonic clock.
    pub mono: Instant,
}

impl Now {
    /// This moment, read from the system's clocks (by the event loop only).
    pub fn real() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// Why the wrapper itself kills the command. The first cause wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillCause {
    /// The attempt ran past its time limit.
    Timeout,
    /// No progress for the stale threshold (§7).
    Hung,
    /// The wrapper received this terminating signal, and forwards it.
    Signal(i32),
    /// A kill request (`NAME.kill`) for this run, made while the command
    /// ran: the wrapper carries it out should its requester go away.
    Request,
    /// The store can no longer vouch for the name's claim
    /// ([`Event::ClaimLosing`]): the job is stopped before another host may
    /// report the run lost (self-fencing, issue 11).
    Fenced,
}

/// The store can no longer vouch for the claim: why, and by when the
/// job's processes must have had their KILL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fence {
    reason: String,
    kill_by: Option<Instant>,
}

/// One input of the wrapper, as the event loop saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The loop woke up (its timer, a signal, a kill request's SIGURG):
    /// time to check.
    Tick,
    /// A terminating signal (TERM, INT, HUP) reached the wrapper.
    Signal(i32),
    /// The attempt's command runs (answers [`Action::StartAttempt`]; the
    /// first attempt's is fed by the loop): `started` is when its time
    /// limit began.
    Spawned {
        /// When the attempt started.
        started: Now,
    },
    /// The attempt's command could not be started: the job ends so.
    StartFailed(JobEnd),
    /// A look at the job (answers [`Action::Sample`]).
    Sampled {
        /// How thorough it was.
        look: Look,
        /// What it saw.
        obs: Observation,
    },
    /// The progress mark (answers [`Action::ReadBeat`]); `None`: missing.
    LastBeat(Option<SystemTime>),
    /// The kill request stored for the name, if any, whichever run it
    /// names (answers [`Action::ReadKillRequest`]).
    KillRequest(Option<KillRequest>),
    /// A termination ([`Action::Terminate`]) is over: its grace and its
    /// KILL rounds.
    Terminated,
    /// The attempt's command exited; it is not reaped yet, so its PID and
    /// process-group id stay reserved.
    Exited(ExitStatus),
    /// What the wrapper found once the attempt was over (answers
    /// [`Action::LookAtEnd`]).
    AttemptOver(EndLook),
    /// Putting the attempt aside failed (answers [`Action::PutAside`] on
    /// error; the loop reports why): another attempt would lose this one's
    /// log.
    AsideFailed,
    /// The store can no longer vouch for the name's claim
    /// ([`crate::store::Hold::Losing`]: an etcd store cut off from its
    /// cluster, whose lease may soon expire and another host report the
    /// run `lost`): the job must be gone, KILL included, `within`. Fed once,
    /// by the loop, whatever the phase.
    ClaimLosing {
        /// One line on why (`cut off from the etcd cluster: …`).
        reason: String,
        /// How long the job may still run.
        within: Duration,
    },
}

/// What decides the fate of an attempt that is over.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndLook {
    /// The kill request stored for the name, if any.
    pub kill_request: Option<KillRequest>,
    /// Whether a status exists already (someone else finished the run;
    /// possible only where the claim is not exclusive).
    pub finished: bool,
    /// A random number, for the backoff's jitter.
    pub random: u64,
}

/// What the event loop carries out for the machine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Look at the job's output and CPU (→ [`Event::Sampled`]).
    Sample(Look),
    /// Move the progress mark to this time (the store never moves it back).
    Beat(SystemTime),
    /// Read the progress mark (→ [`Event::LastBeat`]).
    ReadBeat,
    /// Read the name's kill request (→ [`Event::KillRequest`]).
    ReadKillRequest,
    /// Terminate the job's process tree (→ [`Event::Terminated`]): `first`,
    /// then SIGCONT (`kill::opening_signals`), up to `grace` for it to go,
    /// then KILL until nothing is left. `first: None`: someone else sent
    /// the first signal (a kill request), only wait and KILL. Blocking; at
    /// each re-check of the tree the machine gets a signal that arrived
    /// meanwhile, else a [`Event::Tick`], and [`Action::EndGrace`] among its
    /// answers ends the grace.
    Terminate {
        /// The opening signal, if the wrapper sends one.
        first: Option<Signal>,
        /// How long the tree gets before KILL.
        grace: Duration,
    },
    /// End the running termination's grace at once.
    EndGrace,
    /// Reap orphans, then the command: its PID may be reused from here on.
    Reap,
    /// Tell the echo (foreground runs) that the attempt's log is complete.
    EchoAttemptEnded,
    /// Look at what decides the attempt's fate (→ [`Event::AttemptOver`]).
    LookAtEnd,
    /// List the attempt in the record and put its log aside (→
    /// [`Event::AsideFailed`] on error).
    PutAside(Attempt),
    /// Start attempt `k`'s command (→ [`Event::Spawned`] or
    /// [`Event::StartFailed`]).
    StartAttempt(u32),
    /// Write the final record (listing `last_attempt`), count the outcome
    /// in the breaker, commit the status. The end.
    Commit {
        /// How the job ended.
        end: JobEnd,
        /// The last attempt, for a job that may take several.
        last_attempt: Option<Attempt>,
        /// When it ended.
        at: SystemTime,
    },
}

/// What stays the same for the whole run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Job {
    /// The run's id: kill requests for other runs are ignored.
    pub job_id: String,
    /// Its policy.
    pub settings: Settings,
    /// How many attempts it may take.
    pub max_attempts: u32,
    /// When the job started (a missing progress mark counts as this).
    pub started: SystemTime,
}

/// Where the run is.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// An attempt's command is being started.
    Spawning,
    /// The command runs; the wrapper looks before it watches.
    Starting {
        /// When the attempt started (its time limit counts from here).
        started: Instant,
        /// What is looked at next.
        step: StartStep,
    },
    /// The command runs under watch: time limit, progress, kill requests.
    Running(Running),
    /// The wrapper is terminating the job: the grace runs until
    /// `grace_until` (`None`: a grace too long for the clock), or until a
    /// second signal.
    Killing {
        /// Why.
        cause: KillCause,
        /// When the grace ends and KILL follows.
        grace_until: Option<Instant>,
    },
    /// The job was terminated; the command's exit is awaited.
    Killed {
        /// Why it was killed.
        cause: KillCause,
    },
    /// The command exited: its leftovers are killed, it is reaped, and the
    /// attempt is judged.
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// Why the wrapper killed it, if it did.
        cause: Option<KillCause>,
    },
    /// Waiting before the next attempt; waiting is not hanging, so the
    /// wrapper beats.
    BackingOff {
        /// When the next attempt starts.
        until: Instant,
        /// When the wrapper beats next.
        next_beat: Instant,
        /// How the attempt ended (the job's end if the next cannot start).
        after: JobEnd,
    },
    /// The job is over and committed.
    Finished(JobEnd),
}

/// What a starting attempt looks at next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartStep {
    /// A kill request written before this attempt's command existed (while
    /// the wrapper backed off, or started): its requester found no process
    /// of this attempt to signal.
    LookForRequest,
    /// The first look at the job: the baseline of its progress.
    FirstLook,
}

/// A running attempt under watch.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// Turns looks into evidence of progress.
    tracker: ProgressTracker,
    /// When the next sample is due.
    next_sample: Instant,
    /// The attempt's time limit, if any.
    deadline: Option<Instant>,
    /// The progress mark, as last read.
    mark: Mark,
    /// Where the current check is.
    check: Check,
}

/// The progress mark as the wrapper last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Not read yet in this attempt: check at once.
    Unread,
    /// Missing: it counts as the job's start (§7).
    Missing,
    /// At this time.
    At(SystemTime),
}

/// The steps of one check of a running attempt: signal, time limit, the
/// mark, a sample when due or stale, a full sample before a hung verdict,
/// then the kill request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Between checks.
    Idle,
    /// The mark is being read.
    ReadingMark,
    /// A sample of this look is being taken.
    Sampling(Look),
    /// The mark is read again after a sample of this look.
    Rechecking(Look),
}

/// The wrapper's state: the run's facts, where it is, and a signal kept
/// until the phase can act on it.
#[derive(Debug, Clone)]
pub(crate) struct State {
    job: Job,
    /// The current attempt (1-based).
    attempt: u32,
    /// When the current attempt started, for its entry in `attempts`.
    attempt_started: SystemTime,
    /// A terminating signal not acted on yet (the latest wins).
    pending_signal: Option<i32>,
    /// The claim is being lost, once the store said so
    /// ([`Event::ClaimLosing`]): no attempt follows, and a job the wrapper
    /// killed for it ends `lost`.
    fence: Option<Fence>,
    phase: Phase,
}

impl State {
    /// A run whose first attempt is being started.
    pub fn new(job: Job) -> Self {
        Self {
            attempt_started: job.started,
            job,
            attempt: 1,
            pending_signal: None,
            fence: None,
            phase: Phase::Spawning,
        }
    }

    /// Where the run is.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// How the job ended, once it has.
    pub fn finished(&self) -> Option<&JobEnd> {
        match &self.phase {
            Phase::Finished(end) => Some(end),
            _ => None,
        }
    }

    /// Whether the store's loss of the claim has been decided on already
    /// (the loop feeds [`Event::ClaimLosing`] once).
    pub fn fencing(&self) -> bool {
        self.fence.is_some()
    }

    /// Whether the command of the current attempt may still exit: the loop
    /// then watches for that (and reaps the job's orphans).
    pub fn awaits_exit(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running(_) | Phase::Killing { .. } | Phase::Killed { .. }
        )
    }

    /// How long the loop may sleep from `now` before it must look again
    /// (a signal or the command's exit wakes it sooner): until the next
    /// sample, the time limit or the stale deadline while running; every
    /// 50 ms while backing off (kill requests are not signals).
    pub fn wake_in(&self, now: Now) -> Duration {
        match &self.phase {
            Phase::Running(run) => run.wake_in(&self.job, now),
            Phase::Killed { .. } => KILLED_WAKE,
            Phase::BackingOff {
                until, next_beat, ..
            } => (*until)
                .min(*next_beat)
                .saturating_duration_since(now.mono)
                .min(BACKOFF_TICK),
            // Passing phases: their events follow at once.
            _ => Duration::ZERO,
        }
    }

    /// The progress mark as the hang rule counts it.
    fn last_beat(&self, mark: Mark) -> SystemTime {
        match mark {
            Mark::At(t) => t,
            Mark::Unread | Mark::Missing => self.job.started,
        }
    }

    /// Whether a kill request is for this run.
    fn ours(&self, req: Option<KillRequest>) -> Option<KillRequest> {
        req.filter(|r| r.job_id == self.job.job_id)
    }
}

impl Running {
    fn wake_in(&self, job: &Job, now: Now) -> Duration {
        let last_beat = match self.mark {
            Mark::Unread => return Duration::ZERO,
            Mark::Missing => job.started,
            Mark::At(t) => t,
        };
        let mut wake = self.next_sample.saturating_duration_since(now.mono);
        if let Some(d) = self.deadline {
            wake = wake.min(d.saturating_duration_since(now.mono));
        }
        let until_stale = match wrapper_verdict(last_beat, job.settings.stale(), now.wall) {
            WrapperVerdict::Fresh { stale_at } => {
                stale_at.duration_since(now.wall).unwrap_or_default()
            }
            WrapperVerdict::Stale => Duration::ZERO,
        };
        wake.min(until_stale).max(MIN_WAKE)
    }
}

/// Decides what `event` means for the run at `now`: updates `state` and
/// returns what to do, in order.
///
/// The state is updated in place rather than returned anew: that is the
/// same pure function of (state, event, now) — it reads nothing else and
/// does nothing else — without copying the state at every wake-up.
pub(crate) fn decide(state: &mut State, event: Event, now: Now) -> Vec<Action> {
    let phase = std::mem::replace(&mut state.phase, Phase::Spawning);
    let (phase, actions) = step(state, phase, event, now);
    state.phase = phase;
    actions
}

type Step = (Phase, Vec<Action>);

fn step(s: &mut State, phase: Phase, event: Event, now: Now) -> Step {
    match (phase, event) {
        // A second TERM, INT or HUP to a killing wrapper ends its grace at
        // once (§9.2).
        (phase @ Phase::Killing { .. }, Event::Signal(_)) => (phase, vec![Action::EndGrace]),
        // The termination re-checks the tree every 10 ms: once the grace is
        // over, KILL.
        (Phase::Killing { cause, grace_until }, Event::Tick) => {
            let over = grace_until.is_some_and(|g| now.mono >= g);
            let phase = Phase::Killing { cause, grace_until };
            (
                phase,
                if over {
                    vec![Action::EndGrace]
                } else {
                    Vec::new()
                },
            )
        }
        // The claim is being lost: whatever the phase, the job must be gone
        // within the time left, and no attempt may follow.
        (phase, Event::ClaimLosing { reason, within }) => {
            claim_losing(s, phase, reason, within, now)
        }
        // Elsewhere a signal waits until the phase can act on it: at the
        // next check of a running attempt, or in the backoff. One that
        // arrives after the command exited does not change its outcome.
        (phase, Event::Signal(sig)) => {
            s.pending_signal = Some(sig);
            (phase, Vec::new())
        }
        (Phase::Spawning, Event::Spawned { started }) => spawned(s, started),
        (Phase::Spawning, Event::StartFailed(end)) => finish(s, end, true, now),
        (
            Phase::Starting {
                started,
                step: StartStep::LookForRequest,
            },
            Event::KillRequest(req),
        ) => look_before_watching(s, started, req),
        (
            Phase::Starting {
                started,
                step: StartStep::FirstLook,
            },
            Event::Sampled { obs, .. },
        ) => start_watching(s, started, &obs, now),
        (Phase::Running(run), Event::Tick) => check(s, run, now),
        (Phase::Running(run), Event::LastBeat(mark)) => mark_read(s, run, mark, now),
        (Phase::Running(run), Event::Sampled { look, obs }) => sampled(s, run, look, &obs, now),
        (Phase::Running(run), Event::KillRequest(req)) => request_while_running(s, run, req, now),
        (Phase::Running(_), Event::Exited(status)) => exited(s, status, None, now),
        (Phase::Killing { cause, .. } | Phase::Killed { cause }, Event::Exited(status)) => {
            exited(s, status, Some(cause), now)
        }
        (Phase::Killing { cause, .. }, Event::Terminated) => (Phase::Killed { cause }, Vec::new()),
        (Phase::Exited { status, cause }, Event::AttemptOver(look)) => {
            judge(s, status, cause, look, now)
        }
        (phase @ Phase::BackingOff { .. }, Event::Tick) => backoff_tick(s, phase, now),
        (
            Phase::BackingOff {
                until,
                next_beat,
                after,
            },
            Event::KillRequest(req),
        ) => backoff_look(s, until, next_beat, after, req, now),
        (Phase::BackingOff { after, .. }, Event::AsideFailed) => finish(s, after, true, now),
        // Anything else changes nothing: the first cause wins over later
        // limits and requests, a finished run stays finished, and an
        // answer nobody asked for is dropped.
        (phase, _) => (phase, Vec::new()),
    }
}

/// The attempt's command runs. It first looks for a kill request its
/// killer could not carry out: one written while the wrapper backed off, or
/// before the first command was spawned (its record already named the run),
/// whose killer searched for the job's processes before this one existed.
fn spawned(s: &mut State, started: Now) -> Step {
    s.attempt_started = started.wall;
    let phase = Phase::Starting {
        started: started.mono,
        step: StartStep::LookForRequest,
    };
    (phase, vec![Action::ReadKillRequest])
}

/// A request for this run found as an attempt starts is honoured at once,
/// with a TERM of the wrapper's own (its requester's went to no process of
/// this attempt); the attempt's verdict reports it.
fn look_before_watching(s: &mut State, started: Instant, req: Option<KillRequest>) -> Step {
    let mut actions = Vec::new();
    if s.ours(req).is_some() {
        actions.push(Action::Terminate {
            first: Some(Signal::TERM),
            grace: s.job.settings.grace(),
        });
    }
    actions.push(Action::Sample(Look::Routine));
    let phase = Phase::Starting {
        started,
        step: StartStep::FirstLook,
    };
    (phase, actions)
}

/// The first look is the baseline of progress; the time limit counts from
/// the attempt's start.
fn start_watching(s: &mut State, started: Instant, first: &Observation, now: Now) -> Step {
    let settings = &s.job.settings;
    let run = Running {
        tracker: ProgressTracker::new(settings.liveness, first),
        next_sample: now.mono + settings.heartbeat(),
        deadline: settings.timeout().and_then(|t| started.checked_add(t)),
        mark: Mark::Unread,
        check: Check::Idle,
    };
    (Phase::Running(run), Vec::new())
}

/// One check of a running attempt: a signal first, then the time limit,
/// then the progress mark.
fn check(s: &mut State, mut run: Running, now: Now) -> Step {
    if let Some(sig) = s.pending_signal.take() {
        return kill(s, KillCause::Signal(sig), now);
    }
    if run.deadline.is_some_and(|d| now.mono >= d) {
        return kill(s, KillCause::Timeout, now);
    }
    run.check = Check::ReadingMark;
    (Phase::Running(run), vec![Action::ReadBeat])
}

/// The mark is read: at the start of a check, a sample follows when one is
/// due (every `heartbeat_ms`) or the job looks stale; after a sample, a job
/// still stale gets a full sample, and is hung only if that one leaves it
/// stale too (§7).
fn mark_read(s: &mut State, mut run: Running, mark: Option<SystemTime>, now: Now) -> Step {
    run.mark = mark.map_or(Mark::Missing, Mark::At);
    let stale = wrapper_verdict(s.last_beat(run.mark), s.job.settings.stale(), now.wall)
        == WrapperVerdict::Stale;
    match run.check {
        Check::ReadingMark if stale || now.mono >= run.next_sample => {
            run.next_sample = now.mono + s.job.settings.heartbeat();
            sample(run, Look::Routine)
        }
        Check::ReadingMark => end_check(run),
        Check::Rechecking(_) if !stale => end_check(run),
        Check::Rechecking(Look::Routine) => sample(run, Look::Verdict),
        Check::Rechecking(Look::Verdict) => kill(s, KillCause::Hung, now),
        Check::Idle | Check::Sampling(_) => (Phase::Running(run), Vec::new()),
    }
}

fn sample(mut run: Running, look: Look) -> Step {
    run.check = Check::Sampling(look);
    (Phase::Running(run), vec![Action::Sample(look)])
}

/// A sample is in. Progress moves the mark forward, never backwards: a
/// progress no newer than the mark (an explicit beat may be newer) asks
/// for no beat. The mark is read again when it may have changed and
/// matters: after progress, or when the job looks stale (someone may have
/// beaten explicitly).
fn sampled(s: &mut State, mut run: Running, look: Look, obs: &Observation, now: Now) -> Step {
    if run.check != Check::Sampling(look) {
        return (Phase::Running(run), Vec::new());
    }
    let progress = run.tracker.progress_since_last(obs);
    let stale = wrapper_verdict(s.last_beat(run.mark), s.job.settings.stale(), now.wall)
        == WrapperVerdict::Stale;
    let mut actions = Vec::new();
    match progress {
        Some(t) => {
            if !matches!(run.mark, Mark::At(m) if m >= t) {
                actions.push(Action::Beat(t));
            }
        }
        None if stale => {}
        None => return end_check(run),
    }
    run.check = Check::Rechecking(look);
    actions.push(Action::ReadBeat);
    (Phase::Running(run), actions)
}

/// The job is not stale: the check ends with a look for a kill request.
fn end_check(mut run: Running) -> Step {
    run.check = Check::Idle;
    (Phase::Running(run), vec![Action::ReadKillRequest])
}

/// A kill request for this run made while the command runs is carried out
/// by the wrapper too (§9.4): the requester sends the TERM right after
/// writing it (a second TERM from here could run a job's handler twice),
/// and the wrapper gives the job the request's grace (else its own) from
/// the moment it saw it, then KILL, so the job ends even if the requester
/// went away. A request made after the command exited kills nothing.
fn request_while_running(s: &mut State, run: Running, req: Option<KillRequest>, now: Now) -> Step {
    if run.check != Check::Idle {
        return (Phase::Running(run), Vec::new());
    }
    match s.ours(req).filter(KillRequest::decides_outcome) {
        Some(req) => {
            let grace = req.grace(s.job.settings.grace());
            let phase = Phase::Killing {
                cause: KillCause::Request,
                grace_until: now.mono.checked_add(grace),
            };
            (phase, vec![Action::Terminate { first: None, grace }])
        }
        None => (Phase::Running(run), Vec::new()),
    }
}

/// The wrapper kills the job itself: its own signal (the one it received,
/// forwarded, or TERM), then SIGCONT, its own grace, then KILL.
fn kill(s: &mut State, cause: KillCause, now: Now) -> Step {
    let first = match cause {
        KillCause::Signal(sig) => crate::sys::signal::from_number(sig).unwrap_or(Signal::TERM),
        KillCause::Timeout | KillCause::Hung | KillCause::Request | KillCause::Fenced => {
            Signal::TERM
        }
    };
    let grace = s.job.settings.grace();
    let phase = Phase::Killing {
        cause,
        grace_until: now.mono.checked_add(grace),
    };
    let actions = vec![Action::Terminate {
        first: Some(first),
        grace,
    }];
    (phase, actions)
}

/// The command exited (it stays unreaped): its leftovers are killed after
/// every exit, `success` too, so no process of a job outlives its command
/// (§6.4 step 2); then it is reaped and the attempt judged.
fn exited(s: &mut State, status: ExitStatus, cause: Option<KillCause>, now: Now) -> Step {
    // A claim being lost leaves the leftovers no grace beyond its KILL time.
    let grace = match &s.fence {
        Some(Fence {
            kill_by: Some(by), ..
        }) => by.saturating_duration_since(now.mono),
        _ => s.job.settings.grace(),
    };
    let actions = vec![
        Action::Terminate {
            first: Some(Signal::TERM),
            grace,
        },
        Action::Reap,
        Action::EchoAttemptEnded,
        Action::LookAtEnd,
    ];
    (Phase::Exited { status, cause }, actions)
}

/// The attempt is over: its verdict (§9.4), then another attempt or the
/// end (§14).
fn judge(
    s: &mut State,
    status: ExitStatus,
    cause: Option<KillCause>,
    look: EndLook,
    now: Now,
) -> Step {
    let request = s.ours(look.kill_request);
    let deciding = request.as_ref().filter(|r| r.decides_outcome());
    let end = match (cause, &s.fence) {
        (Some(KillCause::Fenced), Some(fence)) => fenced_end(&fence.reason, Some(status)),
        _ => verdict(&s.job.settings, status, cause, deciding),
    };
    // A claim being lost is never retried: the name may be another's soon.
    let retry = s.attempt < s.job.max_attempts
        && retry::is_retryable(end.outcome)
        && request.is_none()
        && !look.finished
        && s.fence.is_none();
    if !retry {
        return finish(s, end, true, now);
    }
    let delay = retry::jittered_delay(&s.job.settings, s.attempt, look.random);
    let aside = attempt_of(s.attempt, s.attempt_started, &end, now.wall, Some(delay));
    let phase = Phase::BackingOff {
        until: now.mono + delay,
        next_beat: now.mono,
        after: end,
    };
    (phase, vec![Action::PutAside(aside)])
}

/// How an attempt ended. If the wrapper killed the command, the outcome is
/// its cause (`timeout`, `hung`, `killed`); otherwise a kill request for
/// this run made while the command ran decides; otherwise the exit code.
/// `exit_code` and `signal` are always the command's, as the kernel
/// reported them.
pub(crate) fn verdict(
    settings: &Settings,
    status: ExitStatus,
    cause: Option<KillCause>,
    request: Option<&KillRequest>,
) -> JobEnd {
    let (exit_code, signal) = match status {
        ExitStatus::Code(c) => (Some(c), None),
        ExitStatus::Signal(s) => (None, Some(s)),
    };
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
        Some(KillCause::Fenced) => (
            Outcome::Lost,
            Some(fenced_reason(
                "the store could no longer vouch for the name's claim",
            )),
        ),
        // A request made after the command had exited does not decide:
        // the exit came first and keeps its own outcome.
        Some(KillCause::Request) | None => match request {
            Some(req) => (req.outcome, Some(req.reason.clone())),
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

/// The backoff: a signal ends the job as `killed`; otherwise a look for a
/// kill request.
fn backoff_tick(s: &mut State, phase: Phase, now: Now) -> Step {
    match s.pending_signal.take() {
        Some(sig) => {
            let end = JobEnd {
                outcome: Outcome::Killed,
                exit_code: None,
                signal: None,
                reason: Some(format!(
                    "the wrapper received signal {sig} while waiting to retry"
                )),
            };
            finish(s, end, false, now)
        }
        None => (phase, vec![Action::ReadKillRequest]),
    }
}

/// A kill request for this run ends the job with its outcome (whatever it
/// says about the exit: no attempt follows). Otherwise the next attempt
/// starts once the backoff is over, and meanwhile the wrapper beats every
/// `min(heartbeat_ms, 1 s)`, so no waiter's own `--stale` mistakes the
/// pause for a hang.
fn backoff_look(
    s: &mut State,
    until: Instant,
    next_beat: Instant,
    after: JobEnd,
    req: Option<KillRequest>,
    now: Now,
) -> Step {
    if let Some(req) = s.ours(req) {
        let end = JobEnd {
            outcome: req.outcome,
            exit_code: None,
            signal: None,
            reason: Some(req.reason),
        };
        return finish(s, end, false, now);
    }
    if now.mono >= until {
        // The attempt starts now, even if its command never runs.
        s.attempt += 1;
        s.attempt_started = now.wall;
        return (Phase::Spawning, vec![Action::StartAttempt(s.attempt)]);
    }
    let mut actions = Vec::new();
    let mut next_beat = next_beat;
    if now.mono >= next_beat {
        actions.push(Action::Beat(now.wall));
        next_beat = now.mono + s.job.settings.heartbeat().min(BACKOFF_BEAT);
    }
    let phase = Phase::BackingOff {
        until,
        next_beat,
        after,
    };
    (phase, actions)
}

/// The store can no longer vouch for the claim (self-fencing): the job must
/// be gone, KILL included, `within`, before another host may take the name
/// and report the run `lost`. The KILL is due at `now + min(grace,
/// within / 2)` (the other half is room for the KILL rounds and the
/// commit), whatever the phase:
/// - running: TERM, then KILL when that is due; the run ends `lost`;
/// - a kill under way keeps its cause, and its grace ends by then too;
/// - leftovers of a command that exited get no more grace than that;
/// - in the backoff (no command runs) the job ends `lost` at once;
/// - in every case no attempt follows.
///
/// A passing phase (spawning, the first look) is never seen by the loop:
/// there it changes nothing, and the loop, which asks the store at every
/// wake-up, feeds it again (the store's answer stays "losing").
fn claim_losing(s: &mut State, phase: Phase, reason: String, within: Duration, now: Now) -> Step {
    let passing = matches!(
        phase,
        Phase::Spawning | Phase::Starting { .. } | Phase::Finished(_)
    );
    if s.fence.is_some() || passing {
        return (phase, Vec::new());
    }
    let grace = s.job.settings.grace().min(within / 2);
    let kill_by = now.mono.checked_add(grace);
    s.fence = Some(Fence {
        reason: reason.clone(),
        kill_by,
    });
    match phase {
        Phase::Running(_) => {
            let phase = Phase::Killing {
                cause: KillCause::Fenced,
                grace_until: kill_by,
            };
            let actions = vec![Action::Terminate {
                first: Some(Signal::TERM),
                grace,
            }];
            (phase, actions)
        }
        Phase::Killing { cause, grace_until } => {
            let grace_until = match (grace_until, kill_by) {
                (Some(g), Some(b)) => Some(g.min(b)),
                (g, b) => g.or(b),
            };
            let over = grace_until.is_some_and(|g| now.mono >= g);
            let phase = Phase::Killing { cause, grace_until };
            (
                phase,
                if over {
                    vec![Action::EndGrace]
                } else {
                    Vec::new()
                },
            )
        }
        Phase::BackingOff { .. } => finish(s, fenced_end(&reason, None), false, now),
        // Exited: its leftovers are being killed, their grace was given
        // already (the next exit gets the short one); Killed: the tree was
        // killed, its exit is awaited.
        phase => (phase, Vec::new()),
    }
}

/// The reason a fenced run ends with.
fn fenced_reason(why: &str) -> String {
    format!(
        "{why}; the wrapper killed the job so that it does not run on after being reported lost"
    )
}

/// How a run ends whose wrapper stopped it because its store could no
/// longer vouch for its claim: `lost`, which is what every other host
/// reports once the claim is gone; the command's exit as the kernel
/// reported it, if it had one.
fn fenced_end(why: &str, status: Option<ExitStatus>) -> JobEnd {
    let (exit_code, signal) = match status {
        Some(ExitStatus::Code(c)) => (Some(c), None),
        Some(ExitStatus::Signal(s)) => (None, Some(s)),
        None => (None, None),
    };
    JobEnd {
        outcome: Outcome::Lost,
        exit_code,
        signal,
        reason: Some(fenced_reason(why)),
    }
}

/// The job ends with `end`. A job that may take several attempts lists its
/// last one too, unless the end interrupted a backoff (`ended_attempt`
/// false: the attempt is listed already).
fn finish(s: &mut State, end: JobEnd, ended_attempt: bool, now: Now) -> Step {
    let last_attempt = (s.job.max_attempts > 1 && ended_attempt)
        .then(|| attempt_of(s.attempt, s.attempt_started, &end, now.wall, None));
    let action = Action::Commit {
        end: end.clone(),
        last_attempt,
        at: now.wall,
    };
    (Phase::Finished(end), vec![action])
}

#[cfg(test)]
mod tests {
    //! Every rule on plain data: no process, no file, no sleep. Time is a
    //! parameter: `at(ms)` is `ms` milliseconds after the job started.

    use super::*;
    use crate::model::LivenessMode;
    use std::sync::OnceLock;
    use std::time::UNIX_EPOCH;

    const JOB_ID: &str = "run-1";

    /// Both clocks, `ms` after the job's start.
    fn at(ms: u64) -> Now {
        // Any fixed Instant will do as the origin: nothing waits on it.
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        Now {
            wall: UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms),
            mono: origin + Duration::from_millis(ms),
        }
    }

    fn wall(ms: u64) -> SystemTime {
        at(ms).wall
    }

    /// heartbeat 10 s, stale 60 s, grace 5 s, auto liveness, no limit.
    fn settings() -> Settings {
        Settings {
            heartbeat_ms: 10_000,
            stale_ms: 60_000,
            timeout_ms: None,
            grace_ms: 5_000,
            liveness: LivenessMode::Auto,
            retries: 0,
            backoff_ms: 1_000,
            backoff_max_ms: 300_000,
        }
    }

    fn with_retries(retries: u32) -> Settings {
        Settings {
            retries,
            ..settings()
        }
    }

    fn new_state(settings: Settings) -> State {
        State::new(Job {
            job_id: JOB_ID.into(),
            settings,
            max_attempts: settings.max_attempts(),
            started: wall(0),
        })
    }

    /// A look at `ms`: `log_len` bytes of output (last written at `ms`) and
    /// `cpu` ticks.
    fn look(ms: u64, log_len: u64, cpu: u64) -> Observation {
        Observation {
            at: wall(ms),
            log_len,
            log_mtime: Some(wall(ms)),
            cpu_ticks: Some(cpu),
        }
    }

    fn request(outcome: Outcome, grace_ms: Option<u64>, command_exited: bool) -> KillRequest {
        KillRequest {
            job_id: JOB_ID.into(),
            outcome,
            reason: format!("asked for {outcome}"),
            at: "2026-01-01T00:00:00Z".into(),
            grace_ms,
            command_exited,
        }
    }

    /// The first attempt, spawned at 0 and under watch (its first look saw
    /// nothing), before its first check.
    fn running(settings: Settings) -> State {
        let mut s = new_state(settings);
        let first = decide(&mut s, Event::Spawned { started: at(0) }, at(0));
        assert_eq!(first, [Action::ReadKillRequest]);
        let none = decide(&mut s, Event::KillRequest(None), at(0));
        assert_eq!(none, [Action::Sample(Look::Routine)]);
        let obs = Event::Sampled {
            look: Look::Routine,
            obs: look(0, 0, 0),
        };
        assert_eq!(decide(&mut s, obs, at(0)), []);
        assert!(matches!(s.phase(), Phase::Running(_)));
        s
    }

    /// A check at `ms` that finds the mark at `mark_ms` and asks for no
    /// sample: it ends with a look for a kill request.
    fn quiet_check(s: &mut State, ms: u64, mark_ms: u64) {
        assert_eq!(decide(s, Event::Tick, at(ms)), [Action::ReadBeat]);
        let mark = Event::LastBeat(Some(wall(mark_ms)));
        assert_eq!(decide(s, mark, at(ms)), [Action::ReadKillRequest]);
        assert_eq!(decide(s, Event::KillRequest(None), at(ms)), []);
    }

    /// A check at `ms` that samples (no progress) and finds the job fresh.
    fn sampled_check(s: &mut State, ms: u64, mark_ms: u64) {
        assert_eq!(decide(s, Event::Tick, at(ms)), [Action::ReadBeat]);
        let mark = Event::LastBeat(Some(wall(mark_ms)));
        assert_eq!(decide(s, mark, at(ms)), [Action::Sample(Look::Routine)]);
        let sampled = Event::Sampled {
            look: Look::Routine,
            obs: look(ms, 0, 0),
        };
        assert_eq!(decide(s, sampled, at(ms)), [Action::ReadKillRequest]);
        assert_eq!(decide(s, Event::KillRequest(None), at(ms)), []);
    }

    fn terminate(first: Option<Signal>, grace_ms: u64) -> Action {
        Action::Terminate {
            first,
            grace: Duration::from_millis(grace_ms),
        }
    }

    fn cause(s: &State) -> Option<KillCause> {
        match s.phase() {
            Phase::Killing { cause, .. } | Phase::Killed { cause } => Some(*cause),
            Phase::Exited { cause, .. } => *cause,
            _ => None,
        }
    }

    /// The attempt is over: how the command exited, and the end look.
    fn over(s: &mut State, status: ExitStatus, look: EndLook, ms: u64) -> Vec<Action> {
        let leftovers = decide(s, Event::Exited(status), at(ms));
        assert_eq!(
            leftovers,
            [
                terminate(Some(Signal::TERM), 5_000),
                Action::Reap,
                Action::EchoAttemptEnded,
                Action::LookAtEnd
            ],
            "leftovers are killed after every exit, then the command is reaped"
        );
        assert_eq!(decide(s, Event::Terminated, at(ms)), []);
        decide(s, Event::AttemptOver(look), at(ms))
    }

    fn nothing_found() -> EndLook {
        EndLook {
            kill_request: None,
            finished: false,
            random: 0,
        }
    }

    fn committed(actions: &[Action]) -> (JobEnd, Option<Attempt>) {
        match actions {
            [
                Action::Commit {
                    end, last_attempt, ..
                },
            ] => (end.clone(), last_attempt.clone()),
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    // ------------------------------------------------- checks and progress

    #[test]
    fn a_quiet_check_reads_the_mark_then_looks_for_a_kill_request() {
        let mut s = running(settings());
        quiet_check(&mut s, 1_000, 0);
        assert!(matches!(s.phase(), Phase::Running(_)));
    }

    #[test]
    fn a_sample_is_due_every_heartbeat_and_progress_moves_the_mark() {
        let mut s = running(settings());
        quiet_check(&mut s, 9_999, 0);
        assert_eq!(decide(&mut s, Event::Tick, at(10_000)), [Action::ReadBeat]);
        let mark = Event::LastBeat(Some(wall(0)));
        assert_eq!(
            decide(&mut s, mark, at(10_000)),
            [Action::Sample(Look::Routine)]
        );
        // New output, last written at 9.5 s: dated by the log, not the sample.
        let obs = Observation {
            log_mtime: Some(wall(9_500)),
            ..look(10_000, 42, 0)
        };
        let sampled = Event::Sampled {
            look: Look::Routine,
            obs,
        };
        assert_eq!(
            decide(&mut s, sampled, at(10_000)),
            [Action::Beat(wall(9_500)), Action::ReadBeat]
        );
        let mark = Event::LastBeat(Some(wall(9_500)));
        assert_eq!(decide(&mut s, mark, at(10_000)), [Action::ReadKillRequest]);
        // The next sample is due a heartbeat later.
        quiet_check(&mut s, 19_999, 9_500);
    }

    #[test]
    fn the_heartbeat_never_moves_backwards() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(10_000));
        // An explicit beat at 8 s is newer than the output (at 5 s).
        let mark = Event::LastBeat(Some(wall(8_000)));
        assert_eq!(
            decide(&mut s, mark, at(10_000)),
            [Action::Sample(Look::Routine)]
        );
        let obs = Observation {
            log_mtime: Some(wall(5_000)),
            ..look(10_000, 7, 0)
        };
        let sampled = Event::Sampled {
            look: Look::Routine,
            obs,
        };
        assert_eq!(
            decide(&mut s, sampled, at(10_000)),
            [Action::ReadBeat],
            "no beat older than the mark"
        );
    }

    #[test]
    fn a_job_is_hung_only_when_a_full_sample_leaves_it_stale_too() {
        let mut s = running(settings());
        // Nothing since the start; at 60 s the job looks stale.
        assert_eq!(decide(&mut s, Event::Tick, at(60_000)), [Action::ReadBeat]);
        let mark = || Event::LastBeat(Some(wall(0)));
        assert_eq!(
            decide(&mut s, mark(), at(60_000)),
            [Action::Sample(Look::Routine)],
            "a fresh sample first: progress up to now still counts"
        );
        let routine = Event::Sampled {
            look: Look::Routine,
            obs: look(60_000, 0, 0),
        };
        assert_eq!(
            decide(&mut s, routine, at(60_000)),
            [Action::ReadBeat],
            "someone may have beaten meanwhile"
        );
        assert_eq!(
            decide(&mut s, mark(), at(60_000)),
            [Action::Sample(Look::Verdict)],
            "a hung verdict rests on a full look"
        );
        let verdict = Event::Sampled {
            look: Look::Verdict,
            obs: look(60_000, 0, 0),
        };
        assert_eq!(decide(&mut s, verdict, at(60_000)), [Action::ReadBeat]);
        assert_eq!(
            decide(&mut s, mark(), at(60_000)),
            [terminate(Some(Signal::TERM), 5_000)]
        );
        assert_eq!(cause(&s), Some(KillCause::Hung));
    }

    #[test]
    fn progress_that_only_the_full_sample_sees_keeps_the_job_alive() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(60_000));
        decide(&mut s, Event::LastBeat(Some(wall(0))), at(60_000));
        let routine = Event::Sampled {
            look: Look::Routine,
            obs: look(60_000, 0, 0),
        };
        decide(&mut s, routine, at(60_000));
        decide(&mut s, Event::LastBeat(Some(wall(0))), at(60_000));
        // A grandchild born since the last discovery burnt CPU.
        let verdict = Event::Sampled {
            look: Look::Verdict,
            obs: look(60_000, 0, 30),
        };
        assert_eq!(
            decide(&mut s, verdict, at(60_000)),
            [Action::Beat(wall(60_000)), Action::ReadBeat]
        );
        let mark = Event::LastBeat(Some(wall(60_000)));
        assert_eq!(decide(&mut s, mark, at(60_000)), [Action::ReadKillRequest]);
        assert!(matches!(s.phase(), Phase::Running(_)));
    }

    #[test]
    fn an_explicit_beat_found_on_the_recheck_keeps_the_job_alive() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(60_000));
        decide(&mut s, Event::LastBeat(Some(wall(0))), at(60_000));
        let routine = Event::Sampled {
            look: Look::Routine,
            obs: look(60_000, 0, 0),
        };
        assert_eq!(decide(&mut s, routine, at(60_000)), [Action::ReadBeat]);
        // `touch "$JOBWATCH_HEARTBEAT"` a moment ago.
        let mark = Event::LastBeat(Some(wall(59_990)));
        assert_eq!(decide(&mut s, mark, at(60_000)), [Action::ReadKillRequest]);
        assert!(matches!(s.phase(), Phase::Running(_)));
    }

    #[test]
    fn a_missing_mark_counts_as_the_jobs_start() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(9_000));
        assert_eq!(
            decide(&mut s, Event::LastBeat(None), at(9_000)),
            [Action::ReadKillRequest],
            "fresh until start + stale"
        );
        decide(&mut s, Event::KillRequest(None), at(9_000));
        decide(&mut s, Event::Tick, at(60_000));
        assert_eq!(
            decide(&mut s, Event::LastBeat(None), at(60_000)),
            [Action::Sample(Look::Routine)],
            "stale at start + stale"
        );
    }

    #[test]
    fn progress_after_the_mark_went_missing_recreates_it() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(10_000));
        decide(&mut s, Event::LastBeat(None), at(10_000));
        let sampled = Event::Sampled {
            look: Look::Routine,
            obs: look(10_000, 0, 5),
        };
        assert_eq!(
            decide(&mut s, sampled, at(10_000)),
            [Action::Beat(wall(10_000)), Action::ReadBeat]
        );
    }

    #[test]
    fn the_wrapper_sleeps_until_the_next_sample_the_time_limit_or_the_stale_deadline() {
        let limited = Settings {
            timeout_ms: Some(25_000),
            ..settings()
        };
        let mut s = running(limited);
        assert_eq!(
            s.wake_in(at(0)),
            Duration::ZERO,
            "a new attempt is checked at once"
        );
        quiet_check(&mut s, 0, 0);
        assert_eq!(s.wake_in(at(0)), Duration::from_secs(10), "the next sample");
        let mut s = running(limited);
        sampled_check(&mut s, 20_000, 0);
        assert_eq!(
            s.wake_in(at(20_000)),
            Duration::from_secs(5),
            "the time limit"
        );
        // Without a limit, a job last seen making progress 57 s ago.
        let mut s = running(settings());
        sampled_check(&mut s, 57_000, 0);
        assert_eq!(
            s.wake_in(at(57_000)),
            Duration::from_secs(3),
            "the stale deadline"
        );
        assert_eq!(
            s.wake_in(at(70_000)),
            Duration::from_millis(1),
            "never a busy loop"
        );
    }

    // ------------------------------------------------------ limits, signals

    #[test]
    fn the_time_limit_kills_with_term_and_the_jobs_grace() {
        let limited = Settings {
            timeout_ms: Some(30_000),
            ..settings()
        };
        let mut s = running(limited);
        quiet_check(&mut s, 9_999, 0);
        assert_eq!(
            decide(&mut s, Event::Tick, at(30_000)),
            [terminate(Some(Signal::TERM), 5_000)]
        );
        assert!(matches!(
            s.phase(),
            Phase::Killing {
                cause: KillCause::Timeout,
                grace_until: Some(g),
            } if *g == at(35_000).mono
        ));
        let end = verdict(
            &limited,
            ExitStatus::Signal(15),
            Some(KillCause::Timeout),
            None,
        );
        assert_eq!(end.outcome, Outcome::Timeout);
        assert_eq!(end.signal, Some(15), "the command's own ending");
        assert_eq!(
            end.reason.as_deref(),
            Some("ran longer than its time limit of 30s")
        );
    }

    #[test]
    fn a_signal_to_the_wrapper_is_forwarded_and_recorded_as_killed() {
        let mut s = running(settings());
        assert_eq!(decide(&mut s, Event::Signal(2), at(1_000)), []);
        assert_eq!(
            decide(&mut s, Event::Tick, at(1_000)),
            [terminate(Some(Signal::INT), 5_000)],
            "the same signal, forwarded"
        );
        assert_eq!(cause(&s), Some(KillCause::Signal(2)));
        let end = verdict(
            &settings(),
            ExitStatus::Signal(2),
            Some(KillCause::Signal(2)),
            None,
        );
        assert_eq!(end.outcome, Outcome::Killed);
        assert_eq!(
            end.reason.as_deref(),
            Some("the wrapper received signal 2; forwarded to the job")
        );
    }

    #[test]
    fn a_signal_comes_before_the_time_limit_in_one_check() {
        let limited = Settings {
            timeout_ms: Some(1_000),
            ..settings()
        };
        let mut s = running(limited);
        decide(&mut s, Event::Signal(15), at(5_000));
        decide(&mut s, Event::Tick, at(5_000));
        assert_eq!(cause(&s), Some(KillCause::Signal(15)));
    }

    #[test]
    fn a_second_signal_ends_the_grace_at_once() {
        let mut s = running(settings());
        decide(&mut s, Event::Signal(15), at(1_000));
        decide(&mut s, Event::Tick, at(1_000));
        assert_eq!(
            decide(&mut s, Event::Signal(2), at(1_500)),
            [Action::EndGrace]
        );
        assert_eq!(s.pending_signal, None, "it was used up");
        assert_eq!(
            cause(&s),
            Some(KillCause::Signal(15)),
            "the first cause wins"
        );
    }

    #[test]
    fn the_grace_ends_at_its_deadline() {
        let mut s = running(settings());
        decide(&mut s, Event::Signal(15), at(1_000));
        decide(&mut s, Event::Tick, at(1_000));
        assert_eq!(decide(&mut s, Event::Tick, at(5_999)), []);
        assert_eq!(decide(&mut s, Event::Tick, at(6_000)), [Action::EndGrace]);
        assert_eq!(decide(&mut s, Event::Terminated, at(6_100)), []);
        assert!(matches!(
            s.phase(),
            Phase::Killed {
                cause: KillCause::Signal(15)
            }
        ));
    }

    #[test]
    fn the_first_cause_wins() {
        let limited = Settings {
            timeout_ms: Some(1_000),
            ..settings()
        };
        let mut s = running(limited);
        decide(&mut s, Event::Tick, at(1_000));
        assert_eq!(cause(&s), Some(KillCause::Timeout));
        // Nothing later replaces it: a request, a stale job, another tick.
        let req = Event::KillRequest(Some(request(Outcome::Killed, None, false)));
        assert_eq!(decide(&mut s, req, at(1_001)), []);
        decide(&mut s, Event::Terminated, at(2_000));
        assert_eq!(decide(&mut s, Event::Tick, at(100_000)), []);
        assert_eq!(cause(&s), Some(KillCause::Timeout));
        // A request that arrived meanwhile does not decide the outcome either.
        let look = EndLook {
            kill_request: Some(request(Outcome::Killed, None, false)),
            ..nothing_found()
        };
        let (end, _) = committed(&over(&mut s, ExitStatus::Signal(15), look, 2_000));
        assert_eq!(end.outcome, Outcome::Timeout);
    }

    #[test]
    fn a_signal_after_the_termination_waits_for_the_backoff() {
        let limited = Settings {
            timeout_ms: Some(1_000),
            ..with_retries(2)
        };
        let mut s = running(limited);
        decide(&mut s, Event::Tick, at(1_000));
        decide(&mut s, Event::Terminated, at(1_100));
        assert_eq!(
            decide(&mut s, Event::Signal(1), at(1_200)),
            [],
            "no grace left to cut"
        );
        let actions = over(&mut s, ExitStatus::Signal(15), nothing_found(), 1_300);
        assert!(
            matches!(actions.as_slice(), [Action::PutAside(a)] if a.outcome == Outcome::Timeout),
            "the timed-out attempt is listed: {actions:?}"
        );
        let (end, last) = committed(&decide(&mut s, Event::Tick, at(1_300)));
        assert_eq!(end.outcome, Outcome::Killed);
        assert_eq!(
            end.reason.as_deref(),
            Some("the wrapper received signal 1 while waiting to retry")
        );
        assert_eq!(last, None, "the attempt is listed already");
    }

    #[test]
    fn a_signal_while_leftovers_are_killed_does_not_cut_their_grace() {
        let mut s = running(settings());
        decide(&mut s, Event::Exited(ExitStatus::Code(0)), at(1_000));
        assert_eq!(decide(&mut s, Event::Signal(15), at(1_001)), []);
        assert_eq!(decide(&mut s, Event::Tick, at(9_000)), []);
        // The exit came first: it keeps its own outcome.
        decide(&mut s, Event::Terminated, at(9_000));
        let (end, _) = committed(&decide(
            &mut s,
            Event::AttemptOver(nothing_found()),
            at(9_000),
        ));
        assert_eq!(end.outcome, Outcome::Success);
    }

    // --------------------------------------------------------- kill requests

    #[test]
    fn a_kill_request_is_carried_out_with_the_requesters_grace_and_no_term_of_its_own() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(1_000));
        decide(&mut s, Event::LastBeat(Some(wall(0))), at(1_000));
        let req = Event::KillRequest(Some(request(Outcome::Killed, Some(250), false)));
        assert_eq!(
            decide(&mut s, req, at(1_000)),
            [terminate(None, 250)],
            "the requester sent the TERM; the wrapper only waits, then KILLs"
        );
        assert!(matches!(
            s.phase(),
            Phase::Killing {
                cause: KillCause::Request,
                grace_until: Some(g),
            } if *g == at(1_250).mono
        ));
        decide(&mut s, Event::Terminated, at(1_250));
        let look = EndLook {
            kill_request: Some(request(Outcome::Killed, Some(250), false)),
            ..nothing_found()
        };
        let (end, _) = committed(&over(&mut s, ExitStatus::Signal(15), look, 1_300));
        assert_eq!(end.outcome, Outcome::Killed);
        assert_eq!(end.reason.as_deref(), Some("asked for killed"));
        assert_eq!(end.signal, Some(15));
    }

    #[test]
    fn a_kill_request_without_a_grace_gets_the_jobs_own() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(1_000));
        decide(&mut s, Event::LastBeat(Some(wall(0))), at(1_000));
        let req = Event::KillRequest(Some(request(Outcome::Hung, None, false)));
        assert_eq!(decide(&mut s, req, at(1_000)), [terminate(None, 5_000)]);
    }

    #[test]
    fn a_kill_request_for_another_run_is_ignored() {
        let mut s = running(settings());
        decide(&mut s, Event::Tick, at(1_000));
        decide(&mut s, Event::LastBeat(Some(wall(0))), at(1_000));
        let earlier = KillRequest {
            job_id: "run-0".into(),
            ..request(Outcome::Killed, None, false)
        };
        assert_eq!(
            decide(&mut s, Event::KillRequest(Some(earlier.clone())), at(1_000)),
            []
        );
        assert!(matches!(s.phase(), Phase::Running(_)));
        let look = EndLook {
            kill_request: Some(earlier),
            ..nothing_found()
        };
        let (end, _) = committed(&over(&mut s, ExitStatus::Code(0), look, 2_000));
        assert_eq!(end.outcome, Outcome::Success);
    }

    #[test]
    fn a_request_made_after_the_exit_kills_nothing_keeps_the_exits_outcome_and_ends_retries() {
        let mut s = running(with_retries(3));
        decide(&mut s, Event::Tick, at(1_000));
        decide(&mut s, Event::LastBeat(Some(wall(0))), at(1_000));
        let late = request(Outcome::Killed, None, true);
        assert_eq!(
            decide(&mut s, Event::KillRequest(Some(late.clone())), at(1_000)),
            [],
            "the command had exited when it was written"
        );
        let look = EndLook {
            kill_request: Some(late),
            ..nothing_found()
        };
        let (end, last) = committed(&over(&mut s, ExitStatus::Code(3), look, 1_100));
        assert_eq!(end.outcome, Outcome::Failed, "the exit came first");
        assert_eq!(end.exit_code, Some(3));
        assert!(
            last.is_some(),
            "not retried, and listed as the last attempt"
        );
    }

    #[test]
    fn a_request_written_while_the_command_ran_decides_even_when_the_exit_is_seen_first() {
        // The requester's TERM ended the command before the wrapper looked.
        let mut s = running(settings());
        let look = EndLook {
            kill_request: Some(request(Outcome::Timeout, None, false)),
            ..nothing_found()
        };
        let (end, _) = committed(&over(&mut s, ExitStatus::Signal(15), look, 1_000));
        assert_eq!(end.outcome, Outcome::Timeout);
        assert_eq!(end.signal, Some(15));
    }

    // -------------------------------------------------------------- verdicts

    #[test]
    fn an_exit_of_its_own_is_success_on_zero_and_failed_otherwise() {
        let s = settings();
        let ok = verdict(&s, ExitStatus::Code(0), None, None);
        assert_eq!(
            (ok.outcome, ok.exit_code, ok.reason),
            (Outcome::Success, Some(0), None)
        );
        let bad = verdict(&s, ExitStatus::Code(2), None, None);
        assert_eq!(bad.outcome, Outcome::Failed);
        let sig = verdict(&s, ExitStatus::Signal(9), None, None);
        assert_eq!(
            (sig.outcome, sig.exit_code, sig.signal),
            (Outcome::Failed, None, Some(9))
        );
        let hung = verdict(&s, ExitStatus::Signal(15), Some(KillCause::Hung), None);
        assert_eq!(hung.outcome, Outcome::Hung);
        assert_eq!(
            hung.reason.as_deref(),
            Some("no progress (auto liveness) for 1m")
        );
    }

    // --------------------------------------------------------------- retries

    #[test]
    fn a_failed_attempt_is_retried_after_a_jittered_backoff_while_attempts_are_left() {
        let mut s = running(with_retries(1));
        let look = EndLook {
            random: 7,
            ..nothing_found()
        };
        let actions = over(&mut s, ExitStatus::Code(1), look, 3_000);
        let [Action::PutAside(attempt)] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(attempt.attempt, 1);
        assert_eq!(attempt.outcome, Outcome::Failed);
        assert_eq!(attempt.duration_ms, 3_000);
        let delay = attempt.backoff_ms.unwrap();
        assert!((500..=1_000).contains(&delay), "within [d/2, d]: {delay}");
        assert!(matches!(
            s.phase(),
            Phase::BackingOff { until, .. } if *until == at(3_000 + delay).mono
        ));
    }

    #[test]
    fn hung_and_timed_out_attempts_are_retried_too() {
        for cause in [KillCause::Hung, KillCause::Timeout] {
            let mut s = running(with_retries(1));
            s.phase = Phase::Killed { cause };
            let actions = over(&mut s, ExitStatus::Signal(15), nothing_found(), 1_000);
            assert!(
                matches!(actions.as_slice(), [Action::PutAside(_)]),
                "{cause:?}: {actions:?}"
            );
        }
    }

    #[test]
    fn killed_attempts_are_never_retried() {
        // By a signal to the wrapper.
        let mut s = running(with_retries(3));
        s.phase = Phase::Killed {
            cause: KillCause::Signal(15),
        };
        let (end, _) = committed(&over(
            &mut s,
            ExitStatus::Signal(15),
            nothing_found(),
            1_000,
        ));
        assert_eq!(end.outcome, Outcome::Killed);
        // By a request, even one asking for a retryable outcome.
        let mut s = running(with_retries(3));
        s.phase = Phase::Killed {
            cause: KillCause::Request,
        };
        let look = EndLook {
            kill_request: Some(request(Outcome::Hung, None, false)),
            ..nothing_found()
        };
        let (end, _) = committed(&over(&mut s, ExitStatus::Signal(15), look, 1_000));
        assert_eq!(end.outcome, Outcome::Hung, "a request ends the job");
    }

    #[test]
    fn no_attempt_follows_once_a_status_exists() {
        let mut s = running(with_retries(3));
        let look = EndLook {
            finished: true,
            ..nothing_found()
        };
        let (end, _) = committed(&over(&mut s, ExitStatus::Code(1), look, 1_000));
        assert_eq!(end.outcome, Outcome::Failed);
    }

    #[test]
    fn the_last_attempt_is_listed_only_for_a_job_that_may_take_several() {
        let mut single = running(settings());
        let (_, last) = committed(&over(
            &mut single,
            ExitStatus::Code(1),
            nothing_found(),
            1_000,
        ));
        assert_eq!(last, None);
        let mut several = running(with_retries(2));
        several.attempt = 3;
        let (end, last) = committed(&over(
            &mut several,
            ExitStatus::Code(1),
            nothing_found(),
            1_000,
        ));
        assert_eq!(end.outcome, Outcome::Failed, "no attempts left");
        let last = last.unwrap();
        assert_eq!((last.attempt, last.backoff_ms), (3, None));
    }

    /// A job in its backoff after a failed first attempt (0 to 1 s), the
    /// backoff lasting `delay_ms` from 1 s.
    fn backing_off(settings: Settings, delay_ms: u64) -> State {
        let mut s = running(settings);
        s.phase = Phase::BackingOff {
            until: at(1_000 + delay_ms).mono,
            next_beat: at(1_000).mono,
            after: verdict(&settings, ExitStatus::Code(1), None, None),
        };
        s
    }

    #[test]
    fn the_backoff_beats_while_it_waits_then_starts_the_next_attempt() {
        let fast = Settings {
            heartbeat_ms: 300,
            ..with_retries(1)
        };
        let mut s = backing_off(fast, 2_000);
        let look = |s: &mut State, ms| {
            assert_eq!(decide(s, Event::Tick, at(ms)), [Action::ReadKillRequest]);
            decide(s, Event::KillRequest(None), at(ms))
        };
        assert_eq!(look(&mut s, 1_000), [Action::Beat(wall(1_000))]);
        assert_eq!(look(&mut s, 1_050), [], "every min(heartbeat, 1 s)");
        assert_eq!(
            s.wake_in(at(1_050)),
            Duration::from_millis(50),
            "looks every 50 ms"
        );
        assert_eq!(look(&mut s, 1_300), [Action::Beat(wall(1_300))]);
        assert_eq!(look(&mut s, 3_000), [Action::StartAttempt(2)]);
        assert!(matches!(s.phase(), Phase::Spawning));
        // The slow default heartbeat still beats every second.
        let mut s = backing_off(with_retries(1), 5_000);
        assert_eq!(look(&mut s, 1_000), [Action::Beat(wall(1_000))]);
        assert_eq!(look(&mut s, 1_999), []);
        assert_eq!(look(&mut s, 2_000), [Action::Beat(wall(2_000))]);
    }

    // -------------------------------------------------------- self-fencing

    fn losing(within_ms: u64) -> Event {
        Event::ClaimLosing {
            reason: "no etcd keepalive succeeded for 8s".into(),
            within: Duration::from_millis(within_ms),
        }
    }

    #[test]
    fn a_claim_being_lost_terms_the_job_then_kills_it_after_half_the_time_left_and_ends_lost() {
        // Grace 5 s, 4 s left: KILL after min(5 s, 2 s) = 2 s.
        let mut s = running(with_retries(3));
        assert!(!s.fencing());
        assert_eq!(
            decide(&mut s, losing(4_000), at(1_000)),
            [terminate(Some(Signal::TERM), 2_000)]
        );
        assert!(s.fencing());
        assert_eq!(cause(&s), Some(KillCause::Fenced));
        assert_eq!(decide(&mut s, Event::Tick, at(2_999)), []);
        assert_eq!(decide(&mut s, Event::Tick, at(3_000)), [Action::EndGrace]);
        assert_eq!(decide(&mut s, Event::Terminated, at(3_010)), []);
        // Its leftovers get no grace past the KILL time; the run is never
        // retried, and ends lost with the store's reason.
        let leftovers = decide(&mut s, Event::Exited(ExitStatus::Signal(9)), at(3_020));
        assert_eq!(leftovers[0], terminate(Some(Signal::TERM), 0));
        decide(&mut s, Event::Terminated, at(3_020));
        let (end, _) = committed(&decide(
            &mut s,
            Event::AttemptOver(nothing_found()),
            at(3_030),
        ));
        assert_eq!(end.outcome, Outcome::Lost);
        assert_eq!(end.signal, Some(9));
        let reason = end.reason.unwrap();
        assert!(
            reason.contains("no etcd keepalive succeeded for 8s"),
            "{reason}"
        );
        assert!(reason.contains("killed the job"), "{reason}");
    }

    #[test]
    fn a_claim_being_lost_with_time_to_spare_keeps_the_jobs_own_grace() {
        let mut s = running(settings());
        assert_eq!(
            decide(&mut s, losing(60_000), at(1_000)),
            [terminate(Some(Signal::TERM), 5_000)]
        );
    }

    #[test]
    fn a_claim_lost_already_kills_at_once() {
        let mut s = running(settings());
        assert_eq!(
            decide(&mut s, losing(0), at(1_000)),
            [terminate(Some(Signal::TERM), 0)]
        );
        assert_eq!(decide(&mut s, Event::Tick, at(1_000)), [Action::EndGrace]);
    }

    #[test]
    fn a_claim_being_lost_during_a_kill_shortens_its_grace_keeps_its_cause_and_ends_retries() {
        let limited = Settings {
            timeout_ms: Some(1_000),
            ..with_retries(3)
        };
        let mut s = running(limited);
        decide(&mut s, Event::Tick, at(1_000));
        assert_eq!(cause(&s), Some(KillCause::Timeout));
        // The timeout's grace would end at 6 s; 2 s left at 2 s: KILL at 3 s.
        assert_eq!(decide(&mut s, losing(2_000), at(2_000)), []);
        assert_eq!(decide(&mut s, Event::Tick, at(2_999)), []);
        assert_eq!(decide(&mut s, Event::Tick, at(3_000)), [Action::EndGrace]);
        decide(&mut s, Event::Terminated, at(3_000));
        let (end, _) = committed(&over_fenced(&mut s, 3_000));
        assert_eq!(end.outcome, Outcome::Timeout, "the first cause wins");
    }

    /// The attempt is over after a fence: its leftovers' grace is what the
    /// fence left.
    fn over_fenced(s: &mut State, ms: u64) -> Vec<Action> {
        let leftovers = decide(s, Event::Exited(ExitStatus::Signal(9)), at(ms));
        assert!(
            matches!(leftovers[0], Action::Terminate { grace, .. } if grace <= Duration::from_secs(1)),
            "{leftovers:?}"
        );
        decide(s, Event::Terminated, at(ms));
        decide(s, Event::AttemptOver(nothing_found()), at(ms))
    }

    #[test]
    fn a_claim_being_lost_during_the_backoff_ends_the_job_lost_at_once() {
        let mut s = backing_off(with_retries(1), 5_000);
        let (end, last) = committed(&decide(&mut s, losing(4_000), at(2_000)));
        assert_eq!(end.outcome, Outcome::Lost);
        assert_eq!((end.exit_code, end.signal), (None, None));
        assert_eq!(last, None, "the attempt is listed already");
    }

    #[test]
    fn a_claim_being_lost_is_decided_once() {
        let mut s = running(settings());
        decide(&mut s, losing(4_000), at(1_000));
        assert_eq!(decide(&mut s, losing(0), at(1_500)), []);
        assert_eq!(
            decide(&mut s, Event::Tick, at(2_999)),
            [],
            "the first deadline stands"
        );
    }

    #[test]
    fn a_claim_being_lost_in_a_passing_phase_waits_to_be_fed_again() {
        let mut s = new_state(settings());
        decide(&mut s, Event::Spawned { started: at(0) }, at(0));
        assert_eq!(decide(&mut s, losing(4_000), at(0)), []);
        assert!(
            !s.fencing(),
            "the loop feeds it again once the attempt runs"
        );
    }

    #[test]
    fn a_kill_request_during_the_backoff_ends_the_job_with_its_outcome() {
        let mut s = backing_off(with_retries(1), 5_000);
        decide(&mut s, Event::Tick, at(2_000));
        // Whatever it says about the exit: no further attempt.
        let req = Event::KillRequest(Some(request(Outcome::Timeout, None, true)));
        let (end, last) = committed(&decide(&mut s, req, at(2_000)));
        assert_eq!(end.outcome, Outcome::Timeout);
        assert_eq!((end.exit_code, end.signal), (None, None));
        assert_eq!(last, None, "the attempt is listed already");
    }

    #[test]
    fn a_later_attempt_honours_a_request_that_predates_it_with_a_term_of_its_own() {
        let mut s = backing_off(with_retries(1), 1_000);
        decide(&mut s, Event::Tick, at(2_000));
        decide(&mut s, Event::KillRequest(None), at(2_000));
        let started = decide(&mut s, Event::Spawned { started: at(2_010) }, at(2_010));
        assert_eq!(started, [Action::ReadKillRequest]);
        let req = Event::KillRequest(Some(request(Outcome::Killed, Some(100), false)));
        assert_eq!(
            decide(&mut s, req, at(2_010)),
            [
                terminate(Some(Signal::TERM), 5_000),
                Action::Sample(Look::Routine)
            ]
        );
        decide(&mut s, Event::Terminated, at(2_020));
        let first = Event::Sampled {
            look: Look::Routine,
            obs: look(2_020, 0, 0),
        };
        decide(&mut s, first, at(2_020));
        let look = EndLook {
            kill_request: Some(request(Outcome::Killed, Some(100), false)),
            ..nothing_found()
        };
        let (end, last) = committed(&over(&mut s, ExitStatus::Signal(15), look, 2_030));
        assert_eq!(end.outcome, Outcome::Killed);
        assert_eq!(last.map(|a| a.attempt), Some(2));
    }

    #[test]
    fn the_first_attempt_honours_a_request_written_before_its_command_existed() {
        // `jobwatch kill` read the start record and found no process.
        let mut s = new_state(settings());
        assert_eq!(
            decide(&mut s, Event::Spawned { started: at(0) }, at(0)),
            [Action::ReadKillRequest]
        );
        let req = Event::KillRequest(Some(request(Outcome::Killed, Some(20_000), false)));
        assert_eq!(
            decide(&mut s, req, at(0)),
            [
                terminate(Some(Signal::TERM), 5_000),
                Action::Sample(Look::Routine)
            ]
        );
    }

    #[test]
    fn a_next_attempt_that_cannot_start_ends_the_job_failed_and_is_listed() {
        let mut s = backing_off(with_retries(1), 1_000);
        decide(&mut s, Event::Tick, at(2_000));
        decide(&mut s, Event::KillRequest(None), at(2_000));
        let failed = JobEnd {
            outcome: Outcome::Failed,
            exit_code: Some(127),
            signal: None,
            reason: Some("cannot run \"gone\"".into()),
        };
        let event = Event::StartFailed(failed.clone());
        let (end, last) = committed(&decide(&mut s, event, at(2_001)));
        assert_eq!(end, failed);
        let last = last.unwrap();
        assert_eq!((last.attempt, last.exit_code), (2, Some(127)));
        assert_eq!(
            (last.started_at, last.duration_ms),
            (crate::model::rfc3339(wall(2_000)), 1),
            "from when it was tried, not from the first attempt's start"
        );
    }

    #[test]
    fn an_attempt_whose_log_cannot_be_put_aside_ends_the_job_with_its_outcome() {
        let mut s = running(with_retries(1));
        let actions = over(&mut s, ExitStatus::Code(4), nothing_found(), 1_000);
        assert!(matches!(actions.as_slice(), [Action::PutAside(_)]));
        let (end, last) = committed(&decide(&mut s, Event::AsideFailed, at(1_000)));
        assert_eq!((end.outcome, end.exit_code), (Outcome::Failed, Some(4)));
        let last = last.unwrap();
        assert_eq!((last.attempt, last.backoff_ms), (1, None));
    }

    #[test]
    fn a_finished_run_stays_finished() {
        let mut s = running(settings());
        committed(&over(&mut s, ExitStatus::Code(0), nothing_found(), 1_000));
        for event in [
            Event::Tick,
            Event::Signal(15),
            Event::Exited(ExitStatus::Code(1)),
            Event::KillRequest(Some(request(Outcome::Killed, None, false))),
        ] {
            assert_eq!(decide(&mut s, event, at(2_000)), []);
        }
        assert_eq!(s.finished().map(|e| e.outcome), Some(Outcome::Success));
    }

    // ------------------------------------------------------------- properties

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                Just(Event::Tick),
                (1..16i32).prop_map(Event::Signal),
                (0..3u64).prop_map(|n| Event::LastBeat(Some(wall(n * 40_000)))),
                Just(Event::LastBeat(None)),
                (0..2u64, 0..3u64).prop_map(|(log, cpu)| Event::Sampled {
                    look: Look::Routine,
                    obs: look(0, log, cpu),
                }),
                (0..2u64).prop_map(|cpu| Event::Sampled {
                    look: Look::Verdict,
                    obs: look(0, 0, cpu),
                }),
                Just(Event::KillRequest(None)),
                any::<bool>().prop_map(|exited| Event::KillRequest(Some(request(
                    Outcome::Killed,
                    None,
                    exited
                )))),
                Just(Event::Terminated),
                (0..3i32).prop_map(|c| Event::Exited(ExitStatus::Code(c))),
                (any::<bool>(), any::<u64>()).prop_map(|(finished, random)| {
                    Event::AttemptOver(EndLook {
                        kill_request: None,
                        finished,
                        random,
                    })
                }),
                Just(Event::AsideFailed),
                Just(Event::Spawned { started: at(0) }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// Whatever arrives in whatever order: one commit at most,
            /// nothing after it, and a commit only as the job finishes.
            #[test]
            fn a_run_commits_at_most_once_and_then_does_nothing(
                events in prop::collection::vec((event(), 0..200_000u64), 0..60),
                retries in 0..3u32,
            ) {
                let mut s = running(with_retries(retries));
                let mut commits = 0;
                let mut times: Vec<u64> = events.iter().map(|(_, t)| *t).collect();
                times.sort_unstable();
                for ((event, _), ms) in events.into_iter().zip(times) {
                    let was_finished = s.finished().is_some();
                    let actions = decide(&mut s, event, at(ms));
                    if was_finished {
                        prop_assert!(actions.is_empty(), "{actions:?}");
                    }
                    let n = actions.iter().filter(|a| matches!(a, Action::Commit { .. })).count();
                    if n > 0 {
                        prop_assert!(s.finished().is_some());
                    }
                    commits += n;
                }
                prop_assert!(commits <= 1);
            }
        }
    }
}
