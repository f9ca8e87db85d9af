//! A bridge's topic rules, `[[bridges.topics]]`: which topics go upstream (`out`), come down
//! (`in`) or both, and how their names change on the way. Mosquitto's
//! `topic pattern [[[out|in|both] qos] local_prefix remote_prefix]` carries over rule for rule:
//!
//! - the local filter is `local_prefix + filter`, subscribed on this broker for `out`; the remote
//!   filter is `remote_prefix + filter`, subscribed upstream for `in`;
//! - going out, a local topic loses `local_prefix` and gains `remote_prefix`; coming in, a remote
//!   topic loses `remote_prefix` and gains `local_prefix`;
//! - prefixes are plain topic text (no `+` or `#`), and each prefix followed by the filter must
//!   be a valid filter (`"L"` before `"#"` is not);
//! - an empty filter maps exactly one topic, `local_prefix` to `remote_prefix`, so it needs both
//!   prefixes (Mosquitto's table refuses `""` with one prefix or none);
//! - among the rules of a bridge, the first matching rule that has a prefix decides the new name;
//!   a topic matched only by rules without prefixes keeps its name (Mosquitto's remapping skips
//!   rules without prefixes).
//!
//! Two deliberate differences: shared subscriptions (`$share/…`) are refused, since a bridge is
//! one session; and when a `#` filter matches the prefix's parent level (`"L"` under
//! `L/ + #`), the topic maps to the other prefix's parent level (`"R"`), where Mosquitto sends
//! `"R/L"`, outside the remote tree.
//!
//! Pure string work: no I/O, no state.

use std::borrow::Cow;

use crate::broker::topic::{filter_matches, validate_topic_filter, TopicError, TopicLimits};
use crate::config::BridgeTopic;
#[cfg(test)]
use crate::config::Direction;

/// MQTT's own limits on a topic (a string holds at most 65,535 bytes), which every topic of a
/// rule must respect. The broker's configured limits are checked where the configuration is.
pub const MQTT_TOPIC_LIMITS: TopicLimits = TopicLimits {
    max_length: 65_535,
    max_levels: usize::MAX,
};

/// The prefix of a shared subscription's filter.
const SHARE_PREFIX: &str = "$share/";

/// One end of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

impl Side {
    /// The key of this side's prefix.
    pub fn prefix_key(self) -> &'static str {
        match self {
            Side::Local => "local_prefix",
            Side::Remote => "remote_prefix",
        }
    }
}

/// Why a topic rule is refused; each names the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicRuleError {
    #[error("QoS {0} is not 0, 1 or 2")]
    Qos(u8),
    #[error("contains U+0000, which no MQTT topic may [MQTT-1.5.4-2]")]
    NullCharacter { key: &'static str },
    #[error("the filter is not a valid topic filter: {0}")]
    Filter(TopicError),
    #[error(
        "a prefix is plain topic text, without the wildcard '{wildcard}' (put wildcards in the \
         filter)"
    )]
    WildcardInPrefix { side: Side, wildcard: char },
    #[error(
        "an empty filter maps the one topic local_prefix to remote_prefix, so both prefixes must \
         be set, as in Mosquitto's table"
    )]
    EmptyFilterNeedsBothPrefixes,
    #[error("the prefix followed by the filter is {full:?}, not a valid topic filter: {error}")]
    InvalidCombination {
        side: Side,
        full: String,
        error: TopicError,
    },
    #[error("shared subscriptions ($share/...) cannot be bridged: a bridge is one session")]
    SharedSubscription { key: &'static str },
}

impl TopicRuleError {
    /// The key of the rule this is about: `filter`, `qos`, `local_prefix` or `remote_prefix`.
    pub fn key(&self) -> &'static str {
        match self {
            TopicRuleError::Qos(_) => "qos",
            TopicRuleError::NullCharacter { key } | TopicRuleError::SharedSubscription { key } => {
                key
            }
            TopicRuleError::Filter(_) | TopicRuleError::EmptyFilterNeedsBothPrefixes => "filter",
            TopicRuleError::WildcardInPrefix { side, .. }
            | TopicRuleError::InvalidCombination { side, .. } => side.prefix_key(),
        }
    }
}

/// The configuration's checks call [`BridgeTopic::validate`]; the bridge maps with the rest.
impl BridgeTopic {
    /// The filter this broker subscribes to for `out`: `local_prefix + filter`.
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.filter)
    }

    /// The filter subscribed upstream for `in`: `remote_prefix + filter`.
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.filter)
    }

    /// The upstream name of `local_topic`, when this rule carries it out: `None` for an `in`
    /// rule, a topic the local filter does not match, or a name that cannot be a topic (empty,
    /// or longer than 65,535 bytes).
    pub fn to_remote(&self, local_topic: &str) -> Option<String> {
        self.remote_name(local_topic).map(|name| name.concat())
    }

    /// [`BridgeTopic::to_remote`]'s name as the two pieces it joins, found without allocating
    /// (except the prefixed filter, when there is a local prefix).
    fn remote_name<'a>(&'a self, local_topic: &'a str) -> Option<[&'a str; 2]> {
        if !self.direction.carries_out() {
            return None;
        }
        self.renamed(local_topic, &self.local_prefix, &self.remote_prefix)
    }

    /// The local name of `remote_topic`, when this rule carries it in: `None` for an `out`
    /// rule, a topic the remote filter does not match, or a name that cannot be a topic.
    pub fn to_local(&self, remote_topic: &str) -> Option<String> {
        if !self.direction.carries_in() {
            return None;
        }
        self.renamed(remote_topic, &self.remote_prefix, &self.local_prefix)
            .map(|name| name.concat())
    }

    /// Whether this rule renames topics at all.
    pub fn has_prefix(&self) -> bool {
        !self.local_prefix.is_empty() || !self.remote_prefix.is_empty()
    }

    /// Every rule of Mosquitto's (and Cairn's two additions) this rule breaks.
    pub fn validate(&self) -> Result<(), Vec<TopicRuleError>> {
        let mut errors = Vec::new();
        if self.qos > 2 {
            errors.push(TopicRuleError::Qos(self.qos));
        }
        for (key, text) in [
            ("filter", &self.filter),
            ("local_prefix", &self.local_prefix),
            ("remote_prefix", &self.remote_prefix),
        ] {
            if text.contains('\0') {
                errors.push(TopicRuleError::NullCharacter { key });
            }
        }
        let filter_valid = self.check_filter(&mut errors);
        for (side, prefix) in [
            (Side::Local, &self.local_prefix),
            (Side::Remote, &self.remote_prefix),
        ] {
            if let Some(wildcard) = prefix.chars().find(|&c| c == '+' || c == '#') {
                errors.push(TopicRuleError::WildcardInPrefix { side, wildcard });
            } else if filter_valid && !prefix.is_empty() {
                check_combination(side, prefix, &self.filter, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The filter alone; whether it may be combined with the prefixes.
    fn check_filter(&self, errors: &mut Vec<TopicRuleError>) -> bool {
        let error = if self.filter.is_empty() {
            let both_prefixes = !self.local_prefix.is_empty() && !self.remote_prefix.is_empty();
            (!both_prefixes).then_some(TopicRuleError::EmptyFilterNeedsBothPrefixes)
        } else if self.filter.starts_with(SHARE_PREFIX) {
            Some(TopicRuleError::SharedSubscription { key: "filter" })
        } else {
            validate_topic_filter(&self.filter, MQTT_TOPIC_LIMITS)
                .err()
                .map(TopicRuleError::Filter)
        };
        let valid = error.is_none();
        errors.extend(error);
        valid
    }

    /// `topic` renamed from `from_prefix` to `to_prefix`, if `from_prefix + filter` matches it,
    /// as the two pieces the new name joins. Called for every bridged message: it allocates
    /// only the prefixed filter, when there is a prefix. `None` also when the new name cannot
    /// be a topic (empty, or longer than 65,535 bytes).
    fn renamed<'a>(
        &self,
        topic: &'a str,
        from_prefix: &str,
        to_prefix: &'a str,
    ) -> Option<[&'a str; 2]> {
        let filter = if from_prefix.is_empty() {
            Cow::Borrowed(self.filter.as_str())
        } else {
            Cow::Owned(format!("{from_prefix}{}", self.filter))
        };
        if !filter_matches(&filter, topic) {
            return None;
        }
        let name = match topic.strip_prefix(from_prefix) {
            Some(rest) => [to_prefix, rest],
            // `prefix/#` matched the prefix's parent level: map it to the other parent level.
            None => [to_prefix.strip_suffix('/')?, ""],
        };
        let length = name[0].len() + name[1].len();
        (length > 0 && length <= MQTT_TOPIC_LIMITS.max_length).then_some(name)
    }
}

/// `prefix + filter` must itself be a filter, and not a shared subscription's.
fn check_combination(side: Side, prefix: &str, filter: &str, errors: &mut Vec<TopicRuleError>) {
    let full = format!("{prefix}{filter}");
    if full.starts_with(SHARE_PREFIX) {
        errors.push(TopicRuleError::SharedSubscription {
            key: side.prefix_key(),
        });
    } else if let Err(error) = validate_topic_filter(&full, MQTT_TOPIC_LIMITS) {
        errors.push(TopicRuleError::InvalidCombination { side, full, error });
    }
}

/// The upstream name of a local message, and the rule that sends it: the first `out` rule with
/// a prefix whose local filter matches, else the first matching `out` rule without (the name
/// unchanged). `None` when no `out` rule carries `local_topic`.
pub fn map_out<'a>(
    rules: &'a [BridgeTopic],
    local_topic: &str,
) -> Option<(&'a BridgeTopic, String)> {
    first_mapping(rules, |rule| rule.to_remote(local_topic))
}

/// The rule [`map_out`] sends `local_topic` by, without making the upstream name: for what
/// the rule decides (its QoS) before the name is made.
pub fn rule_out<'a>(rules: &'a [BridgeTopic], local_topic: &str) -> Option<&'a BridgeTopic> {
    first_mapping(rules, |rule| rule.remote_name(local_topic).map(|_| ())).map(|(rule, ())| rule)
}

/// The local name of an upstream message, and the rule that brings it: like [`map_out`], the
/// other way.
pub fn map_in<'a>(
    rules: &'a [BridgeTopic],
    remote_topic: &str,
) -> Option<(&'a BridgeTopic, String)> {
    first_mapping(rules, |rule| rule.to_local(remote_topic))
}

fn first_mapping<T>(
    rules: &[BridgeTopic],
    map: impl Fn(&BridgeTopic) -> Option<T>,
) -> Option<(&BridgeTopic, T)> {
    let renaming = rules.iter().filter(|rule| rule.has_prefix());
    let keeping = rules.iter().filter(|rule| !rule.has_prefix());
    renaming
        .chain(keeping)
        .find_map(|rule| Some((rule, map(rule)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(filter: &str, direction: Direction, local: &str, remote: &str) -> BridgeTopic {
        BridgeTopic {
            filter: filter.to_string(),
            direction,
            qos: 1,
            local_prefix: local.to_string(),
            remote_prefix: remote.to_string(),
        }
    }

    fn both(filter: &str, local: &str, remote: &str) -> BridgeTopic {
        rule(filter, Direction::Both, local, remote)
    }

    fn error_keys(rule: &BridgeTopic) -> Vec<&'static str> {
        rule.validate()
            .err()
            .unwrap_or_default()
            .iter()
            .map(TopicRuleError::key)
            .collect()
    }

    /// Mosquitto's table of prefix combinations (mosquitto.conf(5), `topic`), row by row:
    /// pattern, local prefix, remote prefix, then the full local and remote topics of a valid
    /// row. `""` is the empty marker.
    #[test]
    fn mosquitto_table_valid_rows_map_both_ways() {
        for (filter, local, remote, full_local, full_remote) in [
            ("pattern", "L/", "R/", "L/pattern", "R/pattern"),
            ("pattern", "L/", "", "L/pattern", "pattern"),
            ("pattern", "", "R/", "pattern", "R/pattern"),
            ("pattern", "", "", "pattern", "pattern"),
            ("", "local", "remote", "local", "remote"),
        ] {
            let rule = both(filter, local, remote);
            assert_eq!(rule.validate(), Ok(()), "{rule:?}");
            assert_eq!(rule.local_filter(), full_local, "{rule:?}");
            assert_eq!(rule.remote_filter(), full_remote, "{rule:?}");
            assert_eq!(rule.to_remote(full_local).as_deref(), Some(full_remote));
            assert_eq!(rule.to_local(full_remote).as_deref(), Some(full_local));
        }
    }

    #[test]
    fn mosquitto_table_invalid_rows_are_refused() {
        for (local, remote) in [("local", ""), ("", "remote"), ("", "")] {
            let rule = both("", local, remote);
            assert_eq!(
                rule.validate(),
                Err(vec![TopicRuleError::EmptyFilterNeedsBothPrefixes]),
                "{rule:?}"
            );
        }
    }

    /// The man page's example: `topic clients/total in 0 test/mosquitto/org/ $SYS/broker/`.
    #[test]
    fn man_page_example_brings_a_sys_topic_under_a_local_prefix() {
        let rule = rule(
            "clients/total",
            Direction::In,
            "test/mosquitto/org/",
            "$SYS/broker/",
        );
        assert_eq!(rule.validate(), Ok(()));
        assert_eq!(rule.remote_filter(), "$SYS/broker/clients/total");
        assert_eq!(
            rule.to_local("$SYS/broker/clients/total").as_deref(),
            Some("test/mosquitto/org/clients/total")
        );
        assert_eq!(rule.to_remote("test/mosquitto/org/clients/total"), None);
    }

    /// `topic # both 2 local/topic/ remote/topic/`: a whole tree, both ways.
    #[test]
    fn wildcard_filters_map_whole_trees_both_ways() {
        let tree = both("#", "local/topic/", "remote/topic/");
        assert_eq!(tree.local_filter(), "local/topic/#");
        for (local, remote) in [
            ("local/topic/a", "remote/topic/a"),
            ("local/topic/a/b/c", "remote/topic/a/b/c"),
            ("local/topic/", "remote/topic/"),
        ] {
            assert_eq!(tree.to_remote(local).as_deref(), Some(remote));
            assert_eq!(tree.to_local(remote).as_deref(), Some(local));
        }
        assert_eq!(tree.to_remote("local/other/a"), None);
        assert_eq!(tree.to_local("local/topic/a"), None);

        let level = both("+/temperature", "site/", "");
        assert_eq!(
            level.to_remote("site/hall/temperature").as_deref(),
            Some("hall/temperature")
        );
        assert_eq!(level.to_remote("site/hall/humidity"), None);
        assert_eq!(level.to_remote("site/a/b/temperature"), None);
        assert_eq!(
            level.to_local("hall/temperature").as_deref(),
            Some("site/hall/temperature")
        );
    }

    /// `L/#` also matches `L` [MQTT-4.7.1-2]: it maps to the remote prefix's parent level, and
    /// back; with no remote prefix there is no such level.
    #[test]
    fn a_prefix_parent_level_maps_to_the_other_parent_level() {
        let tree = both("#", "L/", "R/");
        assert_eq!(tree.to_remote("L").as_deref(), Some("R"));
        assert_eq!(tree.to_local("R").as_deref(), Some("L"));
        assert_eq!(both("#", "L/", "").to_remote("L"), None);
        assert_eq!(both("#", "L/", "").to_remote("L/x").as_deref(), Some("x"));
    }

    /// A prefix without a trailing `/` is plain text before the filter.
    #[test]
    fn prefixes_are_concatenated_as_text() {
        let rule = both("a/#", "site7-", "gw-");
        assert_eq!(rule.validate(), Ok(()));
        assert_eq!(rule.to_remote("site7-a/b").as_deref(), Some("gw-a/b"));
        assert_eq!(rule.to_local("gw-a").as_deref(), Some("site7-a"));
    }

    /// Wildcards at the start of a filter do not match `$`-topics [MQTT-4.7.2-1], so `#` alone
    /// bridges no `$SYS`; a filter or prefix naming `$` does.
    #[test]
    fn dollar_topics_only_through_rules_that_name_them() {
        let everything = both("#", "", "");
        assert_eq!(everything.to_remote("$SYS/broker/uptime"), None);
        assert_eq!(everything.to_local("$aws/things/gw/shadow"), None);
        assert_eq!(everything.to_remote("a/b").as_deref(), Some("a/b"));

        let shadow = both("#", "shadow/", "$aws/things/gw/shadow/");
        assert_eq!(shadow.validate(), Ok(()));
        assert_eq!(
            shadow.to_remote("shadow/update").as_deref(),
            Some("$aws/things/gw/shadow/update")
        );
        assert_eq!(
            shadow
                .to_local("$aws/things/gw/shadow/update/accepted")
                .as_deref(),
            Some("shadow/update/accepted")
        );
        let sys = both("$SYS/broker/#", "", "gw/");
        assert_eq!(
            sys.to_remote("$SYS/broker/uptime").as_deref(),
            Some("gw/$SYS/broker/uptime")
        );
    }

    #[test]
    fn the_direction_decides_which_way_a_rule_maps() {
        let out = rule("a/#", Direction::Out, "l/", "r/");
        assert_eq!(out.to_remote("l/a/1").as_deref(), Some("r/a/1"));
        assert_eq!(out.to_local("r/a/1"), None);
        let inward = rule("a/#", Direction::In, "l/", "r/");
        assert_eq!(inward.to_remote("l/a/1"), None);
        assert_eq!(inward.to_local("r/a/1").as_deref(), Some("l/a/1"));
    }

    #[test]
    fn the_empty_filter_maps_exactly_one_topic() {
        let single = both("", "local/state", "cloud/gw-7/state");
        assert_eq!(
            single.to_remote("local/state").as_deref(),
            Some("cloud/gw-7/state")
        );
        assert_eq!(single.to_remote("local/state/x"), None);
        assert_eq!(single.to_remote("local"), None);
        assert_eq!(
            single.to_local("cloud/gw-7/state").as_deref(),
            Some("local/state")
        );
    }

    #[test]
    fn prefixes_with_wildcards_are_refused_naming_the_prefix() {
        assert_eq!(error_keys(&both("x", "a/+/", "")), ["local_prefix"]);
        assert_eq!(error_keys(&both("x", "", "b/#")), ["remote_prefix"]);
        assert_eq!(
            error_keys(&both("x", "a+", "#")),
            ["local_prefix", "remote_prefix"]
        );
        let message = both("x", "a/+/", "").validate().expect_err("refused")[0].to_string();
        assert!(message.contains("'+'"), "{message}");
    }

    /// Mosquitto's "prefix and pattern combination": the joined filter must be valid.
    #[test]
    fn a_prefix_that_breaks_the_filter_is_refused() {
        let errors = both("#", "L", "R").validate().expect_err("refused");
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[0],
            TopicRuleError::InvalidCombination {
                side: Side::Local,
                full: "L#".to_string(),
                error: TopicError::MisplacedMultiLevelWildcard,
            }
        );
        assert_eq!(errors[1].key(), "remote_prefix");
        assert_eq!(error_keys(&both("+/x", "", "cloud")), ["remote_prefix"]);
        assert_eq!(both("+/x", "", "cloud/").validate(), Ok(()));
    }

    #[test]
    fn invalid_filters_are_refused() {
        for filter in ["a/#/b", "a/b#", "a+/b", "sport/tennis#"] {
            assert_eq!(error_keys(&both(filter, "", "")), ["filter"], "{filter}");
        }
        let message = both("a/#/b", "", "").validate().expect_err("refused")[0].to_string();
        assert!(message.contains("[MQTT-4.7.1-2]"), "{message}");
    }

    #[test]
    fn shared_subscriptions_are_refused() {
        assert_eq!(error_keys(&both("$share/g/a", "", "")), ["filter"]);
        assert_eq!(error_keys(&both("a", "$share/g/", "")), ["local_prefix"]);
        assert_eq!(error_keys(&both("a", "", "$share/g/")), ["remote_prefix"]);
        assert_eq!(error_keys(&both("$share/g/a", "x/", "y/")), ["filter"]);
        assert_eq!(both("a/$share/g", "", "").validate(), Ok(()));
    }

    #[test]
    fn qos_above_two_and_null_characters_are_refused() {
        let mut bad = both("a\0", "", "r\0/");
        bad.qos = 3;
        assert_eq!(error_keys(&bad), ["qos", "filter", "remote_prefix"]);
    }

    #[test]
    fn mapped_names_must_be_topics() {
        // `L/` under `L/#` with no remote prefix would be the empty topic.
        assert_eq!(both("#", "L/", "").to_remote("L/"), None);
        let long = "a".repeat(65_530);
        assert_eq!(both("#", "", "remote/").to_remote(&long), None);
        assert!(both("#", "", "r/").to_remote(&long).is_some());
    }

    /// Among matching rules the first with a prefix decides; rules without prefixes keep the
    /// name, Mosquitto's order.
    #[test]
    fn map_out_and_map_in_pick_the_first_renaming_rule() {
        let rules = [
            rule("#", Direction::Out, "", ""),
            rule("x/#", Direction::In, "", "in/"),
            rule("x/#", Direction::Out, "", "first/"),
            rule("x/#", Direction::Out, "", "second/"),
        ];
        let (used, remote) = map_out(&rules, "x/1").expect("mapped");
        assert_eq!(remote, "first/x/1");
        assert_eq!(used, &rules[2]);
        assert_eq!(
            map_out(&rules, "y/1").map(|(_, topic)| topic).as_deref(),
            Some("y/1")
        );
        assert_eq!(
            map_in(&rules, "in/x/1").map(|(_, topic)| topic).as_deref(),
            Some("x/1")
        );
        assert_eq!(map_in(&rules, "x/1"), None);
        assert_eq!(rule_out(&rules, "x/1"), Some(&rules[2]));
        assert_eq!(rule_out(&rules, "y/1"), Some(&rules[0]));
        assert_eq!(
            rule_out(&rules[1..2], "x/1"),
            None,
            "an in rule carries nothing out"
        );
    }

    /// A rule whose new name could not be a topic does not carry the message: the next
    /// matching rule does, as in [`map_out`].
    #[test]
    fn rule_out_skips_a_rule_whose_name_is_no_topic() {
        let rules = [
            rule("#", Direction::Out, "L/", ""),
            rule("#", Direction::Out, "", "up/"),
        ];
        assert_eq!(
            map_out(&rules, "L/").map(|(_, topic)| topic).as_deref(),
            Some("up/L/")
        );
        assert_eq!(rule_out(&rules, "L/"), Some(&rules[1]));
        assert_eq!(rule_out(&rules, "L/x"), Some(&rules[0]));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Topic levels from a small alphabet, so that filters and topics often meet; no `$`
        /// (a `$` first level is matched only by rules that name it).
        fn level() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["a", "b", "", "L", "x"]).prop_map(String::from)
        }

        fn topic() -> impl Strategy<Value = String> {
            prop::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
        }

        fn filter() -> impl Strategy<Value = String> {
            let part = prop::sample::select(vec!["a", "b", "", "+", "L"]).prop_map(String::from);
            (prop::collection::vec(part, 0..4), any::<bool>()).prop_map(|(levels, hash)| {
                let mut levels = levels;
                if hash || levels.is_empty() {
                    levels.push("#".to_string());
                }
                levels.join("/")
            })
        }

        fn prefix() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["", "L/", "L", "x/a/", "p-", "R/"]).prop_map(String::from)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            /// What a `both` rule sends up comes back down as the same topic, and lands in the
            /// remote filter it subscribes upstream: a topic's two names correspond one to one.
            #[test]
            fn a_both_rule_maps_back_to_the_same_topic(
                filter in filter(),
                local in prefix(),
                remote in prefix(),
                local_topic in topic(),
                under_prefix in any::<bool>(),
            ) {
                let rule = both(&filter, &local, &remote);
                prop_assume!(rule.validate().is_ok());
                let local_topic = match under_prefix {
                    true => format!("{local}{local_topic}"),
                    false => local_topic,
                };
                prop_assume!(!local_topic.is_empty(), "a topic name is never empty");
                if let Some(remote_topic) = rule.to_remote(&local_topic) {
                    prop_assert!(filter_matches(&rule.remote_filter(), &remote_topic));
                    prop_assert_eq!(rule.to_local(&remote_topic), Some(local_topic));
                }
            }

            /// The rule found without making the name is the rule that makes it, among rules
            /// that rename and rules that do not, going out or not.
            #[test]
            fn rule_out_finds_the_rule_map_out_uses(
                rules in prop::collection::vec(
                    (filter(), prefix(), prefix(), 0..3u8),
                    1..4,
                ),
                local_topic in topic(),
            ) {
                let rules: Vec<BridgeTopic> = rules
                    .into_iter()
                    .map(|(filter, local, remote, direction)| {
                        let direction = [Direction::Out, Direction::In, Direction::Both]
                            [usize::from(direction)];
                        rule(&filter, direction, &local, &remote)
                    })
                    .filter(|rule| rule.validate().is_ok())
                    .collect();
                let mapped = map_out(&rules, &local_topic).map(|(rule, _)| rule);
                prop_assert_eq!(rule_out(&rules, &local_topic), mapped);
            }
        }
    }
}
