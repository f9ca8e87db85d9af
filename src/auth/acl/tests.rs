use std::path::Path;

use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Acl {
    Acl::parse(text, Path::new("/etc/cairn/acl")).expect("a valid ACL file")
}

fn refusal(text: &str) -> (usize, LineProblem) {
    match Acl::parse(text, Path::new("/etc/cairn/acl")) {
        Err(AuthFileError::Line { line, problem, .. }) => (line, problem),
        other => panic!("{text:?} should be refused for a line, got {other:?}"),
    }
}

fn user<'a>(name: &'a str, client_id: &'a str) -> Who<'a> {
    Who {
        username: Some(name),
        client_id,
    }
}

fn anonymous(client_id: &str) -> Who<'_> {
    Who {
        username: None,
        client_id,
    }
}

use Access::{Read, Write};

#[test]
fn topic_lines_before_any_user_are_for_anonymous_clients_only() {
    // Mosquitto 2.0.11: bob (no `topic` rule of his own) did not receive public/a.
    let acl = parse("topic read public/#\n\nuser alice\ntopic readwrite alice/#\n");
    assert!(acl.allows(anonymous("c1"), "public/a", Read));
    assert!(!acl.allows(anonymous("c1"), "public/a", Write));
    assert!(!acl.allows(user("alice", "c1"), "public/a", Read));
    assert!(!acl.allows(user("bob", "c1"), "public/a", Read));
    assert!(acl.allows(user("alice", "c1"), "alice/x", Write));
    assert!(!acl.allows(anonymous("c1"), "alice/x", Read));
}

#[test]
fn access_words() {
    let acl = parse(
        "user u\ntopic read r\ntopic write w\ntopic readwrite rw\ntopic both\ntopic deny d\n",
    );
    let u = user("u", "c");
    let table = [
        ("r", true, false),
        ("w", false, true),
        ("rw", true, true),
        ("both", true, true),
        ("d", false, false),
        ("other", false, false),
    ];
    for (topic, read, write) in table {
        assert_eq!(acl.allows(u, topic, Read), read, "read {topic}");
        assert_eq!(acl.allows(u, topic, Write), write, "write {topic}");
    }
}

#[test]
fn deny_wins_over_any_grant_of_the_same_list_whatever_the_order() {
    // Mosquitto 2.0.11: alice did not receive shared/secret.
    let acl = parse("user alice\ntopic read shared/#\ntopic deny shared/secret\ntopic read #\n");
    let alice = user("alice", "c");
    assert!(acl.allows(alice, "shared/a", Read));
    assert!(!acl.allows(alice, "shared/secret", Read));
    assert!(acl.allows(alice, "other", Read));
}

#[test]
fn own_topic_rules_decide_before_patterns() {
    // Mosquitto 2.0.11: bob's `topic read x/#` let x/bob through despite `pattern deny x/%u`.
    let acl = parse("user bob\ntopic read x/#\npattern deny x/%u\npattern deny y/%u\n");
    assert!(acl.allows(user("bob", "c"), "x/bob", Read));
    assert!(!acl.allows(user("carol", "c"), "x/carol", Read));
    let acl = parse("user bob\ntopic read y/#\ntopic deny y/bob\npattern read y/%u\n");
    assert!(
        !acl.allows(user("bob", "c"), "y/bob", Read),
        "own deny first"
    );
}

#[test]
fn patterns_substitute_client_id_and_user_name() {
    let acl = parse("pattern read users/%u/#\npattern readwrite clients/%c/#\n");
    let alice = user("alice", "dev/7");
    assert!(acl.allows(alice, "users/alice/temp", Read));
    assert!(!acl.allows(alice, "users/alice/temp", Write));
    assert!(!acl.allows(alice, "users/bob/temp", Read));
    // A client id with '/' spans levels (Mosquitto 2.0.11 delivered clients/c/x/a to "c/x").
    assert!(acl.allows(alice, "clients/dev/7/x", Write));
    assert!(!acl.allows(alice, "clients/dev/x", Write));
    // A user who has no `user` block gets the patterns (carol, in Mosquitto 2.0.11).
    assert!(acl.allows(user("carol", "c1"), "clients/c1/a", Read));
}

#[test]
fn a_pattern_naming_the_user_is_skipped_for_anonymous_clients() {
    // Mosquitto 2.0.11: an anonymous client got clients/c1/a, neither users//a nor users/%u/a.
    let acl = parse("pattern read users/%u/#\npattern read clients/%c/#\n");
    let anon = anonymous("c1");
    assert!(acl.allows(anon, "clients/c1/a", Read));
    assert!(!acl.allows(anon, "users//a", Read));
    assert!(!acl.allows(anon, "users/%u/a", Read));
    // An empty user name is a user name.
    assert!(acl.allows(user("", "c1"), "users//a", Read));
}

#[test]
fn topic_rules_take_percent_signs_literally() {
    // Mosquitto 2.0.11: bob with `topic read a/%u/b` received a/%u/b, not a/bob/b.
    let acl = parse("user bob\ntopic read a/%u/b\n");
    assert!(acl.allows(user("bob", "c"), "a/%u/b", Read));
    assert!(!acl.allows(user("bob", "c"), "a/bob/b", Read));
}

#[test]
fn names_with_wildcards_get_nothing_from_patterns() {
    let acl = parse("user we+ird\ntopic read own\npattern read users/%u/#\npattern read all\n");
    assert!(!acl.allows(user("we+ird", "c"), "users/we+ird/a", Read));
    assert!(!acl.allows(user("we+ird", "c"), "all", Read));
    assert!(!acl.allows(user("bob", "c#"), "all", Read));
    assert!(acl.allows(user("bob", "c"), "all", Read));
    assert!(
        acl.allows(user("we+ird", "c"), "own", Read),
        "own rules still apply"
    );
}

#[test]
fn dollar_topics_need_rules_starting_with_dollar() {
    // [MQTT-4.7.2-1]; Mosquitto 2.0.11: `topic read #` did not deliver $SYS/broker/version,
    // `topic read $SYS/#` did; `topic readwrite #` did not let a client publish to $app/a.
    let acl = parse(
        "topic read #\nuser admin\ntopic readwrite #\ntopic read $SYS/#\n\
         topic readwrite $app/#\npattern read #\n",
    );
    assert!(!acl.allows(anonymous("c"), "$SYS/broker/version", Read));
    assert!(acl.allows(anonymous("c"), "a/b", Read));
    let admin = user("admin", "c");
    assert!(acl.allows(admin, "$SYS/broker/version", Read));
    assert!(!acl.allows(admin, "$SYS/broker/version", Write));
    assert!(acl.allows(admin, "$app/a", Write));
    assert!(!acl.allows(user("bob", "c"), "$app/a", Read));
    assert!(acl.allows(user("bob", "c"), "app/a", Read));
}

#[test]
fn an_empty_file_denies_everything() {
    let acl = parse("# nothing\n\n");
    assert!(!acl.allows(anonymous("c"), "a", Read));
    assert!(!acl.allows(user("u", "c"), "a", Write));
    assert!(!acl.may_subscribe(user("u", "c"), "#"));
}

#[test]
fn subscribe_is_refused_only_when_nothing_could_be_delivered() {
    let acl = parse(
        "user alice\ntopic read sensors/#\ntopic deny sensors/secret/#\ntopic write cmd/#\n\
         topic read $SYS/broker/#\npattern read clients/%c/#\n",
    );
    let alice = user("alice", "dev1");
    for accepted in [
        "#",
        "+/temp",
        "sensors/#",
        "sensors/+/temp",
        "$SYS/#",
        "$share/group/sensors/#",
        "clients/dev1/x",
    ] {
        assert!(acl.may_subscribe(alice, accepted), "{accepted}");
    }
    for refused in [
        "sensors/secret/#",
        "sensors/secret/a",
        "cmd/#",
        "other/#",
        "$SYS/other",
        "clients/dev2/x",
        "$share/group/cmd/x",
    ] {
        assert!(!acl.may_subscribe(alice, refused), "{refused}");
    }
    assert!(!acl.may_subscribe(user("bob", "dev2"), "sensors/#"));
    assert!(acl.may_subscribe(user("bob", "dev2"), "clients/+/x"));
}

#[test]
fn line_syntax_is_mosquittos() {
    // Spaces: several between words, trailing blanks, spaces inside the filter.
    let acl = parse("user   a b \t\r\n  topic  read   x y/z  \n");
    assert!(acl.allows(user("a b", "c"), "x y/z", Read));
    // A single word after `topic` is the filter, with both accesses.
    let acl = parse("user a\ntopic read\n");
    assert!(acl.allows(user("a", "c"), "read", Write));
    // Several blocks of one user add up.
    let acl = parse("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic read z\n");
    assert!(acl.allows(user("a", "c"), "x", Read) && acl.allows(user("a", "c"), "z", Read));
    assert!(!acl.allows(user("a", "c"), "y", Read));
}

#[test]
fn lines_mosquitto_refuses_are_refused_with_their_number() {
    let keyword = |word: &str| LineProblem::UnknownKeyword(word.to_string());
    for (bad, problem) in [
        ("  # indented comment", keyword("#")),
        ("topic\tread\tx", keyword("topic\tread\tx")),
        ("TOPIC read x", keyword("TOPIC")),
        ("users alice", keyword("users")),
        ("user", LineProblem::MissingUserName),
        ("user   ", LineProblem::MissingUserName),
        ("topic", LineProblem::MissingTopic),
        ("pattern   ", LineProblem::MissingTopic),
        ("topic reed x", LineProblem::BadAccess("reed".to_string())),
        (
            "topic read a/#/b",
            LineProblem::InvalidFilter("a/#/b".to_string()),
        ),
        (
            "pattern read a/%c+",
            LineProblem::InvalidFilter("a/%c+".to_string()),
        ),
    ] {
        assert_eq!(
            refusal(&format!("# ok\nuser a\n{bad}\n")),
            (3, problem),
            "{bad:?}"
        );
    }
    let message = Acl::parse("\nbogus\n", Path::new("/etc/cairn/acl"))
        .expect_err("bad")
        .to_string();
    assert!(message.starts_with("/etc/cairn/acl, line 2: "), "{message}");
}

/// A rule list from generated rules, as file text, for the property below.
fn rules_text(rules: &[(bool, &str)]) -> String {
    let mut text = String::from("user u\n");
    for (deny, filter) in rules {
        let access = if *deny { "deny" } else { "readwrite" };
        text.push_str(&format!("topic {access} {filter}\n"));
    }
    text
}

proptest! {
    /// Deny before grant, whatever the order of the lines: a topic is allowed exactly when no
    /// deny rule matches it and some grant does.
    #[test]
    fn deny_before_grant(
        rules in prop::collection::vec(
            (any::<bool>(), prop::sample::select(vec!["#", "a/#", "a/+", "a/b", "+/b", "b", "+"])),
            0..6,
        ),
        topic in prop::sample::select(vec!["a", "a/b", "a/c", "b", "b/b", "c/b"]),
    ) {
        let expected = !rules.iter().any(|(deny, filter)| *deny && filter::RuleFilter::topic(filter).matches(user("u", "c"), topic))
            && rules.iter().any(|(deny, filter)| !*deny && filter::RuleFilter::topic(filter).matches(user("u", "c"), topic));
        let acl = parse(&rules_text(&rules));
        prop_assert_eq!(acl.allows(user("u", "c"), topic, Read), expected);
        let mut reversed = rules.clone();
        reversed.reverse();
        prop_assert_eq!(parse(&rules_text(&reversed)).allows(user("u", "c"), topic, Write), expected);
    }
}

/// A line of the generated files below: `topic` or `pattern`, an access, a filter.
fn rule_line((pattern, access, filter): &(bool, &str, &str)) -> String {
    let keyword = if *pattern { "pattern" } else { "topic" };
    format!("{keyword} {access} {filter}\n")
}

proptest! {
    // Cheap cases, and the telling ones (a deny and a grant over the filter) are rare.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// A refused SUBSCRIBE could never have delivered anything: every topic its filter matches
    /// is denied to the client.
    #[test]
    fn a_refused_subscribe_matches_no_readable_topic(
        rules in prop::collection::vec(
            (
                any::<bool>(),
                prop::sample::select(vec!["read", "write", "readwrite", "deny"]),
                prop::sample::select(vec!["#", "a/#", "a/+", "a/b", "+/b", "b", "$s/#", "c/%u", "%u"]),
            ),
            0..6,
        ),
        filter in prop::sample::select(vec!["#", "+", "a/#", "a/+", "a/b", "+/b", "b", "+/+", "$s/#", "c/+", "u"]),
    ) {
        let text: String = std::iter::once("user u\n".to_string())
            .chain(rules.iter().map(rule_line))
            .collect();
        let acl = parse(&text);
        let who = user("u", "c");
        let topics = ["a", "a/b", "a/c", "b", "b/b", "u", "c/u", "%u", "$s/a"];
        if !acl.may_subscribe(who, filter) {
            for topic in topics {
                let matched = filter::RuleFilter::topic(filter).matches(who, topic);
                prop_assert!(
                    !(matched && acl.allows(who, topic, Read)),
                    "{filter} refused, but {topic} is readable under\n{text}"
                );
            }
        }
    }
}
