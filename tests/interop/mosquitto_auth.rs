//! Mosquitto's clients against Cairn's logins and ACL, MQTT 3.1.1 and 5.0: a password file
//! made by the real `mosquitto_passwd` (`-u`/`-P`), refused logins with their CONNACK codes,
//! and a Mosquitto ACL file with users, a pattern and anonymous lines: forbidden publishes are
//! dropped, forbidden subscriptions refused, and a subscription wider than what its client
//! may read gets only what it may; a certificate's Subject Alternative Name as the user name.

use std::path::{Path, PathBuf};

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::{AuthMode, CertificateIdentity, ClientAuth};

use crate::common::certs::{TlsFiles, CLIENT_CN, CLIENT_SAN};
use crate::common::programs::{self, Finished};
use crate::common::{start_broker_with, TestBroker};
use crate::mosquitto::{self, Args};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];
const PASSWD: &str = "mosquitto_passwd";

/// The users of the tests' password file.
const USERS: [(&str, &str); 2] = [("alice", "alice-pw"), ("writer", "writer-pw")];

/// Anonymous clients read public topics; alice reads and writes her sensors and reads the
/// configuration; the writer writes everywhere but reads nothing; every client may write its
/// own status (a pattern line, for everyone).
const ACL: &str = "\
# Anonymous clients: read the public topics.
topic read public/#

user alice
topic readwrite sensors/alice/#
topic read config/#

user writer
topic write sensors/#
topic write public/#
topic write config/#
topic write secret/#

pattern write clients/%c/status
";

/// Whether `mosquitto_passwd` and the Mosquitto clients are installed.
fn available(test: &str) -> bool {
    mosquitto::available(test) && programs::available(PASSWD, "mosquitto", test)
}

/// A password file with [`USERS`], written by the real `mosquitto_passwd -b`.
async fn mosquitto_password_file(dir: &Path) -> PathBuf {
    let path = dir.join("passwd");
    std::fs::write(&path, "").expect("create the password file");
    for (user, password) in USERS {
        let args = ["-b", &path.display().to_string(), user, password].map(String::from);
        programs::run(PASSWD, &args)
            .await
            .assert_success("mosquitto_passwd -b");
    }
    path
}

/// A broker whose listener asks for passwords from `mosquitto_passwd`'s file, with the ACL
/// file when `acl` is given.
async fn broker(dir: &Path, acl: Option<&str>) -> TestBroker {
    let passwords = mosquitto_password_file(dir).await;
    let acl = acl.map(|text| {
        let path = dir.join("acl");
        std::fs::write(&path, text).expect("write the ACL file");
        path
    });
    start_broker_with(|config| {
        config.password_file = Some(passwords);
        config.acl_file = acl;
        config.listeners[0].auth = Some(AuthMode::Anonymous);
    })
    .await
}

fn as_user(args: Args, (user, password): (&str, &str)) -> Args {
    args.with(&["-u", user, "-P", password])
}

/// The CONNACK line `mosquitto_sub -d` prints for a refusal with `code_311` (3.1.1) or
/// `code_5` (5.0).
fn refusal_line(version: ProtocolVersion, code_311: u8, code_5: u8) -> String {
    match version {
        ProtocolVersion::V311 => format!("CONNACK ({code_311})"),
        ProtocolVersion::V5 => format!("CONNACK ({code_5})"),
    }
}

/// Runs a `mosquitto_sub` on `filter` and asserts its SUBACK refuses it: 0x80 in 3.1.1, 0x87
/// Not authorized in 5.0.
async fn expect_subscription_refused(args: Args, filter: &str, version: ProtocolVersion) {
    let mut subscriber = mosquitto::spawn_subscriber(args, filter, QoS::AtLeastOnce, 1);
    let suback = subscriber
        .wait_for_line("its SUBACK", |line| line.starts_with("Subscribed (mid: "))
        .await;
    let code = match version {
        ProtocolVersion::V311 => ": 128",
        ProtocolVersion::V5 => ": 135",
    };
    assert!(suback.ends_with(code), "{version:?} {filter}: {suback}");
}

async fn refused_subscriber(args: Args) -> Finished {
    let finished = mosquitto::spawn_subscriber(args, "auth/refused", QoS::AtMostOnce, 1)
        .finish()
        .await;
    assert!(!finished.status.success(), "must be refused: {finished:#?}");
    assert!(mosquitto::messages(&finished).is_empty(), "{finished:#?}");
    finished
}

/// Users of a file `mosquitto_passwd` wrote log in with their passwords and exchange a
/// message; a wrong password or an unknown user gets return code 4 / reason 0x86, a client
/// without user name on this listener (`auth = "anonymous"` with a password file) is let in,
/// and each refusal closes the connection [MQTT-3.2.2-5] (3.1.1) [MQTT-3.2.2-7] (5.0).
#[tokio::test]
async fn mosquitto_passwd_users_log_in_and_wrong_passwords_are_refused() {
    let test = "mosquitto_passwd_users_log_in_and_wrong_passwords_are_refused";
    if !available(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("a directory for the files");
    let broker = broker(dir.path(), None).await;
    for version in VERSIONS {
        let topic = format!("auth/passwords/{version:?}");
        let args = |client_id: &str| Args::new(broker.addr, version, client_id);
        let subscriber = mosquitto::subscriber(
            as_user(args("alice-sub"), USERS[0]),
            &topic,
            QoS::AtLeastOnce,
            2,
        )
        .await;
        mosquitto::publish(
            as_user(args("writer"), USERS[1]),
            &topic,
            QoS::AtLeastOnce,
            "w",
        )
        .await
        .assert_success("mosquitto_pub -u writer");
        mosquitto::publish(args("anonymous"), &topic, QoS::AtLeastOnce, "anon")
            .await
            .assert_success("anonymous mosquitto_pub");
        let finished = subscriber.finish().await;
        finished.assert_success("mosquitto_sub -u alice");
        assert_eq!(
            mosquitto::messages(&finished),
            vec![format!("1 0 {topic} w"), format!("1 0 {topic} anon")]
        );

        for credentials in [("alice", "wrong"), ("mallory", "alice-pw")] {
            let refused = refused_subscriber(as_user(args("bad"), credentials)).await;
            let expected = refusal_line(version, 4, 134);
            assert!(
                refused.stdout.iter().any(|line| line.ends_with(&expected)),
                "{version:?} {credentials:?}: expected {expected} in {refused:#?}"
            );
        }
    }
    broker.shutdown().await;
}

/// The ACL file decides, per user, pattern and anonymous lines:
/// - a subscription wider than what alice may read (`sensors/#`) is granted, and she gets
///   only her own sensors' messages, in order, none of the others published between them;
/// - a subscription to what she may not read at all (`secret/#`) gets SUBACK 0x80 (3.1.1) /
///   0x87 (5.0);
/// - her PUBLISH to a topic she may only read is dropped (acknowledged in 3.1.1, which cannot
///   be told; PUBACK 0x87 in 5.0) and reaches no one;
/// - an anonymous client reads the public topics and may not subscribe to the sensors.
#[tokio::test]
async fn mosquitto_clients_get_what_the_acl_file_allows() {
    let test = "mosquitto_clients_get_what_the_acl_file_allows";
    if !available(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("a directory for the files");
    let broker = broker(dir.path(), Some(ACL)).await;
    let [alice, writer] = USERS;
    for version in VERSIONS {
        let args = |client_id: &str| Args::new(broker.addr, version, client_id);
        let publish = |client: Args, topic: String, payload: &'static str| async move {
            mosquitto::publish(client, &topic, QoS::AtLeastOnce, payload).await
        };

        // A wide subscription, filtered per delivered topic.
        let wide = mosquitto::subscriber(
            as_user(args("alice-wide"), alice),
            "sensors/#",
            QoS::AtLeastOnce,
            2,
        )
        .await;
        for (topic, payload) in [
            ("sensors/bob/t", "bob-1"),
            ("sensors/alice/t", "alice-1"),
            ("sensors/bob/t", "bob-2"),
            ("sensors/alice/t", "alice-2"),
        ] {
            publish(as_user(args("writer"), writer), topic.into(), payload)
                .await
                .assert_success("mosquitto_pub as the writer");
        }
        let finished = wide.finish().await;
        assert_eq!(
            mosquitto::messages(&finished),
            ["1 0 sensors/alice/t alice-1", "1 0 sensors/alice/t alice-2"],
            "{version:?}"
        );

        // A subscription to nothing she may read is refused.
        expect_subscription_refused(as_user(args("alice-secret"), alice), "secret/#", version)
            .await;

        // Her PUBLISH to a topic she may only read reaches no one; the writer's does.
        let config = mosquitto::subscriber(
            as_user(args("alice-config"), alice),
            "config/#",
            QoS::AtLeastOnce,
            1,
        )
        .await;
        let _ = publish(
            as_user(args("alice-pub"), alice),
            "config/a".into(),
            "denied",
        )
        .await;
        publish(
            as_user(args("writer"), writer),
            "config/b".into(),
            "allowed",
        )
        .await
        .assert_success("mosquitto_pub as the writer");
        assert_eq!(
            mosquitto::messages(&config.finish().await),
            ["1 0 config/b allowed"],
            "{version:?}"
        );

        // Anonymous lines: public topics only.
        let public =
            mosquitto::subscriber(args("anonymous-public"), "public/#", QoS::AtLeastOnce, 1).await;
        publish(
            as_user(args("writer"), writer),
            "public/news".into(),
            "hello",
        )
        .await
        .assert_success("mosquitto_pub as the writer");
        assert_eq!(
            mosquitto::messages(&public.finish().await),
            ["1 0 public/news hello"],
            "{version:?}"
        );
        expect_subscription_refused(args("anonymous-sensors"), "sensors/#", version).await;
    }
    broker.shutdown().await;
}

/// `auth = "certificate"` with `identity = "san"`: the client certificate's Subject
/// Alternative Name, not its Common Name, is the user name the ACL names; and `$SYS` is
/// readable only where a rule grants it.
#[tokio::test]
async fn a_certificate_s_san_is_the_user_name_the_acl_names() {
    let test = "a_certificate_s_san_is_the_user_name_the_acl_names";
    if !mosquitto::available(test) {
        return;
    }
    let files = TlsFiles::generate();
    let dir = tempfile::tempdir().expect("a directory for the ACL");
    let acl = dir.path().join("acl");
    let rules = format!(
        "user {CLIENT_SAN}\ntopic readwrite own/#\ntopic read $SYS/broker/uptime\n\
         user {CLIENT_CN}\ntopic readwrite other/#\n"
    );
    std::fs::write(&acl, rules).expect("write the ACL file");
    let broker = start_broker_with(|config| {
        let mut listener = files.listener(Some(ClientAuth::Required), Some(AuthMode::Certificate));
        if let Some(tls) = &mut listener.tls {
            tls.identity = CertificateIdentity::San;
        }
        config.listeners = vec![listener];
        config.acl_file = Some(acl);
        config.sys_interval = 1;
    })
    .await;
    for version in VERSIONS {
        let args = |client_id: &str| {
            Args::new(broker.addr, version, client_id)
                .tls(&files)
                .client_cert(&files)
        };
        let own = mosquitto::subscriber(args("san-sub"), "own/#", QoS::AtLeastOnce, 1).await;
        mosquitto::publish(args("san-pub"), "own/reading", QoS::AtLeastOnce, "21.5")
            .await
            .assert_success("mosquitto_pub with the certificate");
        assert_eq!(
            mosquitto::messages(&own.finish().await),
            ["1 0 own/reading 21.5"],
            "{version:?}"
        );
        for filter in ["other/#", "$SYS/broker/clients/connected"] {
            expect_subscription_refused(args("san-refused"), filter, version).await;
        }
        let uptime =
            mosquitto::subscriber(args("san-sys"), "$SYS/broker/uptime", QoS::AtMostOnce, 1).await;
        let messages = mosquitto::messages(&uptime.finish().await);
        assert!(
            messages.len() == 1 && messages[0].contains("$SYS/broker/uptime"),
            "{version:?}: {messages:?}"
        );
    }
    broker.shutdown().await;
}
