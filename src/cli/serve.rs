//! `cairn serve`: the broker in the foreground until SIGINT or SIGTERM, then a graceful
//! shutdown; SIGHUP reloads the configuration; a database file it cannot use is moved aside
//! only with `--repair`. Under systemd (`Type=notify`) it says when it is ready and when it
//! stops, and keeps the watchdog fed. While it runs, it gives the heap's free memory back to
//! the kernel after bursts ([`FreeMemory`]).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use cairn::config::{Config, Overrides};
use cairn::server::{Server, ServerError, ServerHandle};
use cairn::service::ServiceManager;
use cairn::store::admin;
use cairn::store::redb::OpenError;

use crate::allocator::FreeMemory;

use super::reload::{reload, Source};
use super::setup::{effective_config, ready_to_run};
use super::signals::{Request, Signals};
use super::{Explained, Outcome};

/// Stop signals this soon after the first are the same request sent twice (as `timeout` and
/// some process managers send it: to the process, then to its process group), not a second
/// request to stop at once.
const SAME_REQUEST: Duration = Duration::from_millis(500);

/// How often the heap's free memory is looked at (glibc's `mallinfo2`, which walks its lists
/// of free blocks under its locks: about 0.1 µs per free block on a 2-vCPU AMD EPYC VM, 6 ms
/// for a heap with 57,000 of them).
const LOOK_AT_FREE_MEMORY_EVERY: Duration = Duration::from_secs(5);

/// `cairn serve`: load, set up logging, run until a signal, shut down gracefully.
pub fn serve(file: Option<&Path>, overrides: &Overrides, repair: bool) -> Outcome {
    let config = match ready_to_run(effective_config(file, overrides)) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    let source = Source {
        file: file.map(Path::to_path_buf),
        overrides: overrides.clone(),
    };
    match run(config, source, repair) {
        Ok(()) => Outcome::Success,
        Err(error) => {
            tracing::error!("{}", Explained(&error));
            let unusable_configuration = error.downcast_ref::<UnusableStore>().is_some()
                || error
                    .downcast_ref::<ServerError>()
                    .is_some_and(ServerError::is_configuration);
            if unusable_configuration {
                Outcome::BadConfig
            } else {
                Outcome::RuntimeError
            }
        }
    }
}

fn run(config: Config, source: Source, repair: bool) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime =
        runtime(config.worker_threads(cores)).context("cannot start the tokio runtime")?;
    runtime.block_on(serve_until_signal(config, source, repair))
}

/// The runtime that serves the connections on `workers` threads. One worker is tokio's
/// current-thread scheduler on this thread: tasks woken together run in the order they were
/// woken, and none is handed to another thread. The multi-thread scheduler with one worker runs
/// the task woken last first (its LIFO slot: a PUBLISH that arrived just after another client's
/// SUBSCRIBE could be handled first and miss it, as Paho's interoperability tests found) and
/// costs more per wake-up (see the README's Threads section). More workers are the multi-thread
/// scheduler, which spreads the connections over them.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

async fn serve_until_signal(config: Config, source: Source, repair: bool) -> anyhow::Result<()> {
    // Installed before the broker starts, so an early signal is not fatal.
    let mut signals = Signals::install()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "cairn starting"
    );
    let service = ServiceManager::starting();
    let mut handle = start_broker(config, repair).await?;
    let addrs: Vec<String> = handle
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(listening = addrs.join(" "), "broker ready");
    service.ready(&handle);
    watch_free_memory();
    let first = loop {
        match signals.next().await {
            Request::Stop(name) => break name,
            Request::Reload => reload(&mut handle, &source).await,
        }
    };
    tracing::info!(signal = first, "shutting down");
    service.stopping();
    tokio::select! {
        () = handle.shutdown() => {
            tracing::info!("stopped");
            Ok(())
        }
        second = signals.next_stop_after(SAME_REQUEST) => {
            anyhow::bail!("{second} during shutdown: stopping without waiting")
        }
    }
}

/// Starts a thread of its own that gives the heap's free pages back to the kernel after each
/// burst, for as long as the process runs: a look walks glibc's lists of free blocks, which
/// must not hold up the runtime's workers and the connections they serve.
fn watch_free_memory() {
    let started = std::thread::Builder::new()
        .name("cairn-heap".into())
        .spawn(|| {
            let mut free_memory = FreeMemory::new();
            loop {
                std::thread::sleep(LOOK_AT_FREE_MEMORY_EVERY);
                if let Some(free) = free_memory.give_back_if_grown() {
                    tracing::debug!(
                        free_bytes = free,
                        "gave the heap's free pages back to the kernel"
                    );
                }
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "cannot start the heap's give-back thread; running without it");
    }
}

/// The database file cannot be used and `--repair` was not given: a setup problem (exit 2).
#[derive(Debug, thiserror::Error)]
#[error(
    "{0}. `cairn serve --repair` would move it aside (its bytes kept, renamed \
     {file}.quarantined-<UTC time>) and start with an empty store",
    file = admin::DATABASE_FILE
)]
struct UnusableStore(OpenError);

/// Starts the broker. A database file it cannot use stops the start, unless `repair`: then the
/// file is moved aside, loudly, and the broker starts once more, on an empty store.
async fn start_broker(config: Config, repair: bool) -> anyhow::Result<ServerHandle> {
    const FAILED: &str = "cannot start the broker";
    let error = match Server::start(config.clone()).await {
        Err(ServerError::Store(error)) => error,
        started => return started.context(FAILED),
    };
    let Some(reason) = admin::unusable_reason(&error) else {
        return Err(error).context(FAILED);
    };
    if !repair {
        return Err(UnusableStore(error)).context(FAILED);
    }
    let file = config.data_dir.join(admin::DATABASE_FILE);
    let moved = admin::quarantine(&config.data_dir)
        .with_context(|| format!("--repair cannot move {} aside", file.display()))?;
    tracing::error!(
        "--repair: {} cannot be used: {reason}; moved it to {} and starting with an EMPTY store \
         (its sessions, queued and retained messages are not loaded)",
        file.display(),
        moved.display()
    );
    Server::start(config)
        .await
        .context("cannot start the broker on an empty store after the repair")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use tokio::sync::oneshot;

    use super::*;

    #[test]
    fn an_unusable_store_names_the_file_and_the_repair() {
        let error = UnusableStore(OpenError::Foreign {
            path: PathBuf::from("/var/lib/cairn/cairn.redb"),
        });
        let text = error.to_string();
        assert!(text.contains("/var/lib/cairn/cairn.redb"), "{text}");
        assert!(text.contains("cairn serve --repair"), "{text}");
    }

    /// Tasks started or woken together, as connections are when their packets arrive at once.
    const TOGETHER: usize = 8;

    /// With one worker, tasks woken together run in the order they were woken, whether they
    /// were spawned (a parked connection resumes in a task of its own) or woken (a connection's
    /// task waiting for its socket or a commit). The multi-thread scheduler with one worker ran
    /// both sets as 7, 0, 1, …, 6: its LIFO slot runs the task woken last first.
    #[test]
    fn one_worker_runs_tasks_in_the_order_they_were_woken() {
        let runtime = runtime(1).expect("a runtime");
        let (spawned, woken) = runtime.block_on(async {
            // Spawned from a task, as a wake on the worker thread does it.
            tokio::spawn(async { (in_spawn_order().await, in_wake_order().await) })
                .await
                .expect("the test task ends")
        });
        let expected: Vec<usize> = (0..TOGETHER).collect();
        assert_eq!(spawned, expected, "tasks spawned together");
        assert_eq!(woken, expected, "tasks woken together");
    }

    /// The order in which [`TOGETHER`] tasks spawned in a row first run.
    async fn in_spawn_order() -> Vec<usize> {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..TOGETHER)
            .map(|index| {
                let ran = ran.clone();
                tokio::spawn(async move { ran.lock().expect("not poisoned").push(index) })
            })
            .collect();
        for task in tasks {
            task.await.expect("the task ends");
        }
        let ran = ran.lock().expect("not poisoned").clone();
        ran
    }

    /// The order in which [`TOGETHER`] waiting tasks, woken in a row, run again.
    async fn in_wake_order() -> Vec<usize> {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let mut wakes = Vec::new();
        let mut tasks = Vec::new();
        for index in 0..TOGETHER {
            let (wake, woken) = oneshot::channel::<()>();
            let ran = ran.clone();
            wakes.push(wake);
            tasks.push(tokio::spawn(async move {
                woken.await.expect("woken");
                ran.lock().expect("not poisoned").push(index);
            }));
        }
        // Every task waits before any is woken.
        tokio::task::yield_now().await;
        for wake in wakes {
            wake.send(()).expect("the task waits");
        }
        for task in tasks {
            task.await.expect("the task ends");
        }
        let ran = ran.lock().expect("not poisoned").clone();
        ran
    }
}
