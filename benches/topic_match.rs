//! Cost of matching one topic against the subscription index at 10k and 100k filters, against a
//! linear scan as the reference, and the cost of inserting subscriptions.
//!
//! The filter mix mimics a gateway: per site, 85 exact `site/{n}/sensor/{m}/temp`, 10 clients on
//! `site/{n}/sensor/+/temp`, 4 on `site/{n}/#`, 1 on `+/{n}/sensor/#`.

use std::hint::black_box;
use std::sync::Arc;

use cairn::broker::subscriptions::{Subscription, SubscriptionIndex};
use cairn::broker::topic::filter_matches;
use cairn::codec::{QoS, SubscriptionOptions};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

/// A topic that several filters of every kind match.
const HIT_TOPIC: &str = "site/42/sensor/7/temp";
/// A topic that walks part of the trie and matches only `site/42/#`.
const PARTIAL_TOPIC: &str = "site/42/actuator/7/state";

/// The `i`-th filter of the mix.
fn filter(i: usize) -> String {
    let site = i / 100;
    match i % 100 {
        sensor @ 0..85 => format!("site/{site}/sensor/{sensor}/temp"),
        85..95 => format!("site/{site}/sensor/+/temp"),
        95..99 => format!("site/{site}/#"),
        _ => format!("+/{site}/sensor/#"),
    }
}

/// The `i`-th client's subscription to the `i`-th filter.
fn subscription(i: usize) -> Subscription {
    Subscription {
        client_id: Arc::from(format!("client-{i}")),
        filter: Arc::from(filter(i)),
        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        identifier: None,
    }
}

fn subscriptions(count: usize) -> Vec<Subscription> {
    (0..count).map(subscription).collect()
}

fn build_index(subs: Vec<Subscription>) -> SubscriptionIndex {
    let mut index = SubscriptionIndex::new();
    for sub in subs {
        index.insert(sub);
    }
    index
}

fn count_matches(index: &SubscriptionIndex, topic: &str) -> usize {
    let mut matches = 0;
    index.for_each_match(topic, |_| matches += 1);
    matches
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("match_one_topic");
    for count in [10_000, 100_000] {
        let subs = subscriptions(count);
        let index = build_index(subs.clone());
        for (name, topic) in [("hit", HIT_TOPIC), ("partial", PARTIAL_TOPIC)] {
            group.bench_with_input(
                BenchmarkId::new(format!("index_{name}"), count),
                &topic,
                |b, topic| b.iter(|| count_matches(&index, black_box(topic))),
            );
        }
        if count == 10_000 {
            group.bench_function(BenchmarkId::new("linear_scan_hit", count), |b| {
                b.iter(|| {
                    subs.iter()
                        .filter(|sub| filter_matches(&sub.filter, black_box(HIT_TOPIC)))
                        .count()
                })
            });
        }
    }
    group.finish();
}

fn inserting(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert");
    let subs = subscriptions(10_000);
    group.throughput(Throughput::Elements(subs.len() as u64));
    group.bench_function("10k_into_empty", |b| {
        b.iter_batched(|| subs.clone(), build_index, BatchSize::LargeInput)
    });
    group.throughput(Throughput::Elements(1));
    let mut index = build_index(subscriptions(100_000));
    // A new site: the insert creates its path, the remove prunes it again.
    let extra = subscription(100_007);
    group.bench_function("insert_and_remove_new_path_in_100k", |b| {
        b.iter(|| {
            index.insert(extra.clone());
            index.remove(&extra.client_id, &extra.filter)
        })
    });
    group.finish();
}

criterion_group!(benches, matching, inserting);
criterion_main!(benches);
