//! A mutation fuzzer for `decode` that runs on stable Rust inside `cargo test`.
//!
//! A corpus of valid packets (every type, both versions, with properties) is encoded, then
//! mutated with a seeded PRNG (bit flips, byte insertions and deletions, truncation,
//! spliced Remaining Lengths, random property identifiers, duplicated slices, concatenation)
//! and fed to `decode` with assorted maximum packet sizes and both versions. Any panic fails.
//! Every packet decoded from a mutant must re-encode, with `encoded_len` matching, and decode
//! back to itself.
//!
//! `cargo test` runs a fixed number of inputs (seconds, not a time bound); for a longer run:
//! `CAIRN_FUZZ_ITERS=N cargo test --release --test codec_fuzz -- --nocapture`
//! (`CAIRN_FUZZ_SEED=S` explores another sequence of mutations).

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use cairn::codec::{
    decode, encode, encoded_len, Auth, ConnAck, Connect, Disconnect, Packet, Properties,
    ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will,
};

#[path = "common/prng.rs"]
mod prng;

use prng::SplitMix64;

/// Inputs per `cargo test` run (debug build), unless `CAIRN_FUZZ_ITERS` says otherwise.
const DEFAULT_ITERATIONS: u64 = 1_000_000;
const SEED: u64 = 0x00C0_FFEE_CA1B_0001;

// ---- Corpus. ----

fn rich_message_properties() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        ..Properties::default()
    }
}

fn reason_properties() -> Properties {
    Properties {
        reason_string: Some("because".into()),
        user_properties: vec![("a".into(), "b".into())],
        ..Properties::default()
    }
}

fn connect(version: ProtocolVersion) -> Packet {
    let v5 = version == ProtocolVersion::V5;
    let pick = |props: Properties| if v5 { props } else { Properties::default() };
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        bridge: false,
        keep_alive: 30,
        client_id: "sensor-17".into(),
        properties: pick(Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(32),
            maximum_packet_size: Some(65_536),
            topic_alias_maximum: Some(8),
            request_problem_information: Some(1),
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"nonce")),
            ..Properties::default()
        }),
        will: Some(Will {
            topic: "status/sensor-17".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: pick(Properties {
                will_delay_interval: Some(5),
                ..rich_message_properties()
            }),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
    }))
}

fn conn_ack(version: ProtocolVersion) -> Packet {
    let properties = match version {
        ProtocolVersion::V311 => Properties::default(),
        ProtocolVersion::V5 => Properties {
            session_expiry_interval: Some(10),
            assigned_client_identifier: Some("auto-1".into()),
            server_keep_alive: Some(60),
            receive_maximum: Some(100),
            topic_alias_maximum: Some(10),
            maximum_qos: Some(1),
            retain_available: Some(1),
            maximum_packet_size: Some(1 << 20),
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(1),
            shared_subscription_available: Some(0),
            ..reason_properties()
        },
    };
    Packet::ConnAck(ConnAck {
        session_present: true,
        reason: ReasonCode::Success,
        properties,
    })
}

fn publish(version: ProtocolVersion, qos: QoS, payload_len: usize) -> Packet {
    let properties = match version {
        ProtocolVersion::V311 => Properties::default(),
        ProtocolVersion::V5 => Properties {
            topic_alias: Some(3),
            subscription_identifiers: vec![1, 300, 70_000],
            ..rich_message_properties()
        },
    };
    Packet::Publish(Publish {
        dup: qos != QoS::AtMostOnce,
        qos,
        retain: true,
        topic: "plant/line-1/temperature".into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(0x1234),
        properties,
        payload: Bytes::from(vec![0x5A; payload_len]),
    })
}

fn corpus_packets(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version == ProtocolVersion::V5;
    let reasons = |props: Properties| if v5 { props } else { Properties::default() };
    let failed = |reason: ReasonCode| if v5 { reason } else { ReasonCode::Success };
    let response = |reason| PubResponse {
        packet_id: 9,
        reason: failed(reason),
        properties: reasons(reason_properties()),
    };
    let mut packets = vec![
        connect(version),
        conn_ack(version),
        publish(version, QoS::AtMostOnce, 16),
        publish(version, QoS::AtLeastOnce, 200),
        publish(version, QoS::ExactlyOnce, 0),
        Packet::PubAck(PubResponse::success(1)),
        Packet::PubAck(response(ReasonCode::NoMatchingSubscribers)),
        Packet::PubRec(response(ReasonCode::QuotaExceeded)),
        Packet::PubRel(response(ReasonCode::PacketIdentifierNotFound)),
        Packet::PubComp(PubResponse::success(2)),
        Packet::Subscribe(Subscribe {
            packet_id: 3,
            properties: reasons(Properties {
                subscription_identifiers: vec![42],
                user_properties: vec![("x".into(), "y".into())],
                ..Properties::default()
            }),
            filters: vec![
                (
                    "a/+/c".into(),
                    SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                ),
                (
                    "$share/g/#".into(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: v5,
                        retain_as_published: v5,
                        retain_handling: if v5 { 2 } else { 0 },
                    },
                ),
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: 3,
            properties: reasons(reason_properties()),
            reasons: vec![
                ReasonCode::GrantedQoS1,
                ReasonCode::Success,
                ReasonCode::UnspecifiedError,
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 4,
            properties: Properties::default(),
            filters: vec!["a/+/c".into(), "d/#".into()],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 4,
            properties: reasons(reason_properties()),
            reasons: if v5 {
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            } else {
                Vec::new()
            },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        Packet::Disconnect(Disconnect {
            reason: failed(ReasonCode::ServerShuttingDown),
            properties: reasons(Properties {
                session_expiry_interval: Some(0),
                server_reference: Some("other:1883".into()),
                ..reason_properties()
            }),
        }),
    ];
    if v5 {
        packets.push(Packet::Auth(Auth {
            reason: ReasonCode::ContinueAuthentication,
            properties: Properties {
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(Bytes::from_static(b"proof")),
                ..Properties::default()
            },
        }));
    }
    packets
}

fn corpus() -> Vec<(ProtocolVersion, Vec<u8>)> {
    let mut corpus = Vec::new();
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for packet in corpus_packets(version) {
            let mut bytes = BytesMut::new();
            encode(&packet, version, &mut bytes).expect("corpus packets are valid");
            corpus.push((version, bytes.to_vec()));
        }
    }
    corpus
}

// ---- Mutations. ----

const PROPERTY_IDS: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A,
    0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x7F, 0x80, 0xFF,
];
const INTERESTING_BYTES: &[u8] = &[0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0x81, 0xC0, 0xFE, 0xFF];

/// A Remaining Length to splice in: boundaries, near the real one, or random; sometimes
/// non-minimal or five bytes long.
fn spliced_remaining_length(rng: &mut SplitMix64, actual: usize) -> Vec<u8> {
    let random = rng.next_u64() as u32 & 0x0FFF_FFFF;
    let candidates = [
        0,
        1,
        2,
        127,
        128,
        16_383,
        16_384,
        268_435_455,
        actual.saturating_sub(1) as u32,
        actual as u32 + 1,
        random,
    ];
    let mut value = *rng.pick(&candidates);
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    match rng.below(8) {
        0 => {
            // Non-minimal: one more continuation byte carrying zero.
            if let Some(last) = out.last_mut() {
                *last |= 0x80;
            }
            out.push(0x00);
        }
        1 => out = vec![0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        _ => {}
    }
    out
}

/// Index of the first body byte: after the Remaining Length, or after the (at most 4) bytes
/// that would hold it. Between 1 and `bytes.len()` for a non-empty input.
fn body_start(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .skip(1)
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map_or(bytes.len().min(5), |i| i + 2)
}

fn mutate_once(rng: &mut SplitMix64, input: &mut Vec<u8>, corpus: &[(ProtocolVersion, Vec<u8>)]) {
    if input.is_empty() {
        input.push(rng.byte());
        return;
    }
    let at = rng.below(input.len());
    match rng.below(9) {
        0 => input[at] ^= 1 << rng.below(8),
        1 => input.insert(rng.below(input.len() + 1), rng.byte()),
        2 => {
            input.remove(at);
        }
        3 => input.truncate(at),
        4 => {
            let start = body_start(input);
            let spliced = spliced_remaining_length(rng, input.len() - start);
            input.splice(1..start, spliced);
        }
        5 => input[at] = *rng.pick(PROPERTY_IDS),
        6 => input[at] = *rng.pick(INTERESTING_BYTES),
        7 => {
            let len = rng.below(8) + 1;
            let end = (at + len).min(input.len());
            let slice = input[at..end].to_vec();
            let to = rng.below(input.len() + 1);
            input.splice(to..to, slice);
        }
        _ => {
            let (_, other) = rng.pick(corpus);
            input.extend_from_slice(other);
        }
    }
}

// ---- Running inputs. ----

#[derive(Default)]
struct Tally {
    inputs: u64,
    packets: u64,
    errors: u64,
    incomplete: u64,
}

/// Decodes every packet `input` holds; checks each re-encodes and decodes back to itself.
fn run_input(input: &[u8], version: ProtocolVersion, max_packet_size: u32, tally: &mut Tally) {
    let mut buffer = BytesMut::from(input);
    loop {
        match decode(&mut buffer, version, max_packet_size) {
            Ok(Some(packet)) => {
                tally.packets += 1;
                check_reencodes(&packet, version);
            }
            Ok(None) => {
                tally.incomplete += 1;
                return;
            }
            Err(_) => {
                tally.errors += 1;
                return;
            }
        }
    }
}

fn check_reencodes(packet: &Packet, version: ProtocolVersion) {
    let mut bytes = BytesMut::new();
    if let Err(error) = encode(packet, version, &mut bytes) {
        panic!("decoded packet does not re-encode ({error}): {packet:?}");
    }
    assert_eq!(encoded_len(packet, version), bytes.len(), "{packet:?}");
    let again = decode(&mut bytes, version, u32::MAX);
    assert_eq!(again.as_ref().ok().and_then(Option::as_ref), Some(packet));
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

fn iterations() -> u64 {
    env_u64("CAIRN_FUZZ_ITERS").unwrap_or(DEFAULT_ITERATIONS)
}

#[test]
fn mutated_packets_never_panic_and_decoded_ones_reencode() {
    let corpus = corpus();
    let seed = env_u64("CAIRN_FUZZ_SEED").unwrap_or(SEED);
    let mut rng = SplitMix64::new(seed);
    let mut tally = Tally::default();
    let versions = [ProtocolVersion::V311, ProtocolVersion::V5];
    for _ in 0..iterations() {
        let (corpus_version, original) = rng.pick(&corpus);
        let mut input = original.clone();
        for _ in 0..=rng.below(3) {
            mutate_once(&mut rng, &mut input, &corpus);
        }
        // Mostly the version the packet was encoded for, sometimes the other.
        let version = if rng.below(4) == 0 {
            *rng.pick(&versions)
        } else {
            *corpus_version
        };
        let random_size = rng.next_u64() as u32 % 4096;
        let max_packet_size = *rng.pick(&[u32::MAX, u32::MAX, 2, 16, 64, 256, random_size]);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_input(&input, version, max_packet_size, &mut tally)
        }));
        if outcome.is_err() {
            panic!("input #{} panicked: version {version:?}, max {max_packet_size}, bytes {input:02x?}", tally.inputs);
        }
        tally.inputs += 1;
    }
    println!(
        "codec fuzz (seed {seed:#x}): {} inputs without panic ({} packets decoded and re-encoded, {} errors, {} incomplete)",
        tally.inputs, tally.packets, tally.errors, tally.incomplete
    );
    assert_eq!(tally.inputs, iterations());
    assert!(
        tally.packets > 0 && tally.errors > 0,
        "mutations must exercise both outcomes"
    );
}

#[test]
fn corpus_decodes_unchanged() {
    for (version, bytes) in corpus() {
        let mut buffer = BytesMut::from(&bytes[..]);
        let packet = decode(&mut buffer, version, u32::MAX);
        assert!(matches!(packet, Ok(Some(_))), "{bytes:02x?}: {packet:?}");
        assert!(buffer.is_empty());
    }
}
