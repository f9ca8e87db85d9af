//! The topic filters of ACL rules, as Mosquitto 2.0 checks and matches them
//! (`lib/util_topic.c`: `mosquitto_sub_topic_check`, `mosquitto_topic_matches_sub`): a `pattern`
//! rule's `%c` and `%u` stand for the client id and the user name, and are matched in place,
//! byte by byte, without building the substituted filter (a check runs for every delivered
//! message). Also whether two filters can match a common topic, and whether one filter matches
//! every topic of another, for deciding on a SUBSCRIBE.
//!
//! Wildcard rule [MQTT-4.7.2-1]: a topic starting with `$` is matched only by a filter starting
//! with `$`, and a filter starting with `$` only matches such topics.

use std::borrow::Cow;

use super::Who;

/// Longest filter Mosquitto accepts, in bytes.
const MAX_LENGTH: usize = 65535;
/// Most `/` separators Mosquitto accepts in a filter (its `TOPIC_HIERARCHY_LIMIT`).
const MAX_SEPARATORS: usize = 200;

/// The filter of one ACL rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RuleFilter {
    pieces: Vec<Piece>,
}

/// Part of a rule's filter: text, or a placeholder of a `pattern` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    /// `%c`.
    ClientId,
    /// `%u`.
    UserName,
}

impl RuleFilter {
    /// A `topic` rule's filter: taken as written (`%u` and `%c` are plain text there).
    pub(super) fn topic(filter: &str) -> RuleFilter {
        RuleFilter {
            pieces: vec![Piece::Text(filter.into())],
        }
    }

    /// A `pattern` rule's filter, with its `%c` and `%u` placeholders.
    pub(super) fn pattern(filter: &str) -> RuleFilter {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = filter.chars().peekable();
        while let Some(c) = chars.next() {
            let placeholder = match (c, chars.peek()) {
                ('%', Some('c')) => Piece::ClientId,
                ('%', Some('u')) => Piece::UserName,
                _ => {
                    text.push(c);
                    continue;
                }
            };
            chars.next();
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text).into()));
            }
            pieces.push(placeholder);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.into()));
        }
        RuleFilter { pieces }
    }

    /// Whether the filter names the user: Mosquitto skips such a pattern for a client without
    /// a user name.
    pub(super) fn names_user(&self) -> bool {
        self.pieces.contains(&Piece::UserName)
    }

    /// Whether the filter, its placeholders replaced by `who`'s names, matches `topic`. A
    /// `UserName` placeholder is empty for a client without a user name (never asked: such a
    /// rule is skipped for it).
    pub(super) fn matches(&self, who: Who<'_>, topic: &str) -> bool {
        stream_matches(self.bytes(who), topic)
    }

    /// The filter with its placeholders replaced by `who`'s names.
    pub(super) fn expanded(&self, who: Who<'_>) -> Cow<'_, str> {
        match self.pieces.as_slice() {
            [Piece::Text(text)] => Cow::Borrowed(text),
            pieces => Cow::Owned(pieces.iter().map(|piece| piece.text(who)).collect()),
        }
    }

    fn bytes<'a>(&'a self, who: Who<'a>) -> impl Iterator<Item = u8> + 'a {
        self.pieces
            .iter()
            .flat_map(move |piece| piece.text(who).bytes())
    }
}

impl Piece {
    fn text<'a>(&'a self, who: Who<'a>) -> &'a str {
        match self {
            Piece::Text(text) => text,
            Piece::ClientId => who.client_id,
            Piece::UserName => who.username.unwrap_or_default(),
        }
    }
}

/// Whether Mosquitto accepts `filter` in an ACL file: `+` and `#` fill a whole level, `#` only
/// the last, at most 65535 bytes and 200 separators.
pub(super) fn is_valid(filter: &str) -> bool {
    let levels = filter.split('/');
    let last = levels.clone().count() - 1;
    filter.len() <= MAX_LENGTH
        && last <= MAX_SEPARATORS
        && levels.enumerate().all(|(index, level)| match level {
            "+" => true,
            "#" => index == last,
            _ => !level.contains(['+', '#']),
        })
}

/// Whether `filter`, given byte by byte, matches `topic`. Every `+` or `#` in the stream is a
/// wildcard filling its level (the file's filters are checked by [`is_valid`], and names with
/// wildcards never reach a placeholder).
fn stream_matches(filter: impl Iterator<Item = u8>, topic: &str) -> bool {
    let mut filter = filter.peekable();
    let filter_dollar = filter.peek() == Some(&b'$');
    if filter_dollar != topic.starts_with('$') {
        return false;
    }
    let mut topic_levels = topic.split('/');
    loop {
        match filter.peek() {
            Some(b'#') => return true,
            Some(b'+') => {
                filter.next();
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            _ => {
                let Some(level) = topic_levels.next() else {
                    return false;
                };
                if !level.bytes().all(|byte| filter.next() == Some(byte)) {
                    return false;
                }
            }
        }
        match filter.next() {
            None => return topic_levels.next().is_none(),
            Some(b'/') => {}
            Some(_) => return false,
        }
    }
}

/// Whether some topic is matched by both filters.
pub(super) fn overlap(a: &str, b: &str) -> bool {
    if a.starts_with('$') != b.starts_with('$') {
        return false;
    }
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) | (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            _ => return false,
        }
    }
}

/// Whether every topic `narrow` matches is matched by `wide`.
pub(super) fn covers(wide: &str, narrow: &str) -> bool {
    if wide.starts_with('$') != narrow.starts_with('$') {
        return false;
    }
    let (mut wide, mut narrow) = (wide.split('/'), narrow.split('/'));
    loop {
        match (wide.next(), narrow.next()) {
            (Some("#"), _) | (None, None) => return true,
            (Some(x), Some(y)) if y != "#" && (x == "+" || x == y) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANONYMOUS: Who<'static> = Who {
        username: None,
        client_id: "sensor-1",
    };

    fn topic_matches(filter: &str, topic: &str) -> bool {
        RuleFilter::topic(filter).matches(ANONYMOUS, topic)
    }

    #[test]
    fn filters_match_topics_as_mqtt_says() {
        // [MQTT-4.7.1-2] '#' matches the parent and any number of levels.
        for (filter, topic) in [
            ("a/b", "a/b"),
            ("#", "a"),
            ("#", "a/b/c"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("+", "a"),
            ("+/+", "a/b"),
            ("a/+/c", "a/b/c"),
            ("+/#", "a"),
            ("a//b", "a//b"),
            ("a/+/b", "a//b"),
            ("+", ""),
            ("$SYS/#", "$SYS/broker/uptime"),
            ("$SYS/+/uptime", "$SYS/broker/uptime"),
        ] {
            assert!(
                topic_matches(filter, topic),
                "{filter} should match {topic}"
            );
        }
        for (filter, topic) in [
            ("a/b", "a"),
            ("a", "a/b"),
            ("a/b", "a/bc"),
            ("a/bc", "a/b"),
            ("a/", "a"),
            ("a/+", "a"),
            ("+", "a/b"),
            ("a/+/c", "a/b/d"),
            // [MQTT-4.7.2-1] wildcards at the start never match '$' topics.
            ("#", "$SYS/broker/uptime"),
            ("+/broker/uptime", "$SYS/broker/uptime"),
            ("$SYS/#", "SYS/broker"),
        ] {
            assert!(
                !topic_matches(filter, topic),
                "{filter} must not match {topic}"
            );
        }
    }

    #[test]
    fn placeholders_are_matched_in_place() {
        let who = Who {
            username: Some("alice"),
            client_id: "dev/7",
        };
        let pattern = RuleFilter::pattern("users/%u/%c/#");
        assert_eq!(pattern.expanded(who), "users/alice/dev/7/#");
        assert!(pattern.matches(who, "users/alice/dev/7"));
        assert!(pattern.matches(who, "users/alice/dev/7/temp"));
        assert!(!pattern.matches(who, "users/alice/dev/8/temp"));
        assert!(!pattern.matches(who, "users/bob/dev/7/temp"));
        let within_level = RuleFilter::pattern("x/pre-%c-post");
        assert!(within_level.matches(who, "x/pre-dev/7-post"));
        assert!(!within_level.matches(who, "x/pre-dev/7-pos"));
        assert!(pattern.names_user());
        assert!(!within_level.names_user());
        // Not a placeholder: '%' before another letter, and every '%' in a topic rule.
        assert_eq!(RuleFilter::pattern("a/%x/%").expanded(who), "a/%x/%");
        assert_eq!(RuleFilter::pattern("a/%%u").expanded(who), "a/%alice");
        assert_eq!(RuleFilter::topic("a/%u").expanded(who), "a/%u");
    }

    #[test]
    fn validity_is_mosquittos() {
        for valid in [
            "#", "+", "a/+/b", "a/#", "+/#", "a//b", "/", "a b/c", "%c/%u",
        ] {
            assert!(is_valid(valid), "{valid}");
        }
        let deep = "a/".repeat(MAX_SEPARATORS + 1);
        for invalid in ["a/#/b", "a#", "a/b+", "+a", "##", &deep] {
            assert!(!is_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn overlap_and_cover() {
        for (a, b) in [
            ("#", "a/b"),
            ("a/+", "+/b"),
            ("a/#", "a"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/broker/+"),
        ] {
            assert!(overlap(a, b) && overlap(b, a), "{a} {b}");
        }
        for (a, b) in [
            ("a/b", "a/c"),
            ("a/+", "a"),
            ("#", "$SYS/#"),
            ("+/x", "$SYS/x"),
        ] {
            assert!(!overlap(a, b) && !overlap(b, a), "{a} {b}");
        }
        for (wide, narrow) in [
            ("#", "a/#"),
            ("a/#", "a"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("$SYS/#", "$SYS/+"),
        ] {
            assert!(covers(wide, narrow), "{wide} covers {narrow}");
        }
        for (wide, narrow) in [
            ("a/+", "a/#"),
            ("a/b", "a/+"),
            ("a/+", "a"),
            ("#", "$SYS/#"),
            ("a", "a/b"),
        ] {
            assert!(!covers(wide, narrow), "{wide} must not cover {narrow}");
        }
    }
}
