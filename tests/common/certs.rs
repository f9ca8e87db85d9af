//! Certificates for the TLS tests, made fresh by rcgen in each test: a CA, a server
//! certificate for 127.0.0.1 and localhost, a client certificate whose Common Name is
//! [`CLIENT_CN`] and one without a Common Name, all written as PEM files to a temporary
//! directory.

use std::path::PathBuf;

use cairn::config::{
    AuthMode, CertificateIdentity, ClientAuth, ListenerConfig, ListenerKind, TlsConfig,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// The Common Name of the client certificate.
pub const CLIENT_CN: &str = "sensor-42";
/// The client certificate's one Subject Alternative Name (a DNS name).
pub const CLIENT_SAN: &str = "sensor-42.gateway.lan";

/// PEM files of one test's certificates; deleted when dropped.
pub struct TlsFiles {
    _dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate signed by the CA, without a Common Name.
    pub nameless_cert: PathBuf,
    pub nameless_key: PathBuf,
    /// An empty password file, for listeners that ask for passwords no client has.
    pub no_passwords: PathBuf,
}

impl TlsFiles {
    /// A CA, a server certificate and a client certificate signed by it.
    pub fn generate() -> TlsFiles {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Cairn test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

        let leaf = |names: Vec<String>, common_name: Option<&str>, usage| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf parameters");
            // rcgen's default subject has a Common Name of its own.
            params.distinguished_name = DistinguishedName::new();
            if let Some(common_name) = common_name {
                params
                    .distinguished_name
                    .push(DnType::CommonName, common_name);
            }
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let cert = params
                .signed_by(&key, &ca, &ca_key)
                .expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
            Some("localhost"),
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec![CLIENT_SAN.to_string()],
            Some(CLIENT_CN),
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (nameless_cert, nameless_key) =
            leaf(Vec::new(), None, ExtendedKeyUsagePurpose::ClientAuth);

        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM file");
            path
        };
        TlsFiles {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            nameless_cert: write("nameless.pem", &nameless_cert),
            nameless_key: write("nameless.key", &nameless_key),
            no_passwords: write("passwd", ""),
            _dir: dir,
        }
    }

    /// A TLS listener on 127.0.0.1:0 with the server certificate; with `client_auth`, client
    /// certificates are checked against the CA.
    pub fn listener(
        &self,
        client_auth: Option<ClientAuth>,
        auth: Option<AuthMode>,
    ) -> ListenerConfig {
        ListenerConfig {
            bind: "127.0.0.1:0".parse().expect("valid address"),
            kind: ListenerKind::Tls,
            path: None,
            tls: Some(TlsConfig {
                cert: self.server_cert.clone(),
                key: self.server_key.clone(),
                client_ca: client_auth.map(|_| self.ca.clone()),
                client_auth,
                identity: CertificateIdentity::Cn,
            }),
            auth,
        }
    }
}
