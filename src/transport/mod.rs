//! Transports: the TCP and TLS listeners' sockets. Binding and the file-descriptor limit are
//! in [`listener`], admission of accepted sockets (how many may await CONNECT, and until
//! when) in [`admission`], TLS setup (certificates, mTLS, the client certificate's Common
//! Name) in [`tls`]; accepting and handing connections to the engine is in [`crate::server`].

pub mod admission;
pub mod listener;
pub mod tls;
