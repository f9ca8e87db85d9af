//! rumqttc 0.24 speaking MQTT 5.0 to the broker: publish/subscribe at QoS 0, 1 and 2, a
//! persistent session with a Session Expiry Interval, Clean Start, PUBLISH properties passed
//! through unaltered, and DISCONNECT 0x8B when the broker shuts down.

use std::net::SocketAddr;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectProperties, ConnectReturnCode, DisconnectReasonCode, Packet, Publish,
    PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use rumqttc::Outgoing;

use crate::common::{start_broker, WAIT};

/// One rumqttc 5.0 client whose event loop the test drives by hand.
struct Client {
    client: AsyncClient,
    events: EventLoop,
    /// Every event polled so far: rumqttc reports an automatic PUBACK before the PUBLISH it
    /// answers, so a test looks for it here.
    seen: Vec<Event>,
}

impl Client {
    /// A client with Clean Start 1 and no Session Expiry Interval (not yet connected: the
    /// first poll connects).
    fn new(addr: SocketAddr, client_id: &str) -> Client {
        Client::with_options(MqttOptions::new(
            client_id,
            addr.ip().to_string(),
            addr.port(),
        ))
    }

    /// A client that resumes its session (Clean Start 0) and keeps it `expiry` seconds.
    fn persistent(addr: SocketAddr, client_id: &str, expiry: u32) -> Client {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_clean_start(false);
        let mut properties = ConnectProperties::new();
        properties.session_expiry_interval = Some(expiry);
        options.set_connect_properties(properties);
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

    /// Polls the event loop until `pick` accepts an event or the connection fails; fails the
    /// test after [`WAIT`].
    async fn poll_until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(Event) -> Option<T>,
    ) -> Result<T, ConnectionError> {
        let (events, seen) = (&mut self.events, &mut self.seen);
        let found = tokio::time::timeout(WAIT, async move {
            loop {
                let event = events.poll().await?;
                seen.push(event.clone());
                if let Some(found) = pick(event) {
                    return Ok(found);
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    }

    /// As [`Client::poll_until`], failing the test on a connection error.
    async fn until<T>(&mut self, what: &str, pick: impl FnMut(Event) -> Option<T>) -> T {
        self.poll_until(what, pick).await.unwrap_or_else(|error| {
            panic!("rumqttc connection failed while waiting for {what}: {error}")
        })
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

    /// Publishes with `properties` and waits until the flow is complete: sent (QoS 0),
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2).
    async fn publish_with(
        &mut self,
        topic: &str,
        qos: QoS,
        payload: &str,
        properties: PublishProperties,
    ) {
        self.client
            .publish_with_properties(topic, qos, false, payload.to_string(), properties)
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

    async fn publish(&mut self, topic: &str, qos: QoS, payload: &str) {
        self.publish_with(topic, qos, payload, PublishProperties::default())
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

    /// Sends DISCONNECT (Normal disconnection) and closes the connection.
    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect request");
        self.until("DISCONNECT sent", |event| {
            matches!(event, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
    }
}

/// Asserts `publish` carries `topic`, `qos` and `payload`.
fn assert_message(publish: &Publish, topic: &str, qos: QoS, payload: &str) {
    assert_eq!(
        (&publish.topic[..], publish.qos, &publish.payload[..]),
        (topic.as_bytes(), qos, payload.as_bytes())
    );
}

/// A publisher and a subscriber at `qos`: the message arrives at that QoS with its topic and
/// payload [MQTT-3.3.5-1], and the subscriber's side of the QoS 1/2 flow completes
/// [MQTT-4.3.2-1] [MQTT-4.3.3-1].
async fn round_trip(qos: QoS) {
    let broker = start_broker().await;
    let topic = format!("rumqttc/v5/{qos:?}");
    let mut subscriber = Client::new(broker.addr, &format!("sub5-{qos:?}"));
    subscriber.connack().await;
    subscriber.subscribe(&topic, qos).await;
    let mut publisher = Client::new(broker.addr, &format!("pub5-{qos:?}"));
    publisher.connack().await;
    publisher.publish(&topic, qos, "from rumqttc v5").await;

    let received = subscriber.next_publish().await;
    assert_message(&received, &topic, qos, "from rumqttc v5");
    let packet_id = received.pkid;
    match qos {
        QoS::AtMostOnce => assert_eq!(packet_id, 0, "no packet id at QoS 0 [MQTT-2.2.1-2]"),
        QoS::AtLeastOnce => subscriber.expect_sent(Outgoing::PubAck(packet_id)).await,
        // rumqttc answers PUBREC, then PUBCOMP once the broker's PUBREL arrives.
        QoS::ExactlyOnce => subscriber.expect_sent(Outgoing::PubComp(packet_id)).await,
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn rumqttc_v5_qos0_round_trip() {
    round_trip(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn rumqttc_v5_qos1_round_trip() {
    round_trip(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn rumqttc_v5_qos2_round_trip() {
    round_trip(QoS::ExactlyOnce).await;
}

/// The seed scenario in 5.0: Clean Start 0 with Session Expiry Interval 60 keeps the session
/// and its QoS 1 messages while offline [MQTT-3.1.2-23]; resuming gives Session Present 1
/// [MQTT-3.2.2-3] and both messages in order [MQTT-4.6.0-6]. Clean Start 1 then discards it:
/// Session Present 0 [MQTT-3.1.2-4] [MQTT-3.2.2-2], and the old subscription is gone.
#[tokio::test]
async fn rumqttc_v5_persistent_session_with_expiry() {
    let broker = start_broker().await;
    let mut a = Client::persistent(broker.addr, "seed5-a", 60);
    assert!(!a.connack().await.session_present, "no session existed yet");
    a.subscribe("seed5/readings", QoS::AtLeastOnce).await;
    a.disconnect().await;

    let mut b = Client::new(broker.addr, "seed5-b");
    b.connack().await;
    b.publish("seed5/readings", QoS::AtLeastOnce, "first").await;
    b.publish("seed5/readings", QoS::AtLeastOnce, "second")
        .await;

    let mut a = Client::persistent(broker.addr, "seed5-a", 60);
    assert!(
        a.connack().await.session_present,
        "Session Present 1 when resuming"
    );
    for expected in ["first", "second"] {
        assert_message(
            &a.next_publish().await,
            "seed5/readings",
            QoS::AtLeastOnce,
            expected,
        );
    }
    a.disconnect().await;

    let mut a = Client::new(broker.addr, "seed5-a");
    assert!(
        !a.connack().await.session_present,
        "Clean Start 1 discards the session"
    );
    a.subscribe("seed5/marker", QoS::AtLeastOnce).await;
    b.publish(
        "seed5/readings",
        QoS::AtLeastOnce,
        "not for the clean session",
    )
    .await;
    b.publish("seed5/marker", QoS::AtLeastOnce, "marker").await;
    assert_message(
        &a.next_publish().await,
        "seed5/marker",
        QoS::AtLeastOnce,
        "marker",
    );
    broker.shutdown().await;
}

/// PUBLISH properties reach a 5.0 subscriber unaltered: Payload Format Indicator
/// [MQTT-3.3.2-4], Response Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16], User
/// Properties in order [MQTT-3.3.2-17] [MQTT-3.3.2-18], Content Type [MQTT-3.3.2-20].
#[tokio::test]
async fn rumqttc_v5_publish_properties_forwarded_unaltered() {
    let broker = start_broker().await;
    let mut subscriber = Client::new(broker.addr, "props-sub");
    subscriber.connack().await;
    subscriber.subscribe("props/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::new(broker.addr, "props-pub");
    publisher.connack().await;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some("props/reply".to_string()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01req-7")),
        user_properties: vec![
            ("site".to_string(), "north".to_string()),
            ("unit".to_string(), "celsius".to_string()),
            ("site".to_string(), "duplicate keys allowed".to_string()),
        ],
        content_type: Some("text/plain".to_string()),
        ..PublishProperties::default()
    };
    publisher
        .publish_with("props/temperature", QoS::AtLeastOnce, "21.5", sent.clone())
        .await;

    let received = subscriber.next_publish().await;
    assert_message(&received, "props/temperature", QoS::AtLeastOnce, "21.5");
    let properties = received.properties.expect("the PUBLISH has properties");
    assert_eq!(
        properties.payload_format_indicator,
        sent.payload_format_indicator
    );
    assert_eq!(properties.response_topic, sent.response_topic);
    assert_eq!(properties.correlation_data, sent.correlation_data);
    assert_eq!(properties.user_properties, sent.user_properties);
    assert_eq!(properties.content_type, sent.content_type);
    broker.shutdown().await;
}

/// A graceful broker shutdown sends connected 5.0 clients DISCONNECT 0x8B Server shutting
/// down (MQTT 5.0 §3.14.2.1) before closing.
#[tokio::test]
async fn rumqttc_v5_told_server_shutting_down() {
    let broker = start_broker().await;
    let mut client = Client::new(broker.addr, "shutdown-watcher");
    client.connack().await;
    let shutdown = tokio::spawn(broker.shutdown());
    let ended = client
        .poll_until("DISCONNECT from the broker", |_| None::<()>)
        .await;
    match ended {
        Err(ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. })) => {
            assert_eq!(reason_code, DisconnectReasonCode::ServerShuttingDown);
        }
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
}
