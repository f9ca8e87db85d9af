//! The topic each message in flight upstream went out under, by packet identifier. A message
//! resent after a reconnect must be the PUBLISH first sent, DUP set [MQTT-4.4.0-1]: the server
//! may hold it already (a QoS 2 message whose PUBREC was lost) and knows it by its packet
//! identifier. A reload that changes the `out` rules' prefixes restarts the bridge; its resends
//! keep the topic they went out with, and only messages sent from then on take the new one.
//! Kept across the restarts a reload makes (with the bridge's counters), not across a broker
//! restart, after which the rules in force at start name the resends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Remote topics of the messages in flight, by packet identifier.
#[derive(Debug, Default)]
pub struct SentTopics(Mutex<HashMap<u16, Arc<str>>>);

impl SentTopics {
    fn lock(&self) -> MutexGuard<'_, HashMap<u16, Arc<str>>> {
        // A panic while holding it leaves a map of topics, never a broken invariant.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Message `packet_id` went out under `topic`.
    pub fn record(&self, packet_id: u16, topic: &str) {
        self.lock().insert(packet_id, Arc::from(topic));
    }

    /// The topic message `packet_id` went out under, if it is recorded.
    pub fn topic(&self, packet_id: u16) -> Option<Arc<str>> {
        self.lock().get(&packet_id).cloned()
    }

    /// The server has message `packet_id` (PUBACK, PUBREC) or refused it: it is never
    /// published again.
    pub fn forget(&self, packet_id: u16) {
        self.lock().remove(&packet_id);
    }

    /// Keeps only the messages of `in_flight` (a new connection's window): the others' flows
    /// ended while no connection saw it (a session lost upstream, entries dropped). Sorted
    /// first: a window may hold 65,535 messages.
    pub fn keep_only(&self, mut in_flight: Vec<u16>) {
        in_flight.sort_unstable();
        self.lock()
            .retain(|packet_id, _| in_flight.binary_search(packet_id).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_kept_until_forgotten_or_out_of_the_window() {
        let sent = SentTopics::default();
        sent.record(1, "a/1");
        sent.record(2, "a/2");
        sent.record(3, "a/3");
        sent.forget(1);
        assert_eq!(sent.topic(1), None);
        sent.keep_only(vec![3]);
        assert_eq!(sent.topic(2), None);
        assert_eq!(sent.topic(3).as_deref(), Some("a/3"));
    }
}
