//! The thread the bridges run on: a runtime of their own beside the connections' one, and
//! scheduled as a batch job (Linux `SCHED_BATCH`, at the process's nice value).
//!
//! An uplink draining a backlog is bulk work paced by the server's acknowledgements. Under the
//! normal policy each acknowledgement's wake-up preempts whatever runs on that core — on a
//! small machine often the very broker that sent it, which then goes on a few microseconds
//! later — so the drain falls into one message per round trip of two context switches. A
//! batch thread is never woken ahead of the running task (the scheduler lets it wait for its
//! turn or an idle core), reads the acknowledgements that came meanwhile together, and
//! refills the window in one write. Local clients are served by the connections' runtime,
//! whose scheduling this does not touch.

use std::io;
use std::thread;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running bridges' thread; dropping it ends the thread (and any task still on it).
#[derive(Debug)]
pub struct BridgeThread {
    runtime: Handle,
    /// Dropped (or sent) to end the thread.
    _stop: oneshot::Sender<()>,
}

impl BridgeThread {
    /// Starts the thread.
    pub fn start() -> io::Result<BridgeThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("cairn-bridges".into())
            .spawn(move || {
                if let Err(error) = run_as_batch() {
                    tracing::debug!(%error, "bridges run under the normal scheduling policy");
                }
                let _ = runtime.block_on(stopped);
            })?;
        Ok(BridgeThread {
            runtime: handle,
            _stop: stop,
        })
    }

    /// Runs `task` on the thread.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }
}

/// Puts the calling thread under `SCHED_BATCH`, keeping its nice value.
fn run_as_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    #[allow(unsafe_code)]
    // SAFETY: `param` is a live, initialised `sched_param`; pid 0 is the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
