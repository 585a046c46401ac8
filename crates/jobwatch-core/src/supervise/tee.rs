//! Echoing the job's log to the terminal in a foreground run. The command
//! writes straight into `NAME.log` (so a dead wrapper never breaks its
//! output); a follower thread copies new bytes to stdout.
//!
//! Echoing is best-effort: a reader that stops reading (a pipe nobody
//! drains, a terminal stopped with Ctrl-S) blocks only the follower. The
//! supervisor only ever sends it messages and never waits for it, so the
//! job's liveness, verdict, record and status never wait on the terminal.
//! Once the run is over, [`Tee::finish`] lets the echo catch up for as long
//! as the reader keeps taking output, and gives up after a bounded stall.
//!
//! With retries, one follower echoes every attempt's log in turn (each to
//! its end before the next), and the retry notice between them, so the
//! terminal shows them in order.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::logs::open_log_file;
use crate::sys::stdio;

/// How often the follower looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);

/// The most bytes written to stdout in one call: a reader that takes a
/// little at a time still shows as progress.
const WRITE_CHUNK: usize = 4096;

/// A handle on the log follower; clones share it. It never blocks its
/// caller, except [`Tee::finish`], which is bounded.
#[derive(Clone)]
pub struct Tee {
    commands: Sender<Command>,
    shared: Arc<Shared>,
}

/// What the follower is told to do, in order.
enum Command {
    /// The current attempt is over: copy its log to the end, then drop it.
    AttemptEnded,
    /// Follow this log (the next attempt's) from its beginning.
    Follow(File),
    /// Print this line on stderr (after everything sent before it).
    Notice(String),
    /// Copy what is left, then stop.
    Finish,
}

/// What the follower shares with whoever waits for it.
#[derive(Default)]
struct Shared {
    /// Bytes echoed so far: how [`Tee::finish`] tells a slow reader from a
    /// stalled one.
    echoed: AtomicU64,
    /// Set when the follower has stopped.
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl Tee {
    /// Starts copying `log` to stdout from its beginning.
    pub fn start(log: &Path) -> std::io::Result<Self> {
        let file = open_log_file(log)?;
        let (commands, inbox) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("tee".into())
            .spawn(move || {
                follow(file, &inbox, &theirs);
                *theirs.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
                theirs.changed.notify_all();
            })?;
        Ok(Self { commands, shared })
    }

    /// Tells the follower that the current attempt's command has exited:
    /// it copies that log to its end, then stops reading it. Never waits.
    pub fn attempt_ended(&self) {
        let _ = self.commands.send(Command::AttemptEnded);
    }

    /// Tells the follower to echo `log` (the next attempt's) once it is done
    /// with the previous one. Never waits; a log that cannot be opened is
    /// not echoed.
    pub fn follow(&self, log: &Path) {
        if let Ok(file) = open_log_file(log) {
            let _ = self.commands.send(Command::Follow(file));
        }
    }

    /// Prints `message` as a `jobwatch:` line on stderr once everything
    /// before it is echoed. Never waits.
    pub fn notice(&self, message: String) {
        let _ = self.commands.send(Command::Notice(message));
    }

    /// Lets the follower copy what is left and waits for it while the
    /// reader keeps taking output; gives up once it has taken nothing for
    /// `stall`. Returns whether everything was echoed.
    pub fn finish(self, stall: Duration) -> bool {
        let _ = self.commands.send(Command::Finish);
        let mut stopped = self
            .shared
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut echoed = self.shared.echoed.load(Ordering::SeqCst);
        let mut since = Instant::now();
        while !*stopped {
            let now = self.shared.echoed.load(Ordering::SeqCst);
            if now != echoed {
                (echoed, since) = (now, Instant::now());
            }
            let Some(left) = stall.checked_sub(since.elapsed()).filter(|l| !l.is_zero()) else {
                return false;
            };
            stopped = self
                .shared
                .changed
                .wait_timeout(stopped, left.min(FOLLOW_INTERVAL))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// The follower: copies the current log to stdout as it grows and obeys
/// its commands in order, until told to finish or every handle is gone.
fn follow(first: File, inbox: &Receiver<Command>, shared: &Shared) {
    let mut echo = Echo::new(shared);
    let mut current = Some(first);
    loop {
        if let Some(file) = current.as_mut() {
            echo.copy_available(file);
        }
        match inbox.recv_timeout(FOLLOW_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Command::AttemptEnded) => {
                if let Some(mut file) = current.take() {
                    echo.copy_available(&mut file);
                }
            }
            Ok(Command::Follow(file)) => current = Some(file),
            Ok(Command::Notice(message)) => stdio::warn(message),
            Ok(Command::Finish) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(mut file) = current.take() {
                    echo.copy_available(&mut file);
                }
                return;
            }
        }
    }
}

/// Copies bytes to stdout; once stdout fails (its reader went away), the
/// rest is not echoed but the follower goes on obeying its commands.
struct Echo<'a> {
    shared: &'a Shared,
    buf: Vec<u8>,
    broken: bool,
}

impl<'a> Echo<'a> {
    fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            buf: vec![0u8; 64 * 1024],
            broken: false,
        }
    }

    /// Copies what `file` holds beyond what was read of it.
    fn copy_available(&mut self, file: &mut File) {
        while !self.broken {
            match file.read(&mut self.buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut chunk = &self.buf[..n];
                    while !chunk.is_empty() && !self.broken {
                        let take = chunk.len().min(WRITE_CHUNK);
                        match write_stdout(&chunk[..take]) {
                            Ok(written) => {
                                chunk = &chunk[written..];
                                self.shared
                                    .echoed
                                    .fetch_add(written as u64, Ordering::SeqCst);
                            }
                            Err(_) => self.broken = true,
                        }
                    }
                }
            }
        }
    }
}

/// One `write(2)` to fd 1, bypassing std's stdout lock and buffer: nothing
/// else in a foreground run writes to stdout, and a blocked echo must never
/// hold a lock another thread could need.
fn write_stdout(bytes: &[u8]) -> std::io::Result<usize> {
    let out = std::io::stdout();
    loop {
        match rustix::io::write(out.as_fd(), bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
