//! Topic names and topic filters (MQTT 3.1.1 and 5.0 section 4.7, shared subscriptions 4.8.2):
//! their validation against the specification and the configured limits, the `$share/{group}/`
//! prefix, and the reference matching of one filter against one topic.
//!
//! Pure string work on `&str`: no allocation, no state. UTF-8 validity and U+0000 are the
//! codec's job; the separators and wildcards checked here are ASCII, so scanning bytes is exact.

/// The prefix of a shared subscription's filter [MQTT-4.8.2-1].
const SHARE_PREFIX: &str = "$share/";

/// Limits from config: longest name/filter in bytes, most levels.
#[derive(Debug, Clone, Copy)]
pub struct TopicLimits {
    /// Longest topic name or whole topic filter (`$share/{group}/` included), in bytes.
    pub max_length: usize,
    /// Most levels in a topic name or in the filter a subscription matches with (after any
    /// `$share/{group}/` prefix).
    pub max_levels: usize,
}

/// Why a topic name or topic filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("the topic name is empty [MQTT-4.7.3-1]")]
    EmptyName,
    #[error("the topic filter is empty [MQTT-4.7.3-1]")]
    EmptyFilter,
    #[error(
        "the topic name contains the wildcard '{0}', which only filters may use [MQTT-3.3.2-2]"
    )]
    WildcardInName(char),
    #[error("'#' must be the last level of the filter and alone in it [MQTT-4.7.1-2]")]
    MisplacedMultiLevelWildcard,
    #[error("'+' must be alone in its level [MQTT-4.7.1-3]")]
    MisplacedSingleLevelWildcard,
    #[error("the topic is {length} bytes long, more than the configured maximum of {max}")]
    TooLong { length: usize, max: usize },
    #[error("the topic has {levels} levels, more than the configured maximum of {max}")]
    TooManyLevels { levels: usize, max: usize },
    #[error("the shared subscription has an empty share name [MQTT-4.8.2-1]")]
    EmptyShareName,
    #[error("the share name contains '{0}' [MQTT-4.8.2-2]")]
    WildcardInShareName(char),
    #[error("the shared subscription has no topic filter after its share name [MQTT-4.8.2-2]")]
    MissingSharedFilter,
}

/// A topic name in PUBLISH: non-empty [MQTT-4.7.3-1], no wildcards [MQTT-3.3.2-2], within limits
/// (the codec already rejected U+0000 and bad UTF-8).
pub fn validate_topic_name(name: &str, limits: TopicLimits) -> Result<(), TopicError> {
    check_length(name, limits)?;
    if name.is_empty() {
        return Err(TopicError::EmptyName);
    }
    if let Some(wildcard) = name.chars().find(|&c| c == '+' || c == '#') {
        return Err(TopicError::WildcardInName(wildcard));
    }
    check_levels(name, limits)
}

/// A topic filter in SUBSCRIBE/UNSUBSCRIBE: non-empty, '#' only last and alone in its level
/// [MQTT-4.7.1-2], '+' alone in its level [MQTT-4.7.1-3], within limits; `$share/{group}/{filter}`
/// with a non-empty group without '+', '#', and a valid non-empty filter after it [MQTT-4.8.2-1/2].
pub fn validate_topic_filter(filter: &str, limits: TopicLimits) -> Result<(), TopicError> {
    check_length(filter, limits)?;
    let matching_filter = match filter.strip_prefix(SHARE_PREFIX) {
        Some(group_and_filter) => split_share_group(group_and_filter)?,
        None => filter,
    };
    if matching_filter.is_empty() {
        return Err(TopicError::EmptyFilter);
    }
    check_wildcard_placement(matching_filter)?;
    check_levels(matching_filter, limits)
}

/// Splits `$share/{group}/{filter}` into (group, filter); None for a non-shared filter.
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix(SHARE_PREFIX)?.split_once('/')
}

/// Whether a (validated) filter has a `+` or `#` level: without one it matches only the topic
/// spelled the same.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Whether `filter` (non-shared) matches `topic`; '$'-topics are not matched by a filter starting
/// with '+' or '#' [MQTT-4.7.2-1]. Used by retained-message delivery and as the reference in tests.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        if filter_level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(topic_level) if filter_level == "+" || filter_level == topic_level => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// The part after `$share/`: checks the share name and returns the filter that follows it.
fn split_share_group(group_and_filter: &str) -> Result<&str, TopicError> {
    let (group, filter) = group_and_filter
        .split_once('/')
        .unwrap_or((group_and_filter, ""));
    if group.is_empty() {
        return Err(TopicError::EmptyShareName);
    }
    if let Some(wildcard) = group.chars().find(|&c| c == '+' || c == '#') {
        return Err(TopicError::WildcardInShareName(wildcard));
    }
    if filter.is_empty() {
        return Err(TopicError::MissingSharedFilter);
    }
    Ok(filter)
}

/// Every level of `filter` holding a wildcard is exactly `+`, or exactly `#` and last.
fn check_wildcard_placement(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

fn check_length(topic: &str, limits: TopicLimits) -> Result<(), TopicError> {
    if topic.len() > limits.max_length {
        return Err(TopicError::TooLong {
            length: topic.len(),
            max: limits.max_length,
        });
    }
    Ok(())
}

fn check_levels(topic: &str, limits: TopicLimits) -> Result<(), TopicError> {
    let levels = topic.bytes().filter(|&byte| byte == b'/').count() + 1;
    if levels > limits.max_levels {
        return Err(TopicError::TooManyLevels {
            levels,
            max: limits.max_levels,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TopicLimits = TopicLimits {
        max_length: 65_535,
        max_levels: 64,
    };

    fn name(topic: &str) -> Result<(), TopicError> {
        validate_topic_name(topic, LIMITS)
    }

    fn filter(topic: &str) -> Result<(), TopicError> {
        validate_topic_filter(topic, LIMITS)
    }

    #[test]
    fn empty_name_and_filter_are_refused_mqtt_4_7_3_1() {
        assert_eq!(name(""), Err(TopicError::EmptyName));
        assert_eq!(filter(""), Err(TopicError::EmptyFilter));
    }

    #[test]
    fn wildcards_in_a_topic_name_are_refused_mqtt_3_3_2_2() {
        assert_eq!(name("sport/+"), Err(TopicError::WildcardInName('+')));
        assert_eq!(name("sport/#"), Err(TopicError::WildcardInName('#')));
        assert_eq!(name("sport+"), Err(TopicError::WildcardInName('+')));
        assert_eq!(name("#"), Err(TopicError::WildcardInName('#')));
    }

    #[test]
    fn ordinary_names_are_accepted_mqtt_4_7_3() {
        for topic in [
            "sport/tennis/player1",
            "/",
            "/finance",
            "a//b",
            "sport/",
            " ",
            "$SYS/broker/uptime",
            "ACCOUNTS",
            "Accounts payable",
            "über/größe",
        ] {
            assert_eq!(name(topic), Ok(()), "{topic:?}");
        }
    }

    #[test]
    fn multi_level_wildcard_examples_mqtt_4_7_1_2() {
        for valid in [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "/#",
            "+/#",
            "sport/+/#",
        ] {
            assert_eq!(filter(valid), Ok(()), "{valid:?}");
        }
        for invalid in [
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "#/",
            "##",
            "sport/#x",
            "a/#/",
        ] {
            assert_eq!(
                filter(invalid),
                Err(TopicError::MisplacedMultiLevelWildcard),
                "{invalid:?}"
            );
        }
    }

    #[test]
    fn single_level_wildcard_examples_mqtt_4_7_1_3() {
        for valid in [
            "+",
            "+/tennis/#",
            "sport/+/player1",
            "+/+",
            "/+",
            "sport/+",
            "+/",
        ] {
            assert_eq!(filter(valid), Ok(()), "{valid:?}");
        }
        for invalid in ["sport+", "+sport", "sport/+x/a", "++"] {
            assert_eq!(
                filter(invalid),
                Err(TopicError::MisplacedSingleLevelWildcard),
                "{invalid:?}"
            );
        }
    }

    #[test]
    fn length_limit_counts_bytes_of_the_whole_string() {
        let limits = TopicLimits {
            max_length: 4,
            max_levels: 64,
        };
        assert_eq!(validate_topic_name("abcd", limits), Ok(()));
        assert_eq!(
            validate_topic_name("ab/de", limits),
            Err(TopicError::TooLong { length: 5, max: 4 })
        );
        assert_eq!(
            validate_topic_name("üü/", limits),
            Err(TopicError::TooLong { length: 5, max: 4 })
        );
        assert_eq!(
            validate_topic_filter("$share/g/a", limits),
            Err(TopicError::TooLong { length: 10, max: 4 })
        );
    }

    #[test]
    fn level_limit_counts_empty_levels_and_ignores_the_share_prefix() {
        let limits = TopicLimits {
            max_length: 100,
            max_levels: 3,
        };
        assert_eq!(validate_topic_name("a/b/c", limits), Ok(()));
        assert_eq!(
            validate_topic_name("a//b/c", limits),
            Err(TopicError::TooManyLevels { levels: 4, max: 3 })
        );
        assert_eq!(
            validate_topic_filter("/+/a/#", limits),
            Err(TopicError::TooManyLevels { levels: 4, max: 3 })
        );
        assert_eq!(validate_topic_filter("$share/group/a/+/#", limits), Ok(()));
        assert_eq!(
            validate_topic_filter("$share/group/a/b/c/d", limits),
            Err(TopicError::TooManyLevels { levels: 4, max: 3 })
        );
    }

    #[test]
    fn shared_filters_need_a_share_name_without_wildcards_mqtt_4_8_2_1_and_2() {
        assert_eq!(filter("$share/consumers/sport/#"), Ok(()));
        assert_eq!(filter("$share/g/+"), Ok(()));
        assert_eq!(filter("$share/$g/a"), Ok(()));
        assert_eq!(filter("$share//sport"), Err(TopicError::EmptyShareName));
        assert_eq!(filter("$share/"), Err(TopicError::EmptyShareName));
        assert_eq!(
            filter("$share/g+/a"),
            Err(TopicError::WildcardInShareName('+'))
        );
        assert_eq!(
            filter("$share/#/a"),
            Err(TopicError::WildcardInShareName('#'))
        );
        assert_eq!(filter("$share/g"), Err(TopicError::MissingSharedFilter));
        assert_eq!(filter("$share/g/"), Err(TopicError::MissingSharedFilter));
        assert_eq!(
            filter("$share/g/a#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            filter("$share/g/a+"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
    }

    #[test]
    fn a_filter_merely_resembling_a_share_is_an_ordinary_filter() {
        assert_eq!(filter("$share"), Ok(()));
        assert_eq!(filter("$shared/g/a"), Ok(()));
        assert_eq!(parse_shared("$share"), None);
        assert_eq!(parse_shared("$shared/g/a"), None);
        assert_eq!(parse_shared("share/g/a"), None);
    }

    #[test]
    fn parse_shared_splits_group_and_filter() {
        assert_eq!(
            parse_shared("$share/consumers/sport/#"),
            Some(("consumers", "sport/#"))
        );
        assert_eq!(parse_shared("$share/g//"), Some(("g", "/")));
        assert_eq!(parse_shared("$share/g"), None);
        assert_eq!(parse_shared("sport/#"), None);
    }

    #[test]
    fn multi_level_wildcard_matches_parent_and_children_mqtt_4_7_1_2() {
        let f = "sport/tennis/player1/#";
        assert!(filter_matches(f, "sport/tennis/player1"));
        assert!(filter_matches(f, "sport/tennis/player1/ranking"));
        assert!(filter_matches(f, "sport/tennis/player1/score/wimbledon"));
        assert!(!filter_matches(f, "sport/tennis/player2"));
        assert!(!filter_matches(f, "sport/tennis"));
        assert!(filter_matches("sport/#", "sport"));
        assert!(filter_matches("sport/#", "sport/"));
        assert!(filter_matches("#", "sport/tennis"));
        assert!(filter_matches("#", "/"));
    }

    #[test]
    fn single_level_wildcard_matches_exactly_one_level_mqtt_4_7_1_3() {
        assert!(filter_matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(filter_matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!filter_matches(
            "sport/tennis/+",
            "sport/tennis/player1/ranking"
        ));
        assert!(filter_matches("sport/+", "sport/"));
        assert!(!filter_matches("sport/+", "sport"));
        assert!(filter_matches("+/+", "/finance"));
        assert!(filter_matches("/+", "/finance"));
        assert!(!filter_matches("+", "/finance"));
        assert!(filter_matches("+", "finance"));
        assert!(filter_matches("+/tennis/#", "sport/tennis"));
    }

    #[test]
    fn leading_wildcards_do_not_match_dollar_topics_mqtt_4_7_2_1() {
        assert!(!filter_matches("#", "$SYS/broker/uptime"));
        assert!(!filter_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(!filter_matches("+", "$SYS"));
        assert!(filter_matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(filter_matches("$SYS/#", "$SYS"));
        assert!(filter_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(filter_matches("a/+", "a/$b"));
    }

    #[test]
    fn literal_levels_match_exactly_mqtt_4_7_3() {
        assert!(filter_matches("a//b", "a//b"));
        assert!(!filter_matches("a//b", "a/b"));
        assert!(!filter_matches("ACCOUNTS", "Accounts"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(!filter_matches("a/b/c", "a/b"));
        assert!(filter_matches("/", "/"));
        assert!(!filter_matches("/", ""));
    }
}
