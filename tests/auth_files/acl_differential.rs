//! One ACL file, two judges: the real Mosquitto 2.0 (what `mosquitto_sub` receives, what
//! `mosquitto_pub` gets delivered) and Cairn's `Acl::allows`, over a table of clients and
//! topics: anonymous clients and the lines before the first `user`, users with and without a
//! block of their own, deny before grant, patterns with `%u` and `%c` (a client id with `/`
//! in it, a user name with `+`), `topic` lines taking `%u` literally, and `$` topics
//! [MQTT-4.7.2-1]; and no SUBSCRIBE that `Acl::may_subscribe` refuses would have delivered a
//! message in Mosquitto.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use cairn::auth::{Access, Acl, PasswordFile, Who};
use cairn::broker::topic::filter_matches;

use crate::clients::{clients_available, messages_until, publish, subscribe, Login};
use crate::common::programs::Running;
use crate::common::upstream::{MosquittoProfile, MosquittoUpstream};

const ACL: &str = "\
# For clients without a user name only (Mosquitto reads them so).
topic read public/#
topic write inbox/anonymous

user alice
topic readwrite alice/#
topic read shared/#
topic deny shared/secret
topic write inbox/#
topic read $SYS/broker/version

user bob
topic read x/#
topic write x/#
topic read a/%u/b

user we+ird
topic read done/#
topic read public/#

user admin
topic readwrite #
topic readwrite $app/#

user reader
topic read #
topic read $app/#

pattern read users/%u/#
pattern readwrite clients/%c/#
pattern deny x/%u
pattern read done/%c
";

/// The topics every client is asked about.
const TOPICS: [&str; 17] = [
    "public/a",
    "shared/a",
    "shared/secret",
    "alice/a",
    "inbox/anonymous",
    "inbox/x",
    "users/alice/a",
    "users/bob/a",
    "users//a",
    "clients/c1/a",
    "clients/dev/7/a",
    "x/alice",
    "x/bob",
    "a/%u/b",
    "a/bob/b",
    "other",
    "$app/a",
];

/// Filters a client subscribes to.
const SUBSCRIBE_FILTERS: [&str; 15] = [
    "#",
    "public/#",
    "shared/+",
    "shared/secret",
    "alice/#",
    "inbox/#",
    "users/+/a",
    "clients/+/a",
    "clients/#",
    "x/+",
    "a/+/b",
    "other",
    "$app/#",
    "$SYS/#",
    "nothing/#",
];

/// Published by Mosquitto itself, retained: only read.
const SYS_TOPIC: &str = "$SYS/broker/version";

/// A client of the table: its label (the payload it publishes), client id, user and password.
struct Client {
    label: &'static str,
    client_id: &'static str,
    user: Option<(&'static str, &'static str)>,
}

const CLIENTS: [Client; 7] = [
    Client {
        label: "anonymous-c1",
        client_id: "c1",
        user: None,
    },
    Client {
        label: "anonymous-dev7",
        client_id: "dev/7",
        user: None,
    },
    Client {
        label: "alice",
        client_id: "c2",
        user: Some(("alice", "alice-pw")),
    },
    Client {
        label: "bob",
        client_id: "bob-1",
        user: Some(("bob", "bob-pw")),
    },
    Client {
        label: "carol",
        client_id: "c3",
        user: Some(("carol", "carol-pw")),
    },
    Client {
        label: "weird",
        client_id: "w1",
        user: Some(("we+ird", "weird-pw")),
    },
    Client {
        label: "admin",
        client_id: "admin-1",
        user: Some(("admin", "admin-pw")),
    },
];

const ADMIN: Client = Client {
    label: "admin",
    client_id: "admin-0",
    user: Some(("admin", "admin-pw")),
};

const READER: Client = Client {
    label: "reader",
    client_id: "reader-1",
    user: Some(("reader", "reader-pw")),
};

impl Client {
    fn who(&self) -> Who<'static> {
        Who {
            username: self.user.map(|(user, _)| user),
            client_id: self.client_id,
        }
    }

    fn login(&self) -> Login<'static> {
        Login {
            client_id: self.client_id,
            user: self.user,
        }
    }
}

/// Every user of the table, with their password.
fn password_file() -> String {
    let mut file = PasswordFile::default();
    for client in CLIENTS.iter().chain([&READER]) {
        if let Some((user, password)) = client.user {
            file.set_password(user, password.as_bytes())
                .expect("a valid entry");
        }
    }
    file.to_text()
}

/// Publishes `topic` as `client` at QoS 1; Mosquitto acknowledges a denied PUBLISH too (MQTT
/// 3.1.1 has no way to say no), so the program succeeds either way.
async fn publish_as(broker: SocketAddr, client: &Client, topic: &str) {
    publish(broker, client.login(), topic, client.label)
        .await
        .assert_success(&format!("mosquitto_pub {topic} as {}", client.label));
}

/// The marker topic after which `client` has received all it will.
fn done(client: &Client) -> String {
    format!("done/{}", client.client_id)
}

/// Mosquitto 2.0 accepts every SUBSCRIBE; Cairn refuses one that could never deliver anything.
/// Checks that of every filter `Acl::may_subscribe` refuses to `client`: no topic Mosquitto
/// delivered to it (`received`) matches that filter. Returns how many filters it refused.
fn check_refused_subscribes(
    acl: &Acl,
    client: &Client,
    received: &BTreeSet<String>,
    mismatches: &mut Vec<String>,
) -> usize {
    let refused: Vec<&str> = SUBSCRIBE_FILTERS
        .into_iter()
        .filter(|filter| !acl.may_subscribe(client.who(), filter))
        .collect();
    for filter in &refused {
        for topic in received
            .iter()
            .filter(|topic| filter_matches(filter, topic))
        {
            mismatches.push(format!(
                "{}: Cairn refuses SUBSCRIBE {filter}, Mosquitto delivered {topic} through it",
                client.label
            ));
        }
    }
    refused.len()
}

#[tokio::test]
async fn acl_allows_what_mosquitto_delivers() {
    let test = "acl_allows_what_mosquitto_delivers";
    if !clients_available(test) {
        return;
    }
    let profile = MosquittoProfile::Secured {
        anonymous: true,
        acl: true,
    };
    let files = [("passwd", password_file()), ("acl", ACL.to_string())];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let Some(mosquitto) = MosquittoUpstream::start_with_files(profile, &files, test).await else {
        return;
    };
    let broker = mosquitto.addr();
    let acl = Acl::parse(ACL, Path::new("acl")).expect("the same file for Cairn");
    for topic in TOPICS {
        assert!(
            acl.allows(ADMIN.who(), topic, Access::Write),
            "admin publishes {topic}"
        );
        assert!(
            acl.allows(READER.who(), topic, Access::Read),
            "reader reads {topic}"
        );
    }

    // Read: each client subscribed to everything; the admin publishes every topic.
    let mut subscribers: Vec<Running> = Vec::new();
    for client in &CLIENTS {
        let filters = ["#", "$app/#", SYS_TOPIC];
        subscribers.push(subscribe(broker, client.login(), &filters).await);
    }
    for topic in TOPICS {
        publish_as(broker, &ADMIN, topic).await;
    }
    for client in &CLIENTS {
        publish_as(broker, &ADMIN, &done(client)).await;
    }
    let mut mismatches = Vec::new();
    let mut allowed = 0;
    let mut refused = 0;
    for (client, mut subscriber) in CLIENTS.iter().zip(subscribers) {
        let received: BTreeSet<String> = messages_until(&mut subscriber, &done(client))
            .await
            .into_iter()
            .map(|(topic, _)| topic)
            .collect();
        for topic in TOPICS.iter().chain([&SYS_TOPIC]) {
            let cairn = acl.allows(client.who(), topic, Access::Read);
            allowed += usize::from(cairn);
            if cairn != received.contains(*topic) {
                mismatches.push(format!(
                    "{} reading {topic}: Cairn {cairn}, Mosquitto {}",
                    client.label, !cairn
                ));
            }
        }
        refused += check_refused_subscribes(&acl, client, &received, &mut mismatches);
    }
    let cases = CLIENTS.len() * (TOPICS.len() + 1);
    assert!(
        0 < allowed && allowed < cases,
        "both answers are in the table"
    );
    let subscribes = CLIENTS.len() * SUBSCRIBE_FILTERS.len();
    assert!(
        0 < refused && refused < subscribes,
        "both answers for SUBSCRIBE"
    );

    // Write: each client publishes every topic; a reader that may read all tells which got
    // through.
    let filters = ["#", "$app/#"];
    let mut reader = subscribe(broker, READER.login(), &filters).await;
    for client in &CLIENTS {
        for topic in TOPICS {
            publish_as(broker, client, topic).await;
        }
    }
    publish_as(broker, &ADMIN, &done(&READER)).await;
    let delivered: BTreeSet<(String, String)> = messages_until(&mut reader, &done(&READER))
        .await
        .into_iter()
        .collect();
    for client in &CLIENTS {
        for topic in TOPICS {
            let cairn = acl.allows(client.who(), topic, Access::Write);
            let mosquitto = delivered.contains(&(topic.to_string(), client.label.to_string()));
            if cairn != mosquitto {
                mismatches.push(format!(
                    "{} publishing {topic}: Cairn {cairn}, Mosquitto {mosquitto}",
                    client.label
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "Cairn's Acl and Mosquitto differ:\n{}\nmosquitto's log: {}",
        mismatches.join("\n"),
        mosquitto.log()
    );
}
