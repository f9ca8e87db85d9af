//! The MQTT data representations (section 1.5): variable byte integers, UTF-8 strings and
//! binary data with two-byte length prefixes, big-endian integers. `Reader` reads them, bounds
//! checked, from one fully buffered packet; `Sink` writes them to a `BytesMut` or only counts
//! them, so that sizes and bytes come from the same code.
//!
//! No allocation is ever sized by a length read from the wire: every length is checked against
//! the bytes already buffered before anything is copied.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, RuleError};

/// The largest value a variable byte integer can carry (and the largest Remaining Length).
pub(crate) const MAX_VAR_INT: u32 = 268_435_455;

/// The largest length a UTF-8 string or binary data prefix can carry.
pub(crate) const MAX_PREFIXED_LEN: usize = u16::MAX as usize;

/// The number of bytes the minimal encoding of `value` takes (4 for anything larger).
pub(crate) fn var_int_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Parses a variable byte integer from the front of `bytes`.
///
/// Returns `Ok(None)` if `bytes` ends before the integer does, else the value and the number of
/// bytes it took. Encodings longer than 4 bytes and non-minimal encodings (a final byte of 0
/// after a continuation, [MQTT-1.5.5-1]) are rejected, in both protocol versions.
pub(crate) fn parse_var_int(
    bytes: &[u8],
    field: &'static str,
) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, &byte) in bytes.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            if index > 0 && byte == 0 {
                return Err(DecodeError::VarIntNotMinimal { field });
            }
            return Ok(Some((value, index + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::VarIntTooLong { field })
    } else {
        Ok(None)
    }
}

/// Reads the fields of one packet whose bytes are all buffered.
///
/// Every read checks the bytes left and fails with `DecodeError::Truncated` naming the packet
/// and field when the packet ends too early.
pub(crate) struct Reader {
    buf: Bytes,
    packet: &'static str,
}

impl Reader {
    /// A reader over `buf`, the body of a packet named `packet` (for error messages).
    pub(crate) fn new(buf: Bytes, packet: &'static str) -> Reader {
        Reader { buf, packet }
    }

    /// The packet name errors carry.
    pub(crate) fn packet(&self) -> &'static str {
        self.packet
    }

    /// True when every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails unless every byte has been read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                packet: self.packet,
                count,
            }),
        }
    }

    fn need(&self, len: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < len {
            Err(DecodeError::Truncated {
                packet: self.packet,
                field,
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn var_int(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        match parse_var_int(&self.buf, field)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Truncated {
                packet: self.packet,
                field,
            }),
        }
    }

    /// The next `len` bytes, shared with the packet buffer (no copy).
    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(len, field)?;
        Ok(self.buf.split_to(len))
    }

    /// Every byte not read yet (a PUBLISH payload), shared with the packet buffer.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// A reader over the next `len` bytes (a property block), with the same packet name.
    pub(crate) fn sub_reader(
        &mut self,
        len: usize,
        field: &'static str,
        packet: &'static str,
    ) -> Result<Reader, DecodeError> {
        let buf = self.take(len, field)?;
        Ok(Reader { buf, packet })
    }

    /// Binary Data: a two-byte length and that many bytes (no copy).
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// A UTF-8 Encoded String: valid UTF-8 without U+0000 [MQTT-1.5.3-2].
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        self.need(len, field)?;
        let raw = &self.buf[..len];
        if raw.contains(&0) {
            return Err(RuleError::NullCharacter {
                packet: self.packet,
                field,
            }
            .into());
        }
        let text = std::str::from_utf8(raw)
            .map_err(|_| DecodeError::InvalidUtf8 {
                packet: self.packet,
                field,
            })?
            .to_owned();
        self.buf.advance(len);
        Ok(text)
    }
}

/// Where the encoder puts bytes: a `BytesMut`, or a `ByteCounter` that only adds up lengths.
///
/// Length prefixes are written as given; the encoder checks them against their limits before
/// it writes anything.
pub(crate) trait Sink {
    fn put_u8(&mut self, value: u8);
    fn put_u16(&mut self, value: u16);
    fn put_u32(&mut self, value: u32);
    fn put_slice(&mut self, bytes: &[u8]);

    /// A variable byte integer, minimally encoded (`value` at most `MAX_VAR_INT`).
    fn put_var_int(&mut self, value: u32) {
        let mut rest = value;
        loop {
            let low = (rest & 0x7F) as u8;
            rest >>= 7;
            if rest == 0 {
                self.put_u8(low);
                return;
            }
            self.put_u8(low | 0x80);
        }
    }

    /// Binary data or a UTF-8 string body with its two-byte length prefix.
    fn put_prefixed(&mut self, bytes: &[u8]) {
        self.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
        self.put_slice(bytes);
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, value: u8) {
        BufMut::put_u8(self, value);
    }

    fn put_u16(&mut self, value: u16) {
        BufMut::put_u16(self, value);
    }

    fn put_u32(&mut self, value: u32) {
        BufMut::put_u32(self, value);
    }

    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A `Sink` that writes nothing and counts the bytes it was given.
#[derive(Debug, Default)]
pub(crate) struct ByteCounter(pub(crate) usize);

impl Sink for ByteCounter {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }

    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }

    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }

    fn put_slice(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn put_var_int(&mut self, value: u32) {
        self.0 += var_int_len(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_var_int(value: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_var_int(value);
        out.to_vec()
    }

    #[test]
    fn var_int_boundaries_round_trip_with_minimal_length() {
        for value in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_VAR_INT,
        ] {
            let bytes = encode_var_int(value);
            assert_eq!(bytes.len(), var_int_len(value), "length of {value}");
            assert_eq!(
                parse_var_int(&bytes, "test"),
                Ok(Some((value, bytes.len())))
            );
        }
    }

    #[test]
    fn var_int_incomplete_needs_more_bytes() {
        assert_eq!(parse_var_int(&[], "test"), Ok(None));
        assert_eq!(parse_var_int(&[0x80, 0x80, 0x80], "test"), Ok(None));
    }

    #[test]
    fn var_int_of_five_bytes_is_rejected() {
        assert_eq!(
            parse_var_int(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01], "test"),
            Err(DecodeError::VarIntTooLong { field: "test" })
        );
    }

    #[test]
    fn var_int_non_minimal_is_rejected_mqtt_1_5_5_1() {
        assert_eq!(
            parse_var_int(&[0x80, 0x00], "test"),
            Err(DecodeError::VarIntNotMinimal { field: "test" })
        );
        assert_eq!(
            parse_var_int(&[0xFF, 0x80, 0x00], "test"),
            Err(DecodeError::VarIntNotMinimal { field: "test" })
        );
    }
}
