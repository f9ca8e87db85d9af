//! The watchdog: when systemd sets `WATCHDOG_USEC`, a keep-alive is due at least that often, or
//! systemd kills and restarts the broker. A keep-alive is sent only once the engine has shown
//! progress since the last one — its state lock was free and the store's writer answered a
//! round trip — so a stuck engine stops pinging. At most one proof is in flight: a lock that
//! is never released leaves one proof pending, not one per tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::Broker;

/// What one tick of the watchdog found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The engine made progress: a keep-alive is due.
    Alive,
    /// No keep-alive this time, and why.
    Missed(String),
}

/// The keep-alive period systemd asks for: `WATCHDOG_USEC` microseconds, when it is a positive
/// number and `WATCHDOG_PID` is absent or names `own_pid` (the watchdog is meant for another
/// process of the service otherwise).
pub fn interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if pid.is_some_and(|pid| pid.trim().parse::<u32>().ok() != Some(own_pid)) {
        return None;
    }
    match usec?.trim().parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(usec) => Some(Duration::from_micros(usec)),
    }
}

/// Every `period`, takes a proof of progress from `prove` (or keeps waiting for the one still
/// pending) and tells the verdict: [`Verdict::Alive`] when the proof arrived within the
/// period, [`Verdict::Missed`] with the proof's error, or with how long it has been awaited.
/// Runs until dropped.
pub async fn watch<P, F>(period: Duration, mut prove: P, mut tell: impl FnMut(Verdict))
where
    P: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
{
    let mut pending: Option<(Pin<Box<F>>, Instant)> = None;
    loop {
        let tick = Instant::now();
        let (proof, since) = pending.get_or_insert_with(|| (Box::pin(prove()), tick));
        let verdict = match tokio::time::timeout(period, proof.as_mut()).await {
            Ok(proved) => {
                pending = None;
                match proved {
                    Ok(()) => Verdict::Alive,
                    Err(error) => Verdict::Missed(error),
                }
            }
            Err(_) => Verdict::Missed(format!(
                "the engine has not shown progress for {:.1} s (its state lock or the store's \
                 writer is stuck)",
                since.elapsed().as_secs_f64()
            )),
        };
        tell(verdict);
        tokio::time::sleep_until(tick + period).await;
    }
}

/// The engine's proof of progress: its state lock can be taken (on a blocking thread, so that
/// a lock never released leaves this proof pending rather than a runtime thread stuck), then
/// the store's writer answers a round trip. Holds the broker only while it takes the lock and
/// submits the round trip, so that a proof in flight never delays the store's closing.
pub async fn engine_progress(broker: Weak<Broker>) -> Result<(), String> {
    let gone = || "the broker is shutting down".to_string();
    let locking = broker.clone();
    tokio::task::spawn_blocking(move || locking.upgrade().map(|broker| broker.read(|_| ())))
        .await
        .map_err(|error| format!("the engine's state lock could not be taken: {error}"))?
        .ok_or_else(gone)?;
    let answer = broker.upgrade().ok_or_else(gone)?.store().probe();
    answer
        .await
        .map_err(|error| format!("the store's writer did not answer: {error}"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc as std_mpsc;

    use tokio::sync::{mpsc, oneshot};

    use std::sync::Arc;

    use super::*;
    use crate::broker::test_broker as broker;

    const PERIOD: Duration = Duration::from_secs(5);

    /// Runs [`watch`] with `prove` in the background; its verdicts arrive on the receiver.
    fn watching<P, F>(prove: P) -> mpsc::UnboundedReceiver<(Verdict, Instant)>
    where
        P: FnMut() -> F + Send + 'static,
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let (verdicts, received) = mpsc::unbounded_channel();
        tokio::spawn(watch(PERIOD, prove, move |verdict| {
            let _ = verdicts.send((verdict, Instant::now()));
        }));
        received
    }

    async fn next(
        verdicts: &mut mpsc::UnboundedReceiver<(Verdict, Instant)>,
    ) -> (Verdict, Instant) {
        verdicts.recv().await.expect("the watchdog runs")
    }

    #[test]
    fn the_interval_is_watchdog_usec_for_this_process_only() {
        let own = 4242;
        assert_eq!(
            interval(Some("2000000"), None, own),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            interval(Some("2000000"), Some("4242"), own),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            interval(Some("2000000"), Some("1"), own),
            None,
            "another process"
        );
        assert_eq!(interval(Some("2000000"), Some("x"), own), None);
        assert_eq!(interval(Some("0"), None, own), None, "0 means off");
        assert_eq!(interval(Some("soon"), None, own), None);
        assert_eq!(interval(None, Some("4242"), own), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_that_proves_progress_is_pinged_once_a_period() {
        let mut verdicts = watching(|| async { Ok(()) });
        let (first, mut previous) = next(&mut verdicts).await;
        assert_eq!(first, Verdict::Alive);
        for _ in 0..3 {
            let (verdict, at) = next(&mut verdicts).await;
            assert_eq!(verdict, Verdict::Alive);
            assert_eq!(at - previous, PERIOD, "one keep-alive per period, no more");
            previous = at;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_engine_stops_pinging_and_keeps_one_proof_pending() {
        let started = Arc::new(AtomicUsize::new(0));
        let counted = started.clone();
        let mut verdicts = watching(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            std::future::pending()
        });
        for waited in [5, 10, 15] {
            let (verdict, _) = next(&mut verdicts).await;
            let Verdict::Missed(reason) = verdict else {
                panic!("a stuck engine got a keep-alive");
            };
            assert!(reason.contains(&format!("for {waited}.0 s")), "{reason}");
        }
        assert_eq!(started.load(Ordering::Relaxed), 1, "one proof in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_proof_misses_one_keep_alive_and_the_next_may_succeed() {
        let mut outcomes = vec![Ok(()), Err("the store's writer did not answer".to_string())];
        let mut verdicts = watching(move || {
            let outcome = outcomes.pop().unwrap_or(Ok(()));
            async move { outcome }
        });
        assert_eq!(
            next(&mut verdicts).await.0,
            Verdict::Missed("the store's writer did not answer".into())
        );
        assert_eq!(next(&mut verdicts).await.0, Verdict::Alive);
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_that_comes_unstuck_is_pinged_again() {
        let (release, released) = oneshot::channel::<()>();
        let mut released = Some(released);
        let mut verdicts = watching(move || {
            let first = released.take();
            async move {
                if let Some(released) = first {
                    let _ = released.await;
                }
                Ok(())
            }
        });
        assert!(matches!(next(&mut verdicts).await.0, Verdict::Missed(_)));
        release.send(()).expect("the proof waits");
        assert_eq!(next(&mut verdicts).await.0, Verdict::Alive);
        assert_eq!(next(&mut verdicts).await.0, Verdict::Alive);
    }

    #[tokio::test]
    async fn a_proof_does_not_keep_a_broker_that_is_gone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let broker = broker(&dir);
        let weak = Arc::downgrade(&broker);
        drop(broker);
        let proof = tokio::time::timeout(Duration::from_secs(60), engine_progress(weak))
            .await
            .expect("answers at once");
        assert_eq!(proof, Err("the broker is shutting down".to_string()));
    }

    #[tokio::test]
    async fn the_engine_proves_progress_only_while_its_lock_is_free() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let broker = broker(&dir);
        tokio::time::timeout(
            Duration::from_secs(60),
            engine_progress(Arc::downgrade(&broker)),
        )
        .await
        .expect("an idle engine answers")
        .expect("and proves progress");

        // Another thread holds the state lock until told to let go.
        let (let_go, held_until) = std_mpsc::channel::<()>();
        let (holding, lock_held) = std_mpsc::channel::<()>();
        let holder = broker.clone();
        let stuck = std::thread::spawn(move || {
            holder.read(|_| {
                holding.send(()).expect("the test waits");
                let _ = held_until.recv();
            })
        });
        lock_held.recv().expect("the lock is held");
        let mut proof = Box::pin(engine_progress(Arc::downgrade(&broker)));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), proof.as_mut())
                .await
                .is_err(),
            "no proof while the lock is held"
        );
        let_go.send(()).expect("the holder waits");
        stuck.join().expect("the holder ends");
        tokio::time::timeout(Duration::from_secs(60), proof)
            .await
            .expect("the pending proof completes once the lock is free")
            .expect("and proves progress");
    }
}
