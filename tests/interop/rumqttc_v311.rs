//! rumqttc 0.24 speaking MQTT 3.1.1 to the broker: publish/subscribe at QoS 0, 1 and 2, the
//! persistent-session seed scenario (Clean Session 0, offline messages, Session Present), and
//! the Will message.

use std::net::SocketAddr;

use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Outgoing,
    Packet, Publish, QoS, SubscribeReasonCode,
};

use crate::common::{start_broker, WAIT};

/// One rumqttc 3.1.1 client whose event loop the test drives by hand.
struct Client {
    client: AsyncClient,
    events: EventLoop,
    /// Every event polled so far: rumqttc reports an automatic PUBACK before the PUBLISH it
    /// answers, so a test looks for it here.
    seen: Vec<Event>,
}

impl Client {
    /// A client for `client_id` with the given Clean Session flag (not yet connected: the
    /// first poll connects).
    fn new(addr: SocketAddr, client_id: &str, clean_session: bool) -> Client {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_clean_session(clean_session);
        Client::with_options(options)
    }

    fn with_options(options: MqttOptions) -> Client {
        let (client, events) = AsyncClient::new(options, 16);
        Client {
            client,
            events,
            seen: Vec::new(),
        }
    }

    /// Polls the event loop until `pick` accepts an event. Fails the test on a connection
    /// error or after [`WAIT`].
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        let (events, seen) = (&mut self.events, &mut self.seen);
        let found = tokio::time::timeout(WAIT, async move {
            loop {
                match events.poll().await {
                    Ok(event) => {
                        seen.push(event.clone());
                        if let Some(found) = pick(event) {
                            return found;
                        }
                    }
                    Err(error) => {
                        panic!("rumqttc connection failed while waiting for {what}: {error}")
                    }
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    }

    /// Connects and returns the CONNACK, which must accept the client.
    async fn connack(&mut self) -> ConnAck {
        let connack = self
            .until("CONNACK", |event| match event {
                Event::Incoming(Packet::ConnAck(connack)) => Some(connack),
                _ => None,
            })
            .await;
        assert_eq!(connack.code, ConnectReturnCode::Success);
        connack
    }

    /// Subscribes and checks the SUBACK grants `qos`.
    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe request");
        let suback = self
            .until("SUBACK", |event| match event {
                Event::Incoming(Packet::SubAck(suback)) => Some(suback),
                _ => None,
            })
            .await;
        assert_eq!(
            suback.return_codes,
            vec![SubscribeReasonCode::Success(qos)],
            "SUBACK for {filter}"
        );
    }

    /// Publishes and waits until the flow is complete: sent (QoS 0), PUBACK (QoS 1) or
    /// PUBCOMP (QoS 2).
    async fn publish(&mut self, topic: &str, qos: QoS, payload: &str) {
        self.client
            .publish(topic, qos, false, payload)
            .await
            .expect("publish request");
        self.until("the end of the publish flow", |event| match (qos, event) {
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
            | (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_)))
            | (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_))) => Some(()),
            _ => None,
        })
        .await;
    }

    /// The next PUBLISH from the broker.
    async fn next_publish(&mut self) -> Publish {
        self.until("PUBLISH", |event| match event {
            Event::Incoming(Packet::Publish(publish)) => Some(publish),
            _ => None,
        })
        .await
    }

    /// Waits until rumqttc has sent `packet` (it may have already).
    async fn expect_sent(&mut self, packet: Outgoing) {
        let expected = Event::Outgoing(packet);
        if !self.seen.contains(&expected) {
            self.until(&format!("{expected:?}"), |event| {
                (event == expected).then_some(())
            })
            .await;
        }
    }

    /// Sends DISCONNECT and closes the connection.
    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect request");
        self.until("DISCONNECT sent", |event| {
            matches!(event, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
    }
}

/// A publisher and a subscriber at `qos`: the message arrives at that QoS with its topic and
/// payload [MQTT-3.3.5-1], and the subscriber's side of the QoS 1/2 flow completes
/// [MQTT-4.3.2-1] [MQTT-4.3.3-1].
async fn round_trip(qos: QoS) {
    let broker = start_broker().await;
    let topic = format!("rumqttc/v311/{qos:?}");
    let mut subscriber = Client::new(broker.addr, &format!("sub-{qos:?}"), true);
    subscriber.connack().await;
    subscriber.subscribe(&topic, qos).await;
    let mut publisher = Client::new(broker.addr, &format!("pub-{qos:?}"), true);
    publisher.connack().await;
    publisher.publish(&topic, qos, "from rumqttc").await;

    let received = subscriber.next_publish().await;
    assert_eq!(
        (received.topic.as_str(), received.qos, &received.payload[..]),
        (topic.as_str(), qos, &b"from rumqttc"[..])
    );
    let packet_id = received.pkid;
    match qos {
        QoS::AtMostOnce => assert_eq!(packet_id, 0, "no packet id at QoS 0 [MQTT-2.3.1-5]"),
        QoS::AtLeastOnce => subscriber.expect_sent(Outgoing::PubAck(packet_id)).await,
        // rumqttc answers PUBREC, then PUBCOMP once the broker's PUBREL arrives.
        QoS::ExactlyOnce => subscriber.expect_sent(Outgoing::PubComp(packet_id)).await,
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn rumqttc_v311_qos0_round_trip() {
    round_trip(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn rumqttc_v311_qos1_round_trip() {
    round_trip(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn rumqttc_v311_qos2_round_trip() {
    round_trip(QoS::ExactlyOnce).await;
}

/// The seed scenario: A subscribes at QoS 1 with Clean Session 0 (no session yet: Session
/// Present 0 [MQTT-3.2.2-3]) and disconnects; B publishes two QoS 1 messages; A reconnects
/// with Clean Session 0, gets Session Present 1 [MQTT-3.2.2-2] and both messages in order
/// [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-4.6.0-6]. Then A connects with Clean Session 1: Session
/// Present 0 [MQTT-3.2.2-1] and the old subscription is gone [MQTT-3.1.2-6].
#[tokio::test]
async fn rumqttc_v311_seed_scenario_offline_messages_with_session_present() {
    let broker = start_broker().await;
    let mut a = Client::new(broker.addr, "seed-a", false);
    assert!(!a.connack().await.session_present, "no session existed yet");
    a.subscribe("seed/readings", QoS::AtLeastOnce).await;
    a.disconnect().await;

    let mut b = Client::new(broker.addr, "seed-b", true);
    b.connack().await;
    b.publish("seed/readings", QoS::AtLeastOnce, "first").await;
    b.publish("seed/readings", QoS::AtLeastOnce, "second").await;

    let mut a = Client::new(broker.addr, "seed-a", false);
    assert!(
        a.connack().await.session_present,
        "Session Present 1 when resuming"
    );
    for expected in ["first", "second"] {
        let received = a.next_publish().await;
        assert_eq!(
            (received.topic.as_str(), received.qos, &received.payload[..]),
            ("seed/readings", QoS::AtLeastOnce, expected.as_bytes())
        );
    }
    a.disconnect().await;

    let mut a = Client::new(broker.addr, "seed-a", true);
    assert!(
        !a.connack().await.session_present,
        "Clean Session 1 discards the session"
    );
    a.subscribe("seed/marker", QoS::AtLeastOnce).await;
    b.publish(
        "seed/readings",
        QoS::AtLeastOnce,
        "not for the clean session",
    )
    .await;
    b.publish("seed/marker", QoS::AtLeastOnce, "marker").await;
    let received = a.next_publish().await;
    assert_eq!(
        (received.topic.as_str(), &received.payload[..]),
        ("seed/marker", &b"marker"[..]),
        "the old subscription must be gone"
    );
    broker.shutdown().await;
}

/// A client that vanishes without DISCONNECT has its Will published at its QoS
/// [MQTT-3.1.2-8].
#[tokio::test]
async fn rumqttc_v311_will_published_when_client_vanishes() {
    let broker = start_broker().await;
    let mut watcher = Client::new(broker.addr, "will-watcher", true);
    watcher.connack().await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;

    let mut options = MqttOptions::new(
        "vanishing",
        broker.addr.ip().to_string(),
        broker.addr.port(),
    );
    options.set_last_will(LastWill::new(
        "will/vanishing",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let mut vanishing = Client::with_options(options);
    vanishing.connack().await;
    drop(vanishing); // closes the socket without DISCONNECT

    let received = watcher.next_publish().await;
    assert_eq!(
        (received.topic.as_str(), received.qos, &received.payload[..]),
        ("will/vanishing", QoS::AtLeastOnce, &b"gone"[..])
    );
    broker.shutdown().await;
}
