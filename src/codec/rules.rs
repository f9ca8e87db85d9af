//! The rules the decoder and encoder both obey: MQTT 5.0's tables of which properties each
//! packet may carry (section 2.2.2.2), which reason codes each packet may carry (section 2.4
//! and the packet sections) and which property values are forbidden, and the checks both sides
//! make with them, each failing with the one [`RuleError`] for its rule. One table and one check,
//! used in both directions, so that whatever `encode` writes, `decode` accepts.

use super::error::RuleError;
use super::primitives::MAX_VAR_INT;
use super::properties::{id, Properties};
use super::reason::ReasonCode;

/// A place properties or a reason code appear: a packet type, or the Will of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    /// The name errors use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Context::Connect => "CONNECT",
            Context::Will => "CONNECT Will",
            Context::ConnAck => "CONNACK",
            Context::Publish => "PUBLISH",
            Context::PubAck => "PUBACK",
            Context::PubRec => "PUBREC",
            Context::PubRel => "PUBREL",
            Context::PubComp => "PUBCOMP",
            Context::Subscribe => "SUBSCRIBE",
            Context::SubAck => "SUBACK",
            Context::Unsubscribe => "UNSUBSCRIBE",
            Context::UnsubAck => "UNSUBACK",
            Context::Disconnect => "DISCONNECT",
            Context::Auth => "AUTH",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Whether this packet may carry `reason` (MQTT 5.0).
    pub(crate) fn allows_reason(self, reason: ReasonCode) -> bool {
        self.reason_bytes().contains(&reason.to_u8())
    }

    fn reason_bytes(self) -> &'static [u8] {
        match self {
            Context::ConnAck => &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
            Context::PubAck | Context::PubRec => {
                &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
            }
            Context::PubRel | Context::PubComp => &[0x00, 0x92],
            Context::SubAck => &[
                0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
            ],
            Context::UnsubAck => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
            Context::Disconnect => &[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
                0xA2,
            ],
            Context::Auth => &[0x00, 0x18, 0x19],
            Context::Connect
            | Context::Will
            | Context::Publish
            | Context::Subscribe
            | Context::Unsubscribe => &[],
        }
    }
}

/// One property the specification defines: its identifier, name and where it may appear.
pub(crate) struct PropertySpec {
    pub(crate) name: &'static str,
    contexts: u16,
}

impl PropertySpec {
    /// Whether a packet of this context may carry the property.
    pub(crate) fn allowed_in(&self, context: Context) -> bool {
        self.contexts & context.bit() != 0
    }
}

const fn contexts(list: &[Context]) -> u16 {
    let mut bits = 0;
    let mut index = 0;
    while index < list.len() {
        bits |= 1 << (list[index] as u16);
        index += 1;
    }
    bits
}

/// Properties of an application message: PUBLISH and the Will.
const MESSAGE: u16 = contexts(&[Context::Publish, Context::Will]);
/// Properties of the CONNECT / CONNACK negotiation.
const CONNECTION: u16 = contexts(&[Context::Connect, Context::ConnAck]);
/// Authentication exchange properties.
const AUTHENTICATION: u16 = contexts(&[Context::Connect, Context::ConnAck, Context::Auth]);
/// Every packet that carries a reason code may explain it with a Reason String.
const REASONED: u16 = contexts(&[
    Context::ConnAck,
    Context::PubAck,
    Context::PubRec,
    Context::PubRel,
    Context::PubComp,
    Context::SubAck,
    Context::UnsubAck,
    Context::Disconnect,
    Context::Auth,
]);
/// User Property may appear everywhere properties do.
const EVERYWHERE: u16 = u16::MAX;
const CONNACK_ONLY: u16 = contexts(&[Context::ConnAck]);

const fn spec(name: &'static str, contexts: u16) -> Option<PropertySpec> {
    Some(PropertySpec { name, contexts })
}

/// Property specifications indexed by identifier (section 2.2.2.2).
const SPECS: [Option<PropertySpec>; 0x2B] = {
    let mut table = [const { None }; 0x2B];
    table[id::PAYLOAD_FORMAT_INDICATOR as usize] = spec("Payload Format Indicator", MESSAGE);
    table[id::MESSAGE_EXPIRY_INTERVAL as usize] = spec("Message Expiry Interval", MESSAGE);
    table[id::CONTENT_TYPE as usize] = spec("Content Type", MESSAGE);
    table[id::RESPONSE_TOPIC as usize] = spec("Response Topic", MESSAGE);
    table[id::CORRELATION_DATA as usize] = spec("Correlation Data", MESSAGE);
    table[id::SUBSCRIPTION_IDENTIFIER as usize] = spec(
        "Subscription Identifier",
        contexts(&[Context::Publish, Context::Subscribe]),
    );
    table[id::SESSION_EXPIRY_INTERVAL as usize] = spec(
        "Session Expiry Interval",
        contexts(&[Context::Connect, Context::ConnAck, Context::Disconnect]),
    );
    table[id::ASSIGNED_CLIENT_IDENTIFIER as usize] =
        spec("Assigned Client Identifier", CONNACK_ONLY);
    table[id::SERVER_KEEP_ALIVE as usize] = spec("Server Keep Alive", CONNACK_ONLY);
    table[id::AUTHENTICATION_METHOD as usize] = spec("Authentication Method", AUTHENTICATION);
    table[id::AUTHENTICATION_DATA as usize] = spec("Authentication Data", AUTHENTICATION);
    table[id::REQUEST_PROBLEM_INFORMATION as usize] =
        spec("Request Problem Information", contexts(&[Context::Connect]));
    table[id::WILL_DELAY_INTERVAL as usize] =
        spec("Will Delay Interval", contexts(&[Context::Will]));
    table[id::REQUEST_RESPONSE_INFORMATION as usize] = spec(
        "Request Response Information",
        contexts(&[Context::Connect]),
    );
    table[id::RESPONSE_INFORMATION as usize] = spec("Response Information", CONNACK_ONLY);
    table[id::SERVER_REFERENCE as usize] = spec(
        "Server Reference",
        contexts(&[Context::ConnAck, Context::Disconnect]),
    );
    table[id::REASON_STRING as usize] = spec("Reason String", REASONED);
    table[id::RECEIVE_MAXIMUM as usize] = spec("Receive Maximum", CONNECTION);
    table[id::TOPIC_ALIAS_MAXIMUM as usize] = spec("Topic Alias Maximum", CONNECTION);
    table[id::TOPIC_ALIAS as usize] = spec("Topic Alias", contexts(&[Context::Publish]));
    table[id::MAXIMUM_QOS as usize] = spec("Maximum QoS", CONNACK_ONLY);
    table[id::RETAIN_AVAILABLE as usize] = spec("Retain Available", CONNACK_ONLY);
    table[id::USER_PROPERTY as usize] = spec("User Property", EVERYWHERE);
    table[id::MAXIMUM_PACKET_SIZE as usize] = spec("Maximum Packet Size", CONNECTION);
    table[id::WILDCARD_SUBSCRIPTION_AVAILABLE as usize] =
        spec("Wildcard Subscription Available", CONNACK_ONLY);
    table[id::SUBSCRIPTION_IDENTIFIER_AVAILABLE as usize] =
        spec("Subscription Identifier Available", CONNACK_ONLY);
    table[id::SHARED_SUBSCRIPTION_AVAILABLE as usize] =
        spec("Shared Subscription Available", CONNACK_ONLY);
    table
};

/// The specification of property `id`, or `None` if MQTT 5.0 defines no such property.
pub(crate) fn property(id: u8) -> Option<&'static PropertySpec> {
    SPECS.get(usize::from(id)).and_then(Option::as_ref)
}

/// The name of a property the specification defines ("?" for any other identifier).
pub(crate) fn property_name(id: u8) -> &'static str {
    property(id).map_or("?", |spec| spec.name)
}

/// A Packet Identifier must be non-zero [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0).
pub(crate) fn check_packet_id(packet: &'static str, packet_id: u16) -> Result<u16, RuleError> {
    match packet_id {
        0 => Err(RuleError::ZeroPacketId { packet }),
        id => Ok(id),
    }
}

/// SUBSCRIBE and UNSUBSCRIBE carry at least one topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2].
pub(crate) fn check_filters_present(packet: &'static str, count: usize) -> Result<(), RuleError> {
    if count == 0 {
        return Err(RuleError::NoTopicFilters { packet });
    }
    Ok(())
}

/// Property `id` may appear in a packet of `context`.
pub(crate) fn check_property_allowed(id: u8, context: Context) -> Result<(), RuleError> {
    if property(id).is_some_and(|spec| spec.allowed_in(context)) {
        return Ok(());
    }
    Err(RuleError::PropertyNotAllowed {
        packet: context.name(),
        property: property_name(id),
    })
}

/// An integer property value is allowed: flags are 0 or 1, Maximum QoS is 0 or 1, Receive
/// Maximum and Maximum Packet Size are non-zero, a Subscription Identifier lies in
/// 1..=268,435,455. Topic Alias 0 is allowed here: the engine answers it.
pub(crate) fn check_integer_value(id: u8, value: u32, context: Context) -> Result<(), RuleError> {
    let allowed = match id {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::REQUEST_PROBLEM_INFORMATION
        | id::REQUEST_RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => value <= 1,
        id::SUBSCRIPTION_IDENTIFIER => (1..=MAX_VAR_INT).contains(&value),
        id::RECEIVE_MAXIMUM | id::MAXIMUM_PACKET_SIZE => value != 0,
        _ => true,
    };
    if allowed {
        return Ok(());
    }
    Err(RuleError::InvalidPropertyValue {
        packet: context.name(),
        property: property_name(id),
        value,
    })
}

/// A second value of property `id` in a packet of `context`: only User Property, and
/// Subscription Identifier in PUBLISH, may repeat.
pub(crate) fn duplicate_property(id: u8, context: Context) -> RuleError {
    RuleError::DuplicateProperty {
        packet: context.name(),
        property: property_name(id),
    }
}

/// The rule that spans properties: Authentication Data needs an Authentication Method.
pub(crate) fn check_auth_data(properties: &Properties, context: Context) -> Result<(), RuleError> {
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(RuleError::AuthDataWithoutMethod {
            packet: context.name(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_id_has_a_spec() {
        let ids = [
            id::PAYLOAD_FORMAT_INDICATOR,
            id::MESSAGE_EXPIRY_INTERVAL,
            id::CONTENT_TYPE,
            id::RESPONSE_TOPIC,
            id::CORRELATION_DATA,
            id::SUBSCRIPTION_IDENTIFIER,
            id::SESSION_EXPIRY_INTERVAL,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            id::SERVER_KEEP_ALIVE,
            id::AUTHENTICATION_METHOD,
            id::AUTHENTICATION_DATA,
            id::REQUEST_PROBLEM_INFORMATION,
            id::WILL_DELAY_INTERVAL,
            id::REQUEST_RESPONSE_INFORMATION,
            id::RESPONSE_INFORMATION,
            id::SERVER_REFERENCE,
            id::REASON_STRING,
            id::RECEIVE_MAXIMUM,
            id::TOPIC_ALIAS_MAXIMUM,
            id::TOPIC_ALIAS,
            id::MAXIMUM_QOS,
            id::RETAIN_AVAILABLE,
            id::USER_PROPERTY,
            id::MAXIMUM_PACKET_SIZE,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
        ];
        let defined = (0..=u8::MAX).filter(|&id| property(id).is_some()).count();
        assert_eq!(defined, ids.len());
        assert!(ids.iter().all(|&id| property(id).is_some()));
    }

    #[test]
    fn user_property_is_allowed_everywhere_and_topic_alias_only_in_publish() {
        let user = property(id::USER_PROPERTY).map(|spec| spec.allowed_in(Context::Auth));
        assert_eq!(user, Some(true));
        let alias = property(id::TOPIC_ALIAS);
        assert_eq!(alias.map(|s| s.allowed_in(Context::Publish)), Some(true));
        assert_eq!(alias.map(|s| s.allowed_in(Context::Will)), Some(false));
    }
}
