//! The shared state without sockets: session timers tied to the one attachment they were armed
//! for, across Clean Start, resumption, takeover and restarts.

use std::sync::Arc;

use bytes::Bytes;

use std::time::SystemTime;

use super::*;
use crate::codec::{Properties, QoS, SubscriptionOptions};
use crate::config::QueueFullPolicy;
use crate::model::{Recovered, RecoveredSession};

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
        link: link(connection_id),
    };
    state.attach(request, &mut Changes::default())
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
        sessions: vec![RecoveredSession {
            client_id: client.clone(),
            expiry_interval: 60,
            offline_since: Some(SystemTime::now()),
            subscriptions: Vec::new(),
            queue: Vec::new(),
            next_sequence: 0,
            inflight: Vec::new(),
            inbound_qos2: Vec::new(),
            will: None,
        }],
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
            .contains_key("readings/#"),
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
