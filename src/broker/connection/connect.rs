//! CONNECT: checks the request, settles the client identifier, keep-alive and session expiry,
//! attaches the session (resuming, replacing or taking it over), answers CONNACK and resends
//! what was inflight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::{
    encoded_len, ConnAck, Connect, DecodeError, Packet, Properties, ProtocolVersion, ReasonCode,
};

use super::{explain_within, Client, ParkHistory, TopicAliases};
use crate::access::login::{Granted, Login};
use crate::auth::{Access, Who};
use crate::broker::acks::AckQueue;
use crate::broker::aliases::OutboundAliases;
use crate::broker::state::{AttachRequest, ConnectionSignal, Link, BRIDGE_SESSION_PREFIX};
use crate::broker::topic::{validate_topic_name, TopicLimits};
use crate::broker::Broker;
use crate::config::{Config, Limits};
use crate::transport::{Framed, ParkingSpot, Peer, ReadError};

/// How long a CONNECT taking a session over waits for the connection it replaces to act on
/// what its client sent before and end ([`Broker::take_over`]): one stuck writing to a client
/// that does not read is taken over as it is once this has passed.
const HANDOVER_WAIT: Duration = Duration::from_secs(1);

/// Answers a first packet that could not be decoded: an unsupported protocol level gets
/// CONNACK 0x01 (the 3.1.1 form every client understands) [MQTT-3.1.2-2]; anything else gets
/// no answer. The caller closes the connection.
pub fn refuse_unreadable<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S>,
    error: &ReadError,
    peer: SocketAddr,
) {
    tracing::info!(%peer, "refusing connection: {error}");
    if let ReadError::Decode(DecodeError::UnsupportedProtocol { .. }) = error {
        framed.version = ProtocolVersion::V311;
        let refusal = ConnAck {
            session_present: false,
            reason: ReasonCode::UnsupportedProtocolVersion,
            properties: Properties::default(),
        };
        let _ = framed.queue(&Packet::ConnAck(refusal));
    }
}

/// Accepts or refuses a CONNECT under `config` (the configuration in force when the
/// connection arrived, kept by the connection for its whole life). On success the CONNACK is
/// queued on `framed` with any inflight messages to resend, and the connected [`Client`] is
/// returned; it may park while idle if `parking` says where.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    broker: &Arc<Broker>,
    config: Arc<Config>,
    framed: &mut Framed<S>,
    mut connect: Connect,
    peer: &Peer,
    parking: Option<ParkingSpot>,
) -> Option<Client> {
    framed.version = connect.protocol;
    let version = connect.protocol;
    let mut connack = ConnAck {
        session_present: false,
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    let checked = match check(broker, &config, &connect) {
        Ok(()) => log_in(broker, &config, &mut connect, peer).await,
        Err(refusal) => Err(refusal),
    };
    let granted = match checked {
        Ok(granted) => granted,
        Err((reason, why)) => {
            tracing::info!(peer = %peer.addr, client_id = %connect.client_id, ?reason, "refusing CONNECT: {why}");
            if version == ProtocolVersion::V311 && reason == ReasonCode::TopicNameInvalid {
                // [MQTT-3.1.4-1] A non-conforming CONNECT is closed without CONNACK; 3.1.1
                // has no return code for a bad Will Topic.
                return None;
            }
            connack.reason = reason;
            let mut refusal = Packet::ConnAck(connack);
            if version == ProtocolVersion::V5
                && connect.properties.request_problem_information != Some(0)
            {
                let limit = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
                explain_within(&mut refusal, why, version, limit);
            }
            let _ = framed.queue(&refusal);
            return None;
        }
    };
    let limits = &config.limits;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        let assigned = assign_client_id();
        if version == ProtocolVersion::V5 {
            connack.properties.assigned_client_identifier = Some(assigned.clone());
        }
        Arc::from(assigned)
    } else {
        Arc::from(connect.client_id.as_str())
    };
    let keep_alive = grant_keep_alive(connect.keep_alive, limits.max_keep_alive, version);
    if keep_alive != connect.keep_alive {
        connack.properties.server_keep_alive = Some(keep_alive);
    }
    let expiry = grant_session_expiry(&connect, limits.max_session_expiry);
    if version == ProtocolVersion::V5
        && expiry != connect.properties.session_expiry_interval.unwrap_or(0)
    {
        connack.properties.session_expiry_interval = Some(expiry);
    }
    if version == ProtocolVersion::V5 {
        announce_limits(&mut connack.properties, limits);
    }
    let client_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
    if let Some(limit) = connect.properties.maximum_packet_size {
        let connack_size = encoded_len(&Packet::ConnAck(connack.clone()), version);
        if connack_size > limit as usize {
            // [MQTT-3.1.2-24] Nothing may go past the client's limit, and a CONNACK has nothing
            // optional to leave out: closed as Mosquitto does, before the session is touched.
            tracing::info!(peer = %peer.addr, %client_id, connack_size, limit,
                "refusing CONNECT: the CONNACK would be larger than the client's Maximum Packet Size");
            return None;
        }
    }

    let signal = Arc::new(ConnectionSignal::for_user(
        granted.username.clone(),
        granted.by_password,
    ));
    let connection_id = broker.next_connection_id();
    let link = Link {
        connection_id,
        signal: signal.clone(),
    };
    let request = AttachRequest {
        client_id: client_id.clone(),
        clean_start: connect.clean_start,
        expiry_interval: expiry,
        will: connect.will.map(Box::new),
        username: granted.username.clone(),
        link,
    };
    broker.take_over(&client_id, HANDOVER_WAIT).await;
    let (attached, commit) = broker.change(|state, changes| state.attach(request, changes));
    let mut acks = AckQueue::default();
    if attached.connack_waits {
        if let Err(error) = commit.wait().await {
            tracing::error!(%client_id, %error, "could not store the session; refusing CONNECT");
            connack.reason = ReasonCode::ServerUnavailable;
            let _ = framed.queue(&Packet::ConnAck(connack));
            return None;
        }
    } else {
        acks.push_unacknowledged(commit);
    }
    connack.session_present = attached.session_present;
    if framed.queue(&Packet::ConnAck(connack)).is_err() {
        return None;
    }
    tracing::debug!(%client_id, peer = %peer.addr, ?version, session_present = attached.session_present, username = ?granted.username, "client connected");

    let mut client = Client {
        broker: broker.clone(),
        config,
        client_id,
        connection_id,
        version,
        signal,
        keep_alive,
        persistent: expiry > 0,
        bridge: connect.bridge,
        aliases: connect
            .properties
            .topic_alias_maximum
            .filter(|&maximum| maximum > 0)
            .map(|maximum| {
                Box::new(TopicAliases {
                    inbound: HashMap::new(),
                    outbound: OutboundAliases::new(maximum),
                })
            }),
        client_receive_maximum: connect.properties.receive_maximum.unwrap_or(u16::MAX),
        client_max_packet_size,
        unacknowledged: 0,
        parks: ParkHistory::started(ParkHistory::clock(broker)),
        acks,
        load: None,
        held_resends: 0,
        parking,
    };
    client.resend_inflight(framed);
    Some(client)
}

/// The checks that can refuse a CONNECT, with the reason code for CONNACK.
fn check(broker: &Broker, config: &Config, connect: &Connect) -> Result<(), (ReasonCode, String)> {
    if connect.properties.authentication_method.is_some() {
        return Err((
            ReasonCode::BadAuthenticationMethod,
            "enhanced authentication is not supported".into(),
        ));
    }
    if connect.client_id.is_empty()
        && !connect.clean_start
        && connect.protocol == ProtocolVersion::V311
    {
        // [MQTT-3.1.3-8] An empty client identifier needs Clean Session 1 in 3.1.1.
        return Err((
            ReasonCode::ClientIdentifierNotValid,
            "empty client identifier with Clean Session 0".into(),
        ));
    }
    if connect.client_id.starts_with(BRIDGE_SESSION_PREFIX) {
        // The bridges' own sessions live under this prefix.
        return Err((
            ReasonCode::ClientIdentifierNotValid,
            format!(
                "client identifiers starting with {BRIDGE_SESSION_PREFIX} are reserved for bridges"
            ),
        ));
    }
    if let Some(will) = &connect.will {
        let limits = TopicLimits {
            max_length: config.limits.max_topic_length,
            max_levels: config.limits.max_topic_levels,
        };
        validate_topic_name(&will.topic, limits)
            .map_err(|error| (ReasonCode::TopicNameInvalid, format!("will topic: {error}")))?;
        if let Some(response_topic) = &will.properties.response_topic {
            // A Topic Name, so without wildcards [MQTT-3.3.2-14].
            validate_topic_name(response_topic, limits).map_err(|error| {
                (
                    ReasonCode::ProtocolError,
                    format!("will response topic: {error}"),
                )
            })?;
        }
    }
    if broker.metrics().clients_connected.load(Ordering::Relaxed) >= config.limits.max_connections
        && !takes_over(broker, &connect.client_id)
    {
        return Err((
            ReasonCode::ServerBusy,
            format!(
                "{} clients connected already",
                config.limits.max_connections
            ),
        ));
    }
    Ok(())
}

/// Whether a CONNECT under `client_id` takes over a connection attached now
/// [MQTT-3.1.4-3]: it replaces that connection, so it counts for none more against
/// `limits.max_connections` (a sensor reconnecting while its old connection is half-open).
fn takes_over(broker: &Broker, client_id: &str) -> bool {
    !client_id.is_empty() && broker.read(|state| state.attached_signal(client_id).is_some())
}

/// Checks the client's credentials under its listener's `auth` (see
/// [`crate::access::login`]); a refused login gets 0x86 / 0x87 (return codes 4 / 5 in
/// 3.1.1). A Will the ACL forbids its client to publish is dropped here: Cairn never sends
/// it. The password is taken out of `connect` and dropped once checked.
async fn log_in(
    broker: &Broker,
    config: &Config,
    connect: &mut Connect,
    peer: &Peer,
) -> Result<Granted, (ReasonCode, String)> {
    // Listeners are only added or removed by a restart, so the position names the same
    // listener in every configuration this broker runs with.
    let Some(listener) = config.listeners.get(peer.listener) else {
        return Err((ReasonCode::NotAuthorized, "no such listener".into()));
    };
    let login = Login {
        mode: config.listener_auth(listener),
        addr: peer.addr.ip(),
        certificate: peer.certificate.clone(),
        username: connect.username.clone(),
        password: connect.password.take(),
    };
    let access = broker.access();
    let granted = access
        .log_in(login)
        .await
        .map_err(|refusal| (refusal.reason_code(), refusal.why().to_string()))?;
    if let Some(will) = &connect.will {
        let who = Who {
            username: granted.username.as_deref(),
            client_id: &connect.client_id,
        };
        if !access.allows(who, &will.topic, Access::Write) {
            tracing::info!(peer = %peer.addr, client_id = %connect.client_id, topic = %will.topic, "the ACL forbids this Will topic; the Will is dropped");
            connect.will = None;
        }
    }
    Ok(granted)
}

/// A fresh client identifier for a client that sent an empty one [MQTT-3.1.3-6].
fn assign_client_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "cairn-{:x}-{:x}",
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The Keep Alive in force: the client's, unless the configured maximum is lower (or the
/// client asked for none); v5 clients are told through Server Keep Alive [MQTT-3.2.2-21].
/// A 3.1.1 client cannot be told, so it keeps its own value.
fn grant_keep_alive(requested: u16, maximum: u16, version: ProtocolVersion) -> u16 {
    let too_long = requested == 0 || requested > maximum;
    if maximum > 0 && too_long && version == ProtocolVersion::V5 {
        maximum
    } else {
        requested
    }
}

/// The Session Expiry Interval granted: v5 asks for one (absent = 0); 3.1.1 Clean Session 1
/// is 0 and Clean Session 0 is "never" (`u32::MAX`); both capped by the configured maximum.
fn grant_session_expiry(connect: &Connect, maximum: u32) -> u32 {
    let requested = match connect.protocol {
        ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
        ProtocolVersion::V311 if connect.clean_start => 0,
        ProtocolVersion::V311 => u32::MAX,
    };
    requested.min(maximum)
}

/// The limits a v5 CONNACK announces: Receive Maximum, Maximum Packet Size, Topic Alias Maximum.
fn announce_limits(properties: &mut Properties, limits: &Limits) {
    if limits.max_inflight < u16::MAX {
        properties.receive_maximum = Some(limits.max_inflight);
    }
    properties.maximum_packet_size = Some(limits.max_packet_size);
    if limits.topic_alias_maximum > 0 {
        properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_capped_only_for_v5() {
        assert_eq!(grant_keep_alive(120, 60, ProtocolVersion::V5), 60);
        assert_eq!(grant_keep_alive(0, 60, ProtocolVersion::V5), 60);
        assert_eq!(grant_keep_alive(30, 60, ProtocolVersion::V5), 30);
        assert_eq!(grant_keep_alive(120, 0, ProtocolVersion::V5), 120);
        assert_eq!(grant_keep_alive(120, 60, ProtocolVersion::V311), 120);
    }
}
