//! TLS for listeners: builds the rustls acceptor of a TLS listener from its PEM files (TLS 1.2
//! and 1.3 only, the `ring` crypto provider, optional client certificates checked against a
//! CA bundle) and reads the Common Name of a client's certificate; reads the PEM files of
//! [`super::client`] too. It owns no socket: the accept loop wraps each accepted TCP stream
//! with the acceptor.
//!
//! `ring` rather than `aws-lc-rs`: smaller binaries and a cross-build for arm64/armhf that
//! needs only the cross gcc (no cmake, no clang).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{InconsistentKeys, RootCertStore, ServerConfig, ServerConnection};
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::GeneralName;

use crate::config::{CertificateIdentity, ClientAuth, TlsConfig};

/// The TLS versions Cairn speaks, as a server and as a client.
pub(super) const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Which of a listener's TLS files a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `tls.cert`: the server's certificate chain.
    Certificate,
    /// `tls.key`: the server's private key.
    PrivateKey,
    /// `tls.client_ca`: the CA bundle that client certificates must chain to.
    ClientCa,
    /// A client's CA bundle that the server's certificate must chain to.
    ServerCa,
}

impl TlsFile {
    /// What a file of this kind must contain.
    fn expected_content(self) -> &'static str {
        match self {
            TlsFile::Certificate | TlsFile::ClientCa | TlsFile::ServerCa => {
                "PEM certificate (-----BEGIN CERTIFICATE-----)"
            }
            TlsFile::PrivateKey => "PEM private key (PKCS#8, PKCS#1 or SEC1)",
        }
    }
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Certificate => "certificate",
            TlsFile::PrivateKey => "private key",
            TlsFile::ClientCa => "client CA",
            TlsFile::ServerCa => "server CA",
        })
    }
}

/// Why a TLS listener cannot be set up; every variant names the file(s) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read (missing, no permission, a directory…).
    #[error("cannot read {file} file {}: {source}", .path.display())]
    Read {
        file: TlsFile,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file has PEM markers but a broken body.
    #[error("{file} file {} is not valid PEM: {reason}", .path.display())]
    BadPem {
        file: TlsFile,
        path: PathBuf,
        reason: String,
    },
    /// The file holds no PEM block of the needed kind.
    #[error("{file} file {} holds no {}", .path.display(), .file.expected_content())]
    NothingFound { file: TlsFile, path: PathBuf },
    /// The private key belongs to another certificate.
    #[error(
        "private key file {} does not match the certificate in {}",
        .key.display(),
        .cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The certificate or the key parsed as PEM but rustls refuses it.
    #[error(
        "certificate {} with private key {} cannot be used: {reason}",
        .cert.display(),
        .key.display()
    )]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// The client CA bundle cannot verify client certificates.
    #[error("client CA file {} cannot be used: {reason}", .path.display())]
    BadClientCa { path: PathBuf, reason: String },
    /// A client's server name is neither a DNS name nor an IP address.
    #[error("{name:?} is not a valid TLS server name (a DNS name or an IP address)")]
    BadServerName { name: String },
    /// A certificate of a client's CA bundle is no trust anchor.
    #[error("server CA file {} cannot be used: {reason}", .path.display())]
    BadServerCa { path: PathBuf, reason: String },
    /// The crypto provider refuses TLS 1.2/1.3 (a build problem, not a configuration one).
    #[error("the ring crypto provider cannot be set up for TLS 1.2 and 1.3: {reason}")]
    Provider { reason: String },
}

/// What an accept loop needs for a TLS listener.
#[derive(Clone)]
pub struct TlsListener {
    pub acceptor: TlsAcceptor,
    /// Which name of a verified client certificate identifies the client; `None` when the
    /// listener verifies no client certificates (no `client_ca`).
    pub identity: Option<CertificateIdentity>,
}

impl TlsListener {
    /// The acceptor built from `tls` (see [`acceptor`]) and its username mapping.
    pub fn new(tls: &TlsConfig) -> Result<TlsListener, TlsError> {
        Ok(TlsListener {
            acceptor: acceptor(tls)?,
            identity: tls.client_ca.as_ref().map(|_| tls.identity),
        })
    }
}

/// The TLS setup of a bound listener, which a reload may replace: handshakes that start
/// after [`ReloadableTls::replace`] use the new certificates (a renewed certificate is the
/// usual case), connections made before keep theirs.
#[derive(Clone)]
pub struct ReloadableTls(Arc<RwLock<TlsListener>>);

impl fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableTls").finish_non_exhaustive()
    }
}

impl ReloadableTls {
    pub fn new(setup: TlsListener) -> ReloadableTls {
        ReloadableTls(Arc::new(RwLock::new(setup)))
    }

    /// The setup for a handshake starting now.
    pub fn current(&self) -> TlsListener {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `setup` in force for the handshakes that start from now on.
    pub fn replace(&self, setup: TlsListener) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = setup;
    }
}

/// Builds the acceptor for a TLS listener: TLS 1.2 and 1.3 only, rustls with the `ring`
/// provider, certificate chain + key from PEM files, optional client CA with required or
/// optional client certificates (WebPkiClientVerifier).
pub fn acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates(&tls.cert, TlsFile::Certificate)?;
    let key = read_private_key(&tls.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|error| TlsError::Provider {
            reason: error.to_string(),
        })?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let client_auth = tls.client_auth.unwrap_or_default();
            builder.with_client_cert_verifier(client_verifier(ca, client_auth, provider)?)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|error| certificate_error(error, tls))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The identity of the client certificate the handshake verified, if the client presented
/// one: its subject's Common Name, or its first Subject Alternative Name that is a DNS name,
/// an e-mail address or a URI. `None` when the certificate has no such name.
pub fn peer_identity(conn: &ServerConnection, identity: CertificateIdentity) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    match identity {
        CertificateIdentity::Cn => {
            let common_name = certificate.subject().iter_common_name().next()?;
            common_name.as_str().ok().map(String::from)
        }
        CertificateIdentity::San => {
            let names = certificate.subject_alternative_name().ok()??;
            names
                .value
                .general_names
                .iter()
                .find_map(|name| match name {
                    GeneralName::DNSName(name)
                    | GeneralName::RFC822Name(name)
                    | GeneralName::URI(name) => Some(name.to_string()),
                    _ => None,
                })
        }
    }
}

fn read_file(path: &Path, file: TlsFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(error: pem::Error, path: &Path, file: TlsFile) -> TlsError {
    match error {
        pem::Error::NoItemsFound => TlsError::NothingFound {
            file,
            path: path.to_path_buf(),
        },
        other => TlsError::BadPem {
            file,
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

pub(super) fn read_certificates(
    path: &Path,
    file: TlsFile,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path, file)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(error, path, file))?;
    match certificates.is_empty() {
        true => Err(pem_error(pem::Error::NoItemsFound, path, file)),
        false => Ok(certificates),
    }
}

pub(super) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path, TlsFile::PrivateKey)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| pem_error(error, path, TlsFile::PrivateKey))
}

fn client_verifier(
    ca_path: &Path,
    client_auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let bad_ca = |reason: String| TlsError::BadClientCa {
        path: ca_path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for (index, certificate) in read_certificates(ca_path, TlsFile::ClientCa)?
        .into_iter()
        .enumerate()
    {
        roots
            .add(certificate)
            .map_err(|error| bad_ca(format!("certificate #{}: {error}", index + 1)))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match client_auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    builder.build().map_err(|error| bad_ca(error.to_string()))
}

fn certificate_error(error: rustls::Error, tls: &TlsConfig) -> TlsError {
    match error {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
        },
        other => TlsError::Unusable {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    use rustls::pki_types::ServerName;
    use rustls::ClientConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;

    use super::*;

    /// Generous: the machine running the tests may be loaded.
    pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
    const CLIENT_CN: &str = "sensor-7";

    /// A CA, a server certificate for `localhost` and a client certificate, as PEM files.
    pub(super) struct TestPki {
        dir: tempfile::TempDir,
    }

    impl TestPki {
        pub(super) fn generate() -> TestPki {
            let dir = tempfile::tempdir().expect("temp dir");
            let ca_key = KeyPair::generate().expect("CA key");
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "Cairn test CA");
            let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

            let server_key = KeyPair::generate().expect("server key");
            let server_params =
                CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
            let server = server_params
                .signed_by(&server_key, &ca, &ca_key)
                .expect("server certificate");

            let client_key = KeyPair::generate().expect("client key");
            let mut client_params =
                CertificateParams::new(Vec::<String>::new()).expect("client params");
            client_params
                .distinguished_name
                .push(DnType::CommonName, CLIENT_CN);
            client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let client = client_params
                .signed_by(&client_key, &ca, &ca_key)
                .expect("client certificate");

            let pki = TestPki { dir };
            pki.write("ca.pem", &ca.pem());
            pki.write("server.pem", &server.pem());
            pki.write("server.key", &server_key.serialize_pem());
            pki.write("client.pem", &client.pem());
            pki.write("client.key", &client_key.serialize_pem());
            pki
        }

        pub(super) fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.path(name);
            std::fs::write(&path, contents).expect("write PEM file");
            path
        }

        pub(super) fn server_tls(&self, client_ca: bool, client_auth: ClientAuth) -> TlsConfig {
            TlsConfig {
                cert: self.path("server.pem"),
                key: self.path("server.key"),
                client_ca: client_ca.then(|| self.path("ca.pem")),
                client_auth: Some(client_auth),
                identity: Default::default(),
            }
        }

        pub(super) fn client_config(
            &self,
            with_certificate: bool,
            versions: &[&'static rustls::SupportedProtocolVersion],
        ) -> ClientConfig {
            let mut roots = RootCertStore::empty();
            for certificate in
                read_certificates(&self.path("ca.pem"), TlsFile::ClientCa).expect("CA readable")
            {
                roots.add(certificate).expect("CA is a trust anchor");
            }
            let builder = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
            if !with_certificate {
                return builder.with_no_client_auth();
            }
            let chain = read_certificates(&self.path("client.pem"), TlsFile::Certificate)
                .expect("client cert");
            let key = read_private_key(&self.path("client.key")).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    }

    /// What each side saw of one connection.
    struct Outcome {
        /// The server: the client certificate's CN and the TLS version, or why it refused.
        server: io::Result<(Option<String>, Option<rustls::ProtocolVersion>)>,
        /// The client: whether it could read the server's greeting.
        client: io::Result<()>,
    }

    async fn connect(acceptor: TlsAcceptor, client: ClientConfig) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut stream = acceptor.accept(tcp).await?;
            let (_, connection) = stream.get_ref();
            let seen = (
                peer_identity(connection, CertificateIdentity::Cn),
                connection.protocol_version(),
            );
            stream.write_all(b"hi").await?;
            stream.shutdown().await?;
            Ok(seen)
        });
        let client = async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
            let mut stream = TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await?;
            let mut greeting = [0u8; 2];
            stream.read_exact(&mut greeting).await?;
            Ok(())
        };
        let client = tokio::time::timeout(HANDSHAKE_TIMEOUT, client)
            .await
            .expect("client finished in time");
        let server = tokio::time::timeout(HANDSHAKE_TIMEOUT, server)
            .await
            .expect("server finished in time")
            .expect("server task did not panic");
        Outcome { server, client }
    }

    fn all_versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
        PROTOCOL_VERSIONS
    }

    #[test]
    fn good_pair_builds_an_acceptor() {
        let pki = TestPki::generate();
        assert!(acceptor(&pki.server_tls(false, ClientAuth::Required)).is_ok());
        assert!(acceptor(&pki.server_tls(true, ClientAuth::Required)).is_ok());
    }

    fn expect_error(tls: &TlsConfig) -> TlsError {
        match acceptor(tls) {
            Ok(_) => panic!("expected an error for {tls:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn missing_certificate_file_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(false, ClientAuth::Required);
        tls.cert = pki.path("absent.pem");
        let error = expect_error(&tls);
        assert!(matches!(
            error,
            TlsError::Read {
                file: TlsFile::Certificate,
                ..
            }
        ));
        assert!(error.to_string().contains("absent.pem"), "{error}");
    }

    #[test]
    fn missing_key_file_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(false, ClientAuth::Required);
        tls.key = pki.path("absent.key");
        let error = expect_error(&tls);
        assert!(matches!(
            error,
            TlsError::Read {
                file: TlsFile::PrivateKey,
                ..
            }
        ));
        assert!(error.to_string().contains("absent.key"), "{error}");
    }

    #[test]
    fn file_without_pem_blocks_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(false, ClientAuth::Required);
        tls.cert = pki.write("garbage.pem", "this is not a certificate\n");
        let error = expect_error(&tls);
        assert!(matches!(
            error,
            TlsError::NothingFound {
                file: TlsFile::Certificate,
                ..
            }
        ));
        assert!(error.to_string().contains("garbage.pem"), "{error}");
    }

    #[test]
    fn certificate_file_given_as_key_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(false, ClientAuth::Required);
        tls.key = pki.path("server.pem");
        let error = expect_error(&tls);
        assert!(matches!(
            error,
            TlsError::NothingFound {
                file: TlsFile::PrivateKey,
                ..
            }
        ));
        assert!(error.to_string().contains("server.pem"), "{error}");
    }

    #[test]
    fn broken_pem_body_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(false, ClientAuth::Required);
        tls.key = pki.write(
            "broken.key",
            "-----BEGIN PRIVATE KEY-----\n!!!! not base64 !!!!\n-----END PRIVATE KEY-----\n",
        );
        let error = expect_error(&tls);
        assert!(matches!(
            error,
            TlsError::BadPem {
                file: TlsFile::PrivateKey,
                ..
            }
        ));
        assert!(error.to_string().contains("broken.key"), "{error}");
    }

    #[test]
    fn garbage_key_inside_valid_pem_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(false, ClientAuth::Required);
        tls.key = pki.write(
            "junk.key",
            "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
        );
        let error = expect_error(&tls);
        assert!(matches!(error, TlsError::Unusable { .. }), "{error:?}");
        assert!(error.to_string().contains("junk.key"), "{error}");
    }

    #[test]
    fn key_of_another_certificate_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(false, ClientAuth::Required);
        tls.key = pki.path("client.key");
        let error = expect_error(&tls);
        assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("client.key") && message.contains("server.pem"),
            "{message}"
        );
    }

    #[test]
    fn client_ca_without_certificates_is_named() {
        let pki = TestPki::generate();
        let mut tls = pki.server_tls(true, ClientAuth::Required);
        tls.client_ca = Some(pki.write("empty-ca.pem", ""));
        let error = expect_error(&tls);
        assert!(matches!(
            error,
            TlsError::NothingFound {
                file: TlsFile::ClientCa,
                ..
            }
        ));
        assert!(error.to_string().contains("empty-ca.pem"), "{error}");
    }

    #[tokio::test]
    async fn required_client_certificate_refuses_clients_without_one() {
        let pki = TestPki::generate();
        let acceptor = acceptor(&pki.server_tls(true, ClientAuth::Required)).expect("acceptor");
        let outcome = connect(acceptor, pki.client_config(false, all_versions())).await;
        assert!(
            outcome.server.is_err(),
            "server accepted a client without certificate"
        );
        assert!(
            outcome.client.is_err(),
            "client without certificate got data"
        );
    }

    #[tokio::test]
    async fn required_client_certificate_gives_its_common_name() {
        let pki = TestPki::generate();
        let acceptor = acceptor(&pki.server_tls(true, ClientAuth::Required)).expect("acceptor");
        let outcome = connect(acceptor, pki.client_config(true, all_versions())).await;
        outcome.client.expect("client handshake");
        let (common_name, version) = outcome.server.expect("server handshake");
        assert_eq!(common_name.as_deref(), Some(CLIENT_CN));
        assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
    }

    #[tokio::test]
    async fn optional_client_certificate_lets_clients_without_one_in() {
        let pki = TestPki::generate();
        let acceptor = acceptor(&pki.server_tls(true, ClientAuth::Optional)).expect("acceptor");
        let outcome = connect(acceptor, pki.client_config(false, all_versions())).await;
        outcome.client.expect("client handshake");
        let (common_name, _) = outcome.server.expect("server handshake");
        assert_eq!(common_name, None);
    }

    #[tokio::test]
    async fn tls_1_2_clients_are_served() {
        let pki = TestPki::generate();
        let acceptor = acceptor(&pki.server_tls(false, ClientAuth::Required)).expect("acceptor");
        let outcome = connect(
            acceptor,
            pki.client_config(false, &[&rustls::version::TLS12]),
        )
        .await;
        outcome.client.expect("client handshake");
        let (common_name, version) = outcome.server.expect("server handshake");
        assert_eq!(common_name, None);
        assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_2));
    }
}

/// What rustls logs during a handshake, captured through the `log` facade it writes to.
#[cfg(test)]
mod log_tests {
    use std::sync::{Arc, Mutex};

    use rustls::pki_types::ServerName;
    use rustls::ClientConnection;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::tests::TestPki;
    use super::*;

    /// Records above debug level from rustls, from every test of this binary.
    static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &log::Record<'_>) {
            if record.level() <= log::Level::Info && record.target().starts_with("rustls") {
                let line = format!("{} {}: {}", record.level(), record.target(), record.args());
                CAPTURED.lock().expect("capture lock").push(line);
            }
        }

        fn flush(&self) {}
    }

    /// The first flight of a client whose SNI extension holds an IP address, as OpenSSL-based
    /// clients (Mosquitto's among them) send when told to connect to one. rustls never sends
    /// that, so its hello for a DNS name of the same length is patched.
    fn client_hello_with_ip_in_sni(pki: &TestPki) -> Vec<u8> {
        const STAND_IN: &str = "localhos1";
        const ADDRESS: &str = "127.0.0.1";
        let config = pki.client_config(false, PROTOCOL_VERSIONS);
        let name = ServerName::try_from(STAND_IN).expect("a DNS name");
        let mut client = ClientConnection::new(Arc::new(config), name).expect("client");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("ClientHello");
        let at = hello
            .windows(STAND_IN.len())
            .position(|window| window == STAND_IN.as_bytes())
            .expect("the server name in the hello");
        hello[at..at + ADDRESS.len()].copy_from_slice(ADDRESS.as_bytes());
        hello
    }

    // An IP address in SNI is what clients send when they connect by address: not worth a
    // warning in the broker's log.
    #[tokio::test]
    async fn an_ip_address_in_sni_logs_nothing_above_debug() {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Trace);
        let pki = TestPki::generate();
        let acceptor = acceptor(&pki.server_tls(false, ClientAuth::Required)).expect("acceptor");
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let handshake = tokio::spawn(async move { acceptor.accept(server).await.map(|_| ()) });
        client
            .write_all(&client_hello_with_ip_in_sni(&pki))
            .await
            .expect("send the hello");
        // The server answers once it has parsed the hello, SNI extension included.
        let mut answer = [0u8; 1];
        let read = tokio::time::timeout(tests::HANDSHAKE_TIMEOUT, client.read(&mut answer))
            .await
            .expect("the server answers in time")
            .expect("read the answer");
        assert_eq!(read, 1, "the server answered the hello");
        drop(client);
        let _ = handshake.await;
        let captured = CAPTURED.lock().expect("capture lock").clone();
        assert!(captured.is_empty(), "rustls logged: {captured:?}");
    }
}
