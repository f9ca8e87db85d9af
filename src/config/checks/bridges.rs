//! The checks of `[[bridges]]`: a unique name of safe characters, `host:port` addresses, MQTT
//! strings for the client id and username (a 3.1.1 password needs one), a client id upstream no other bridge uses, the ranges of the key table, a backoff cap not
//! below its base, a state topic clouds accept, TLS `cert` and `key` together, and every topic
//! rule by Mosquitto's rules (`bridge::topics`) and this broker's topic limits.

use std::fmt::Display;

use crate::bridge::topics::MQTT_TOPIC_LIMITS;
use crate::broker::topic::{validate_topic_filter, validate_topic_name, TopicLimits};
use crate::config::bridge::BridgeAddress;
use crate::config::error::Problem;
use crate::config::keys::{self, expected_for};
use crate::config::types::{BridgeConfig, BridgeProtocol, BridgeTls, BridgeTopic, Config, Limits};

use super::check_range;

/// The longest MQTT string, in bytes.
const MAX_MQTT_STRING: usize = 65_535;
/// The longest ALPN protocol name, in bytes (RFC 7301).
const MAX_ALPN_NAME: usize = 255;

/// Every problem of every bridge.
pub fn check_bridges(config: &Config, problems: &mut Vec<Problem>) {
    let client_ids: Vec<String> = config.bridges.iter().map(BridgeConfig::client_id).collect();
    for (index, bridge) in config.bridges.iter().enumerate() {
        let key = |name: &str| format!("bridges[{index}].{name}");
        check_name(index, &config.bridges, problems);
        check_client_id_unique(index, &config.bridges, &client_ids, problems);
        check_addresses(&key("addresses"), &bridge.addresses, problems);
        check_strings(bridge, &key, problems);
        check_ranges(bridge, &key, problems);
        if let Some(tls) = &bridge.tls {
            check_tls(&key("tls"), tls, problems);
        }
        check_topics(&key("topics"), &bridge.topics, &config.limits, problems);
    }
}

/// A `BadValue` for `key`, saying why beyond what the key table says.
fn bad_because(key: String, value: impl Display, reason: impl Display) -> Problem {
    Problem::BadValue {
        expected: format!("{} ({reason})", expected_for(&key)),
        key,
        value: value.to_string(),
        origin: None,
    }
}

fn check_name(index: usize, bridges: &[BridgeConfig], problems: &mut Vec<Problem>) {
    let name = &bridges[index].name;
    let key = format!("bridges[{index}].name");
    let safe = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !safe || !keys::BRIDGE_NAME_LENGTH.allows(name.len()) {
        problems.push(Problem::bad_value(key, format!("{name:?}")));
    } else if let Some(first) = bridges[..index]
        .iter()
        .position(|other| &other.name == name)
    {
        let reason = format!("bridges[{first}] has it");
        problems.push(bad_because(key, format!("{name:?}"), reason));
    }
}

/// Two bridges with one client id upstream would each take the other's session over, again
/// and again (a server allows one connection per client id) — even to different addresses,
/// which may be names of one server. Default ids differ whenever names do (already checked),
/// so a clash involves an explicit `client_id`.
fn check_client_id_unique(
    index: usize,
    bridges: &[BridgeConfig],
    client_ids: &[String],
    problems: &mut Vec<Problem>,
) {
    let bridge = &bridges[index];
    let client_id = &client_ids[index];
    let clash = (0..index).find(|&other| {
        &client_ids[other] == client_id
            && (bridge.client_id.is_some() || bridges[other].client_id.is_some())
    });
    if let Some(other) = clash {
        let whose = |bridge: &BridgeConfig| match bridge.client_id {
            Some(_) => format!("bridge {:?}", bridge.name),
            None => format!("the default of bridge {:?}", bridge.name),
        };
        problems.push(Problem::BadValue {
            key: format!("bridges[{index}].client_id"),
            value: format!("{client_id:?} ({})", whose(bridge)),
            expected: format!(
                "a client id no other bridge uses upstream ({} has it too: the two would take each other's session over, again and again)",
                whose(&bridges[other])
            ),
            origin: None,
        });
    }
}

fn check_addresses(key: &str, addresses: &[String], problems: &mut Vec<Problem>) {
    if addresses.is_empty() {
        problems.push(Problem::bad_value(key, "[]"));
    }
    for (index, address) in addresses.iter().enumerate() {
        if let Err(error) = address.parse::<BridgeAddress>() {
            let key = format!("{key}[{index}]");
            problems.push(bad_because(key, format!("{address:?}"), error));
        }
    }
}

/// Why `text` cannot be sent as an MQTT UTF-8 string, if it cannot.
fn mqtt_string_problem(text: &str) -> Option<&'static str> {
    if text.len() > MAX_MQTT_STRING {
        Some("longer than 65535 bytes")
    } else if text.contains('\0') {
        Some("contains U+0000 [MQTT-1.5.4-2]")
    } else {
        None
    }
}

/// The client id, username, password file and state topic.
fn check_strings(bridge: &BridgeConfig, key: &dyn Fn(&str) -> String, problems: &mut Vec<Problem>) {
    if let Some(client_id) = &bridge.client_id {
        let reason = match client_id.is_empty() {
            true => Some("empty: leave client_id out for cairn-<hostname>-<name>"),
            false => mqtt_string_problem(client_id),
        };
        if let Some(reason) = reason {
            problems.push(bad_because(
                key("client_id"),
                format!("{client_id:?}"),
                reason,
            ));
        }
    }
    if let Some(username) = &bridge.username {
        if let Some(reason) = mqtt_string_problem(username) {
            problems.push(bad_because(
                key("username"),
                format!("{username:?}"),
                reason,
            ));
        }
    }
    if bridge
        .password_file
        .as_ref()
        .is_some_and(|path| path.as_os_str().is_empty())
    {
        problems.push(Problem::bad_value(key("password_file"), "\"\""));
    }
    if let (BridgeProtocol::V311, Some(path)) = (bridge.protocol, &bridge.password_file) {
        if !bridge.credentials_fit_311() {
            problems.push(bad_because(
                key("password_file"),
                format!("{path:?}"),
                "MQTT 3.1.1 sends a password only with a user name [MQTT-3.1.2-22]: set username",
            ));
        }
    }
    if let Some(topic) = &bridge.state_topic {
        let reason = match validate_topic_name(topic, MQTT_TOPIC_LIMITS) {
            Err(error) => Some(error.to_string()),
            Ok(()) if topic.starts_with('$') => {
                Some("clouds refuse '$' topics from clients, as Will too".to_string())
            }
            Ok(()) => mqtt_string_problem(topic).map(String::from),
        };
        if let Some(reason) = reason {
            problems.push(bad_because(
                key("state_topic"),
                format!("{topic:?}"),
                reason,
            ));
        }
    }
}

/// The integers whose bounds are narrower than their types, and `reconnect_max` not below
/// `reconnect_min`.
fn check_ranges(bridge: &BridgeConfig, key: &dyn Fn(&str) -> String, problems: &mut Vec<Problem>) {
    check_range(
        problems,
        &key("keep_alive"),
        bridge.keep_alive,
        keys::BRIDGE_KEEP_ALIVE,
    );
    check_range(
        problems,
        &key("max_inflight"),
        bridge.max_inflight,
        keys::MAX_INFLIGHT,
    );
    check_range(problems, &key("max_qos"), bridge.max_qos, keys::QOS);
    check_range(
        problems,
        &key("max_packet_size"),
        bridge.max_packet_size,
        keys::MAX_PACKET_SIZE,
    );
    check_range(
        problems,
        &key("connect_timeout"),
        bridge.connect_timeout,
        keys::CONNECT_TIMEOUT,
    );
    check_range(
        problems,
        &key("reconnect_min"),
        bridge.reconnect_min,
        keys::RECONNECT_MIN,
    );
    if !keys::RECONNECT_MAX.allows(bridge.reconnect_max) {
        problems.push(Problem::bad_value(
            key("reconnect_max"),
            bridge.reconnect_max,
        ));
    } else if bridge.reconnect_max < bridge.reconnect_min {
        let reason = format!("reconnect_min is {}", bridge.reconnect_min);
        problems.push(bad_because(
            key("reconnect_max"),
            bridge.reconnect_max,
            reason,
        ));
    }
    check_range(
        problems,
        &key("stable_after"),
        bridge.stable_after,
        keys::STABLE_AFTER,
    );
    if let Some(max_messages) = bridge.queue.max_messages {
        check_range(
            problems,
            &key("queue.max_messages"),
            max_messages,
            keys::QUEUE_BOUND,
        );
    }
    if let Some(max_bytes) = bridge.queue.max_bytes {
        check_range(
            problems,
            &key("queue.max_bytes"),
            max_bytes,
            keys::QUEUE_BOUND,
        );
    }
}

fn check_tls(key: &str, tls: &BridgeTls, problems: &mut Vec<Problem>) {
    for (name, path) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
        if path
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            problems.push(Problem::bad_value(format!("{key}.{name}"), "\"\""));
        }
    }
    match (&tls.cert, &tls.key) {
        (Some(_), None) => problems.push(Problem::bad_value(format!("{key}.key"), "nothing")),
        (None, Some(_)) => problems.push(Problem::bad_value(format!("{key}.cert"), "nothing")),
        _ => {}
    }
    if let Some(name) = &tls.server_name {
        if let Err(error) = rustls::pki_types::ServerName::try_from(name.as_str()) {
            let key = format!("{key}.server_name");
            problems.push(bad_because(key, format!("{name:?}"), error));
        }
    }
    for (index, protocol) in tls.alpn.iter().enumerate() {
        if !(1..=MAX_ALPN_NAME).contains(&protocol.len()) {
            let key = format!("{key}.alpn[{index}]");
            problems.push(Problem::bad_value(key, format!("{protocol:?}")));
        }
    }
}

/// At least one rule; each one by Mosquitto's rules, and an `out` rule's local filter within
/// this broker's topic limits (it is subscribed here).
fn check_topics(key: &str, topics: &[BridgeTopic], limits: &Limits, problems: &mut Vec<Problem>) {
    if topics.is_empty() {
        problems.push(Problem::bad_value(key, "nothing"));
    }
    let local_limits = TopicLimits {
        max_length: limits.max_topic_length,
        max_levels: limits.max_topic_levels,
    };
    for (index, topic) in topics.iter().enumerate() {
        let rule_key = |name: &str| format!("{key}[{index}].{name}");
        let value_of = |name: &str| match name {
            "qos" => topic.qos.to_string(),
            "local_prefix" => format!("{:?}", topic.local_prefix),
            "remote_prefix" => format!("{:?}", topic.remote_prefix),
            _ => format!("{:?}", topic.filter),
        };
        match topic.validate() {
            Err(errors) => problems.extend(errors.into_iter().map(|error| {
                let name = error.key();
                bad_because(rule_key(name), value_of(name), error)
            })),
            Ok(()) if topic.direction.carries_out() => {
                let local_filter = topic.local_filter();
                if let Err(error) = validate_topic_filter(&local_filter, local_limits) {
                    let reason = format!("the local filter {local_filter:?}: {error}");
                    problems.push(bad_because(rule_key("filter"), value_of("filter"), reason));
                }
            }
            Ok(()) => {}
        }
    }
}
