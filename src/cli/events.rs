//! `jobwatch events`: the job event stream, one line per run started or
//! ended, the history first, then (with `--follow`) live.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::args::positive_duration;
use super::human::for_terminal;
use super::{CliError, CliResult, wants_json};
use jobwatch_core::events::{EventSink, EventsError, FollowSpec, follow};
use jobwatch_core::exit_code;
use jobwatch_core::model::{EventKind, JobEvent};
use jobwatch_core::report::human_ms;
use jobwatch_core::store::{Cursor, Positioned, Since, Store};
use jobwatch_core::sys::signal::ignore_broken_pipe;
use jobwatch_core::sys::stdio::{say, warn};

const EVENTS_HELP: &str = "\
Prints one line per job event, oldest first: a run `started` (its command
was spawned) and `ended` (its outcome committed: success, failed, timeout,
hung, killed or lost). JSON when --json or stdout is not a terminal:
  {\"event\":\"ended\",\"name\":\"build\",\"job_id\":\"…\",\"at\":\"…\",\"host\":\"…\",
   \"outcome\":\"failed\",\"exit_code\":2,\"duration_ms\":8120,\"cursor\":\"…\"}
(signal, reason and finalized_by when they apply). Each line's cursor
resumes right after it: a follower restarted with --since CURSOR misses
nothing and repeats nothing.

With --follow it goes on with each new event as it happens (no polling on
a local jobs directory), until its stdout is closed (exit 0) or it is
stopped. Like `wait`, it finishes a run whose wrapper vanished (outcome
lost, its leftover processes killed), so that run's end is in the stream
too; it never kills a running job.

--cursor prints where the journal ends now (`start` while it is empty): a
follower started later with --since that cursor misses nothing that
happened in between (re-arming a watcher that expired, for example).

Examples:
  jobwatch events                         # the history kept
  jobwatch events --follow --since now    # only what happens from now on
  jobwatch events --follow --since 3f9a0c1d2e4b5a69:4711
  c=$(jobwatch events --cursor); ...; jobwatch events --follow --since \"$c\"";

/// Print job events (started, ended); with --follow, as they happen.
#[derive(Debug, Args)]
#[command(after_help = EVENTS_HELP)]
pub struct EventsArgs {
    /// Go on printing events as they happen, until stdout is closed.
    #[arg(long, short = 'f')]
    follow: bool,

    /// Start right after this event's cursor, at `now` (only new events)
    /// or at `start` (the oldest event kept, the default).
    #[arg(long, value_name = "CURSOR", value_parser = since)]
    since: Option<Since>,

    /// Print the cursor of the journal's end (`start` while it is empty)
    /// and exit.
    #[arg(long, conflicts_with_all = ["follow", "since"])]
    cursor: bool,

    /// Print JSON lines even on a terminal.
    #[arg(long)]
    json: bool,

    /// Poll at this interval instead of using filesystem events.
    #[arg(long, value_parser = positive_duration, value_name = "D")]
    poll: Option<Duration>,
}

/// `now`, `start`, or a cursor as printed.
fn since(s: &str) -> Result<Since, String> {
    match s {
        "now" => return Ok(Since::Now),
        "start" => return Ok(Since::Start),
        _ => {}
    }
    Cursor::parse(s)
        .map(Since::After)
        .map_err(|e| e.to_string())
}

/// Runs the `events` command.
pub fn events(store: &dyn Store, a: EventsArgs) -> CliResult {
    if a.cursor {
        return print_cursor(store);
    }
    // A reader that goes away ends the stream with exit 0, not SIGPIPE.
    ignore_broken_pipe();
    let stdout = io::stdout();
    let spec = FollowSpec {
        since: a.since.unwrap_or(Since::Start),
        follow: a.follow,
        poll: a.poll,
        // A follower lives on: its watch's slow close is no exit delay
        // worth a helper process for (a one-shot read takes no watch).
        exits_after: false,
        // Noticed while no event comes, too.
        hangup: a.follow.then(|| stdout.as_fd()),
    };
    let mut printer = Printer {
        json: wants_json(a.json),
        out: stdout.lock(),
    };
    match follow(store, &spec, &mut printer) {
        Ok(_) => Ok(exit_code::SUCCESS),
        Err(EventsError::Output(e)) => {
            Err(CliError::usage(format_args!("cannot print events: {e}")))
        }
        Err(e) => Err(CliError::from(e)),
    }
}

/// `--cursor`: where `--since now` would start, as a cursor to keep.
fn print_cursor(store: &dyn Store) -> CliResult {
    let end = store.events().read_events(&Since::Now)?;
    let _ = say(match &end.next {
        Since::After(c) => c.as_str(),
        _ => "start",
    });
    Ok(exit_code::SUCCESS)
}

/// An event's JSON line: the event and its cursor.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a JobEvent,
    cursor: &'a str,
}

struct Printer<W: Write> {
    json: bool,
    out: W,
}

impl<W: Write> EventSink for Printer<W> {
    fn event(&mut self, p: &Positioned) -> io::Result<()> {
        let line = if self.json {
            let line = Line {
                event: &p.event,
                cursor: p.cursor.as_str(),
            };
            serde_json::to_string(&line).expect("an event serializes")
        } else {
            human(&p.event)
        };
        // Each line reaches the reader at once (a watcher wakes on it).
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }

    fn note(&mut self, note: &str) {
        warn(for_terminal(note));
    }
}

/// One line for a person, safe for a terminal: `AT NAME started on HOST`,
/// `AT NAME failed, exit 2 in 8.1s (reason)`.
fn human(e: &JobEvent) -> String {
    let mut s = format!("{} {}", e.at, e.name);
    match e.event {
        EventKind::Started => s.push_str(&format!(" started on {}", e.host)),
        EventKind::Ended => {
            let outcome = e.outcome.map_or("ended", |o| o.as_str());
            s.push_str(&format!(" {outcome}"));
            match (e.exit_code, e.signal) {
                (Some(c), _) if c != 0 => s.push_str(&format!(", exit {c}")),
                (_, Some(sig)) => s.push_str(&format!(", signal {sig}")),
                _ => {}
            }
            if let Some(ms) = e.duration_ms {
                s.push_str(&format!(" in {}", human_ms(ms)));
            }
            if let Some(reason) = &e.reason {
                s.push_str(&format!(" ({reason})"));
            }
        }
    }
    for_terminal(&s)
}
