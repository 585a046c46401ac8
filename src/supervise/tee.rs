//! Echoing the job's log to the terminal in a foreground run. The command
//! writes straight into `NAME.log` (so a dead wrapper never breaks its
//! output); this follower copies new bytes to stdout.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the follower looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);

/// A running log follower.
pub struct Tee {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Tee {
    /// Starts copying `log` to stdout from its beginning.
    pub fn start(log: &Path) -> std::io::Result<Self> {
        let file = File::open(log)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || follow(file, &flag));
        Ok(Self { stop, handle })
    }

    /// Copies what is left and stops, at once: the follower is woken
    /// rather than left to finish its sleep, so a foreground run's exit
    /// never waits up to a whole follow interval.
    pub fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.thread().unpark();
        let _ = self.handle.join();
    }
}

fn follow(mut file: File, stop: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = std::io::stdout().lock();
    loop {
        // Read the stop flag before draining, so the last bytes written
        // before the command exited are always copied.
        let stopping = stop.load(Ordering::SeqCst);
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).is_err() {
                        return; // stdout closed: stop echoing, the job goes on
                    }
                }
                Err(_) => return,
            }
        }
        let _ = out.flush();
        if stopping {
            return;
        }
        std::thread::park_timeout(FOLLOW_INTERVAL);
    }
}
