//! MQTT 5.0 reason codes (section 2.4), and their 3.1.1 equivalents where one exists.

use super::packet::QoS;

/// Every reason code MQTT 5.0 defines. Codes with the same value but different meanings per
/// packet (0x00 Success / Normal disconnection / Granted QoS 0) are one variant each where the
/// name matters to the reader; `to_u8`/`from_u8` are exact inverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// 0x00: Success, Normal disconnection, Granted QoS 0.
    Success,
    /// 0x01
    GrantedQoS1,
    /// 0x02
    GrantedQoS2,
    /// 0x04
    DisconnectWithWillMessage,
    /// 0x10
    NoMatchingSubscribers,
    /// 0x11
    NoSubscriptionExisted,
    /// 0x18
    ContinueAuthentication,
    /// 0x19
    ReAuthenticate,
    /// 0x80
    UnspecifiedError,
    /// 0x81
    MalformedPacket,
    /// 0x82
    ProtocolError,
    /// 0x83
    ImplementationSpecificError,
    /// 0x84
    UnsupportedProtocolVersion,
    /// 0x85
    ClientIdentifierNotValid,
    /// 0x86
    BadUserNameOrPassword,
    /// 0x87
    NotAuthorized,
    /// 0x88
    ServerUnavailable,
    /// 0x89
    ServerBusy,
    /// 0x8A
    Banned,
    /// 0x8B
    ServerShuttingDown,
    /// 0x8C
    BadAuthenticationMethod,
    /// 0x8D
    KeepAliveTimeout,
    /// 0x8E
    SessionTakenOver,
    /// 0x8F
    TopicFilterInvalid,
    /// 0x90
    TopicNameInvalid,
    /// 0x91
    PacketIdentifierInUse,
    /// 0x92
    PacketIdentifierNotFound,
    /// 0x93
    ReceiveMaximumExceeded,
    /// 0x94
    TopicAliasInvalid,
    /// 0x95
    PacketTooLarge,
    /// 0x96
    MessageRateTooHigh,
    /// 0x97
    QuotaExceeded,
    /// 0x98
    AdministrativeAction,
    /// 0x99
    PayloadFormatInvalid,
    /// 0x9A
    RetainNotSupported,
    /// 0x9B
    QoSNotSupported,
    /// 0x9C
    UseAnotherServer,
    /// 0x9D
    ServerMoved,
    /// 0x9E
    SharedSubscriptionsNotSupported,
    /// 0x9F
    ConnectionRateExceeded,
    /// 0xA0
    MaximumConnectTime,
    /// 0xA1
    SubscriptionIdentifiersNotSupported,
    /// 0xA2
    WildcardSubscriptionsNotSupported,
}

/// Every variant with its byte, the one table both directions read.
const TABLE: &[(ReasonCode, u8)] = &[
    (ReasonCode::Success, 0x00),
    (ReasonCode::GrantedQoS1, 0x01),
    (ReasonCode::GrantedQoS2, 0x02),
    (ReasonCode::DisconnectWithWillMessage, 0x04),
    (ReasonCode::NoMatchingSubscribers, 0x10),
    (ReasonCode::NoSubscriptionExisted, 0x11),
    (ReasonCode::ContinueAuthentication, 0x18),
    (ReasonCode::ReAuthenticate, 0x19),
    (ReasonCode::UnspecifiedError, 0x80),
    (ReasonCode::MalformedPacket, 0x81),
    (ReasonCode::ProtocolError, 0x82),
    (ReasonCode::ImplementationSpecificError, 0x83),
    (ReasonCode::UnsupportedProtocolVersion, 0x84),
    (ReasonCode::ClientIdentifierNotValid, 0x85),
    (ReasonCode::BadUserNameOrPassword, 0x86),
    (ReasonCode::NotAuthorized, 0x87),
    (ReasonCode::ServerUnavailable, 0x88),
    (ReasonCode::ServerBusy, 0x89),
    (ReasonCode::Banned, 0x8A),
    (ReasonCode::ServerShuttingDown, 0x8B),
    (ReasonCode::BadAuthenticationMethod, 0x8C),
    (ReasonCode::KeepAliveTimeout, 0x8D),
    (ReasonCode::SessionTakenOver, 0x8E),
    (ReasonCode::TopicFilterInvalid, 0x8F),
    (ReasonCode::TopicNameInvalid, 0x90),
    (ReasonCode::PacketIdentifierInUse, 0x91),
    (ReasonCode::PacketIdentifierNotFound, 0x92),
    (ReasonCode::ReceiveMaximumExceeded, 0x93),
    (ReasonCode::TopicAliasInvalid, 0x94),
    (ReasonCode::PacketTooLarge, 0x95),
    (ReasonCode::MessageRateTooHigh, 0x96),
    (ReasonCode::QuotaExceeded, 0x97),
    (ReasonCode::AdministrativeAction, 0x98),
    (ReasonCode::PayloadFormatInvalid, 0x99),
    (ReasonCode::RetainNotSupported, 0x9A),
    (ReasonCode::QoSNotSupported, 0x9B),
    (ReasonCode::UseAnotherServer, 0x9C),
    (ReasonCode::ServerMoved, 0x9D),
    (ReasonCode::SharedSubscriptionsNotSupported, 0x9E),
    (ReasonCode::ConnectionRateExceeded, 0x9F),
    (ReasonCode::MaximumConnectTime, 0xA0),
    (ReasonCode::SubscriptionIdentifiersNotSupported, 0xA1),
    (ReasonCode::WildcardSubscriptionsNotSupported, 0xA2),
];

impl ReasonCode {
    /// The SUBACK code that grants `qos` [MQTT-3.9.3-1].
    pub fn granted(qos: QoS) -> ReasonCode {
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }

    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        TABLE
            .iter()
            .find(|(code, _)| *code == self)
            .map(|(_, byte)| *byte)
            .expect("every variant is in TABLE")
    }

    /// The reason code for a byte, or `None` if MQTT 5.0 defines no such code.
    pub fn from_u8(byte: u8) -> Option<ReasonCode> {
        TABLE
            .iter()
            .find(|(_, b)| *b == byte)
            .map(|(code, _)| *code)
    }

    /// True for codes 0x80 and above, which report a failure.
    pub fn is_error(self) -> bool {
        self.to_u8() >= 0x80
    }

    /// The MQTT 3.1.1 CONNACK return code (0–5) closest to this reason code.
    pub fn to_v311_connack(self) -> u8 {
        match self {
            ReasonCode::Success => 0,
            ReasonCode::UnsupportedProtocolVersion => 1,
            ReasonCode::ClientIdentifierNotValid => 2,
            ReasonCode::BadUserNameOrPassword => 4,
            ReasonCode::NotAuthorized | ReasonCode::Banned => 5,
            _ => 3,
        }
    }

    /// The reason code for a MQTT 3.1.1 CONNACK return code, or `None` for 6–255.
    pub fn from_v311_connack(code: u8) -> Option<ReasonCode> {
        match code {
            0 => Some(ReasonCode::Success),
            1 => Some(ReasonCode::UnsupportedProtocolVersion),
            2 => Some(ReasonCode::ClientIdentifierNotValid),
            3 => Some(ReasonCode::ServerUnavailable),
            4 => Some(ReasonCode::BadUserNameOrPassword),
            5 => Some(ReasonCode::NotAuthorized),
            _ => None,
        }
    }
}
