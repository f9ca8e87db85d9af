//! The subscription index: every subscription of every session, arranged so that finding the
//! ones matching a topic costs in proportion to the topic's levels and the matches, not to the
//! number of subscriptions.
//!
//! Filters without a wildcard (a device's own topic: most of them) are kept whole in one hash
//! map, found by one lookup of the topic and stored without a node per level. Filters with one
//! are kept in a trie over filter levels: each node has literal children by level text, one
//! `+` child, the subscriptions whose filter ends at the node, and those whose filter ends with
//! `#` right below it. A shared subscription (`$share/{group}/{filter}`) is kept by `{filter}`;
//! picking one member per group is the engine's job. Matching allocates nothing; removing
//! prunes entries and nodes left empty, so memory follows the live subscriptions, not their
//! churn. Literal children sit in a short list until a level grows wide, then in a hash map
//! (`Children`).
//! Filters are assumed validated by [`super::topic::validate_topic_filter`]; the trie's depth
//! is the level count of its deepest filter, which bounds the recursion of matching.

use std::collections::HashMap;
use std::str::Split;
use std::sync::Arc;

use crate::codec::SubscriptionOptions;

use super::topic::{has_wildcard, parse_shared};
use super::ClientKeyed;

/// One client's subscription to one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The subscribing session's client identifier.
    pub client_id: Arc<str>,
    /// The filter exactly as subscribed, `$share/{group}/…` prefix included.
    pub filter: Arc<str>,
    /// What the SUBSCRIBE asked for: maximum QoS, No Local, Retain As Published, Retain Handling.
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier, if the SUBSCRIBE carried one.
    pub identifier: Option<u32>,
}

impl Subscription {
    /// The share group of a `$share/{group}/…` filter, else None. Read from the filter, not
    /// kept beside it: two words less in every subscription of the index.
    pub fn share_group(&self) -> Option<&str> {
        parse_shared(&self.filter).map(|(group, _)| group)
    }

    fn is_keyed(&self, client_id: &str, filter: &str) -> bool {
        &*self.client_id == client_id && &*self.filter == filter
    }
}

/// Every subscription, indexed for matching.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    /// Subscriptions whose filter has no wildcard, by that filter (after any `$share/{group}/`),
    /// in the order they came (the engine's round-robin over share-group members follows it).
    /// A plain filter's key is the subscription's own string, shared.
    exact: ClientKeyed<Arc<str>, Vec<Subscription>>,
    /// Subscriptions whose filter has a wildcard, by filter levels.
    root: Node,
    len: usize,
}

/// One level position in the trie.
#[derive(Debug, Default)]
struct Node {
    /// Children for literal levels, by the level's text (which may be empty: "a//b").
    literal: Children,
    /// Subscriptions whose filter ends at this node.
    ending_here: Vec<Subscription>,
    /// What wildcards lead to from here, boxed: most nodes (a device's own topic) have none,
    /// and a wide level's hash map holds every child node whole.
    wildcards: Option<Box<Wildcards>>,
}

/// The wildcard branches of a [`Node`].
#[derive(Debug, Default)]
struct Wildcards {
    /// The child for a `+` level.
    single: Option<Node>,
    /// Subscriptions whose filter is this node's path followed by `/#` (or `#` at the root).
    multi: Vec<Subscription>,
}

impl SubscriptionIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces (same client_id and same full filter) a subscription [MQTT-3.8.4-3].
    /// Returns true if it is new, false if it replaced an existing one (the engine needs this
    /// for Retain Handling 1). The filter is assumed validated.
    pub fn insert(&mut self, sub: Subscription) -> bool {
        let matching = matching_filter(&sub.filter);
        let list = if has_wildcard(matching) {
            self.root.list_for_insert(matching)
        } else if let Some(list) = self.exact.get_mut(matching) {
            list
        } else {
            let key = if matching.len() == sub.filter.len() {
                sub.filter.clone()
            } else {
                Arc::from(matching)
            };
            self.exact.entry(key).or_default()
        };
        match list
            .iter_mut()
            .find(|existing| existing.is_keyed(&sub.client_id, &sub.filter))
        {
            Some(existing) => {
                *existing = sub;
                false
            }
            None => {
                if list.is_empty() {
                    list.reserve_exact(1); // most filters have one subscriber
                }
                list.push(sub);
                self.len += 1;
                true
            }
        }
    }

    /// Removes `client_id`'s subscription to `filter` (full filter string); true if one existed.
    pub fn remove(&mut self, client_id: &str, filter: &str) -> bool {
        let key = SubscriptionKey { client_id, filter };
        let matching = matching_filter(filter);
        let removed = if has_wildcard(matching) {
            self.root.remove(matching.split('/'), &key)
        } else {
            self.remove_exact(matching, &key)
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` once for every subscription whose filter matches `topic` (shared ones
    /// included: the engine picks one member per (group, filter) itself). '$'-topics are not
    /// matched by leading wildcards [MQTT-4.7.2-1]; `#` matches the parent level too
    /// ("sport/#" matches "sport") [MQTT-4.7.1-2]; empty levels are levels ("a//b").
    pub fn for_each_match(&self, topic: &str, mut visit: impl FnMut(&Subscription)) {
        if let Some(list) = self.exact.get(topic) {
            list.iter().for_each(&mut visit);
        }
        let wildcards_match_first_level = !topic.starts_with('$');
        self.root
            .visit_matches(topic.split('/'), wildcards_match_first_level, &mut visit);
    }

    /// Removes `key` from the subscriptions to the wildcard-free filter `matching`, and the
    /// entry with its last one; the map shrinks as it empties.
    fn remove_exact(&mut self, matching: &str, key: &SubscriptionKey<'_>) -> bool {
        let Some(list) = self.exact.get_mut(matching) else {
            return false;
        };
        let removed = remove_keyed(list, key);
        if list.is_empty() {
            self.exact.remove(matching);
            if self.exact.len() < self.exact.capacity() / 4 {
                self.exact.shrink_to_fit();
            }
        }
        removed
    }

    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Identifies one subscription for removal.
struct SubscriptionKey<'k> {
    client_id: &'k str,
    filter: &'k str,
}

/// The filter that decides matching: the part after `$share/{group}/`, or all of it.
fn matching_filter(filter: &str) -> &str {
    parse_shared(filter).map_or(filter, |(_, filter)| filter)
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.ending_here.is_empty() && self.wildcards.is_none()
    }

    /// The wildcard branches, made empty if there were none.
    fn wildcards_mut(&mut self) -> &mut Wildcards {
        self.wildcards.get_or_insert_with(Box::default)
    }

    /// Drops the wildcard branches once both are empty.
    fn prune_wildcards(&mut self) {
        if self
            .wildcards
            .as_ref()
            .is_some_and(|wildcards| wildcards.single.is_none() && wildcards.multi.is_empty())
        {
            self.wildcards = None;
        }
    }

    /// The list a subscription to `filter` belongs in, creating the nodes on its path.
    fn list_for_insert(&mut self, filter: &str) -> &mut Vec<Subscription> {
        let mut node = self;
        for level in filter.split('/') {
            node = match level {
                "#" => return &mut node.wildcards_mut().multi,
                "+" => node
                    .wildcards_mut()
                    .single
                    .get_or_insert_with(Node::default),
                _ => node.literal.get_or_insert(level),
            };
        }
        &mut node.ending_here
    }

    /// Removes the subscription `key` from the list `levels` lead to, pruning nodes that
    /// become empty on the way back up. True if it existed.
    fn remove(&mut self, mut levels: Split<'_, char>, key: &SubscriptionKey<'_>) -> bool {
        match levels.next() {
            None => remove_keyed(&mut self.ending_here, key),
            Some("#") => {
                let Some(wildcards) = &mut self.wildcards else {
                    return false;
                };
                let removed = remove_keyed(&mut wildcards.multi, key);
                self.prune_wildcards();
                removed
            }
            Some("+") => {
                let Some(wildcards) = &mut self.wildcards else {
                    return false;
                };
                let (removed, emptied) = remove_below(wildcards.single.as_mut(), levels, key);
                if emptied {
                    wildcards.single = None;
                }
                self.prune_wildcards();
                removed
            }
            Some(level) => {
                let (removed, emptied) = remove_below(self.literal.get_mut(level), levels, key);
                if emptied {
                    self.literal.remove(level);
                }
                removed
            }
        }
    }

    /// Visits the subscriptions of this node and below that match the remaining `levels` of
    /// a topic. `wildcards_match` is false only for the first level of a '$'-topic.
    fn visit_matches<F: FnMut(&Subscription)>(
        &self,
        mut levels: Split<'_, char>,
        wildcards_match: bool,
        visit: &mut F,
    ) {
        let wildcards = self.wildcards.as_deref().filter(|_| wildcards_match);
        if let Some(wildcards) = wildcards {
            wildcards.multi.iter().for_each(&mut *visit);
        }
        let Some(level) = levels.next() else {
            self.ending_here.iter().for_each(visit);
            return;
        };
        if let Some(child) = wildcards.and_then(|wildcards| wildcards.single.as_ref()) {
            child.visit_matches(levels.clone(), true, visit);
        }
        if let Some(child) = self.literal.get(level) {
            child.visit_matches(levels, true, visit);
        }
    }
}

/// Most literal children kept in a list scanned in place; more go to a hash map.
const MOST_LISTED_CHILDREN: usize = 8;

/// A node's literal children by level. Most nodes have one or a few, for which a list costs
/// a fraction of a hash map's memory and is as fast to search; wide levels (thousands of
/// devices under one prefix) get a hash map. A map that falls to half the list's limit goes
/// back to a list, so memory follows churn down.
#[derive(Debug)]
#[expect(
    clippy::box_collection,
    reason = "boxed, the map costs 8 bytes instead of 48 in every node, most of which never hash"
)]
enum Children {
    Listed(Vec<(Box<str>, Node)>),
    Hashed(Box<HashMap<Box<str>, Node>>),
}

impl Default for Children {
    fn default() -> Self {
        Children::Listed(Vec::new())
    }
}

impl Children {
    fn is_empty(&self) -> bool {
        match self {
            Children::Listed(list) => list.is_empty(),
            Children::Hashed(map) => map.is_empty(),
        }
    }

    fn get(&self, level: &str) -> Option<&Node> {
        match self {
            Children::Listed(list) => list
                .iter()
                .find(|(key, _)| **key == *level)
                .map(|(_, node)| node),
            Children::Hashed(map) => map.get(level),
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node> {
        match self {
            Children::Listed(list) => list
                .iter_mut()
                .find(|(key, _)| **key == *level)
                .map(|(_, node)| node),
            Children::Hashed(map) => map.get_mut(level),
        }
    }

    /// The child for `level`, created empty if missing.
    fn get_or_insert(&mut self, level: &str) -> &mut Node {
        if let Children::Listed(list) = self {
            let is_new = list.iter().all(|(key, _)| **key != *level);
            if is_new && list.len() == MOST_LISTED_CHILDREN {
                *self = Children::Hashed(Box::new(std::mem::take(list).into_iter().collect()));
            }
        }
        match self {
            Children::Listed(list) => {
                let position = match list.iter().position(|(key, _)| **key == *level) {
                    Some(position) => position,
                    None => {
                        list.reserve_exact(1);
                        list.push((Box::from(level), Node::default()));
                        list.len() - 1
                    }
                };
                &mut list[position].1
            }
            Children::Hashed(map) => map.entry(Box::from(level)).or_default(),
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Listed(list) => {
                list.retain(|(key, _)| **key != *level);
                if list.is_empty() {
                    list.shrink_to_fit();
                }
            }
            Children::Hashed(map) => {
                map.remove(level);
                if map.len() <= MOST_LISTED_CHILDREN / 2 {
                    *self = Children::Listed(std::mem::take(map.as_mut()).into_iter().collect());
                }
            }
        }
    }
}

/// Removes `key` below `child` (if the child exists); returns (removed, child now empty).
fn remove_below(
    child: Option<&mut Node>,
    levels: Split<'_, char>,
    key: &SubscriptionKey<'_>,
) -> (bool, bool) {
    match child {
        Some(child) => {
            let removed = child.remove(levels, key);
            (removed, child.is_empty())
        }
        None => (false, false),
    }
}

/// Removes `key` from `list`, keeping the order of the others (the engine's round-robin over
/// share-group members follows it).
fn remove_keyed(list: &mut Vec<Subscription>, key: &SubscriptionKey<'_>) -> bool {
    match list
        .iter()
        .position(|sub| sub.is_keyed(key.client_id, key.filter))
    {
        Some(position) => {
            list.remove(position);
            if list.is_empty() {
                list.shrink_to_fit();
            }
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::broker::topic::filter_matches;
    use crate::codec::QoS;

    fn sub(client_id: &str, filter: &str) -> Subscription {
        sub_with(client_id, filter, QoS::AtMostOnce, None)
    }

    fn sub_with(client_id: &str, filter: &str, qos: QoS, identifier: Option<u32>) -> Subscription {
        Subscription {
            client_id: Arc::from(client_id),
            filter: Arc::from(filter),
            options: SubscriptionOptions::with_qos(qos),
            identifier,
        }
    }

    /// (client_id, filter, identifier) of every match, sorted.
    fn matches(index: &SubscriptionIndex, topic: &str) -> Vec<(String, String, Option<u32>)> {
        let mut found = Vec::new();
        index.for_each_match(topic, |sub| {
            found.push((
                sub.client_id.to_string(),
                sub.filter.to_string(),
                sub.identifier,
            ));
        });
        found.sort();
        found
    }

    /// The filters (of any client) matching `topic`, sorted.
    fn matching_filters(index: &SubscriptionIndex, topic: &str) -> Vec<String> {
        let mut filters: Vec<String> = matches(index, topic)
            .into_iter()
            .map(|(_, filter, _)| filter)
            .collect();
        filters.sort();
        filters.dedup();
        filters
    }

    fn index_of(filters: &[&str]) -> SubscriptionIndex {
        let mut index = SubscriptionIndex::new();
        for filter in filters {
            assert!(index.insert(sub("c", filter)));
        }
        index
    }

    #[test]
    fn insert_reports_new_then_replaces_same_client_and_filter_mqtt_3_8_4_3() {
        let mut index = SubscriptionIndex::new();
        assert!(index.is_empty());
        assert!(index.insert(sub_with("c1", "sport/+", QoS::AtMostOnce, Some(1))));
        assert!(!index.insert(sub_with("c1", "sport/+", QoS::ExactlyOnce, Some(7))));
        assert_eq!(index.len(), 1);
        let mut seen = Vec::new();
        index.for_each_match("sport/tennis", |sub| seen.push(sub.clone()));
        assert_eq!(
            seen,
            vec![sub_with("c1", "sport/+", QoS::ExactlyOnce, Some(7))]
        );
    }

    #[test]
    fn different_clients_or_filters_are_distinct_subscriptions() {
        let mut index = SubscriptionIndex::new();
        assert!(index.insert(sub("c1", "a/b")));
        assert!(index.insert(sub("c2", "a/b")));
        assert!(index.insert(sub("c1", "a/+")));
        assert!(index.insert(sub("c1", "$share/g/a/b")));
        assert!(index.insert(sub("c1", "$share/h/a/b")));
        assert_eq!(index.len(), 5);
        assert_eq!(matches(&index, "a/b").len(), 5);
    }

    #[test]
    fn remove_takes_out_exactly_one_subscription() {
        let mut index = SubscriptionIndex::new();
        index.insert(sub("c1", "a/b"));
        index.insert(sub("c2", "a/b"));
        index.insert(sub("c1", "$share/g/a/b"));
        assert!(index.remove("c1", "a/b"));
        assert!(!index.remove("c1", "a/b"));
        assert!(!index.remove("c3", "a/b"));
        assert!(!index.remove("c2", "a/+"));
        assert!(!index.remove("c2", "a/b/c"));
        assert!(!index.remove("c2", "a/#"));
        assert_eq!(index.len(), 2);
        assert_eq!(
            matches(&index, "a/b"),
            vec![
                ("c1".to_string(), "$share/g/a/b".to_string(), None),
                ("c2".to_string(), "a/b".to_string(), None),
            ]
        );
    }

    #[test]
    fn removing_everything_prunes_every_node() {
        let filters = [
            "a/b/c",
            "a/+/#",
            "a/b",
            "#",
            "+",
            "/",
            "a//b",
            "$share/g/a/b/#",
            "+/+/+/d",
        ];
        let mut index = index_of(&filters);
        for filter in filters {
            assert!(index.remove("c", filter), "{filter}");
        }
        assert!(index.is_empty());
        assert!(index.exact.is_empty());
        assert!(index.root.is_empty());
        assert!(matches!(&index.root.literal, Children::Listed(list) if list.capacity() == 0));
    }

    #[test]
    fn removing_a_leaf_keeps_the_path_of_others() {
        let mut index = index_of(&["a/b/c", "a/b/#", "a/+/c"]);
        assert!(index.remove("c", "a/b/c"));
        assert_eq!(matching_filters(&index, "a/b/c"), ["a/+/c", "a/b/#"]);
        fn node_a(index: &SubscriptionIndex) -> &Node {
            index.root.literal.get("a").expect("a/+/c holds it")
        }
        let node_b = node_a(&index).literal.get("b").expect("a/b/# holds it");
        assert!(
            node_b.literal.is_empty(),
            "the emptied node a/b/c is pruned"
        );
        assert!(index.remove("c", "a/b/#"));
        assert!(node_a(&index).literal.get("b").is_none());
        let wildcards = node_a(&index).wildcards.as_ref();
        assert!(wildcards.is_some_and(|wildcards| wildcards.single.is_some()));
    }

    /// A node's wildcard branches go once their last subscription does: memory follows the
    /// live subscriptions.
    #[test]
    fn the_last_wildcard_subscription_out_takes_the_branches_with_it() {
        let mut index = index_of(&["#", "+/x", "a"]);
        assert!(index.remove("c", "#"));
        assert!(index.root.wildcards.is_some(), "+/x is still there");
        assert!(index.remove("c", "+/x"));
        assert!(index.root.wildcards.is_none());
        assert_eq!(matching_filters(&index, "a"), ["a"]);
        assert!(!index.remove("c", "+/x"), "nothing left to remove");
        assert!(!index.remove("c", "#"));
    }

    /// A filter without a wildcard takes no trie node: it is kept whole, under its own string
    /// (a shared one under the part after its group), and its entry goes with its last
    /// subscription.
    #[test]
    fn plain_filters_are_kept_whole_under_their_own_string() {
        let mut index = SubscriptionIndex::new();
        let plain = sub("c1", "devices/7/cmd");
        index.insert(plain.clone());
        index.insert(sub("c2", "devices/7/cmd"));
        index.insert(sub("c3", "$share/g/devices/7/cmd"));
        index.insert(sub("c1", "$SYS/broker/uptime"));
        assert!(index.root.is_empty(), "no trie node for plain filters");
        assert_eq!(index.exact.len(), 2);
        let (key, list) = index
            .exact
            .get_key_value("devices/7/cmd")
            .expect("an entry for the filter");
        assert!(
            Arc::ptr_eq(key, &plain.filter),
            "the key is the filter's own string"
        );
        assert_eq!(list.len(), 3);
        assert_eq!(
            matches(&index, "devices/7/cmd"),
            [
                ("c1".to_string(), "devices/7/cmd".to_string(), None),
                ("c2".to_string(), "devices/7/cmd".to_string(), None),
                ("c3".to_string(), "$share/g/devices/7/cmd".to_string(), None),
            ]
        );
        assert_eq!(
            matching_filters(&index, "$SYS/broker/uptime"),
            ["$SYS/broker/uptime"]
        );
        assert!(matches(&index, "devices/7").is_empty());
        assert!(matches(&index, "devices/7/cmd/x").is_empty());
        for (client, filter) in [
            ("c1", "devices/7/cmd"),
            ("c3", "$share/g/devices/7/cmd"),
            ("c2", "devices/7/cmd"),
        ] {
            assert!(index.exact.contains_key("devices/7/cmd"));
            assert!(index.remove(client, filter), "{client} {filter}");
        }
        assert!(!index.exact.contains_key("devices/7/cmd"));
        assert!(!index.remove("c2", "devices/7/cmd"));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn wide_levels_move_to_a_map_and_back_to_a_list() {
        let names: Vec<String> = (0..20).map(|n| format!("device/{n}/+")).collect();
        let topic = |name: &str| name.replace('+', "state");
        let mut index = SubscriptionIndex::new();
        let is_hashed = |index: &SubscriptionIndex| {
            let device = index.root.literal.get("device").expect("device/… holds it");
            matches!(device.literal, Children::Hashed(_))
        };
        for (inserted, name) in names.iter().enumerate() {
            index.insert(sub("c", name));
            assert_eq!(
                is_hashed(&index),
                inserted >= MOST_LISTED_CHILDREN,
                "{inserted}"
            );
        }
        for name in &names {
            assert_eq!(matching_filters(&index, &topic(name)), [name.as_str()]);
        }
        for name in &names[..16] {
            assert!(index.remove("c", name));
        }
        assert!(!is_hashed(&index), "4 children are listed again");
        assert!(matching_filters(&index, "device/3/state").is_empty());
        for name in &names[16..] {
            assert_eq!(matching_filters(&index, &topic(name)), [name.as_str()]);
        }
    }

    #[test]
    fn multi_level_wildcard_matches_parent_and_descendants_mqtt_4_7_1_2() {
        let index = index_of(&["sport/tennis/player1/#", "sport/#", "#"]);
        assert_eq!(matching_filters(&index, "sport"), ["#", "sport/#"]);
        assert_eq!(
            matching_filters(&index, "sport/tennis/player1"),
            ["#", "sport/#", "sport/tennis/player1/#"]
        );
        assert_eq!(
            matching_filters(&index, "sport/tennis/player1/score/wimbledon"),
            ["#", "sport/#", "sport/tennis/player1/#"]
        );
        assert_eq!(matching_filters(&index, "sports"), ["#"]);
    }

    #[test]
    fn single_level_wildcard_matches_one_level_mqtt_4_7_1_3() {
        let index = index_of(&["sport/tennis/+", "sport/+", "+/+", "/+", "+"]);
        assert_eq!(
            matching_filters(&index, "sport/tennis/player1"),
            ["sport/tennis/+"]
        );
        assert_eq!(matching_filters(&index, "sport"), ["+"]);
        assert_eq!(matching_filters(&index, "sport/"), ["+/+", "sport/+"]);
        assert_eq!(matching_filters(&index, "/finance"), ["+/+", "/+"]);
        assert!(matching_filters(&index, "sport/tennis/player1/ranking").is_empty());
    }

    #[test]
    fn dollar_topics_escape_leading_wildcards_mqtt_4_7_2_1() {
        let index = index_of(&["#", "+/monitor/Clients", "$SYS/#", "$SYS/monitor/+", "+"]);
        assert_eq!(
            matching_filters(&index, "$SYS/monitor/Clients"),
            ["$SYS/#", "$SYS/monitor/+"]
        );
        assert_eq!(matching_filters(&index, "$SYS"), ["$SYS/#"]);
        assert_eq!(matching_filters(&index, "monitor"), ["#", "+"]);
        assert_eq!(
            matching_filters(&index, "a/monitor/Clients"),
            ["#", "+/monitor/Clients"]
        );
    }

    #[test]
    fn empty_levels_are_levels() {
        let index = index_of(&["a//b", "a/+/b", "a/b", "/", "+/+"]);
        assert_eq!(matching_filters(&index, "a//b"), ["a/+/b", "a//b"]);
        assert_eq!(matching_filters(&index, "/"), ["+/+", "/"]);
        assert_eq!(matching_filters(&index, "a/b"), ["+/+", "a/b"]);
    }

    #[test]
    fn shared_subscriptions_match_by_their_filter_and_keep_their_group_mqtt_4_8_2() {
        let mut index = SubscriptionIndex::new();
        index.insert(sub("c1", "$share/g/sport/#"));
        index.insert(sub("c2", "$share/g/sport/#"));
        index.insert(sub("c3", "$share/h/+/tennis"));
        index.insert(sub("c4", "$share/g/#"));
        let mut seen = Vec::new();
        index.for_each_match("sport/tennis", |sub| {
            seen.push((
                sub.client_id.to_string(),
                sub.share_group().map(str::to_string),
            ));
        });
        seen.sort();
        let group = |name: &str| Some(name.to_string());
        assert_eq!(
            seen,
            [
                ("c1".to_string(), group("g")),
                ("c2".to_string(), group("g")),
                ("c3".to_string(), group("h")),
                ("c4".to_string(), group("g")),
            ]
        );
        assert!(
            matches(&index, "$share/g/sport").is_empty(),
            "the prefix is not a topic level"
        );
        assert_eq!(
            matching_filters(&index, "$SYS/tennis"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_subscription_is_visited_once_per_matching_topic() {
        let index = index_of(&["a/#", "a/+/#", "+/+/#", "#"]);
        let mut visits = 0;
        index.for_each_match("a/b/c", |_| visits += 1);
        assert_eq!(visits, 4);
    }

    /// One step of a random workload.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(Subscription),
        Remove { client_id: String, filter: String },
    }

    fn topic_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$s", "$SYS"])
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(topic_level(), 1..5).prop_map(|levels| levels.join("/"))
    }

    /// Deep filters over few level names: wildcards, '$' levels, empty levels, shares.
    fn filter() -> BoxedStrategy<String> {
        let level = prop_oneof![3 => topic_level(), 2 => Just("+")];
        let group = prop::option::weighted(0.2, prop::sample::select(vec!["g", "h"]));
        (prop::collection::vec(level, 0..4), any::<bool>(), group)
            .prop_map(|(levels, multi, group)| {
                let mut filter = levels.join("/");
                if multi || levels.is_empty() {
                    filter = if levels.is_empty() {
                        "#".to_string()
                    } else {
                        format!("{filter}/#")
                    };
                }
                match group {
                    Some(group) => format!("$share/{group}/{filter}"),
                    None => filter,
                }
            })
            .boxed()
    }

    /// Wide filters: many names on the first level, so children move between list and map.
    fn wide_filter() -> BoxedStrategy<String> {
        let suffix = prop::sample::select(vec!["", "/+", "/#", "/x", "/+/x"]);
        prop_oneof![
            9 => (0..24u8, suffix).prop_map(|(name, suffix)| format!("{name}{suffix}")),
            1 => prop::sample::select(vec!["+", "+/x", "#"]).prop_map(str::to_string),
        ]
        .boxed()
    }

    fn wide_topic() -> impl Strategy<Value = String> {
        let suffix = prop::sample::select(vec!["", "/x", "/y"]);
        (0..24u8, suffix).prop_map(|(name, suffix)| format!("{name}{suffix}"))
    }

    fn op(filter: BoxedStrategy<String>) -> impl Strategy<Value = Op> {
        let client = prop::sample::select(vec!["c1", "c2", "c3"]);
        let qos = prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]);
        prop_oneof![
            3 => (client.clone(), filter.clone(), qos, prop::option::of(1u32..4))
                .prop_map(|(client, filter, qos, id)| Op::Insert(sub_with(client, &filter, qos, id))),
            1 => (client, filter).prop_map(|(client, filter)| Op::Remove {
                client_id: client.to_string(),
                filter,
            }),
        ]
    }

    /// The brute-force reference: every modelled subscription `filter_matches` accepts.
    fn reference_matches(
        model: &[Subscription],
        topic: &str,
    ) -> Vec<(String, String, Option<u32>)> {
        let mut found: Vec<_> = model
            .iter()
            .filter(|sub| filter_matches(matching_filter(&sub.filter), topic))
            .map(|sub| {
                (
                    sub.client_id.to_string(),
                    sub.filter.to_string(),
                    sub.identifier,
                )
            })
            .collect();
        found.sort();
        found
    }

    fn apply(
        index: &mut SubscriptionIndex,
        model: &mut Vec<Subscription>,
        op: Op,
    ) -> Result<(), TestCaseError> {
        match op {
            Op::Insert(sub) => {
                let existing = model
                    .iter()
                    .position(|old| old.is_keyed(&sub.client_id, &sub.filter));
                prop_assert_eq!(index.insert(sub.clone()), existing.is_none());
                match existing {
                    Some(position) => model[position] = sub,
                    None => model.push(sub),
                }
            }
            Op::Remove { client_id, filter } => {
                let existing = model
                    .iter()
                    .position(|old| old.is_keyed(&client_id, &filter));
                prop_assert_eq!(index.remove(&client_id, &filter), existing.is_some());
                if let Some(position) = existing {
                    model.remove(position);
                }
            }
        }
        prop_assert_eq!(index.len(), model.len());
        Ok(())
    }

    /// Runs `ops` on an index and a plain model, checks the matches of `topics` against the
    /// brute-force reference, then removes everything (checking along the way) and expects
    /// every node pruned.
    fn check_against_reference(ops: Vec<Op>, topics: &[String]) -> Result<(), TestCaseError> {
        let mut index = SubscriptionIndex::new();
        let mut model = Vec::new();
        for op in ops {
            apply(&mut index, &mut model, op)?;
        }
        for topic in topics {
            prop_assert_eq!(
                matches(&index, topic),
                reference_matches(&model, topic),
                "topic {:?}",
                topic
            );
        }
        let topics_again = topics.iter().cycle();
        for (sub, topic) in model.clone().iter().rev().zip(topics_again) {
            apply(
                &mut index,
                &mut model,
                Op::Remove {
                    client_id: sub.client_id.to_string(),
                    filter: sub.filter.to_string(),
                },
            )?;
            prop_assert_eq!(
                matches(&index, topic),
                reference_matches(&model, topic),
                "topic {:?}",
                topic
            );
        }
        prop_assert!(index.is_empty());
        prop_assert!(
            index.exact.is_empty(),
            "every exact entry goes with its last subscription"
        );
        prop_assert!(
            index.root.is_empty(),
            "every node is pruned once all are removed"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn index_matches_exactly_what_filter_matches_accepts(
            ops in prop::collection::vec(op(filter()), 0..40),
            topics in prop::collection::vec(topic(), 1..8),
        ) {
            check_against_reference(ops, &topics)?;
        }

        #[test]
        fn wide_levels_match_exactly_what_filter_matches_accepts(
            ops in prop::collection::vec(op(wide_filter()), 0..120),
            topics in prop::collection::vec(wide_topic(), 1..8),
        ) {
            check_against_reference(ops, &topics)?;
        }
    }
}
