//! A private tokio runtime on one background thread, so that synchronous
//! callers (the CLI, the wrapper's poll loop) never need an async context.

use std::future::Future;
use std::sync::mpsc;
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crate::error::{Error, Result};

/// The runtime thread; dropping it stops every task running on it.
pub(crate) struct Runtime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl Runtime {
    /// Starts a current-thread runtime driven by a dedicated thread: one
    /// thread is plenty for a handful of gRPC streams and keeps the wrapper
    /// process small.
    pub fn start() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("jobwatch-etcd".to_string())
            .spawn(move || {
                block_sigpipe();
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime here cancels the remaining tasks.
                drop(rt);
            })?;
        let thread_id = thread.thread().id();
        Ok(Runtime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
            thread_id,
        })
    }

    /// Spawns a background task.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }

    /// Runs `fut` on the runtime and waits for it, at most `bound` (a
    /// backstop: the futures bound themselves). Must not be called from
    /// inside an async context.
    pub fn block_on<T, F>(&self, bound: Duration, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match rx.recv_timeout(bound) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Unavailable {
                endpoints: "(all)".to_string(),
                last_error: "the operation did not finish in time".to_string(),
                attempts: 0,
                elapsed: bound,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::RuntimeGone),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A task holding the last handle would drop us on the runtime's
            // own thread: joining it from there would deadlock.
            if std::thread::current().id() != self.thread_id {
                let _ = thread.join();
            }
        }
    }
}

/// Keeps SIGPIPE from killing the process when a member closes a
/// connection under a write: the gRPC layer writes with `writev`, which
/// (unlike `send`) raises SIGPIPE, and a command that restored its default
/// action (a listing that exits quietly when `| head` closes) would die of
/// it. Blocked on this thread, where all of the client's I/O happens, the
/// write fails with EPIPE instead and the call is retried or reported.
fn block_sigpipe() {
    // SAFETY: plain signal-mask calls on this thread's own mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
