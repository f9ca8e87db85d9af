//! Durable store throughput: QoS 1-like traffic, one message at a time per client: submit and
//! await an Enqueue of a 64-byte message, then its Inflight + Acked. Run with 1 and 64 clients
//! at once, with fsync on and off; criterion reports messages/s (3 ops each), and each case
//! prints how many messages and batches one commit carried. For comparison, the raw fsync rate
//! of the same directory (write 64 bytes + fsync, in a loop).
//!
//! The database lives in a temporary directory under `CAIRN_BENCH_DIR` (default: the system's
//! temporary directory); point it at the SD card or eMMC to measure the real device.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn::codec::QoS;
use cairn::model::StoreOp;
use cairn::model::{Delivery, Message};
use cairn::store::redb::{DurableOptions, DurableStore};
use cairn::store::Pace;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tempfile::TempDir;
use tokio::runtime::Runtime;

const PAYLOAD: [u8; 64] = [0xA5; 64];

fn bench_dir() -> TempDir {
    let made = match std::env::var_os("CAIRN_BENCH_DIR") {
        Some(base) => TempDir::new_in(base),
        None => TempDir::new(),
    };
    made.expect("create a temporary directory for the benchmark")
}

/// One open store with `clients` sessions, and the runtime that drives them.
struct Fixture {
    store: Arc<DurableStore>,
    clients: Vec<Arc<str>>,
    next_message_id: Arc<AtomicU64>,
    runtime: Runtime,
    _dir: TempDir,
}

impl Fixture {
    fn new(clients: usize, fsync: bool) -> Fixture {
        let dir = bench_dir();
        let options = DurableOptions {
            fsync,
            ..DurableOptions::default()
        };
        let (store, recovered) = DurableStore::open(dir.path(), options).expect("open store");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let clients: Vec<Arc<str>> = (0..clients)
            .map(|n| Arc::from(format!("client-{n}")))
            .collect();
        let sessions = clients
            .iter()
            .map(|client_id| StoreOp::PutSession {
                client_id: client_id.clone(),
                expiry_interval: 3600,
            })
            .collect();
        let store = Arc::new(store);
        runtime.block_on(await_commit(&store, sessions));
        Fixture {
            store,
            clients,
            next_message_id: Arc::new(AtomicU64::new(recovered.next_message_id)),
            runtime,
            _dir: dir,
        }
    }

    /// Delivers `messages` messages spread over every client concurrently; returns the time taken.
    fn deliver(&self, messages: u64) -> Duration {
        let count = self.clients.len() as u64;
        self.runtime.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = self
                .clients
                .iter()
                .enumerate()
                .map(|(index, client_id)| {
                    let share = messages / count + u64::from((index as u64) < messages % count);
                    let store = self.store.clone();
                    let client_id = client_id.clone();
                    let ids = self.next_message_id.clone();
                    tokio::spawn(async move {
                        for n in 0..share {
                            let id = ids.fetch_add(1, Ordering::Relaxed);
                            let packet_id = (n % u64::from(u16::MAX)) as u16 + 1;
                            deliver_one(&store, &client_id, id, packet_id).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("delivery task");
            }
            start.elapsed()
        })
    }

    /// (commits, queue entries, batches, bytes written) so far.
    fn counters(&self) -> [u64; 4] {
        let metrics = self.store.metrics();
        [
            &metrics.commits,
            &metrics.messages,
            &metrics.batches,
            &metrics.bytes_written,
        ]
        .map(|counter| counter.load(Ordering::Relaxed))
    }
}

async fn await_commit(store: &DurableStore, ops: Vec<StoreOp>) {
    store
        .submit(ops, Pace::Window)
        .await
        .expect("writer answers")
        .expect("commit succeeds");
}

/// The store's share of one QoS 1 delivery to an online persistent session.
async fn deliver_one(store: &DurableStore, client_id: &Arc<str>, id: u64, packet_id: u16) {
    let message = Arc::new(Message {
        id,
        topic: Arc::from("site/hall-2/line-4/sensor-0193/temperature"),
        payload: Bytes::from_static(&PAYLOAD),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: None,
        expires_at: None,
        publisher: Some(Arc::from("publisher")),
    });
    let enqueue = StoreOp::Enqueue {
        client_id: client_id.clone(),
        seq: id,
        delivery: Delivery {
            message,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
            queued_at: 0,
        },
    };
    await_commit(store, vec![enqueue]).await;
    let sent_and_acked = vec![
        StoreOp::Inflight {
            client_id: client_id.clone(),
            seq: id,
            packet_id,
            sent_topic: None,
        },
        StoreOp::Acked {
            client_id: client_id.clone(),
            packet_id,
        },
    ];
    await_commit(store, sent_and_acked).await;
}

fn qos1_delivery(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_qos1_64B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for fsync in [true, false] {
        for clients in [1usize, 64] {
            let fixture = Fixture::new(clients, fsync);
            let before = fixture.counters();
            let name = if fsync { "fsync" } else { "no_fsync" };
            group.bench_function(BenchmarkId::new(name, clients), |b| {
                b.iter_custom(|messages| fixture.deliver(messages))
            });
            let after = fixture.counters();
            let [commits, messages, batches, bytes] = [0, 1, 2, 3].map(|i| after[i] - before[i]);
            let per_commit = |count: u64| count as f64 / commits.max(1) as f64;
            println!(
                "store_qos1_64B/{name}/{clients}: {commits} commits, {:.2} messages and {:.2} \
                 batches per commit, {:.0} bytes written per message",
                per_commit(messages),
                per_commit(batches),
                bytes as f64 / messages.max(1) as f64,
            );
        }
    }
    group.finish();
}

/// The device's own limit: one 64-byte write plus fsync per iteration.
fn raw_fsync(c: &mut Criterion) {
    let dir = bench_dir();
    let mut file = std::fs::File::create(dir.path().join("fsync-probe")).expect("probe file");
    let mut group = c.benchmark_group("raw_fsync");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_64B_fsync", |b| {
        b.iter(|| {
            file.write_all(&PAYLOAD).expect("write");
            file.sync_data().expect("fsync");
        })
    });
    group.finish();
}

criterion_group!(benches, qos1_delivery, raw_fsync);
criterion_main!(benches);
