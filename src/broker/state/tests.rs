//! The engine without sockets: session timers tied to the one attachment they were armed for
//! (across Clean Start, resumption, takeover and restarts), QoS 1 and 2 flows both ways with
//! the store operations they record, the inflight window, takeover, and the bridges' sessions.

use std::sync::Arc;

use bytes::Bytes;

use std::time::SystemTime;

use super::*;
use crate::codec::{Packet, Properties, QoS, SubscriptionOptions};
use crate::config::QueueFullPolicy;
use crate::model::{
    Delivery, OutboundState, Recovered, RecoveredSession, SessionWill, StoreOp, WillSender,
};

fn state() -> State {
    State::new(
        QueueLimits {
            max_messages: 1000,
            max_bytes: u64::MAX,
            policy: QueueFullPolicy::DropOldest,
            queue_qos0_offline: false,
        },
        QueueBudget::new(u64::MAX),
    )
}

fn link(connection_id: u64) -> Link {
    Link {
        connection_id,
        signal: Arc::new(ConnectionSignal::default()),
    }
}

/// A Will on `topic` with a Will Delay Interval of `delay` seconds.
fn will(topic: &str, delay: u32) -> Box<Will> {
    Box::new(Will {
        topic: topic.to_owned(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties {
            will_delay_interval: Some(delay),
            ..Properties::default()
        },
    })
}

/// Attaches connection `connection_id` to `client`, returning Session Present.
fn attach(
    state: &mut State,
    client: &Arc<str>,
    connection_id: u64,
    clean_start: bool,
    expiry_interval: u32,
    will: Option<Box<Will>>,
) -> bool {
    let request = AttachRequest {
        client_id: client.clone(),
        clean_start,
        expiry_interval,
        will,
        username: None,
        link: link(connection_id),
    };
    state
        .attach(request, &mut Changes::default())
        .session_present
}

/// Resumes `client` (Clean Start 0, no Will) on connection `connection_id` asking for
/// `expiry_interval`: what the attach says, and the store operations it records.
fn resume_recording(
    state: &mut State,
    client: &Arc<str>,
    connection_id: u64,
    expiry_interval: u32,
) -> (Attached, Vec<StoreOp>) {
    let request = AttachRequest {
        client_id: client.clone(),
        clean_start: false,
        expiry_interval,
        will: None,
        username: None,
        link: link(connection_id),
    };
    let mut changes = Changes::default();
    let attached = state.attach(request, &mut changes);
    (attached, changes.ops)
}

/// Detaches `connection_id` as a network loss would (the Will kept).
fn detach(state: &mut State, client: &Arc<str>, connection_id: u64) -> Detached {
    state.detach(client, connection_id, true, &mut Changes::default())
}

fn subscribe(state: &mut State, client: &Arc<str>, filter: &str) {
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    state.subscribe(client, &Arc::from(filter), options, None);
}

/// Whether a Will (or any message) on `topic` reaches the session `observer`'s queue.
fn queued_for(state: &State, observer: &Arc<str>) -> usize {
    state.sessions[observer].session.queue.len()
}

/// What the store reads back of one session that went offline just now, expiry 60 s.
fn offline_for_a_minute(client: &Arc<str>) -> Recovered {
    Recovered {
        sessions: vec![RecoveredSession::new(
            client.clone(),
            60,
            Some(SystemTime::now()),
        )],
        retained: Vec::new(),
        next_message_id: 1,
    }
}

/// [MQTT-3.1.2-4] [MQTT-3.1.2-23]: a session created by Clean Start 1 is a new session; the
/// expiry timer of the session it replaced must not end it (the fault outside testing found:
/// Session Present 0, subscriptions and queued messages lost).
#[test]
fn expiry_timer_of_a_replaced_session_leaves_the_new_one_alone() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    attach(&mut state, &client, 1, true, 3, None);
    let first = detach(&mut state, &client, 1);
    assert_eq!(first.expiry, Some(3));
    attach(&mut state, &client, 2, true, 100, None);
    subscribe(&mut state, &client, "readings/#");
    let second = detach(&mut state, &client, 2);
    assert_ne!(
        first.epoch, second.epoch,
        "each attachment has its own epoch"
    );

    let mut changes = Changes::default();
    state.expire(&client, first.epoch, &mut changes);
    assert!(changes.ops.is_empty(), "nothing ended: {:?}", changes.ops);
    assert!(
        state.sessions.contains_key(&client),
        "the new session lives"
    );
    assert!(
        attach(&mut state, &client, 3, false, 100, None),
        "Session Present 1"
    );
    assert!(
        state.sessions[&client]
            .session
            .subscriptions
            .get("readings/#")
            .is_some(),
        "its subscription survived"
    );

    // Its own timer still works once it is offline again.
    let third = detach(&mut state, &client, 3);
    state.expire(&client, third.epoch, &mut Changes::default());
    assert!(
        !state.sessions.contains_key(&client),
        "expired on its own timer"
    );
}

/// [MQTT-3.1.3-9]: the delayed Will of a replaced session is not the new session's: the old
/// Will Delay timer must not publish the new session's Will early.
#[test]
fn will_delay_timer_of_a_replaced_session_does_not_publish_the_new_will() {
    let mut state = state();
    let observer: Arc<str> = Arc::from("observer");
    attach(&mut state, &observer, 10, true, 100, None);
    subscribe(&mut state, &observer, "wills/#");
    let client: Arc<str> = Arc::from("sensor");
    attach(
        &mut state,
        &client,
        1,
        true,
        100,
        Some(will("wills/old", 5)),
    );
    let first = detach(&mut state, &client, 1);
    assert_eq!(first.will_delay, Some(5));
    // Clean Start 1 publishes the old Will at once: the old session ends.
    attach(
        &mut state,
        &client,
        2,
        true,
        100,
        Some(will("wills/new", 50)),
    );
    assert_eq!(queued_for(&state, &observer), 1, "the old Will");
    detach(&mut state, &client, 2);

    state.will_due(&client, first.epoch, &mut Changes::default());
    assert_eq!(
        queued_for(&state, &observer),
        1,
        "the new Will waits for its own delay"
    );
}

/// Resumption and takeover: a timer armed before the session was resumed (Clean Start 0) or
/// taken over acts on nothing once the session is back online, nor after it left again.
#[test]
fn timers_of_an_earlier_attachment_do_nothing_after_a_resume_or_takeover() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    attach(&mut state, &client, 1, true, 10, None);
    let first = detach(&mut state, &client, 1);
    assert!(attach(&mut state, &client, 2, false, 10, None), "resumed");
    // Connection 3 takes the session over from connection 2 [MQTT-3.1.4-3].
    assert!(
        attach(&mut state, &client, 3, false, 10, None),
        "taken over"
    );
    let stale = detach(&mut state, &client, 2);
    assert_eq!(
        stale.expiry, None,
        "the replaced connection's end arms nothing"
    );
    state.expire(&client, first.epoch, &mut Changes::default());
    assert!(state.sessions.contains_key(&client), "online: not expired");
    detach(&mut state, &client, 3);
    state.expire(&client, first.epoch, &mut Changes::default());
    assert!(
        state.sessions.contains_key(&client),
        "offline again, but on a later attachment's timer only"
    );
}

/// A session restored at start-up gets an epoch no later attachment shares: the timer armed
/// by the restore does not end a session created afterwards under the same client id.
#[test]
fn timers_armed_by_a_restore_leave_a_session_created_after_it_alone() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    let timers = state.restore(
        offline_for_a_minute(&client),
        SystemTime::now(),
        &mut Changes::default(),
    );
    let (_, restored) = &timers[0];
    assert!(restored.expiry.is_some());
    attach(&mut state, &client, 1, true, 100, None);
    detach(&mut state, &client, 1);
    state.expire(&client, restored.epoch, &mut Changes::default());
    assert!(state.sessions.contains_key(&client));

    // Nobody came back: the timer the restore armed ends the restored session.
    let mut state = self::state();
    let timers = state.restore(
        offline_for_a_minute(&client),
        SystemTime::now(),
        &mut Changes::default(),
    );
    let (_, restored) = &timers[0];
    state.expire(&client, restored.epoch, &mut Changes::default());
    assert!(!state.sessions.contains_key(&client), "expired at its time");
}

/// Whether a Will on `topic` set by `sender`, restored at start-up with no delay left, reaches
/// a restored subscriber to `wills/#` under the ACL "pattern write wills/%u".
fn restored_will_goes_out(topic: &str, sender: WillSender) -> bool {
    let acl = crate::auth::Acl::parse("pattern write wills/%u\n", std::path::Path::new("acl"))
        .expect("a valid ACL");
    let mut state = state();
    state.set_will_acl(Some(Arc::new(Rules {
        passwords: None,
        acl: Some(acl),
    })));
    let observer: Arc<str> = Arc::from("observer");
    let client: Arc<str> = Arc::from("willer");
    let mut watching = RecoveredSession::new(observer.clone(), 60, Some(SystemTime::now()));
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    watching.subscriptions = vec![(Arc::from("wills/#"), options, None)];
    let mut willing = RecoveredSession::new(client, 60, Some(SystemTime::now()));
    willing.will = Some(SessionWill {
        will: *will(topic, 0),
        sender,
    });
    let recovered = Recovered {
        sessions: vec![watching, willing],
        retained: Vec::new(),
        next_message_id: 1,
    };
    state.restore(recovered, SystemTime::now(), &mut Changes::default());
    queued_for(&state, &observer) == 1
}

/// A Will restored at start-up is checked against the ACL in force when it is sent, with the
/// user name stored with it: `%u` stands for it, and an anonymous client matches no `%u`
/// rule. A Will from a record of an older build, whose sender is unknown, goes out unchecked,
/// as before.
#[test]
fn a_restored_will_is_checked_against_the_acl_with_its_stored_sender() {
    let alice = || WillSender::Client(Some(Arc::from("alice")));
    assert!(restored_will_goes_out("wills/alice", alice()));
    assert!(!restored_will_goes_out("wills/bob", alice()));
    assert!(!restored_will_goes_out(
        "wills/alice",
        WillSender::Client(None)
    ));
    assert!(restored_will_goes_out("wills/bob", WillSender::Unknown));
}

/// A QoS `qos` PUBLISH of `payload` to `topic` from a client, as the connection hands it over.
fn inbound(topic: &str, qos: QoS, packet_id: u16, payload: &'static [u8]) -> InboundPublish {
    InboundPublish {
        publish: crate::codec::Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_owned(),
            packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
            properties: Properties::default(),
            payload: Bytes::from_static(payload),
        },
        topic: Arc::from(topic),
        refusal_ends_flow: true,
        received: std::time::Instant::now(),
    }
}

/// A connected persistent session subscribed to `filter` at `qos`, on connection 1.
fn subscriber(state: &mut State, name: &str, filter: &str, qos: QoS) -> Arc<str> {
    let client: Arc<str> = Arc::from(name);
    attach(state, &client, 1, true, 100, None);
    let options = SubscriptionOptions::with_qos(qos);
    state.subscribe_to(
        &client,
        &Arc::from(filter),
        options,
        None,
        &mut Changes::default(),
    );
    client
}

/// Publishes from a session `publisher` (created on first use) and returns the changes.
fn publish_from(state: &mut State, publisher: &str, message: InboundPublish) -> Changes {
    let client: Arc<str> = Arc::from(publisher);
    if state.session(publisher).is_none() {
        attach(state, &client, 99, true, 0, None);
    }
    let mut changes = Changes::default();
    state
        .publish(&client, message, &mut changes)
        .expect("publisher attached");
    changes
}

/// Takes what the window of `window` allows for connection 1 of `client`.
fn take(state: &mut State, client: &Arc<str>, window: usize) -> (Taken, Changes) {
    take_capped(state, client, window, &|_| QoS::ExactlyOnce)
}

/// [`take`] with each delivery sent at no more than `max_qos` gives it.
fn take_capped(
    state: &mut State,
    client: &Arc<str>,
    window: usize,
    max_qos: &dyn Fn(&Delivery) -> QoS,
) -> (Taken, Changes) {
    let mut changes = Changes::default();
    let prepare = |delivery: &Delivery, packet_id: Option<u16>| {
        Ok(Prepared::under_own_topic(Packet::Publish(
            crate::codec::Publish {
                dup: false,
                qos: delivery.qos,
                retain: delivery.retain,
                topic: delivery.message.topic.to_string(),
                packet_id,
                properties: Properties::default(),
                payload: delivery.message.payload.clone(),
            },
        )))
    };
    let taken = state
        .take_deliverable(
            client,
            1,
            TakeLimits {
                window,
                batch: 256,
                max_qos,
            },
            prepare,
            &mut changes,
        )
        .expect("attached");
    (taken, changes)
}

/// The packet identifiers of the PUBLISH packets taken.
fn packet_ids(taken: &Taken) -> Vec<u16> {
    taken
        .packets
        .iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => publish.packet_id,
            _ => None,
        })
        .collect()
}

/// The kinds of store operations recorded, in order.
fn kinds(changes: &Changes) -> Vec<&'static str> {
    changes
        .ops
        .iter()
        .map(|op| match op {
            StoreOp::Enqueue { .. } => "enqueue",
            StoreOp::Inflight { .. } => "inflight",
            StoreOp::Released { .. } => "released",
            StoreOp::Acked { .. } => "acked",
            StoreOp::Discard { .. } => "discard",
            StoreOp::InboundQos2 { awaiting: true, .. } => "inbound awaiting",
            StoreOp::InboundQos2 {
                awaiting: false, ..
            } => "inbound released",
            _ => "other",
        })
        .collect()
}

/// [MQTT-4.4.0-1] A message sent under a topic not its own (a bridge renames it upstream)
/// keeps that topic with its inflight entry, in the window and in the store's record, for a
/// resend after the rules changed; one sent under its own topic records none.
#[test]
fn the_topic_a_message_went_out_under_stays_with_its_inflight_entry() {
    let mut state = state();
    let sub = subscriber(&mut state, "sub", "t/#", QoS::ExactlyOnce);
    for (packet_id, topic) in [(1, "t/renamed"), (2, "t/own")] {
        publish_from(
            &mut state,
            "pub",
            inbound(topic, QoS::ExactlyOnce, packet_id, b"m"),
        );
    }
    let mut changes = Changes::default();
    let taken = state
        .take_deliverable(
            &sub,
            1,
            TakeLimits {
                window: 10,
                batch: 256,
                max_qos: &|_| QoS::ExactlyOnce,
            },
            |delivery: &Delivery, packet_id| {
                let renamed = delivery.message.topic.as_ref() == "t/renamed";
                let topic = match renamed {
                    true => format!("site-7/{}", delivery.message.topic),
                    false => delivery.message.topic.to_string(),
                };
                let packet = Packet::Publish(crate::codec::Publish {
                    dup: false,
                    qos: delivery.qos,
                    retain: false,
                    topic: topic.clone(),
                    packet_id,
                    properties: Properties::default(),
                    payload: delivery.message.payload.clone(),
                });
                Ok(match renamed {
                    true => Prepared {
                        packet,
                        sent_topic: Some(Arc::from(topic)),
                    },
                    false => Prepared::under_own_topic(packet),
                })
            },
            &mut changes,
        )
        .expect("attached");
    assert_eq!(packet_ids(&taken), [1, 2]);
    let recorded: Vec<Option<&str>> = changes
        .ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Inflight { sent_topic, .. } => Some(sent_topic.as_deref()),
            _ => None,
        })
        .collect();
    assert_eq!(recorded, [Some("site-7/t/renamed"), None]);
    let window: Vec<Option<Arc<str>>> = state
        .inflight_of(&sub)
        .into_iter()
        .map(|entry| entry.sent_topic)
        .collect();
    assert_eq!(window, [Some(Arc::from("site-7/t/renamed")), None]);
}

/// QoS 1 outbound [MQTT-4.3.2-1]: routed into the queue (stored), taken into the window
/// under a packet identifier (recorded inflight, not awaited), gone with the PUBACK.
#[test]
fn qos1_delivery_is_queued_sent_and_acknowledged() {
    let mut state = state();
    let sub = subscriber(&mut state, "sub", "t/#", QoS::AtLeastOnce);
    let routed = publish_from(
        &mut state,
        "pub",
        inbound("t/1", QoS::AtLeastOnce, 1, b"one"),
    );
    assert!(routed.matched);
    assert_eq!(kinds(&routed), ["enqueue"]);

    let (taken, changes) = take(&mut state, &sub, 10);
    assert_eq!(packet_ids(&taken), [1]);
    assert!(!taken.await_commit, "a QoS 1 send waits for nothing");
    assert_eq!(kinds(&changes), ["inflight"]);
    assert_eq!(changes.pace, crate::store::Pace::Window);

    let mut changes = Changes::default();
    assert!(!state.complete_outbound(&sub, 1, OutboundState::AwaitingPubComp, &mut changes));
    assert!(state.complete_outbound(&sub, 1, OutboundState::AwaitingPubAck, &mut changes));
    assert_eq!(kinds(&changes), ["acked"]);
    assert!(state.inflight_of(&sub).is_empty());
    assert!(!state.complete_outbound(&sub, 1, OutboundState::AwaitingPubAck, &mut changes));
}

/// A connected session whose only message was delivered and acknowledged gives back its
/// queue's box and its window's buffer when its connection goes idle, and takes them up again
/// for the next message.
#[test]
fn an_idle_connection_gives_back_its_empty_queue_and_window() {
    let mut state = state();
    let sub = subscriber(&mut state, "sub", "t/#", QoS::AtLeastOnce);
    for packet_id in [1, 2] {
        publish_from(
            &mut state,
            "pub",
            inbound("t/1", QoS::AtLeastOnce, packet_id, b"one"),
        );
        let (taken, _) = take(&mut state, &sub, 10);
        let sent = packet_ids(&taken)[0];
        assert!(state.complete_outbound(
            &sub,
            sent,
            OutboundState::AwaitingPubAck,
            &mut Changes::default()
        ));
        let session = &state.sessions[&sub].session;
        assert!(session.queue.is_boxed() && session.inflight.capacity() > 0);
        state.connection_idle(&sub);
        let session = &state.sessions[&sub].session;
        assert!(!session.queue.is_boxed(), "the queue's box is given back");
        assert_eq!(session.inflight.capacity(), 0, "the window's buffer too");
    }
}

/// QoS 2 outbound [MQTT-4.3.3-3] [MQTT-4.3.3-5]: the send is recorded before the PUBLISH goes
/// out, PUBREC turns it into a released flow committed at once (its PUBREL is held back
/// until then), PUBCOMP ends it.
#[test]
fn qos2_delivery_goes_through_pubrec_and_pubcomp() {
    let mut state = state();
    let sub = subscriber(&mut state, "sub", "t", QoS::ExactlyOnce);
    publish_from(&mut state, "pub", inbound("t", QoS::ExactlyOnce, 5, b"two"));
    let (taken, changes) = take(&mut state, &sub, 10);
    assert_eq!(packet_ids(&taken), [1]);
    assert!(taken.await_commit, "a QoS 2 send waits for its record");
    assert_eq!(changes.pace, crate::store::Pace::Now);

    let mut changes = Changes::default();
    assert!(
        !state.complete_outbound(&sub, 1, OutboundState::AwaitingPubComp, &mut changes),
        "PUBCOMP before PUBREC is not for this flow"
    );
    assert!(state.outbound_received(&sub, 1, &mut changes));
    assert_eq!(kinds(&changes), ["released"]);
    assert_eq!(changes.pace, crate::store::Pace::Now);
    assert!(
        !state.outbound_received(&sub, 1, &mut Changes::default()),
        "once"
    );
    assert_eq!(
        state.inflight_of(&sub)[0].state,
        OutboundState::AwaitingPubComp
    );

    let mut changes = Changes::default();
    assert!(state.complete_outbound(&sub, 1, OutboundState::AwaitingPubComp, &mut changes));
    assert_eq!(kinds(&changes), ["acked"]);
}

/// QoS 2 inbound [MQTT-4.3.3-10]: after the PUBLISH the packet identifier awaits PUBREL, a
/// repeat is recognised and not routed, PUBREL ends the flow once [MQTT-4.3.3-11].
#[test]
fn qos2_inbound_flow_awaits_pubrel_once() {
    let mut state = state();
    let publisher: Arc<str> = Arc::from("pub");
    attach(&mut state, &publisher, 1, true, 100, None);
    assert!(!state.inbound_flows(&publisher, 7).expect("attached").repeat);
    let changes = publish_from(&mut state, "pub", inbound("t", QoS::ExactlyOnce, 7, b"x"));
    assert!(!changes.matched);
    assert_eq!(kinds(&changes), ["inbound awaiting"]);
    let flows = state.inbound_flows(&publisher, 7).expect("attached");
    assert_eq!((flows.repeat, flows.awaiting_release), (true, 1));

    let mut changes = Changes::default();
    assert!(state.release_inbound(&publisher, 7, &mut changes));
    assert_eq!(kinds(&changes), ["inbound released"]);
    assert!(!state.release_inbound(&publisher, 7, &mut Changes::default()));
    assert_eq!(
        state
            .inbound_flows(&publisher, 7)
            .expect("attached")
            .awaiting_release,
        0
    );
}

/// Each delivery goes out at no more than its own cap (a bridge's `out` rule for its topic
/// lowered since it was queued), and its flow is that QoS's: the capped one awaits a PUBACK,
/// the other a PUBREC.
#[test]
fn each_delivery_goes_out_at_no_more_than_its_cap() {
    let mut state = state();
    let sub = subscriber(&mut state, "sub", "t/#", QoS::ExactlyOnce);
    for (packet_id, topic) in [(1, "t/lowered"), (2, "t/kept")] {
        publish_from(
            &mut state,
            "pub",
            inbound(topic, QoS::ExactlyOnce, packet_id, b"x"),
        );
    }
    let cap = |delivery: &Delivery| match &*delivery.message.topic {
        "t/lowered" => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let (taken, _) = take_capped(&mut state, &sub, 10, &cap);
    let qos: Vec<QoS> = taken
        .packets
        .iter()
        .map(|packet| match packet {
            Packet::Publish(publish) => publish.qos,
            other => panic!("a PUBLISH, not {other:?}"),
        })
        .collect();
    assert_eq!(qos, [QoS::AtLeastOnce, QoS::ExactlyOnce]);
    let states: Vec<OutboundState> = state
        .inflight_of(&sub)
        .iter()
        .map(|entry| entry.state)
        .collect();
    assert_eq!(
        states,
        [OutboundState::AwaitingPubAck, OutboundState::AwaitingPubRec]
    );
}

/// [MQTT-4.9.0-2] [MQTT-4.6.0-6]: no more than the window is taken, in queue order; an ack
/// makes room for the next.
#[test]
fn the_window_bounds_what_is_taken_and_order_is_kept() {
    let mut state = state();
    let sub = subscriber(&mut state, "sub", "t", QoS::AtLeastOnce);
    for payload in [b"1", b"2", b"3"] {
        publish_from(
            &mut state,
            "pub",
            inbound("t", QoS::AtLeastOnce, 1, payload),
        );
    }
    let (taken, _) = take(&mut state, &sub, 2);
    assert_eq!(packet_ids(&taken), [1, 2]);
    let (taken, _) = take(&mut state, &sub, 2);
    assert!(taken.packets.is_empty(), "the window is full");
    state.complete_outbound(
        &sub,
        1,
        OutboundState::AwaitingPubAck,
        &mut Changes::default(),
    );
    let (taken, _) = take(&mut state, &sub, 2);
    let Packet::Publish(third) = &taken.packets[0] else {
        panic!("a PUBLISH")
    };
    assert_eq!(&third.payload[..], b"3");
}

/// A session that ends with its connection keeps nothing in the store: its flows record no
/// store operation.
#[test]
fn a_session_without_expiry_records_no_flow() {
    let mut state = state();
    let sub: Arc<str> = Arc::from("sub");
    attach(&mut state, &sub, 1, true, 0, None);
    let mut changes = Changes::default();
    let options = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    state.subscribe_to(&sub, &Arc::from("t"), options, None, &mut changes);
    let routed = publish_from(&mut state, "pub", inbound("t", QoS::ExactlyOnce, 1, b"x"));
    let (_, taken_changes) = take(&mut state, &sub, 10);
    state.outbound_received(&sub, 1, &mut changes);
    state.complete_outbound(&sub, 1, OutboundState::AwaitingPubComp, &mut changes);
    assert!(changes.ops.is_empty(), "{:?}", changes.ops);
    assert!(routed.ops.is_empty() && taken_changes.ops.is_empty());
}

/// [MQTT-3.1.4-3]: a second connection for the client id takes the session over: the first
/// is told to close with 0x8E and can no longer take from the session's queue.
#[test]
fn takeover_closes_the_old_connection_and_moves_the_session() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    let first = link(1);
    let request = AttachRequest {
        client_id: client.clone(),
        clean_start: false,
        expiry_interval: 100,
        will: None,
        username: None,
        link: first.clone(),
    };
    assert!(
        !state
            .attach(request, &mut Changes::default())
            .session_present
    );
    assert!(
        attach(&mut state, &client, 2, false, 100, None),
        "Session Present 1"
    );
    assert_eq!(
        first.signal.close_reason(),
        Some(ReasonCode::SessionTakenOver)
    );
    let taken = state.take_deliverable(
        &client,
        1,
        TakeLimits {
            window: 10,
            batch: 256,
            max_qos: &|_| QoS::ExactlyOnce,
        },
        |_, _| Err("unused"),
        &mut Changes::default(),
    );
    assert_eq!(taken.err(), Some(Gone));
    assert_eq!(
        detach(&mut state, &client, 1).expiry,
        None,
        "the old end is ignored"
    );
}

/// A state whose every queue refuses (refuse_newest, no room), with subscriber "sub" on "t"
/// at `qos`, and the publisher "pub" attached.
fn refusing_everywhere(qos: QoS) -> (State, Arc<str>) {
    let mut state = State::new(
        QueueLimits {
            max_messages: 0,
            max_bytes: u64::MAX,
            policy: QueueFullPolicy::RefuseNewest,
            queue_qos0_offline: false,
        },
        QueueBudget::new(u64::MAX),
    );
    subscriber(&mut state, "sub", "t", qos);
    let publisher: Arc<str> = Arc::from("pub");
    attach(&mut state, &publisher, 2, true, 100, None);
    (state, publisher)
}

/// With refuse_newest and every queue full, a retained message is still taken as its topic's
/// retained message: not refused (0x97 would tell the publisher it was not taken).
#[test]
fn a_retained_message_every_queue_refuses_is_retained_and_not_refused() {
    let (mut state, publisher) = refusing_everywhere(QoS::AtLeastOnce);
    let mut retained = inbound("t", QoS::AtLeastOnce, 1, b"x");
    retained.publish.retain = true;
    let mut changes = Changes::default();
    let published = state
        .publish(&publisher, retained, &mut changes)
        .expect("attached");
    assert!(changes.refused_everywhere(), "every queue refused it");
    assert!(!published.refused_everywhere, "{published:?}");
    assert!(state.retained.contains_key("t"));
}

/// With refuse_newest and a full queue, a v5 QoS 2 flow ends at its refused PUBREC (0x97): no
/// PUBREL is awaited; a 3.1.1 flow, which cannot be told, goes on.
#[test]
fn a_refused_qos2_message_ends_its_flow_only_where_the_refusal_is_told() {
    let (mut state, publisher) = refusing_everywhere(QoS::ExactlyOnce);
    let mut told = inbound("t", QoS::ExactlyOnce, 1, b"x");
    told.refusal_ends_flow = true;
    let mut changes = Changes::default();
    let published = state
        .publish(&publisher, told, &mut changes)
        .expect("attached");
    assert!(published.refused_everywhere);
    assert!(!state.inbound_flows(&publisher, 1).expect("attached").repeat);

    let mut untold = inbound("t", QoS::ExactlyOnce, 2, b"x");
    untold.refusal_ends_flow = false;
    state
        .publish(&publisher, untold, &mut changes)
        .expect("attached");
    assert!(state.inbound_flows(&publisher, 2).expect("attached").repeat);
}

/// The CONNACK waits for the commit only where a crash could take back what it says: a
/// discarded session (Clean Start over a stored one) or a stored Will. A new session or a
/// resumed one is acknowledged at once.
#[test]
fn the_connack_waits_for_the_commit_only_where_a_crash_could_undo_it() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    let attach_with = |state: &mut State, connection_id, clean_start, will| {
        let request = AttachRequest {
            client_id: client.clone(),
            clean_start,
            expiry_interval: 100,
            will,
            username: None,
            link: link(connection_id),
        };
        let mut changes = Changes::default();
        let attached = state.attach(request, &mut changes);
        assert!(
            !changes.ops.is_empty(),
            "the session is stored all the same"
        );
        attached
    };
    let new = attach_with(&mut state, 1, false, None);
    assert!(!new.session_present && !new.connack_waits, "new: {new:?}");
    let resumed = attach_with(&mut state, 2, false, None);
    assert!(
        resumed.session_present && !resumed.connack_waits,
        "resumed: {resumed:?}"
    );
    let discarded = attach_with(&mut state, 3, true, None);
    assert!(
        !discarded.session_present && discarded.connack_waits,
        "discarded: {discarded:?}"
    );
    let with_will = attach_with(&mut state, 4, false, Some(will("wills/w", 0)));
    assert!(with_will.connack_waits, "with a Will: {with_will:?}");
}

/// MQTT 5 §3.1.2.11.2: a stored session resumed with a Session Expiry Interval of 0 is
/// rewritten with that interval and without its Will, so a restart ends it; the CONNACK waits
/// for that, as a crash could otherwise take it back. The store keeps it meanwhile.
#[test]
fn a_stored_session_resumed_to_end_with_its_connection_is_rewritten_so() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    resume_recording(&mut state, &client, 1, 100);
    detach(&mut state, &client, 1);
    let (attached, ops) = resume_recording(&mut state, &client, 2, 0);
    assert!(
        attached.session_present && attached.connack_waits,
        "{attached:?}"
    );
    assert!(
        matches!(
            ops.as_slice(),
            [
                StoreOp::PutSession {
                    expiry_interval: 0,
                    ..
                },
                StoreOp::Will { will: None, .. }
            ]
        ),
        "{ops:?}"
    );
    // Kept in the store until it ends with its connection: a takeover that asks for an
    // interval again finds no session to resume, and the stored one is deleted.
    assert!(state.sessions[&client].session.is_stored());
    let (attached, ops) = resume_recording(&mut state, &client, 3, 100);
    assert!(!attached.session_present, "{attached:?}");
    assert!(
        matches!(ops.first(), Some(StoreOp::DeleteSession { .. })),
        "{ops:?}"
    );
}

/// [MQTT-3.1.2-6] (3.1.1), MQTT 5 §3.1.2.11.2: a session with an interval of 0 ends with its
/// connection; a takeover asking to resume it (Clean Start 0) gets a new session, without the
/// old one's subscription.
#[test]
fn a_session_that_ends_with_its_connection_is_not_resumed_by_a_takeover() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    attach(&mut state, &client, 1, true, 0, None);
    state.subscribe_to(
        &client,
        &Arc::from("t"),
        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        None,
        &mut Changes::default(),
    );
    let (attached, _) = resume_recording(&mut state, &client, 2, 100);
    assert!(!attached.session_present, "{attached:?}");
    assert!(state.sessions[&client].session.subscriptions.is_empty());
}

/// A queue entry of a session that outlives its connection records when it was queued (a
/// bridge reports its age); one of a session that ends with its connection does not, and a
/// routing pass reads the clock only for the former.
#[test]
fn only_queues_that_outlive_their_connection_record_when_an_entry_was_queued() {
    let mut state = state();
    let kept = subscriber(&mut state, "kept", "t/#", QoS::AtLeastOnce);
    let passing: Arc<str> = Arc::from("passing");
    attach(&mut state, &passing, 2, true, 0, None);
    subscribe(&mut state, &passing, "t/#");
    let before = crate::model::unix_seconds(SystemTime::now());
    publish_from(&mut state, "pub", inbound("t/x", QoS::AtLeastOnce, 1, b"x"));
    let queued_at = |client: &Arc<str>| {
        state.sessions[client]
            .session
            .queue
            .front()
            .expect("queued")
            .delivery
            .queued_at
    };
    assert!(
        queued_at(&kept) >= before,
        "the persistent session's entry has its time"
    );
    assert_eq!(queued_at(&passing), 0, "the passing session's has none");
}

/// A bridge session as the configuration opens it: bounds of its own, its `out` filters with
/// No Local and Retain As Published.
fn bridge_session(name: &str, max_messages: usize, filters: &[&str]) -> BridgeSession {
    let options = SubscriptionOptions {
        no_local: true,
        retain_as_published: true,
        retain_handling: 1,
        ..SubscriptionOptions::with_qos(QoS::ExactlyOnce)
    };
    BridgeSession {
        client_id: Arc::from(format!("{BRIDGE_SESSION_PREFIX}{name}")),
        limits: QueueLimits {
            max_messages,
            max_bytes: u64::MAX,
            policy: QueueFullPolicy::DropOldest,
            queue_qos0_offline: false,
        },
        in_memory_bytes: u64::MAX,
        subscriptions: filters
            .iter()
            .map(|filter| (Arc::from(*filter), options))
            .collect(),
    }
}

fn filters_of(state: &State, client: &str) -> Vec<String> {
    let mut filters: Vec<String> = state
        .session(client)
        .map(|session| {
            session
                .subscriptions
                .keys()
                .map(|f| f.to_string())
                .collect()
        })
        .unwrap_or_default();
    filters.sort();
    filters
}

/// Opening the bridges makes their sessions match the configuration: created never to
/// expire, subscribed to exactly the configured filters, and the session of a bridge no
/// longer configured ended (reported with what it held).
#[test]
fn bridge_sessions_follow_the_configuration() {
    let mut state = state();
    let mut changes = Changes::default();
    let first = bridge_session("cloud", 10, &["a/#", "b/#"]);
    let opened = state.open_bridges(std::slice::from_ref(&first), &mut changes);
    assert!(opened.removed.is_empty());
    let session = state.session("$bridge/cloud").expect("created");
    assert_eq!(session.expiry_interval, u32::MAX, "never expires");
    assert_eq!(filters_of(&state, "$bridge/cloud"), ["a/#", "b/#"]);

    publish_from(&mut state, "pub", inbound("b/1", QoS::AtLeastOnce, 1, b"x"));
    let second = bridge_session("cloud", 10, &["a/#", "c/#"]);
    state.open_bridges(&[second], &mut Changes::default());
    assert_eq!(filters_of(&state, "$bridge/cloud"), ["a/#", "c/#"]);
    assert_eq!(queued_for(&state, &first.client_id), 1, "the queue is kept");

    let opened = state.open_bridges(&[], &mut changes);
    assert_eq!(opened.removed, [(first.client_id.clone(), 1)]);
    assert!(state.session("$bridge/cloud").is_none());
}

/// A bridge's session holds messages in memory up to its `in_memory_bytes` while no uplink is
/// attached (every one stored all the same), and the rest on disk only; a larger bound from a
/// reopen never puts a new message in memory ahead of older ones on disk.
#[test]
fn a_bridge_holds_its_backlog_in_memory_while_its_uplink_is_down() {
    let mut state = state();
    let mut bridge = bridge_session("cloud", 10_000, &["t/#"]);
    // Each message: "t/x" and "x", plus the overhead counted per entry.
    let held = 4 + crate::broker::queue::ENTRY_OVERHEAD;
    bridge.in_memory_bytes = 300 * held;
    state.open_bridges(std::slice::from_ref(&bridge), &mut Changes::default());
    let mut enqueued = 0;
    for n in 0..400u16 {
        let changes = publish_from(
            &mut state,
            "pub",
            inbound("t/x", QoS::AtLeastOnce, n + 1, b"x"),
        );
        enqueued += kinds(&changes)
            .iter()
            .filter(|kind| **kind == "enqueue")
            .count();
    }
    assert_eq!(enqueued, 400, "every message is stored");
    let in_memory = |state: &State| {
        state
            .session(&bridge.client_id)
            .expect("the bridge's session")
            .queue
            .in_memory()
    };
    assert_eq!(queued_for(&state, &bridge.client_id), 400);
    assert_eq!(in_memory(&state), 300, "no uplink, yet 300 held in memory");

    bridge.in_memory_bytes = 1_000 * held;
    state.open_bridges(std::slice::from_ref(&bridge), &mut Changes::default());
    publish_from(&mut state, "pub", inbound("t/x", QoS::AtLeastOnce, 1, b"x"));
    assert_eq!(
        in_memory(&state),
        300,
        "behind entries on disk only, a new one joins them there, in order"
    );
}

/// A bridge's queue has its own bounds, and counts what they drop.
#[test]
fn a_bridge_queue_has_its_own_bounds_and_counts_its_drops() {
    let mut state = state();
    let bridge = bridge_session("cloud", 2, &["t/#"]);
    state.open_bridges(std::slice::from_ref(&bridge), &mut Changes::default());
    for n in 0..5 {
        publish_from(
            &mut state,
            "pub",
            inbound("t/x", QoS::AtLeastOnce, n + 1, b"x"),
        );
    }
    assert_eq!(queued_for(&state, &bridge.client_id), 2);
    assert_eq!(state.bridge_dropped(&bridge.client_id), 3);
}

/// A bridge queue is bounded by its own limits, not by the byte budget clients' queues share:
/// with that budget spent, clients' queues refuse messages but the bridge's still takes them
/// (the bytes a bridge queue held before it was opened move off the shared budget).
#[test]
fn a_bridge_queue_does_not_draw_on_the_shared_budget() {
    let budget = QueueBudget::new(10);
    let mut state = State::new(
        QueueLimits {
            max_messages: 1000,
            max_bytes: u64::MAX,
            policy: QueueFullPolicy::RefuseNewest,
            queue_qos0_offline: false,
        },
        budget.clone(),
    );
    let offline = subscriber(&mut state, "offline", "t/#", QoS::AtLeastOnce);
    detach(&mut state, &offline, 1);
    let bridge = bridge_session("cloud", 100, &["t/#"]);
    state.open_bridges(std::slice::from_ref(&bridge), &mut Changes::default());
    for n in 0..5 {
        publish_from(
            &mut state,
            "pub",
            inbound("t/x", QoS::AtLeastOnce, n + 1, b"payload"),
        );
    }
    assert_eq!(
        queued_for(&state, &offline),
        1,
        "the shared 10 bytes hold one entry"
    );
    assert_eq!(
        queued_for(&state, &bridge.client_id),
        5,
        "the bridge holds all five"
    );
    assert!(budget.used() <= 10);
}

/// An upstream that lost the bridge's session: a QoS 2 message past PUBREC is the server's
/// own and leaves the window (recorded acked); the rest stay to be sent again; inbound QoS 2
/// flows are forgotten, so a reused packet identifier is not taken for a repeat.
#[test]
fn an_upstream_that_lost_the_session_keeps_what_it_never_took() {
    let mut state = state();
    let bridge = bridge_session("cloud", 100, &["t/#"]);
    state.open_bridges(std::slice::from_ref(&bridge), &mut Changes::default());
    let client = bridge.client_id.clone();
    attach(&mut state, &client, 1, false, u32::MAX, None);
    for n in 0..2 {
        publish_from(
            &mut state,
            "pub",
            inbound("t/x", QoS::ExactlyOnce, n + 1, b"x"),
        );
    }
    let (taken, _) = take(&mut state, &client, 10);
    assert_eq!(packet_ids(&taken), [1, 2]);
    assert!(state.outbound_received(&client, 1, &mut Changes::default()));
    state
        .publish(
            &client,
            inbound("in/x", QoS::ExactlyOnce, 7, b"down"),
            &mut Changes::default(),
        )
        .expect("attached");
    assert!(state.inbound_flows(&client, 7).expect("attached").repeat);

    let mut changes = Changes::default();
    assert_eq!(
        state.upstream_session_lost(&client, &mut changes),
        1,
        "the message the server took (PUBREC) counts as sent"
    );
    assert_eq!(kinds(&changes), ["acked", "inbound released"]);
    let left: Vec<u16> = state
        .inflight_of(&client)
        .iter()
        .map(|e| e.packet_id)
        .collect();
    assert_eq!(left, [2], "the message the server never acknowledged stays");
    assert!(!state.inbound_flows(&client, 7).expect("attached").repeat);
}

/// The signal of `client`'s attached connection.
fn signal_of(state: &State, client: &str) -> Arc<ConnectionSignal> {
    let slot = state.sessions.get(client).expect("a session");
    slot.link.as_ref().expect("attached").signal.clone()
}

// [MQTT-3.1.2-24] The keep-alive sweep's selection: only attached connections whose deadline
// has passed are asked to close, with 0x8D; a detached session has no connection to close.
#[test]
fn only_connections_past_their_deadline_are_closed_for_keep_alive() {
    let mut state = state();
    let (silent, talking, gone): (Arc<str>, Arc<str>, Arc<str>) =
        ("silent".into(), "talking".into(), "gone".into());
    attach(&mut state, &silent, 1, false, 60, None);
    attach(&mut state, &talking, 2, false, 60, None);
    attach(&mut state, &gone, 3, false, 60, None);
    let keep_alive = std::time::Duration::from_millis(1_500);
    signal_of(&state, &silent).heard_at(0, keep_alive);
    signal_of(&state, &talking).heard_at(1_000, keep_alive);
    signal_of(&state, &gone).heard_at(0, keep_alive);
    detach(&mut state, &gone, 3);
    let silent_signal = signal_of(&state, &silent);
    let talking_signal = signal_of(&state, &talking);
    let closed = state.close_connections(|signal| {
        signal
            .deadline_passed(2_000)
            .then_some(ReasonCode::KeepAliveTimeout)
    });
    assert_eq!(closed, 1);
    assert_eq!(
        silent_signal.close_reason(),
        Some(ReasonCode::KeepAliveTimeout)
    );
    assert_eq!(talking_signal.close_reason(), None);
    let closed = state.close_connections(|_| Some(ReasonCode::ServerShuttingDown));
    assert_eq!(closed, 2, "a shutdown closes every attached connection");
    assert_eq!(
        talking_signal.close_reason(),
        Some(ReasonCode::ServerShuttingDown)
    );
}

/// A CONNACK that waits for its commit (a Will stored, a stored session discarded by Clean
/// Start) asks for it at once; a new session's, which does not wait, leaves it to the window.
#[test]
fn only_a_waiting_connack_asks_for_an_urgent_commit() {
    let mut state = state();
    let pace_of = |state: &mut State, client: &str, clean_start: bool, will: Option<Box<Will>>| {
        let mut changes = Changes::default();
        let request = AttachRequest {
            client_id: Arc::from(client),
            clean_start,
            expiry_interval: 60,
            will,
            username: None,
            link: link(1),
        };
        let attached = state.attach(request, &mut changes);
        (attached.connack_waits, changes.pace)
    };
    use crate::store::Pace;
    assert_eq!(
        pace_of(&mut state, "new", false, None),
        (false, Pace::Window)
    );
    assert_eq!(pace_of(&mut state, "new", true, None), (true, Pace::Now));
    let with_will = Some(will("wills/w", 0));
    assert_eq!(
        pace_of(&mut state, "willing", false, with_will),
        (true, Pace::Now)
    );
}

/// What a session costs its broker in memory besides its subscriptions and messages: an idle
/// device's session holds an empty queue (boxed only while used) and empty flows. It was 304
/// bytes with the queue's bookkeeping inline.
const SESSION_SLOT_BUDGET: usize = 168;

#[test]
fn an_idle_session_fits_its_budget() {
    let slot = std::mem::size_of::<SessionSlot>();
    assert!(
        slot <= SESSION_SLOT_BUDGET,
        "a session slot of {slot} bytes, over the budget of {SESSION_SLOT_BUDGET}"
    );
}

/// A retained message on `topic` (expired when `expired`).
fn retained_on(topic: &str, expired: bool) -> Arc<Message> {
    Arc::new(Message {
        id: 1,
        topic: Arc::from(topic),
        payload: Bytes::from_static(b"state"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: None,
        expires_at: expired.then(std::time::Instant::now),
        publisher: None,
    })
}

/// [MQTT-3.3.1-9] [MQTT-4.7.2-1]: a new subscription gets the retained messages its filter
/// matches, a plain filter (looked up by its topic) as well as a wildcard one (compared with
/// every retained topic); an expired one goes to nobody, and `$` topics only to filters that
/// do not start with a wildcard.
#[test]
fn a_new_subscription_gets_exactly_the_retained_messages_it_matches() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    let topics = ["a/b", "a/b/c", "a/x", "$SYS/uptime", "gone/away"];
    let mut retained: Vec<Arc<Message>> = topics
        .iter()
        .map(|topic| retained_on(topic, false))
        .collect();
    retained.push(retained_on("gone", true));
    let recovered = Recovered {
        sessions: vec![RecoveredSession::new(client.clone(), 60, None)],
        retained,
        next_message_id: 2,
    };
    state.restore(recovered, SystemTime::now(), &mut Changes::default());
    let mut received = |filter: &str| -> Vec<String> {
        let options = SubscriptionOptions::with_qos(QoS::AtMostOnce);
        let filter = Arc::from(filter);
        let deliveries =
            state.subscribe_to(&client, &filter, options, None, &mut Changes::default());
        assert!(deliveries
            .iter()
            .all(|d| d.retain && d.qos == QoS::AtMostOnce));
        let mut topics: Vec<String> = deliveries
            .iter()
            .map(|delivery| delivery.message.topic.to_string())
            .collect();
        topics.sort();
        topics
    };
    assert_eq!(received("a/b"), ["a/b"]);
    assert_eq!(received("a/b/c"), ["a/b/c"]);
    assert_eq!(received("a"), Vec::<String>::new());
    assert_eq!(received("gone"), Vec::<String>::new(), "expired");
    assert_eq!(received("$SYS/uptime"), ["$SYS/uptime"]);
    assert_eq!(received("a/+"), ["a/b", "a/x"]);
    assert_eq!(received("a/#"), ["a/b", "a/b/c", "a/x"]);
    assert_eq!(received("+/+"), ["a/b", "a/x", "gone/away"]);
    assert_eq!(received("#"), ["a/b", "a/b/c", "a/x", "gone/away"]);
    assert_eq!(received("$SYS/#"), ["$SYS/uptime"]);
}

/// A client subscribing again with the same options (most clients, on every reconnect)
/// changes nothing the store holds: no operation is recorded, and the change's acknowledgement
/// rests on the commit that wrote it. Other options, another identifier, or a store that has
/// failed a commit (whose disk may lack it) write the subscription again.
#[test]
fn an_unchanged_subscription_is_not_written_again() {
    let mut state = state();
    let client = subscriber(&mut state, "sensor", "cmd/sensor", QoS::AtLeastOnce);
    let filter: Arc<str> = Arc::from("cmd/sensor");
    let mut again = |options: SubscriptionOptions, identifier: Option<u32>, restate: bool| {
        let mut changes = Changes {
            restate,
            ..Changes::default()
        };
        state.subscribe_to(&client, &filter, options, identifier, &mut changes);
        let subscribes = changes
            .ops
            .iter()
            .filter(|op| matches!(op, StoreOp::Subscribe { .. }))
            .count();
        (subscribes, changes.rests_on_earlier)
    };
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    assert_eq!(
        again(qos1, None, false),
        (0, true),
        "unchanged: not written"
    );
    assert_eq!(
        again(qos1, None, true),
        (1, false),
        "after a failed commit: written"
    );
    let qos2 = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    assert_eq!(again(qos2, None, false), (1, false), "another QoS: written");
    assert_eq!(
        again(qos2, Some(7), false),
        (1, false),
        "an identifier: written"
    );
    assert_eq!(again(qos2, Some(7), false), (0, true), "unchanged again");

    // A session that ends with its connection is not stored: nothing to write or wait for.
    let passing: Arc<str> = Arc::from("passing");
    attach(&mut state, &passing, 2, true, 0, None);
    for _ in 0..2 {
        let mut changes = Changes::default();
        state.subscribe_to(&passing, &filter, qos1, None, &mut changes);
        assert!(changes.ops.is_empty() && !changes.rests_on_earlier);
    }
}

/// The topics waiting in `client`'s queue (in memory), oldest first.
fn queued_topics(state: &State, client: &str) -> Vec<String> {
    let session = state.session(client).expect("the session exists");
    session
        .queue
        .iter()
        .map(|queued| queued.delivery.message.topic.to_string())
        .collect()
}

/// MQTT 5 §4.8.2: when the session of a share group's member ends (here Session Expiry 0, its
/// connection lost) before it acknowledged what the group gave it, another member gets it: QoS
/// 1 sent and unacknowledged, QoS 2 awaiting PUBREC, and what was still queued, in that order.
/// Not a QoS 2 message it acknowledged with PUBREC, nor a second copy of a message it also got
/// through an ordinary subscription; the last member's end hands on nothing.
#[test]
fn what_a_share_group_gave_an_ending_member_goes_to_another_member() {
    let mut state = state();
    let shared: Arc<str> = Arc::from("$share/g/jobs/#");
    let worker = |state: &mut State, name: &str, connection_id: u64, expiry: u32| {
        let client: Arc<str> = Arc::from(name);
        attach(state, &client, connection_id, true, expiry, None);
        let options = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
        state.subscribe_to(&client, &shared, options, None, &mut Changes::default());
        client
    };
    let first = worker(&mut state, "first", 1, 0);
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let ordinary: Arc<str> = Arc::from("jobs/ordinary");
    state.subscribe_to(&first, &ordinary, options, None, &mut Changes::default());
    for (n, (topic, qos)) in [
        ("jobs/1", QoS::AtLeastOnce),
        ("jobs/2", QoS::ExactlyOnce),
        ("jobs/3", QoS::ExactlyOnce),
        ("jobs/4", QoS::AtLeastOnce),
        ("jobs/ordinary", QoS::AtLeastOnce),
    ]
    .into_iter()
    .enumerate()
    {
        publish_from(&mut state, "p", inbound(topic, qos, n as u16 + 1, b"job"));
    }
    let (taken, _) = take(&mut state, &first, 3);
    assert_eq!(packet_ids(&taken), [1, 2, 3]);
    assert!(state.outbound_received(&first, 3, &mut Changes::default()));

    let second = worker(&mut state, "second", 2, 100);
    let mut changes = Changes::default();
    state.detach(&first, 1, true, &mut changes);
    assert!(
        state.session("first").is_none(),
        "ended with its connection"
    );
    assert_eq!(
        queued_topics(&state, "second"),
        ["jobs/1", "jobs/2", "jobs/4", "jobs/ordinary"]
    );
    assert_eq!(
        changes
            .ops
            .iter()
            .filter(|op| matches!(op, StoreOp::Enqueue { client_id, .. } if *client_id == second))
            .count(),
        4,
        "stored for the persistent member"
    );

    attach(&mut state, &second, 3, true, 0, None);
    assert!(state
        .session("second")
        .is_some_and(|session| session.queue.is_empty()));
}

/// The queue of an ending member gives its bytes back to the shared budget before its
/// leftovers are queued for another member: a budget they filled takes them again.
#[test]
fn an_ending_members_leftovers_fit_in_the_budget_it_gives_back() {
    let limits = QueueLimits {
        max_messages: 1000,
        max_bytes: u64::MAX,
        policy: QueueFullPolicy::RefuseNewest,
        queue_qos0_offline: false,
    };
    // Two messages of "jobs/n" and "job": 9 bytes each.
    let mut state = State::new(limits, QueueBudget::new(18));
    let shared: Arc<str> = Arc::from("$share/g/jobs/#");
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let first: Arc<str> = Arc::from("first");
    attach(&mut state, &first, 1, true, 0, None);
    state.subscribe_to(&first, &shared, options, None, &mut Changes::default());
    for n in 1..=2 {
        let topic = format!("jobs/{n}");
        publish_from(
            &mut state,
            "p",
            inbound(&topic, QoS::AtLeastOnce, n, b"job"),
        );
    }
    assert_eq!(queued_topics(&state, "first"), ["jobs/1", "jobs/2"]);
    let second: Arc<str> = Arc::from("second");
    attach(&mut state, &second, 2, true, 0, None);
    state.subscribe_to(&second, &shared, options, None, &mut Changes::default());
    let mut changes = Changes::default();
    state.detach(&first, 1, true, &mut changes);
    assert_eq!(queued_topics(&state, "second"), ["jobs/1", "jobs/2"]);
    assert_eq!(changes.dropped, 0);
}

/// A SUBSCRIBE or UNSUBSCRIBE whose commit failed was refused to its client, so its changes
/// are undone: a new subscription goes, a replaced one gets its options and identifier back, a
/// removed one returns; messages route as before the request, and the store is handed the
/// restored rows (the failed commit may have reached the disk). A connection that no longer
/// holds the session restores nothing.
#[test]
fn subscriptions_refused_for_a_failed_commit_are_put_back() {
    let mut state = state();
    let client = subscriber(&mut state, "sensor", "cmd/kept", QoS::AtLeastOnce);
    let (kept, added): (Arc<str>, Arc<str>) = (Arc::from("cmd/kept"), Arc::from("cmd/added"));
    let qos2 = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    let subscriptions = |state: &State| {
        let session = state.session("sensor").expect("the session exists");
        [&kept, &added].map(|filter| session.subscriptions.get(filter).copied())
    };
    let as_before = subscriptions(&state);

    // SUBSCRIBE: one filter replaced (QoS 2, an identifier), one added; the commit fails.
    let before = state.subscriptions_before("sensor", [kept.clone(), added.clone()]);
    for filter in [&kept, &added] {
        state.subscribe_to(&client, filter, qos2, Some(9), &mut Changes::default());
    }
    let mut changes = Changes::default();
    state.restore_subscriptions(&client, 1, before, &mut changes);
    assert_eq!(subscriptions(&state), as_before);
    let restored: Vec<_> = changes
        .ops
        .iter()
        .map(|op| match op {
            StoreOp::Subscribe {
                filter, options, ..
            } => format!("subscribe {filter} {:?}", options.qos),
            StoreOp::Unsubscribe { filter, .. } => format!("unsubscribe {filter}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        restored,
        ["subscribe cmd/kept AtLeastOnce", "unsubscribe cmd/added"]
    );
    publish_from(
        &mut state,
        "p",
        inbound("cmd/added", QoS::AtLeastOnce, 1, b"x"),
    );
    assert_eq!(
        queued_for(&state, &client),
        0,
        "routed by a refused subscription"
    );
    publish_from(
        &mut state,
        "p",
        inbound("cmd/kept", QoS::ExactlyOnce, 2, b"x"),
    );
    let (taken, _) = take(&mut state, &client, 10);
    assert_eq!(taken.packets.len(), 1, "the kept subscription still routes");

    // UNSUBSCRIBE of the kept filter; the commit fails: it is subscribed again.
    let before = state.subscriptions_before("sensor", [kept.clone()]);
    assert!(state.unsubscribe_from(&client, &kept, &mut Changes::default()));
    state.restore_subscriptions(&client, 1, before, &mut Changes::default());
    assert_eq!(subscriptions(&state), as_before);

    // Taken over meanwhile: the old connection's failure is not the new session's business.
    let before = state.subscriptions_before("sensor", [added.clone()]);
    state.subscribe_to(&client, &added, qos2, None, &mut Changes::default());
    attach(&mut state, &client, 2, false, 100, None);
    let mut changes = Changes::default();
    state.restore_subscriptions(&client, 1, before, &mut changes);
    assert!(changes.ops.is_empty());
    assert!(
        subscriptions(&state)[1].is_some(),
        "undone by another connection"
    );
}

/// A resume writes the session's row (marked connected, so that after a crash its expiry and
/// Will Delay count from the restart) unless nothing would read it: a session that never
/// expires, had no Will and brings none, resumed as stored, writes nothing — a gateway's
/// sensors resuming after its reboot. A Will (old or new), another interval, or a session
/// that expires write the row as before.
#[test]
fn a_resume_writes_the_session_row_only_where_it_matters() {
    let mut state = state();
    let client: Arc<str> = Arc::from("sensor");
    attach(&mut state, &client, 1, true, u32::MAX, None);
    detach(&mut state, &client, 1);
    let (attached, ops) = resume_recording(&mut state, &client, 2, u32::MAX);
    assert!(attached.session_present);
    assert!(ops.is_empty(), "never expires, no Will: {ops:?}");
    let request = AttachRequest {
        client_id: client.clone(),
        clean_start: false,
        expiry_interval: u32::MAX,
        will: None,
        username: None,
        link: link(8),
    };
    let mut after_a_failed_commit = Changes {
        restate: true,
        ..Changes::default()
    };
    state.attach(request, &mut after_a_failed_commit);
    assert!(
        after_a_failed_commit
            .ops
            .iter()
            .any(|op| matches!(op, StoreOp::PutSession { .. })),
        "after a failed commit the row is written again"
    );

    let (_, ops) = resume_recording(&mut state, &client, 3, 3600);
    assert!(
        ops.iter().any(|op| matches!(
            op,
            StoreOp::PutSession {
                expiry_interval: 3600,
                ..
            }
        )),
        "another interval is written: {ops:?}"
    );
    let (_, ops) = resume_recording(&mut state, &client, 4, 3600);
    assert!(
        ops.iter()
            .any(|op| matches!(op, StoreOp::PutSession { .. })),
        "a session that expires is marked connected: {ops:?}"
    );

    let willing: Arc<str> = Arc::from("willing");
    attach(
        &mut state,
        &willing,
        5,
        true,
        u32::MAX,
        Some(will("gone/willing", 60)),
    );
    detach(&mut state, &willing, 5);
    let (_, ops) = resume_recording(&mut state, &willing, 6, u32::MAX);
    assert!(
        ops.iter()
            .any(|op| matches!(op, StoreOp::Will { will: None, .. })),
        "the old Will is cleared in the store: {ops:?}"
    );
    let (_, ops) = resume_recording(&mut state, &willing, 7, u32::MAX);
    assert!(ops.is_empty(), "and then nothing: {ops:?}");
}
