//! Outgoing connections, for the bridge's uplink: TCP within a timeout, then optionally TLS
//! (rustls with the `ring` provider, TLS 1.2 and 1.3) with the server name to verify and send
//! as SNI, an optional client certificate and ALPN protocols. The result is a byte stream for
//! [`super::Framed`]. It never speaks MQTT.
//!
//! The server's certificate is checked against a PEM CA file, which is required: for a public
//! cloud broker, give the system bundle (`/etc/ssl/certs/ca-certificates.crt` on Debian).
//!
//! A [`TlsClient`] keeps a digest of the certificates and key it was built from, so that a
//! reload can tell renewed files from the same ones; it never keeps or shows the key itself.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ring::digest;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tls::{read_certificates, read_private_key, TlsError, TlsFile, PROTOCOL_VERSIONS};

/// A connected byte stream, plain TCP or TLS.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for S {}

/// How to secure a client connection.
#[derive(Debug, Clone)]
pub struct TlsClientSettings {
    /// PEM CA bundle the server's certificate must chain to.
    pub ca: PathBuf,
    /// The name the server's certificate must carry: a DNS name (also sent as SNI) or an IP
    /// address (checked against the certificate's IP addresses; no SNI is sent).
    pub server_name: String,
    /// A client certificate chain and its private key (PEM), for servers that ask for one.
    pub identity: Option<ClientIdentity>,
    /// ALPN protocols to offer, e.g. `b"mqtt"`; none when empty.
    pub alpn: Vec<Vec<u8>>,
}

/// A client certificate chain and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A TLS client set up from [`TlsClientSettings`]: build it once, connect many times.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// SHA-256 over the CA certificates, the client certificate chain and the key read, to
    /// compare with another build from the same files (see [`TlsClient::same_material`]).
    material: [u8; 32],
}

/// Why a client connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr} took longer than {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

impl TlsClient {
    /// Reads the PEM files of `settings`; errors name the file at fault.
    pub fn new(settings: &TlsClientSettings) -> Result<TlsClient, TlsError> {
        let server_name = ServerName::try_from(settings.server_name.clone()).map_err(|_| {
            TlsError::BadServerName {
                name: settings.server_name.clone(),
            }
        })?;
        let mut material = MaterialDigest::new();
        let ca = read_certificates(&settings.ca, TlsFile::ServerCa)?;
        material.section(ca.iter().map(|certificate| certificate.as_ref()));
        let mut roots = RootCertStore::empty();
        for (index, certificate) in ca.into_iter().enumerate() {
            roots
                .add(certificate)
                .map_err(|error| TlsError::BadServerCa {
                    path: settings.ca.clone(),
                    reason: format!("certificate #{}: {error}", index + 1),
                })?;
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(PROTOCOL_VERSIONS)
                .map_err(|error| TlsError::Provider {
                    reason: error.to_string(),
                })?
                .with_root_certificates(roots);
        let mut config = match &settings.identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let chain = read_certificates(&identity.cert, TlsFile::Certificate)?;
                let key = read_private_key(&identity.key)?;
                material.section(chain.iter().map(|certificate| certificate.as_ref()));
                material.section([key.secret_der()]);
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| TlsError::Unusable {
                        cert: identity.cert.clone(),
                        key: identity.key.clone(),
                        reason: error.to_string(),
                    })?
            }
        };
        config.alpn_protocols = settings.alpn.clone();
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            material: material.finish(),
        })
    }

    /// Whether `other` was built from the same CA certificates, client certificate chain and
    /// key, compared as DER: the same certificates and key in PEM text written otherwise
    /// (other comments between the blocks) are the same.
    pub fn same_material(&self, other: &TlsClient) -> bool {
        self.material == other.material
    }
}

/// SHA-256 over sections of DER blobs, each section and blob prefixed with its length, so
/// that no two different lists of blobs digest alike by running into each other.
struct MaterialDigest(digest::Context);

impl MaterialDigest {
    fn new() -> MaterialDigest {
        MaterialDigest(digest::Context::new(&digest::SHA256))
    }

    fn section<'a>(&mut self, blobs: impl IntoIterator<Item = &'a [u8]>) {
        let blobs: Vec<&[u8]> = blobs.into_iter().collect();
        self.0.update(&(blobs.len() as u64).to_be_bytes());
        for blob in blobs {
            self.0.update(&(blob.len() as u64).to_be_bytes());
            self.0.update(blob);
        }
    }

    fn finish(self) -> [u8; 32] {
        let mut material = [0; 32];
        material.copy_from_slice(self.0.finish().as_ref());
        material
    }
}

/// Connects to `addr` ("host:port"), then runs the TLS handshake when `tls` is given, all
/// within `timeout`.
pub async fn connect(
    addr: &str,
    tls: Option<&TlsClient>,
    timeout: Duration,
) -> Result<Box<dyn ByteStream>, ConnectError> {
    let connecting = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Tcp {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Box::new(tcp) as Box<dyn ByteStream>);
        };
        let stream = tls
            .connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Box::new(stream) as Box<dyn ByteStream>)
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Timeout {
                addr: addr.to_string(),
                timeout,
            })
        })
}
