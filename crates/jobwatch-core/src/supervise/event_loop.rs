//! The wrapper's event loop: turns its inputs into [`Event`]s for the
//! state machine and carries out the [`Action`]s it decides.
//!
//! The inputs, gathered at every wake-up in this order:
//! - the command's exit, seen with `waitid(WNOWAIT)` and left unreaped, so
//!   its PID and process-group id stay reserved for every signal sent;
//! - a terminating signal (TERM, INT, HUP), from the self-pipe;
//! - the time ([`Event::Tick`]): the machine then asks for what it needs
//!   (the progress mark, a CPU/output sample, the kill request).
//!
//! The loop sleeps on the self-pipe, which SIGCHLD, the terminating
//! signals and SIGURG (a killer's "look at your kill request") all wake,
//! for as long as the machine allows ([`State::wake_in`]); when a chain of
//! events changed the phase, it looks again at once.
//!
//! Terminating a process tree is one blocking action ([`Action::Terminate`],
//! `kill::terminate`): it is inherently sequential (signal, re-check every
//! 10 ms over the grace, KILL rounds). What happens around it is decided by
//! the machine: at each re-check it is fed a signal that arrived meanwhile,
//! else a tick, and answers [`Action::EndGrace`] when the grace ends (a
//! second signal, or `grace_until` passed).
//!
//! - the claim's hold ([`crate::store::Claim::hold`]): a store that can
//!   lose the name while the wrapper lives (etcd, cut off from its cluster)
//!   says so early, fed once as [`Event::ClaimLosing`] (self-fencing),
//!   also between the re-checks of a termination under way.
//!
//! The loop also sleeps on the claim's descriptor
//! ([`crate::store::Claim::wake_fd`]), where a store has one: a kill
//! request or a hold at risk wakes it at once.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use rustix::process::Signal;

use super::Supervisor;
use super::machine::{Action, EndLook, Event, Job, Now, State, decide};
use crate::kill::{JobTarget, escalate_after, terminate};
use crate::liveness::Observation;
use crate::model::JobRecord;
use crate::retry;
use crate::store::{Hold, StoreError};
use crate::sys::child::{peek_exit, reap, reap_orphans};
use crate::sys::cpu::Look;
use crate::sys::stdio::notice;

/// The loop: the supervisor (the world) and the machine's state.
struct EventLoop<'a, 's> {
    sup: &'a mut Supervisor<'s>,
    state: State,
    /// The final record, once committed.
    committed: Option<Result<JobRecord, StoreError>>,
}

/// Supervises the first attempt, started by `start`, and the attempts
/// after it, until the job is committed; returns the final record.
pub(super) fn run(sup: &mut Supervisor<'_>) -> Result<JobRecord, StoreError> {
    let job = Job {
        job_id: sup.record.job_id.clone(),
        settings: sup.record.settings,
        max_attempts: sup.record.max_attempts,
        started: sup.record.started(),
    };
    let first = sup.first_attempt;
    let mut lp = EventLoop {
        sup,
        state: State::new(job),
        committed: None,
    };
    lp.feed(Event::Spawned { started: first });
    while lp.state.finished().is_none() {
        let before = std::mem::discriminant(lp.state.phase());
        lp.gather();
        // A new phase is looked at at once (a killed command's exit, a
        // new attempt's first check, the backoff's first look).
        if std::mem::discriminant(lp.state.phase()) == before {
            lp.sleep();
        }
    }
    lp.committed
        .expect("a finished run was committed: Finished comes with Commit")
}

impl EventLoop<'_, '_> {
    /// Feeds this wake-up's inputs to the machine.
    fn gather(&mut self) {
        if self.state.awaits_exit()
            && let Some(status) = peek_exit(self.sup.child_pid())
        {
            self.feed(Event::Exited(status));
        }
        if let Some(sig) = self.sup.signals.take_terminating() {
            self.feed(Event::Signal(sig));
        }
        // Asked at every wake-up: it also consumes the claim's wake-up.
        if let Some(losing) = claim_losing(self.sup.claim.hold(), &self.state) {
            self.feed(losing);
        }
        self.feed(Event::Tick);
    }

    /// Sleeps until the machine's next deadline, a signal, or the claim's
    /// news (a kill request, its hold at risk).
    fn sleep(&mut self) {
        self.sup
            .signals
            .wait_also(self.state.wake_in(Now::real()), self.sup.claim.wake_fd());
        if self.state.awaits_exit() {
            // Orphans of the job re-parent to the wrapper (a subreaper):
            // reap them, never the command itself.
            reap_orphans(self.sup.child_pid());
        }
    }

    /// Decides `event`, carries out the actions, and feeds back their
    /// answers, until nothing is left to decide.
    fn feed(&mut self, event: Event) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            for action in decide(&mut self.state, event, Now::real()) {
                events.extend(self.execute(action));
            }
        }
    }

    /// Carries out one action; returns the events that answer it.
    fn execute(&mut self, action: Action) -> Vec<Event> {
        let sup = &mut *self.sup;
        let answer = match action {
            Action::Sample(look) => Event::Sampled {
                look,
                obs: sup.observe(look),
            },
            Action::Beat(t) => {
                // A mark that cannot be moved shows as no progress.
                let _ = sup.claim.beat(t);
                return Vec::new();
            }
            Action::ReadBeat => Event::LastBeat(sup.claim.last_beat()),
            Action::ReadKillRequest => Event::KillRequest(sup.claim.kill_request()),
            Action::Terminate { first, grace } => return self.terminate(first, grace),
            // Only a running termination has a grace to end (see terminate).
            Action::EndGrace => return Vec::new(),
            Action::Reap => {
                let pid = sup.child_pid();
                reap_orphans(pid);
                reap(pid);
                return Vec::new();
            }
            Action::EchoAttemptEnded => {
                // Never waits: the echo catches up on its own thread.
                if let Some(tee) = &sup.tee {
                    tee.attempt_ended();
                }
                return Vec::new();
            }
            Action::LookAtEnd => Event::AttemptOver(EndLook {
                kill_request: sup.claim.kill_request(),
                finished: sup.claim.finished(),
                random: retry::random_u64(),
            }),
            Action::PutAside(attempt) => match sup.put_attempt_aside(attempt) {
                Ok(()) => return Vec::new(),
                Err(e) => {
                    // Another attempt would lose this one's log, and leaving
                    // without a status would lose the job's result: the job
                    // ends with this attempt's outcome.
                    notice(format_args!("{}: {e}; not retrying", sup.record.name));
                    Event::AsideFailed
                }
            },
            Action::StartAttempt(k) => sup.start_attempt(k),
            Action::Commit {
                end,
                last_attempt,
                at,
            } => {
                self.committed = Some(sup.commit(&end, last_attempt, at));
                return Vec::new();
            }
        };
        vec![answer]
    }

    /// Terminates the job's tree (blocking over the grace period). At every
    /// re-check the machine gets a signal that arrived meanwhile, else a
    /// tick, and decides whether the grace ends (`kill::terminate` keeps a
    /// deadline of the same length too, a backstop); whatever else it
    /// decides is carried out afterwards.
    fn terminate(&mut self, first: Option<Signal>, grace: Duration) -> Vec<Event> {
        let target = self.sup.target();
        let child = self.sup.child_pid();
        let signals = &self.sup.signals;
        let claim = &self.sup.claim;
        let state = &mut self.state;
        let mut later = Vec::new();
        let mut tick = || {
            reap_orphans(child);
            // A claim at risk during a kill shortens its grace.
            let mut events: Vec<Event> = claim_losing(claim.hold(), state).into_iter().collect();
            events.push(match signals.take_terminating() {
                Some(sig) => Event::Signal(sig),
                None => Event::Tick,
            });
            let mut end_grace = false;
            for event in events {
                for action in decide(state, event, Now::real()) {
                    match action {
                        Action::EndGrace => end_grace = true,
                        other => later.push(other),
                    }
                }
            }
            end_grace
        };
        match first {
            Some(sig) => terminate(&target, sig, grace, &mut tick),
            None => escalate_after(&target, grace, &mut tick),
        };
        let mut events: Vec<Event> = later
            .into_iter()
            .flat_map(|action| self.execute(action))
            .collect();
        events.insert(0, Event::Terminated);
        events
    }
}

/// The event for a claim the store can no longer vouch for, once: the
/// machine decides it only the first time ([`State::fencing`]).
fn claim_losing(hold: Hold, state: &State) -> Option<Event> {
    match hold {
        Hold::Losing { reason, within } if !state.fencing() => {
            Some(Event::ClaimLosing { reason, within })
        }
        _ => None,
    }
}

impl Supervisor<'_> {
    /// The current attempt's command.
    fn child_pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The job's processes; the wrapper also owns every descendant of its
    /// own (it is their subreaper) and must never signal itself.
    pub(super) fn target(&self) -> JobTarget {
        JobTarget {
            wrapper: Some(self.me),
            ..crate::recover::target_of(&self.record)
        }
    }

    /// Kills what is left of the job's tree without consulting the machine
    /// (a failed start); a signal meanwhile stays for the loop to see.
    pub(super) fn kill_leftovers(&mut self) {
        let child = self.child_pid();
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

    /// One look at the job: its output mark and, when CPU counts, the CPU
    /// of its tree (a full scan of `/proc` for a [`Look::Verdict`]).
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
                .then(|| self.cpu.sample_now(look).ticks),
        }
    }
}
