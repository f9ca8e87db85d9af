//! Outbound Topic Aliases of one connection, either side: the topic names we have given an
//! alias, within the Topic Alias Maximum the receiver announced [MQTT-3.3.2-11]. Used for
//! PUBLISHes to a client and by the bridge towards its upstream.

use std::collections::HashMap;
use std::sync::Arc;

use crate::codec::Publish;

/// The aliases one connection assigned, and how many the receiver accepts.
#[derive(Debug, Default)]
pub struct OutboundAliases {
    assigned: HashMap<Arc<str>, u16>,
    /// The receiver's Topic Alias Maximum; 0 turns aliases off.
    maximum: u16,
}

impl OutboundAliases {
    /// No alias assigned yet, at most `maximum` of them.
    pub fn new(maximum: u16) -> OutboundAliases {
        OutboundAliases {
            assigned: HashMap::new(),
            maximum,
        }
    }

    /// Replaces the topic with an alias the receiver already knows (a shorter PUBLISH), or
    /// assigns a new one, sent with the topic, while the maximum allows and the PUBLISH with
    /// the alias still `fits` (within the receiver's Maximum Packet Size [MQTT-3.1.2-24]);
    /// otherwise it goes as it is.
    pub fn apply(&mut self, publish: &mut Publish, fits: impl Fn(&Publish) -> bool) {
        if self.maximum == 0 {
            return;
        }
        if let Some(alias) = self.assigned.get(publish.topic.as_str()) {
            publish.properties.topic_alias = Some(*alias);
            publish.topic.clear();
            return;
        }
        let used = self.assigned.len();
        if used < usize::from(self.maximum) {
            let alias = (used + 1) as u16;
            publish.properties.topic_alias = Some(alias);
            if fits(publish) {
                self.assigned
                    .insert(Arc::from(publish.topic.as_str()), alias);
            } else {
                publish.properties.topic_alias = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;

    fn publish(topic: &str) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.to_string(),
            packet_id: None,
            properties: Default::default(),
            payload: Default::default(),
        }
    }

    #[test]
    fn a_known_topic_goes_as_its_alias_alone() {
        let mut aliases = OutboundAliases::new(2);
        let mut first = publish("a/b");
        aliases.apply(&mut first, |_| true);
        assert_eq!(
            (first.topic.as_str(), first.properties.topic_alias),
            ("a/b", Some(1))
        );
        let mut again = publish("a/b");
        aliases.apply(&mut again, |_| true);
        assert_eq!(
            (again.topic.as_str(), again.properties.topic_alias),
            ("", Some(1))
        );
    }

    #[test]
    fn no_alias_beyond_the_maximum_or_when_off() {
        let mut aliases = OutboundAliases::new(1);
        let mut first = publish("a");
        aliases.apply(&mut first, |_| true);
        let mut second = publish("b");
        aliases.apply(&mut second, |_| true);
        assert_eq!(
            (second.topic.as_str(), second.properties.topic_alias),
            ("b", None)
        );
        let mut off = OutboundAliases::new(0);
        let mut third = publish("c");
        off.apply(&mut third, |_| true);
        assert_eq!(third.properties.topic_alias, None);
    }

    /// A new alias that would make the PUBLISH too large is not assigned: the message goes
    /// without one, and the next message on the topic may still get one.
    #[test]
    fn no_new_alias_where_it_does_not_fit() {
        let mut aliases = OutboundAliases::new(2);
        let mut tight = publish("a/b");
        aliases.apply(&mut tight, |with| with.properties.topic_alias.is_none());
        assert_eq!(
            (tight.topic.as_str(), tight.properties.topic_alias),
            ("a/b", None)
        );
        let mut roomy = publish("a/b");
        aliases.apply(&mut roomy, |_| true);
        assert_eq!(
            (roomy.topic.as_str(), roomy.properties.topic_alias),
            ("a/b", Some(1))
        );
    }
}
