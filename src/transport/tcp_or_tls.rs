//! A byte stream that is plain TCP or TLS over TCP, for code that takes either as one type:
//! the WebSockets of `ws` and `wss` listeners (so that the engine's connection code and
//! tungstenite are compiled once for WebSocket connections, not once per listener kind: binary
//! size) and the load tool's clients.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::parking::ReactorTcp;

/// Plain TCP, or TLS over TCP. The TLS stream is boxed by default (a server's, under a `wss`
/// listener's WebSockets): a plain connection does not carry room for it.
#[derive(Debug)]
pub enum TcpOrTls<T = Box<TlsStream<ReactorTcp>>> {
    Tcp(TcpStream),
    Tls(T),
}

impl From<TcpStream> for TcpOrTls {
    fn from(stream: TcpStream) -> TcpOrTls {
        TcpOrTls::Tcp(stream)
    }
}

impl From<TlsStream<ReactorTcp>> for TcpOrTls {
    fn from(stream: TlsStream<ReactorTcp>) -> TcpOrTls {
        TcpOrTls::Tls(Box::new(stream))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TcpOrTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            TcpOrTls::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TcpOrTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            TcpOrTls::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            TcpOrTls::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            TcpOrTls::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
