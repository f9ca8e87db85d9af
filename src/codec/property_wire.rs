//! The wire form of MQTT 5.0 properties: reading a property block into `Properties` (checking
//! each property against `rules`), and visiting the properties that are set, in identifier
//! order, for the encoder to check and write.

use super::error::DecodeError;
use super::primitives::Reader;
use super::properties::{id, Properties};
use super::rules::{self, Context};

/// One property value as the encoder sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PropertyValue<'a> {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VarInt(u32),
    Utf8(&'a str),
    Binary(&'a [u8]),
    Utf8Pair(&'a str, &'a str),
}

impl PropertyValue<'_> {
    /// The value of an integer property, for `rules::check_integer_value`.
    pub(crate) fn as_integer(self) -> Option<u32> {
        match self {
            PropertyValue::Byte(value) => Some(u32::from(value)),
            PropertyValue::TwoByte(value) => Some(u32::from(value)),
            PropertyValue::FourByte(value) | PropertyValue::VarInt(value) => Some(value),
            PropertyValue::Utf8(_) | PropertyValue::Binary(_) | PropertyValue::Utf8Pair(..) => None,
        }
    }
}

/// Calls `visit` with the identifier and value of every property set in `properties`, in
/// identifier order; repeated properties once per value, in their order. Stops at the first
/// error `visit` returns.
pub(crate) fn for_each_property<E>(
    properties: &Properties,
    mut visit: impl FnMut(u8, PropertyValue<'_>) -> Result<(), E>,
) -> Result<(), E> {
    use PropertyValue as V;
    let p = properties;
    if let Some(v) = p.payload_format_indicator {
        visit(id::PAYLOAD_FORMAT_INDICATOR, V::Byte(v))?;
    }
    if let Some(v) = p.message_expiry_interval {
        visit(id::MESSAGE_EXPIRY_INTERVAL, V::FourByte(v))?;
    }
    if let Some(v) = &p.content_type {
        visit(id::CONTENT_TYPE, V::Utf8(v))?;
    }
    if let Some(v) = &p.response_topic {
        visit(id::RESPONSE_TOPIC, V::Utf8(v))?;
    }
    if let Some(v) = &p.correlation_data {
        visit(id::CORRELATION_DATA, V::Binary(v))?;
    }
    for &v in &p.subscription_identifiers {
        visit(id::SUBSCRIPTION_IDENTIFIER, V::VarInt(v))?;
    }
    if let Some(v) = p.session_expiry_interval {
        visit(id::SESSION_EXPIRY_INTERVAL, V::FourByte(v))?;
    }
    if let Some(v) = &p.assigned_client_identifier {
        visit(id::ASSIGNED_CLIENT_IDENTIFIER, V::Utf8(v))?;
    }
    if let Some(v) = p.server_keep_alive {
        visit(id::SERVER_KEEP_ALIVE, V::TwoByte(v))?;
    }
    if let Some(v) = &p.authentication_method {
        visit(id::AUTHENTICATION_METHOD, V::Utf8(v))?;
    }
    if let Some(v) = &p.authentication_data {
        visit(id::AUTHENTICATION_DATA, V::Binary(v))?;
    }
    if let Some(v) = p.request_problem_information {
        visit(id::REQUEST_PROBLEM_INFORMATION, V::Byte(v))?;
    }
    if let Some(v) = p.will_delay_interval {
        visit(id::WILL_DELAY_INTERVAL, V::FourByte(v))?;
    }
    if let Some(v) = p.request_response_information {
        visit(id::REQUEST_RESPONSE_INFORMATION, V::Byte(v))?;
    }
    if let Some(v) = &p.response_information {
        visit(id::RESPONSE_INFORMATION, V::Utf8(v))?;
    }
    if let Some(v) = &p.server_reference {
        visit(id::SERVER_REFERENCE, V::Utf8(v))?;
    }
    if let Some(v) = &p.reason_string {
        visit(id::REASON_STRING, V::Utf8(v))?;
    }
    if let Some(v) = p.receive_maximum {
        visit(id::RECEIVE_MAXIMUM, V::TwoByte(v))?;
    }
    if let Some(v) = p.topic_alias_maximum {
        visit(id::TOPIC_ALIAS_MAXIMUM, V::TwoByte(v))?;
    }
    if let Some(v) = p.topic_alias {
        visit(id::TOPIC_ALIAS, V::TwoByte(v))?;
    }
    if let Some(v) = p.maximum_qos {
        visit(id::MAXIMUM_QOS, V::Byte(v))?;
    }
    if let Some(v) = p.retain_available {
        visit(id::RETAIN_AVAILABLE, V::Byte(v))?;
    }
    for (key, value) in &p.user_properties {
        visit(id::USER_PROPERTY, V::Utf8Pair(key, value))?;
    }
    if let Some(v) = p.maximum_packet_size {
        visit(id::MAXIMUM_PACKET_SIZE, V::FourByte(v))?;
    }
    if let Some(v) = p.wildcard_subscription_available {
        visit(id::WILDCARD_SUBSCRIPTION_AVAILABLE, V::Byte(v))?;
    }
    if let Some(v) = p.subscription_identifier_available {
        visit(id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, V::Byte(v))?;
    }
    if let Some(v) = p.shared_subscription_available {
        visit(id::SHARED_SUBSCRIPTION_AVAILABLE, V::Byte(v))?;
    }
    Ok(())
}

/// Reads a Property Length and the property block it announces, for a packet of `context`.
///
/// Unknown identifiers are malformed; a property the packet may not carry, a duplicate of a
/// single-valued one, a forbidden value, or Authentication Data without a method are Protocol
/// Errors. Topic Alias 0 is returned as is: the engine answers it.
pub(crate) fn read_properties(
    reader: &mut Reader,
    context: Context,
) -> Result<Properties, DecodeError> {
    let len = reader.var_int("property length")?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let mut block = reader.sub_reader(len, "properties", context.name())?;
    let mut properties = Properties::default();
    while !block.is_empty() {
        let id = block.u8("property identifier")?;
        if rules::property(id).is_none() {
            return Err(DecodeError::UnknownProperty {
                packet: context.name(),
                id,
            });
        }
        rules::check_property_allowed(id, context)?;
        PropertyRead { context, id }.store(&mut block, &mut properties)?;
    }
    rules::check_auth_data(&properties, context)?;
    Ok(properties)
}

/// One property being read from the wire into its field, with the checks on duplicates and
/// values.
#[derive(Clone, Copy)]
struct PropertyRead {
    context: Context,
    id: u8,
}

impl PropertyRead {
    fn store(self, block: &mut Reader, p: &mut Properties) -> Result<(), DecodeError> {
        let field = rules::property_name(self.id);
        match self.id {
            id::PAYLOAD_FORMAT_INDICATOR => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.payload_format_indicator, v)
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                self.set_once(&mut p.message_expiry_interval, block.u32(field)?)
            }
            id::CONTENT_TYPE => self.set_once(&mut p.content_type, block.string(field)?),
            id::RESPONSE_TOPIC => self.set_once(&mut p.response_topic, block.string(field)?),
            id::CORRELATION_DATA => self.set_once(&mut p.correlation_data, block.binary(field)?),
            id::SUBSCRIPTION_IDENTIFIER => {
                let v = self.integer(block.var_int(field)?)?;
                self.push_subscription_identifier(&mut p.subscription_identifiers, v)
            }
            id::SESSION_EXPIRY_INTERVAL => {
                self.set_once(&mut p.session_expiry_interval, block.u32(field)?)
            }
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                self.set_once(&mut p.assigned_client_identifier, block.string(field)?)
            }
            id::SERVER_KEEP_ALIVE => self.set_once(&mut p.server_keep_alive, block.u16(field)?),
            id::AUTHENTICATION_METHOD => {
                self.set_once(&mut p.authentication_method, block.string(field)?)
            }
            id::AUTHENTICATION_DATA => {
                self.set_once(&mut p.authentication_data, block.binary(field)?)
            }
            id::REQUEST_PROBLEM_INFORMATION => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.request_problem_information, v)
            }
            id::WILL_DELAY_INTERVAL => self.set_once(&mut p.will_delay_interval, block.u32(field)?),
            id::REQUEST_RESPONSE_INFORMATION => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.request_response_information, v)
            }
            id::RESPONSE_INFORMATION => {
                self.set_once(&mut p.response_information, block.string(field)?)
            }
            id::SERVER_REFERENCE => self.set_once(&mut p.server_reference, block.string(field)?),
            id::REASON_STRING => self.set_once(&mut p.reason_string, block.string(field)?),
            id::RECEIVE_MAXIMUM => {
                let v = self.integer(block.u16(field)?)?;
                self.set_once(&mut p.receive_maximum, v)
            }
            id::TOPIC_ALIAS_MAXIMUM => self.set_once(&mut p.topic_alias_maximum, block.u16(field)?),
            id::TOPIC_ALIAS => self.set_once(&mut p.topic_alias, block.u16(field)?),
            id::MAXIMUM_QOS => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.maximum_qos, v)
            }
            id::RETAIN_AVAILABLE => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.retain_available, v)
            }
            id::USER_PROPERTY => {
                let name = block.string("User Property name")?;
                let value = block.string("User Property value")?;
                p.user_properties.push((name, value));
                Ok(())
            }
            id::MAXIMUM_PACKET_SIZE => {
                let v = self.integer(block.u32(field)?)?;
                self.set_once(&mut p.maximum_packet_size, v)
            }
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.wildcard_subscription_available, v)
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.subscription_identifier_available, v)
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                let v = self.integer(block.u8(field)?)?;
                self.set_once(&mut p.shared_subscription_available, v)
            }
            unknown => Err(DecodeError::UnknownProperty {
                packet: self.context.name(),
                id: unknown,
            }),
        }
    }

    /// Checks an integer value against `rules::check_integer_value`.
    fn integer<T: Into<u32> + Copy>(self, value: T) -> Result<T, DecodeError> {
        rules::check_integer_value(self.id, value.into(), self.context)?;
        Ok(value)
    }

    /// Sets a single-valued property, failing if the packet already carried it.
    fn set_once<T>(self, slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
        if slot.is_some() {
            return Err(self.duplicate());
        }
        *slot = Some(value);
        Ok(())
    }

    /// Subscription Identifier may repeat in PUBLISH only; SUBSCRIBE carries at most one.
    fn push_subscription_identifier(
        self,
        identifiers: &mut Vec<u32>,
        value: u32,
    ) -> Result<(), DecodeError> {
        if self.context != Context::Publish && !identifiers.is_empty() {
            return Err(self.duplicate());
        }
        identifiers.push(value);
        Ok(())
    }

    fn duplicate(self) -> DecodeError {
        rules::duplicate_property(self.id, self.context).into()
    }
}
