//! Mosquitto's programs as these tests run them: `mosquitto_passwd`, and `mosquitto_pub` and
//! `mosquitto_sub` with a user name and password against a Mosquitto on a loopback port.

use std::net::SocketAddr;

use crate::common::programs::{self, Finished, Running};

pub const PASSWD: &str = "mosquitto_passwd";
const PUB: &str = "mosquitto_pub";
const SUB: &str = "mosquitto_sub";
/// Runs a program with line-buffered standard output (coreutils).
const LINE_BUFFERED: &str = "stdbuf";

/// Whether `mosquitto_pub`, `mosquitto_sub` and `stdbuf` are installed (see
/// [`programs::available`]).
pub fn clients_available(test: &str) -> bool {
    programs::available(PUB, "mosquitto-clients", test)
        && programs::available(SUB, "mosquitto-clients", test)
        && programs::available(LINE_BUFFERED, "coreutils", test)
}

/// Who a client connects as.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub client_id: &'a str,
    /// User name and password; `None` connects anonymously.
    pub user: Option<(&'a str, &'a str)>,
}

impl Login<'_> {
    /// Host, port, MQTT 3.1.1, client id, and `-u`/`-P` when there is a user.
    fn args(&self, broker: SocketAddr) -> Vec<String> {
        let mut args = vec![
            "-h".to_string(),
            broker.ip().to_string(),
            "-p".to_string(),
            broker.port().to_string(),
            "-V".to_string(),
            "mqttv311".to_string(),
            "-i".to_string(),
            self.client_id.to_string(),
        ];
        if let Some((user, password)) = self.user {
            args.extend(["-u", user, "-P", password].map(String::from));
        }
        args
    }
}

/// `mosquitto_pub` of `payload` on `topic` at QoS 1 (it ends once Mosquitto acknowledged, so
/// the message is queued for every subscriber that may receive it), run to its end.
pub async fn publish(broker: SocketAddr, login: Login<'_>, topic: &str, payload: &str) -> Finished {
    let mut args = login.args(broker);
    args.extend(["-q", "1", "-t", topic, "-m", payload].map(String::from));
    programs::run(PUB, &args).await
}

/// A `mosquitto_sub` on `filters` at QoS 1, printing `MSG <topic> <payload>` lines, returned
/// once Mosquitto answered its SUBSCRIBE. It ends by itself after 5 minutes (or when dropped).
pub async fn subscribe(broker: SocketAddr, login: Login<'_>, filters: &[&str]) -> Running {
    let mut command = vec!["-oL".to_string(), SUB.to_string()];
    command.extend(login.args(broker));
    command.extend(["-d", "-q", "1", "-W", "300", "-F", "MSG %t %p"].map(String::from));
    for filter in filters {
        command.extend(["-t".to_string(), filter.to_string()]);
    }
    let mut running = Running::spawn(LINE_BUFFERED, &command);
    running
        .wait_for_line("its SUBACK", |line| line.starts_with("Subscribed (mid: "))
        .await;
    running
}

/// Reads `MSG <topic> <payload>` lines of `subscriber` up to the one on `last_topic`; returns
/// the (topic, payload) of those before it.
pub async fn messages_until(subscriber: &mut Running, last_topic: &str) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    let end = format!("MSG {last_topic} ");
    loop {
        let line = subscriber
            .wait_for_line("a message", |line| line.starts_with("MSG "))
            .await;
        if line.starts_with(&end) {
            return messages;
        }
        let (topic, payload) = line["MSG ".len()..]
            .split_once(' ')
            .unwrap_or_else(|| panic!("a message line: {line}"));
        messages.push((topic.to_string(), payload.to_string()));
    }
}
