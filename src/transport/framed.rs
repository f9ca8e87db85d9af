//! The socket of one MQTT connection, either side: a read buffer decoded into packets, and a
//! write buffer of encoded packets flushed in batches. Generic over any byte stream (TCP or
//! TLS, accepted or connected). It knows packets, never what they mean.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, DecodeError, EncodeError, Packet, ProtocolVersion};

/// Room for the first read of a connection: enough for most CONNECTs.
const FIRST_READ: usize = 256;
/// The least room a read gets: what an idle connection holds while it waits.
const MIN_READ: usize = 64;
/// The most room a read grows to for a busy connection.
const MAX_READ: usize = 64 * 1024;

/// Why reading a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("malformed packet: {0}")]
    Decode(#[from] DecodeError),
    #[error("connection closed in the middle of a packet")]
    TruncatedAtEof,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// A byte stream framed into MQTT packets.
#[derive(Debug)]
pub struct Framed<S> {
    stream: S,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Protocol version used to decode and encode (set from CONNECT).
    pub version: ProtocolVersion,
    /// Largest packet accepted from the peer.
    max_packet_size: u32,
    /// Room the next read gets: doubles when a read fills it (up to [`MAX_READ`]), halves when
    /// a read uses less than a quarter (down to [`MIN_READ`]), so a busy connection reads in
    /// large chunks and an idle one waits on a small buffer.
    read_chunk: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Frames `stream`, accepting packets of at most `max_packet_size` bytes.
    pub fn new(stream: S, max_packet_size: u32) -> Framed<S> {
        Framed {
            stream,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            version: ProtocolVersion::V5,
            max_packet_size,
            read_chunk: FIRST_READ,
        }
    }

    /// Decodes the next packet already buffered, if a whole one is.
    pub fn next_buffered(&mut self) -> Result<Option<Packet>, DecodeError> {
        codec::decode(&mut self.read_buf, self.version, self.max_packet_size)
    }

    /// Reads more bytes from the socket. `Ok(false)` on a clean end of stream.
    /// Cancel-safe: nothing read is lost if the future is dropped.
    pub async fn fill(&mut self) -> Result<bool, ReadError> {
        if self.read_buf.capacity() - self.read_buf.len() < self.read_chunk / 2 {
            self.read_buf.reserve(self.read_chunk);
        }
        let room = self.read_buf.capacity() - self.read_buf.len();
        let read = self.stream.read_buf(&mut self.read_buf).await?;
        if read == room {
            self.read_chunk = (self.read_chunk * 2).min(MAX_READ);
        } else if read < self.read_chunk / 4 {
            self.read_chunk = (self.read_chunk / 2).max(MIN_READ);
        }
        if read == 0 {
            if self.read_buf.is_empty() {
                return Ok(false);
            }
            return Err(ReadError::TruncatedAtEof);
        }
        Ok(true)
    }

    /// Reads until one whole packet is available; `Ok(None)` on a clean end of stream.
    pub async fn read_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        loop {
            if let Some(packet) = self.next_buffered()? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Encodes `packet` into the write buffer (sent at the next [`Framed::flush`]).
    pub fn queue(&mut self, packet: &Packet) -> Result<(), EncodeError> {
        codec::encode(packet, self.version, &mut self.write_buf)
    }

    /// Writes every queued packet to the socket. The emptied buffer's memory is given back:
    /// an idle connection holds no buffers.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf = BytesMut::new();
        }
        self.stream.flush().await
    }

    /// Gives back the read buffer's memory once everything read has been decoded.
    pub fn release_read_buffer(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
    }

    /// Flushes what is queued and closes the write side, ignoring errors: the peer may be gone.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
