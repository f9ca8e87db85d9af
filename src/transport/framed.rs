//! The socket of one MQTT connection, either side: a read buffer decoded into packets, and a
//! write buffer of encoded packets flushed in batches. Generic over any byte stream (TCP or
//! TLS, accepted or connected). It knows packets, never what they mean.

use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::codec::{self, DecodeError, EncodeError, Packet, ProtocolVersion};

/// Room for the first read of a connection: enough for most CONNECTs.
const FIRST_READ: u32 = 256;
/// The least room a read gets: what an idle connection holds while it waits.
const MIN_READ: u32 = 64;
/// The most room a read grows to for a busy connection.
const MAX_READ: u32 = 64 * 1024;
/// Reads of at most this much room go through a buffer on the stack while the read buffer
/// holds no memory (see [`Framed::fill`]).
const STACK_READ: u32 = 1024;
/// The longest batch after which a write buffer that [keeps its memory](Framed::keep_write_buffer)
/// keeps it: one that held more (large messages) gives it back all the same.
const MAX_KEPT: usize = 64 * 1024;

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
    read_chunk: u32,
    /// Bytes of the stream still to throw away as they arrive ([`Framed::discard`]).
    discarding: u32,
    /// Whether the write buffer keeps its memory between batches ([`Framed::keep_write_buffer`]).
    keeps_write_buffer: bool,
    /// The write buffer has held more than [`MAX_KEPT`] since its last flush.
    write_buffer_grew: bool,
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
            discarding: 0,
            keeps_write_buffer: false,
            write_buffer_grew: false,
        }
    }

    /// Keeps the write buffer's memory from one batch to the next (up to a batch of
    /// [`MAX_KEPT`] bytes), for a connection that is busy for long stretches and one of a kind
    /// (a bridge's uplink draining its queue), where giving it back after every flush made
    /// each batch allocate it again and grow it step by step. A client connection gives it
    /// back: thousands may sit idle.
    pub fn keep_write_buffer(&mut self) {
        self.keeps_write_buffer = true;
    }

    /// Decodes the next packet already buffered, if a whole one is (after whatever is still
    /// to be discarded).
    pub fn next_buffered(&mut self) -> Result<Option<Packet>, DecodeError> {
        if self.discarding > 0 {
            let now = (self.discarding as usize).min(self.read_buf.len());
            self.read_buf.advance(now);
            self.discarding -= now as u32;
            if self.discarding > 0 {
                return Ok(None);
            }
        }
        codec::decode(&mut self.read_buf, self.version, self.max_packet_size)
    }

    /// The bytes read and not decoded yet: for a caller that must look at a packet
    /// [`Framed::next_buffered`] refused (too large) before deciding what to do with it.
    pub fn buffered(&self) -> &[u8] {
        &self.read_buf
    }

    /// Throws away the next `len` bytes of the stream: those buffered now, the rest as they
    /// arrive, so a packet too large to take is skipped without ever being held whole.
    pub fn discard(&mut self, len: usize) {
        // An MQTT packet is at most 256 MiB: its length fits.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.discarding = self.discarding.saturating_add(len);
    }

    /// Reads more bytes from the socket. `Ok(false)` on a clean end of stream.
    /// Cancel-safe: nothing read is lost if the future is dropped.
    ///
    /// A connection that reads little, with its read buffer released, waits through a buffer
    /// on the stack and allocates only for what arrives: an idle connection holds no read
    /// buffer while it waits (thousands of idle clients, a few hundred bytes each).
    pub async fn fill(&mut self) -> Result<bool, ReadError> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// [`Framed::fill`] as a poll: ready once something was read (or the stream ended or
    /// failed); otherwise `cx` is woken when the socket has more.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ReadError>> {
        let chunk = self.read_chunk as usize;
        let (read, room) = if self.read_buf.capacity() == 0 && self.read_chunk <= STACK_READ {
            let room = chunk;
            (ready!(self.poll_read_on_stack(cx, room))?, room)
        } else {
            if self.read_buf.capacity() - self.read_buf.len() < chunk / 2 {
                self.read_buf.reserve(chunk);
            }
            let room = self.read_buf.capacity() - self.read_buf.len();
            // The future only borrows the two: made anew at each poll, it reads at once or
            // registers `cx`, keeping nothing between polls.
            let read = ready!(pin!(self.stream.read_buf(&mut self.read_buf)).poll(cx));
            (read?, room)
        };
        if read == room {
            self.read_chunk = (self.read_chunk * 2).min(MAX_READ);
        } else if read < chunk / 4 {
            self.read_chunk = (self.read_chunk / 2).max(MIN_READ);
        }
        if read == 0 {
            if self.read_buf.is_empty() {
                return Poll::Ready(Ok(false));
            }
            return Poll::Ready(Err(ReadError::TruncatedAtEof));
        }
        Poll::Ready(Ok(true))
    }

    /// Reads at most `room` (up to [`STACK_READ`]) bytes into a buffer on the stack and appends
    /// what arrived to the read buffer; nothing is kept while nothing arrives.
    fn poll_read_on_stack(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
    ) -> Poll<std::io::Result<usize>> {
        // Uninitialised: a waiting connection is polled often, and zeroing a kilobyte at every
        // poll would be work for nothing.
        let mut chunk = [MaybeUninit::<u8>::uninit(); STACK_READ as usize];
        let mut buf = ReadBuf::uninit(&mut chunk[..room]);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
        self.read_buf.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
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
        codec::encode(packet, self.version, &mut self.write_buf)?;
        self.write_buffer_grew |= self.write_buf.len() > MAX_KEPT;
        Ok(())
    }

    /// Writes every queued packet to the socket. The emptied buffer's memory is given back
    /// (unless it [keeps it](Framed::keep_write_buffer)): an idle connection holds no
    /// buffers.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// [`Framed::flush`] as a poll (its future then holds nothing but the borrow). What is
    /// written leaves the buffer at once, so a flush that must wait resumes where it stopped.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.write_buf.is_empty() {
            let written = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.write_buf))?;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.write_buf.advance(written);
        }
        if !self.keeps_write_buffer || self.write_buffer_grew {
            self.write_buf = BytesMut::new();
            self.write_buffer_grew = false;
        }
        Pin::new(&mut self.stream).poll_flush(cx)
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

    /// Whether nothing is buffered either way.
    pub fn is_idle(&self) -> bool {
        self.read_buf.is_empty() && self.write_buf.is_empty() && self.discarding == 0
    }

    /// The stream and what framing it again takes ([`Framed::resume`]), if nothing is
    /// buffered either way; otherwise the frame as it was.
    pub fn into_idle(self) -> Result<(S, FrameSettings), Framed<S>> {
        if !self.is_idle() {
            return Err(self);
        }
        let settings = FrameSettings {
            version: self.version,
            max_packet_size: self.max_packet_size,
        };
        Ok((self.stream, settings))
    }

    /// Frames `stream` again as [`Framed::into_idle`] left it.
    pub fn resume(stream: S, settings: FrameSettings) -> Framed<S> {
        let mut framed = Framed::new(stream, settings.max_packet_size);
        framed.version = settings.version;
        framed.read_chunk = MIN_READ;
        framed
    }
}

/// What a frame keeps of an idle stream: its protocol version and its packet size limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameSettings {
    version: ProtocolVersion,
    max_packet_size: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Publish, QoS};
    use bytes::Bytes;
    use std::future::Future;
    use tokio::io::{duplex, DuplexStream};

    fn encoded(packet: &Packet) -> BytesMut {
        let mut wire = BytesMut::new();
        codec::encode(packet, ProtocolVersion::V311, &mut wire).expect("encodes");
        wire
    }

    /// A packet larger than the maximum is refused, then discarded as it streams in, never
    /// held whole; the packet behind it decodes.
    #[tokio::test]
    async fn a_discarded_packet_is_skipped_as_it_arrives() {
        let big = encoded(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "big".into(),
            packet_id: Some(1),
            properties: Default::default(),
            payload: Bytes::from(vec![0u8; 1_000_000]),
        }));
        let next = encoded(&Packet::PingResp);
        let (ours, mut theirs) = tokio::io::duplex(16 * 1024);
        let writer = tokio::spawn(async move {
            theirs.write_all(&big).await.expect("write");
            theirs.write_all(&next).await.expect("write");
            theirs
        });
        let mut framed = Framed::new(ours, 1024);
        framed.version = ProtocolVersion::V311;
        let size = loop {
            assert!(framed.fill().await.expect("read"));
            match framed.next_buffered() {
                Err(DecodeError::PacketTooLarge { size, .. }) => break size,
                other => assert!(matches!(other, Ok(None)), "{other:?}"),
            }
        };
        assert_eq!(size, 1_000_000 + 2 + 3 + 2 + 4);
        framed.discard(size);
        let mut most_held = 0;
        let packet = loop {
            if let Some(packet) = framed.next_buffered().expect("decodes") {
                break packet;
            }
            assert!(framed.fill().await.expect("read"));
            most_held = most_held.max(framed.buffered().len());
        };
        assert_eq!(packet, Packet::PingResp);
        assert!(
            most_held <= MAX_READ as usize + 16 * 1024,
            "held {most_held} bytes"
        );
        drop(writer.await);
    }

    fn publish_of(payload: usize) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "bench/1".into(),
            packet_id: Some(1),
            properties: Default::default(),
            payload: Bytes::from(vec![7u8; payload]),
        })
    }

    /// A client connection's write buffer gives its memory back at every flush; one that keeps
    /// it (a bridge's uplink) writes the next batch into the same memory, unless a batch of
    /// more than [`MAX_KEPT`] bytes made it large. Every batch arrives whole either way.
    #[tokio::test]
    async fn a_write_buffer_kept_is_reused_unless_a_batch_made_it_large() {
        let (ours, mut theirs) = duplex(4 * MAX_KEPT);
        let mut framed = Framed::new(ours, 1024);
        framed.version = ProtocolVersion::V311;
        let mut sent = BytesMut::new();
        let mut batch = |framed: &mut Framed<DuplexStream>, count: usize, payload: usize| {
            for _ in 0..count {
                framed.queue(&publish_of(payload)).expect("encodes");
                sent.extend_from_slice(&encoded(&publish_of(payload)));
            }
        };
        batch(&mut framed, 10, 64);
        framed.flush().await.expect("flush");
        assert_eq!(
            framed.write_buf.capacity(),
            0,
            "a client's buffer is given back"
        );

        framed.keep_write_buffer();
        batch(&mut framed, 10, 64);
        let first = framed.write_buf.as_ptr();
        framed.flush().await.expect("flush");
        batch(&mut framed, 10, 64);
        assert_eq!(
            framed.write_buf.as_ptr(),
            first,
            "the next batch is in the same memory"
        );
        framed.flush().await.expect("flush");

        batch(&mut framed, 3, MAX_KEPT / 2);
        framed.flush().await.expect("flush");
        assert_eq!(
            framed.write_buf.capacity(),
            0,
            "a large batch's buffer is given back"
        );

        let mut received = vec![0u8; sent.len()];
        theirs.read_exact(&mut received).await.expect("read");
        assert_eq!(received, sent);
    }

    /// Polls `framed.fill()` once and drops it; whether it was still waiting.
    async fn fill_waits(framed: &mut Framed<DuplexStream>) -> bool {
        let mut fill = Box::pin(framed.fill());
        poll_fn(|cx| Poll::Ready(fill.as_mut().poll(cx).is_pending())).await
    }

    /// An idle connection waiting for its client holds no read buffer, and what arrives next is
    /// read and decoded whole.
    #[tokio::test]
    async fn a_connection_waiting_to_read_holds_no_buffer() {
        let (mut client, server) = duplex(4096);
        let mut framed = Framed::new(server, 1024);
        framed.version = ProtocolVersion::V311;
        assert!(fill_waits(&mut framed).await, "nothing was sent yet");
        assert_eq!(framed.read_buf.capacity(), 0, "a buffer held while waiting");

        let mut bytes = BytesMut::new();
        codec::encode(&Packet::PingReq, ProtocolVersion::V311, &mut bytes).expect("encode");
        client.write_all(&bytes).await.expect("write");
        assert!(framed.fill().await.expect("read"));
        assert!(matches!(framed.next_buffered(), Ok(Some(Packet::PingReq))));
        framed.release_read_buffer();
        assert!(fill_waits(&mut framed).await);
        assert_eq!(framed.read_buf.capacity(), 0);
    }
}
