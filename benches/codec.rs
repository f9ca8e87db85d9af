//! Codec throughput on typical PUBLISH packets: decode and encode, 64-byte and 1 KiB payloads,
//! QoS 0 and 1, MQTT 3.1.1 and 5.0 (the v5 packets carry a Message Expiry Interval and a User
//! Property). Decoding runs over a buffer holding a batch of packets back to back, the way a
//! connection's read buffer does; encoding appends to one reused `BytesMut`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cairn::codec::{decode, encode, Packet, Properties, ProtocolVersion, Publish, QoS};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Packets per decode batch.
const BATCH: usize = 256;

fn publish(version: ProtocolVersion, qos: QoS, payload_len: usize) -> Packet {
    let properties = match version {
        ProtocolVersion::V311 => Properties::default(),
        ProtocolVersion::V5 => Properties {
            message_expiry_interval: Some(300),
            user_properties: vec![("unit".into(), "celsius".into())],
            ..Properties::default()
        },
    };
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: "site/hall-2/line-4/sensor-0193/temperature".into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(4711),
        properties,
        payload: Bytes::from(vec![0xA5; payload_len]),
    })
}

struct Case {
    name: String,
    version: ProtocolVersion,
    packet: Packet,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (version, label) in [(ProtocolVersion::V311, "v311"), (ProtocolVersion::V5, "v5")] {
        for (qos, qos_label) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
            for (payload_len, size_label) in [(64, "64B"), (1024, "1KiB")] {
                cases.push(Case {
                    name: format!("{label}/{qos_label}/{size_label}"),
                    version,
                    packet: publish(version, qos, payload_len),
                });
            }
        }
    }
    cases
}

fn encoded_batch(case: &Case) -> BytesMut {
    let mut batch = BytesMut::new();
    for _ in 0..BATCH {
        encode(&case.packet, case.version, &mut batch).expect("benchmark packets are valid");
    }
    batch
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_publish");
    group.throughput(Throughput::Elements(BATCH as u64));
    for case in cases() {
        let batch = encoded_batch(&case);
        group.bench_function(&case.name, |b| {
            b.iter_batched_ref(
                || batch.clone(),
                |buffer| {
                    while let Ok(Some(packet)) = decode(buffer, case.version, u32::MAX) {
                        black_box(packet);
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish");
    group.throughput(Throughput::Elements(1));
    for case in cases() {
        let mut dst = BytesMut::with_capacity(4096);
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                dst.clear();
                encode(black_box(&case.packet), case.version, &mut dst)
                    .expect("benchmark packets are valid");
                black_box(dst.len());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
