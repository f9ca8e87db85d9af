//! The socket of one connection: a read buffer decoded into packets, and a write buffer of
//! encoded packets flushed in batches. Generic over any byte stream (TCP or TLS).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, DecodeError, EncodeError, Packet, ProtocolVersion};

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
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Frames `stream`, accepting packets of at most `max_packet_size` bytes.
    pub fn new(stream: S, max_packet_size: u32) -> Framed<S> {
        Framed {
            stream,
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::with_capacity(4096),
            version: ProtocolVersion::V5,
            max_packet_size,
        }
    }

    /// Decodes the next packet already buffered, if a whole one is.
    pub fn next_buffered(&mut self) -> Result<Option<Packet>, DecodeError> {
        codec::decode(&mut self.read_buf, self.version, self.max_packet_size)
    }

    /// Reads more bytes from the socket. `Ok(false)` on a clean end of stream.
    /// Cancel-safe: nothing read is lost if the future is dropped.
    pub async fn fill(&mut self) -> Result<bool, ReadError> {
        if self.read_buf.capacity() - self.read_buf.len() < 1024 {
            self.read_buf.reserve(4096);
        }
        let read = self.stream.read_buf(&mut self.read_buf).await?;
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

    /// Writes every queued packet to the socket.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf.clear();
        }
        self.stream.flush().await
    }

    /// Flushes what is queued and closes the write side, ignoring errors: the peer may be gone.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
