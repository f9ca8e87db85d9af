//! Connection I/O, for the broker's listeners and for client connections alike: binding
//! listeners and the open-file limit ([`listener`]), admitting accepted sockets
//! ([`admission`]), the accept loops and the TLS handshake ([`accept`]), TLS configuration
//! ([`tls`]), MQTT over WebSockets ([`websocket`]), outgoing connections ([`client`]), a
//! stream that is TCP or TLS ([`tcp_or_tls`]) and MQTT framing over any of them ([`framed`]),
//! and idle plain TCP and TLS connections parked without a task ([`parking`]). It must never import the engine (`crate::broker`)
//! or the store: accepted connections reach the engine through the [`Serve`] trait that the
//! server wires up.

pub mod accept;
pub mod admission;
pub mod client;
pub mod framed;
pub mod listener;
pub mod parking;
pub mod tcp_or_tls;
pub mod tls;
pub mod websocket;

pub use accept::{Arrival, Listener, Peer, Serve};
pub use admission::{Admission, Handshake};
pub use framed::{FrameSettings, Framed, ReadError};
pub use parking::{Parkable, ParkingSpot};
pub use tcp_or_tls::TcpOrTls;
pub use tls::{ReloadableTls, TlsError, TlsListener};
pub use websocket::{UpgradeError, WebSocketSettings};
