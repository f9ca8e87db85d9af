//! Transports: the TCP and TLS listeners' sockets. TLS setup (certificates, mTLS, the
//! client certificate's Common Name) is in [`tls`]; accepting and handing connections to the
//! engine is in [`crate::server`].

pub mod tls;
