//! The byte layout of every value the durable store writes: sessions, subscriptions, queue and
//! inflight entries, message bodies (queued and retained) and wills.
//!
//! Hand-written and versioned: each record starts with a format byte, so a later build can read
//! older records and an older build refuses newer ones with a [`RecordError`] instead of
//! misreading them. Integers are big-endian; strings and byte strings carry a `u32` length.
//! Pure: no I/O; clocks enter only through a [`WallClock`] snapshot.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::codec::{property_id, Properties, QoS, SubscriptionOptions, Will};
use crate::model::{boxed_unless_empty, unix_seconds, Delivery, Message};
use crate::model::{OutboundState, SessionWill, WillSender};

use super::clock::WallClock;

/// The format of every record but queue and inflight entries.
const FORMAT: u8 = 1;

/// The format of queue and inflight entries: format 2 added when the entry was queued. Format 1
/// entries (written before) still read, as queued when this process first read them.
const ENTRY_FORMAT: u8 = 2;

/// The format of inflight entries: format 3 added the topic the message went out under, and is
/// written only for an entry that has one (a bridge's); format 2 entries (those without, and
/// every one written before) read as ever.
const INFLIGHT_FORMAT: u8 = 3;

/// The format of wills: format 2 added the user name of the client that set the Will (present
/// or absent: anonymous). Format 1 records (written before) still read, with an unknown
/// sender ([`WillSender::Unknown`]); a Will whose sender is unknown is written in format 1.
const WILL_FORMAT: u8 = 2;

/// Why a stored record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record ends before a field it must hold.
    #[error("{record} record ends early, while reading its {field}")]
    Truncated {
        record: &'static str,
        field: &'static str,
    },
    /// The record was written in a format this build does not know (a newer cairn wrote it).
    #[error("{record} record has format {found}, newer than this build reads")]
    UnknownFormat { record: &'static str, found: u8 },
    /// A field holds a value its type does not allow.
    #[error("{record} record has an invalid {field}")]
    Invalid {
        record: &'static str,
        field: &'static str,
    },
    /// Bytes remain after the last field.
    #[error("{record} record has {count} unexpected trailing bytes")]
    Trailing { record: &'static str, count: usize },
}

/// A session's own row: its expiry interval and when its connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRecord {
    pub expiry_interval: u32,
    /// `None` while a connection is attached.
    pub offline_since: Option<SystemTime>,
}

/// One subscription of a session (its filter is part of the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// One queued delivery: which body, and what differs for this receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    pub message_id: u64,
    /// Bytes the entry counts for in the queue bounds (topic + payload).
    pub size: u32,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// When it was queued ([`unix_seconds`]).
    pub queued_at: u32,
}

/// One inflight delivery (its packet identifier is part of the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightRecord {
    /// Orders the window: the entry's sequence number in its session's queue, or once it
    /// awaits PUBCOMP its release order (see [`Inflight::release_order`]).
    ///
    /// [`Inflight::release_order`]: crate::model::Inflight::release_order
    pub order: u64,
    pub state: OutboundState,
    pub delivery: QueueRecord,
    /// The topic its PUBLISH went out under, for a bridge's entry (see
    /// [`Inflight::sent_topic`](crate::model::Inflight::sent_topic)).
    pub sent_topic: Option<Box<str>>,
}

/// Appends fields to a record.
struct RecordWriter {
    buf: Vec<u8>,
}

impl RecordWriter {
    fn new() -> RecordWriter {
        RecordWriter::of_format(FORMAT)
    }

    fn of_format(format: u8) -> RecordWriter {
        RecordWriter { buf: vec![format] }
    }

    fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    /// Lengths above `u32::MAX` cannot occur: MQTT caps a packet at 256 MiB.
    fn len(&mut self, len: usize) {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }

    fn bytes(&mut self, value: &[u8]) {
        self.len(value.len());
        self.buf.extend_from_slice(value);
    }

    fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    fn option_u32(&mut self, value: Option<u32>) {
        self.bool(value.is_some());
        if let Some(value) = value {
            self.u32(value);
        }
    }

    fn option_str(&mut self, value: Option<&str>) {
        self.bool(value.is_some());
        if let Some(value) = value {
            self.str(value);
        }
    }

    /// A wall-clock time as seconds and nanoseconds since the Unix epoch (earlier clamps to it).
    fn time(&mut self, value: SystemTime) {
        let since_epoch = value.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.u64(since_epoch.as_secs());
        self.u32(since_epoch.subsec_nanos());
    }

    fn option_time(&mut self, value: Option<SystemTime>) {
        self.bool(value.is_some());
        if let Some(value) = value {
            self.time(value);
        }
    }

    fn u32_list(&mut self, values: &[u32]) {
        self.len(values.len());
        for &value in values {
            self.u32(value);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields of one record, naming the record and field in every error.
struct RecordReader<'a> {
    record: &'static str,
    rest: &'a [u8],
}

impl<'a> RecordReader<'a> {
    /// Starts reading, checking the leading format byte.
    fn new(record: &'static str, bytes: &'a [u8]) -> Result<RecordReader<'a>, RecordError> {
        let (reader, _) = RecordReader::of_formats(record, bytes, FORMAT)?;
        Ok(reader)
    }

    /// Starts reading a record of any format from 1 to `newest`, returning which it is.
    fn of_formats(
        record: &'static str,
        bytes: &'a [u8],
        newest: u8,
    ) -> Result<(RecordReader<'a>, u8), RecordError> {
        let mut reader = RecordReader {
            record,
            rest: bytes,
        };
        match reader.u8("format byte")? {
            found @ 1.. if found <= newest => Ok((reader, found)),
            found => Err(RecordError::UnknownFormat { record, found }),
        }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < len {
            return Err(RecordError::Truncated {
                record: self.record,
                field,
            });
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    fn invalid(&self, field: &'static str) -> RecordError {
        RecordError::Invalid {
            record: self.record,
            field,
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, RecordError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid(field)),
        }
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], RecordError> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, RecordError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes).map_err(|_| self.invalid(field))
    }

    fn qos(&mut self, field: &'static str) -> Result<QoS, RecordError> {
        let value = self.u8(field)?;
        QoS::from_u8(value).ok_or_else(|| self.invalid(field))
    }

    fn option_u32(&mut self, field: &'static str) -> Result<Option<u32>, RecordError> {
        Ok(if self.bool(field)? {
            Some(self.u32(field)?)
        } else {
            None
        })
    }

    fn option_str(&mut self, field: &'static str) -> Result<Option<&'a str>, RecordError> {
        Ok(if self.bool(field)? {
            Some(self.str(field)?)
        } else {
            None
        })
    }

    fn time(&mut self, field: &'static str) -> Result<SystemTime, RecordError> {
        let secs = self.u64(field)?;
        let nanos = self.u32(field)?;
        if nanos >= 1_000_000_000 {
            return Err(self.invalid(field));
        }
        UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos))
            .ok_or_else(|| self.invalid(field))
    }

    fn option_time(&mut self, field: &'static str) -> Result<Option<SystemTime>, RecordError> {
        Ok(if self.bool(field)? {
            Some(self.time(field)?)
        } else {
            None
        })
    }

    fn u32_list(&mut self, field: &'static str) -> Result<Vec<u32>, RecordError> {
        let count = self.u32(field)? as usize;
        // Each element takes 4 bytes: a count beyond what remains is corrupt, not an allocation.
        if count > self.rest.len() / 4 {
            return Err(self.invalid(field));
        }
        (0..count).map(|_| self.u32(field)).collect()
    }

    /// Ends the record, refusing trailing bytes.
    fn finish(self) -> Result<(), RecordError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Trailing {
                record: self.record,
                count: self.rest.len(),
            })
        }
    }
}

impl SessionRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = RecordWriter::new();
        writer.u32(self.expiry_interval);
        writer.option_time(self.offline_since);
        writer.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<SessionRecord, RecordError> {
        let mut reader = RecordReader::new("session", bytes)?;
        let record = SessionRecord {
            expiry_interval: reader.u32("expiry interval")?,
            offline_since: reader.option_time("offline time")?,
        };
        reader.finish()?;
        Ok(record)
    }
}

impl SubscriptionRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = RecordWriter::new();
        writer.u8(options_byte(self.options));
        writer.option_u32(self.identifier);
        writer.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<SubscriptionRecord, RecordError> {
        let mut reader = RecordReader::new("subscription", bytes)?;
        let options =
            options_from_byte(reader.u8("options")?).ok_or_else(|| reader.invalid("options"))?;
        let record = SubscriptionRecord {
            options,
            identifier: reader.option_u32("subscription identifier")?,
        };
        reader.finish()?;
        Ok(record)
    }
}

/// The SUBSCRIBE options byte layout: QoS in bits 0–1, No Local bit 2, Retain As Published
/// bit 3, Retain Handling bits 4–5.
fn options_byte(options: SubscriptionOptions) -> u8 {
    options.qos as u8
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling & 0b11) << 4
}

fn options_from_byte(byte: u8) -> Option<SubscriptionOptions> {
    let retain_handling = (byte >> 4) & 0b11;
    if byte & 0b1100_0000 != 0 || retain_handling == 3 {
        return None;
    }
    Some(SubscriptionOptions {
        qos: QoS::from_u8(byte & 0b11)?,
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

impl QueueRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = RecordWriter::of_format(ENTRY_FORMAT);
        self.write(&mut writer);
        writer.finish()
    }

    /// Reads an entry back; one of format 1 counts as queued at `clock`.
    pub fn decode(bytes: &[u8], clock: &WallClock) -> Result<QueueRecord, RecordError> {
        let (mut reader, format) = RecordReader::of_formats("queue entry", bytes, ENTRY_FORMAT)?;
        let record = QueueRecord::read(&mut reader, format, clock)?;
        reader.finish()?;
        Ok(record)
    }

    /// The delivery this entry describes, of the message `body`.
    pub fn into_delivery(self, body: Arc<Message>) -> Delivery {
        Delivery {
            message: body,
            qos: self.qos,
            retain: self.retain,
            subscription_ids: self.subscription_ids,
            queued_at: self.queued_at,
        }
    }

    fn write(&self, writer: &mut RecordWriter) {
        writer.u64(self.message_id);
        writer.u32(self.size);
        writer.u8(self.qos as u8);
        writer.bool(self.retain);
        writer.u32_list(&self.subscription_ids);
        writer.u32(self.queued_at);
    }

    fn read(
        reader: &mut RecordReader<'_>,
        format: u8,
        clock: &WallClock,
    ) -> Result<QueueRecord, RecordError> {
        Ok(QueueRecord {
            message_id: reader.u64("message id")?,
            size: reader.u32("size")?,
            qos: reader.qos("QoS")?,
            retain: reader.bool("retain flag")?,
            subscription_ids: reader.u32_list("subscription identifiers")?,
            queued_at: if format == 1 {
                unix_seconds(clock.system)
            } else {
                reader.u32("queue time")?
            },
        })
    }
}

impl InflightRecord {
    pub fn encode(&self) -> Vec<u8> {
        let format = match self.sent_topic {
            Some(_) => INFLIGHT_FORMAT,
            None => ENTRY_FORMAT,
        };
        let mut writer = RecordWriter::of_format(format);
        writer.u64(self.order);
        writer.u8(state_byte(self.state));
        self.delivery.write(&mut writer);
        if let Some(topic) = &self.sent_topic {
            writer.str(topic);
        }
        writer.finish()
    }

    /// Reads an entry back; one of format 1 counts as queued at `clock`.
    pub fn decode(bytes: &[u8], clock: &WallClock) -> Result<InflightRecord, RecordError> {
        let (mut reader, format) =
            RecordReader::of_formats("inflight entry", bytes, INFLIGHT_FORMAT)?;
        let order = reader.u64("send order")?;
        let state = state_from_byte(reader.u8("state")?).ok_or_else(|| reader.invalid("state"))?;
        let delivery = QueueRecord::read(&mut reader, format, clock)?;
        let sent_topic = match format {
            INFLIGHT_FORMAT => Some(Box::from(reader.str("topic it went out under")?)),
            _ => None,
        };
        reader.finish()?;
        Ok(InflightRecord {
            order,
            state,
            delivery,
            sent_topic,
        })
    }
}

fn state_byte(state: OutboundState) -> u8 {
    match state {
        OutboundState::AwaitingPubAck => 1,
        OutboundState::AwaitingPubRec => 2,
        OutboundState::AwaitingPubComp => 3,
    }
}

fn state_from_byte(byte: u8) -> Option<OutboundState> {
    match byte {
        1 => Some(OutboundState::AwaitingPubAck),
        2 => Some(OutboundState::AwaitingPubRec),
        3 => Some(OutboundState::AwaitingPubComp),
        _ => None,
    }
}

/// A message body, queued or retained. Its expiry is stored as wall-clock time so it keeps
/// running across restarts.
pub fn encode_message(message: &Message, clock: &WallClock) -> Vec<u8> {
    let mut writer = RecordWriter::new();
    writer.u64(message.id);
    writer.str(&message.topic);
    writer.bytes(&message.payload);
    writer.u8(message.qos as u8);
    writer.bool(message.retain);
    let none = Properties::default();
    write_properties(&mut writer, message.properties.as_deref().unwrap_or(&none));
    writer.option_time(message.expires_at.map(|at| clock.system_time_of(at)));
    writer.option_str(message.publisher.as_deref());
    writer.finish()
}

pub fn decode_message(bytes: &[u8], clock: &WallClock) -> Result<Message, RecordError> {
    let mut reader = RecordReader::new("message", bytes)?;
    let message = Message {
        id: reader.u64("message id")?,
        topic: Arc::from(reader.str("topic")?),
        payload: Bytes::copy_from_slice(reader.bytes("payload")?),
        qos: reader.qos("QoS")?,
        retain: reader.bool("retain flag")?,
        properties: boxed_unless_empty(read_properties(&mut reader)?),
        expires_at: reader
            .option_time("expiry time")?
            .map(|at| clock.instant_of(at)),
        publisher: reader.option_str("publisher")?.map(Arc::from),
    };
    reader.finish()?;
    Ok(message)
}

/// A session's Will and, in format 2, who set it: the Will's fields, then the sender's user
/// name as an optional string. An unknown sender (a Will read from a format 1 record) is
/// written in format 1 again, which has no sender.
pub fn encode_will(stored: &SessionWill) -> Vec<u8> {
    let SessionWill { will, sender } = stored;
    let format = match sender {
        WillSender::Unknown => FORMAT,
        WillSender::Client(_) => WILL_FORMAT,
    };
    let mut writer = RecordWriter::of_format(format);
    writer.str(&will.topic);
    writer.bytes(&will.payload);
    writer.u8(will.qos as u8);
    writer.bool(will.retain);
    write_properties(&mut writer, &will.properties);
    if let WillSender::Client(username) = sender {
        writer.option_str(username.as_deref());
    }
    writer.finish()
}

/// Reads a Will back; one of format 1 has an unknown sender.
pub fn decode_will(bytes: &[u8]) -> Result<SessionWill, RecordError> {
    let (mut reader, format) = RecordReader::of_formats("will", bytes, WILL_FORMAT)?;
    let will = Will {
        topic: reader.str("topic")?.to_owned(),
        payload: Bytes::copy_from_slice(reader.bytes("payload")?),
        qos: reader.qos("QoS")?,
        retain: reader.bool("retain flag")?,
        properties: read_properties(&mut reader)?,
    };
    let sender = if format == 1 {
        WillSender::Unknown
    } else {
        WillSender::Client(reader.option_str("sender's user name")?.map(Arc::from))
    };
    reader.finish()?;
    Ok(SessionWill { will, sender })
}

/// Writes the properties an application message or a Will can carry (MQTT 5.0 section
/// 3.1.3.2), tagged with their MQTT identifiers. Others never reach a stored message: the
/// decoder refuses them in Will Properties and the engine strips them from routed messages.
fn write_properties(writer: &mut RecordWriter, properties: &Properties) {
    let mut tagged = RecordWriter { buf: Vec::new() };
    let mut count = 0usize;
    let mut tag = |writer: &mut RecordWriter, id: u8| {
        count += 1;
        writer.u8(id);
    };
    if let Some(value) = properties.payload_format_indicator {
        tag(&mut tagged, property_id::PAYLOAD_FORMAT_INDICATOR);
        tagged.u8(value);
    }
    if let Some(value) = properties.message_expiry_interval {
        tag(&mut tagged, property_id::MESSAGE_EXPIRY_INTERVAL);
        tagged.u32(value);
    }
    if let Some(value) = &properties.content_type {
        tag(&mut tagged, property_id::CONTENT_TYPE);
        tagged.str(value);
    }
    if let Some(value) = &properties.response_topic {
        tag(&mut tagged, property_id::RESPONSE_TOPIC);
        tagged.str(value);
    }
    if let Some(value) = &properties.correlation_data {
        tag(&mut tagged, property_id::CORRELATION_DATA);
        tagged.bytes(value);
    }
    if let Some(value) = properties.will_delay_interval {
        tag(&mut tagged, property_id::WILL_DELAY_INTERVAL);
        tagged.u32(value);
    }
    for (name, value) in &properties.user_properties {
        tag(&mut tagged, property_id::USER_PROPERTY);
        tagged.str(name);
        tagged.str(value);
    }
    writer.len(count);
    writer.buf.extend_from_slice(&tagged.buf);
}

fn read_properties(reader: &mut RecordReader<'_>) -> Result<Properties, RecordError> {
    const FIELD: &str = "properties";
    let count = reader.u32(FIELD)?;
    let mut properties = Properties::default();
    for _ in 0..count {
        match reader.u8(FIELD)? {
            property_id::PAYLOAD_FORMAT_INDICATOR => {
                properties.payload_format_indicator = Some(reader.u8(FIELD)?);
            }
            property_id::MESSAGE_EXPIRY_INTERVAL => {
                properties.message_expiry_interval = Some(reader.u32(FIELD)?);
            }
            property_id::CONTENT_TYPE => {
                properties.content_type = Some(reader.str(FIELD)?.to_owned());
            }
            property_id::RESPONSE_TOPIC => {
                properties.response_topic = Some(reader.str(FIELD)?.to_owned());
            }
            property_id::CORRELATION_DATA => {
                properties.correlation_data = Some(Bytes::copy_from_slice(reader.bytes(FIELD)?));
            }
            property_id::WILL_DELAY_INTERVAL => {
                properties.will_delay_interval = Some(reader.u32(FIELD)?);
            }
            property_id::USER_PROPERTY => {
                let name = reader.str(FIELD)?.to_owned();
                let value = reader.str(FIELD)?.to_owned();
                properties.user_properties.push((name, value));
            }
            _ => return Err(reader.invalid(FIELD)),
        }
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_properties() -> Properties {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("application/json".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            will_delay_interval: Some(5),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            ..Properties::default()
        }
    }

    #[test]
    fn message_round_trips_with_its_properties_and_expiry() {
        let clock = WallClock::now();
        let message = Message {
            id: 42,
            topic: Arc::from("site/temp"),
            payload: Bytes::from_static(b"21.5"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Some(Box::new(Properties {
                message_expiry_interval: None,
                will_delay_interval: None,
                ..full_properties()
            })),
            expires_at: Some(clock.instant + Duration::from_secs(30)),
            publisher: Some(Arc::from("sensor-1")),
        };
        let decoded = decode_message(&encode_message(&message, &clock), &clock).unwrap();
        assert_eq!(decoded.id, 42);
        assert_eq!(&*decoded.topic, "site/temp");
        assert_eq!(decoded.payload, message.payload);
        assert_eq!(decoded.qos, QoS::ExactlyOnce);
        assert!(decoded.retain);
        assert_eq!(decoded.properties, message.properties);
        assert_eq!(decoded.expires_at, message.expires_at);
        assert_eq!(decoded.publisher.as_deref(), Some("sensor-1"));
    }

    #[test]
    fn will_round_trips_with_every_will_property_and_its_sender() {
        let will = Will {
            topic: "dead/sensor-1".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: full_properties(),
        };
        for sender in [
            WillSender::Client(Some(Arc::from("alice"))),
            WillSender::Client(Some(Arc::from(""))),
            WillSender::Client(None),
        ] {
            let stored = SessionWill {
                will: will.clone(),
                sender,
            };
            let bytes = encode_will(&stored);
            assert_eq!(bytes[0], WILL_FORMAT, "{stored:?}");
            assert_eq!(decode_will(&bytes), Ok(stored.clone()));
            for len in 0..bytes.len() {
                assert!(decode_will(&bytes[..len]).is_err(), "length {len}");
            }
        }
    }

    /// A Will as the previous build wrote it (format 1: the Will's fields, no sender), built
    /// by hand: topic "dead/x", payload "gone", QoS 1, retain 1, a Will Delay of 30 s.
    fn format_1_will() -> Vec<u8> {
        let mut bytes = vec![1];
        bytes.extend_from_slice(&6u32.to_be_bytes());
        bytes.extend_from_slice(b"dead/x");
        bytes.extend_from_slice(&4u32.to_be_bytes());
        bytes.extend_from_slice(b"gone");
        bytes.extend_from_slice(&[1, 1]);
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.push(property_id::WILL_DELAY_INTERVAL);
        bytes.extend_from_slice(&30u32.to_be_bytes());
        bytes
    }

    #[test]
    fn will_of_the_previous_format_reads_with_an_unknown_sender() {
        let expected = SessionWill {
            sender: WillSender::Unknown,
            ..super::super::tests::will("dead/x")
        };
        assert_eq!(decode_will(&format_1_will()), Ok(expected.clone()));
        assert_eq!(
            encode_will(&expected),
            format_1_will(),
            "an unknown sender is written back as the previous build wrote it"
        );
        // A format 1 record never holds a sender: bytes after its properties are refused.
        let mut longer = format_1_will();
        longer.push(0);
        assert_eq!(
            decode_will(&longer),
            Err(RecordError::Trailing {
                record: "will",
                count: 1
            })
        );
        let mut newer = format_1_will();
        newer[0] = WILL_FORMAT + 1;
        assert_eq!(
            decode_will(&newer),
            Err(RecordError::UnknownFormat {
                record: "will",
                found: WILL_FORMAT + 1
            })
        );
    }

    #[test]
    fn subscription_options_round_trip_for_every_combination() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for bits in 0..4u8 {
                for retain_handling in 0..3 {
                    let record = SubscriptionRecord {
                        options: SubscriptionOptions {
                            qos,
                            no_local: bits & 1 != 0,
                            retain_as_published: bits & 2 != 0,
                            retain_handling,
                        },
                        identifier: (bits == 3).then_some(268_435_455),
                    };
                    let decoded = SubscriptionRecord::decode(&record.encode()).unwrap();
                    assert_eq!(decoded, record);
                }
            }
        }
    }

    #[test]
    fn inflight_and_session_records_round_trip() {
        let mut inflight = InflightRecord {
            order: 7,
            state: OutboundState::AwaitingPubComp,
            delivery: QueueRecord {
                message_id: 9,
                size: 12,
                qos: QoS::ExactlyOnce,
                retain: false,
                subscription_ids: vec![1, 2],
                queued_at: 1_700_000_000,
            },
            sent_topic: None,
        };
        let encoded = inflight.encode();
        assert_eq!(
            encoded[0], ENTRY_FORMAT,
            "readable by the builds before format 3"
        );
        assert_eq!(
            InflightRecord::decode(&encoded, &WallClock::now()).unwrap(),
            inflight
        );
        inflight.sent_topic = Some(Box::from("site-7/sensors/t"));
        let encoded = inflight.encode();
        assert_eq!(encoded[0], INFLIGHT_FORMAT);
        assert_eq!(
            InflightRecord::decode(&encoded, &WallClock::now()).unwrap(),
            inflight
        );
        let mut truncated = encoded.clone();
        truncated.pop();
        assert!(InflightRecord::decode(&truncated, &WallClock::now()).is_err());
        let session = SessionRecord {
            expiry_interval: u32::MAX,
            offline_since: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
        };
        assert_eq!(SessionRecord::decode(&session.encode()).unwrap(), session);
    }

    #[test]
    fn newer_format_is_refused_by_name() {
        let mut bytes = SessionRecord {
            expiry_interval: 1,
            offline_since: None,
        }
        .encode();
        bytes[0] = 2;
        assert_eq!(
            SessionRecord::decode(&bytes),
            Err(RecordError::UnknownFormat {
                record: "session",
                found: 2
            })
        );
    }

    #[test]
    fn every_truncation_of_a_message_is_an_error_not_a_panic() {
        let clock = WallClock::now();
        let message = Message::from_broker(3, "t", Bytes::from_static(b"payload"), false);
        let bytes = encode_message(&message, &clock);
        for len in 0..bytes.len() {
            assert!(
                decode_message(&bytes[..len], &clock).is_err(),
                "length {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_message(&longer, &clock).err(),
            Some(RecordError::Trailing {
                record: "message",
                count: 1
            })
        );
    }

    #[test]
    fn huge_list_count_is_refused_without_allocating() {
        let mut bytes = vec![FORMAT];
        bytes.extend_from_slice(&9u64.to_be_bytes());
        bytes.extend_from_slice(&5u32.to_be_bytes());
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            QueueRecord::decode(&bytes, &WallClock::now()),
            Err(RecordError::Invalid { .. })
        ));
    }

    /// A queue entry as the previous build wrote it (format 1, no queue time).
    fn format_1_queue_entry() -> Vec<u8> {
        let mut bytes = vec![1];
        bytes.extend_from_slice(&9u64.to_be_bytes());
        bytes.extend_from_slice(&12u32.to_be_bytes());
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&7u32.to_be_bytes());
        bytes
    }

    #[test]
    fn format_1_entries_still_read_as_queued_when_first_read() {
        let clock = WallClock {
            system: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            instant: std::time::Instant::now(),
        };
        let expected = QueueRecord {
            message_id: 9,
            size: 12,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![7],
            queued_at: 1_800_000_000,
        };
        assert_eq!(
            QueueRecord::decode(&format_1_queue_entry(), &clock),
            Ok(expected.clone())
        );
        let mut inflight = vec![1];
        inflight.extend_from_slice(&4u64.to_be_bytes());
        inflight.push(1);
        inflight.extend_from_slice(&format_1_queue_entry()[1..]);
        assert_eq!(
            InflightRecord::decode(&inflight, &clock),
            Ok(InflightRecord {
                order: 4,
                state: OutboundState::AwaitingPubAck,
                delivery: expected.clone(),
                sent_topic: None,
            })
        );
        let rewritten = expected.encode();
        assert_eq!(rewritten[0], ENTRY_FORMAT);
        assert_eq!(QueueRecord::decode(&rewritten, &clock), Ok(expected));
    }

    #[test]
    fn entry_of_a_newer_format_is_refused() {
        let mut bytes = format_1_queue_entry();
        bytes[0] = ENTRY_FORMAT + 1;
        assert_eq!(
            QueueRecord::decode(&bytes, &WallClock::now()),
            Err(RecordError::UnknownFormat {
                record: "queue entry",
                found: ENTRY_FORMAT + 1
            })
        );
        bytes[0] = 0;
        assert!(QueueRecord::decode(&bytes, &WallClock::now()).is_err());
        let mut inflight = vec![INFLIGHT_FORMAT + 1];
        inflight.extend_from_slice(&[0; 40]);
        assert_eq!(
            InflightRecord::decode(&inflight, &WallClock::now()),
            Err(RecordError::UnknownFormat {
                record: "inflight entry",
                found: INFLIGHT_FORMAT + 1
            })
        );
    }
}
