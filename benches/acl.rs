//! Cost of one ACL check (`Acl::allows`, asked for every delivered message when an ACL file is
//! set) in a gateway-sized file: 50 users with 4 `topic` rules each (one a deny) and 4
//! patterns with `%u` and `%c`; a grant found in the user's own rules, one found in the
//! patterns, and a denial after trying every rule.

use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;

use cairn::auth::{Access, Acl, Who};
use criterion::{criterion_group, criterion_main, Criterion};

fn acl_file() -> String {
    let mut text = String::new();
    for user in 0..50 {
        let _ = write!(
            text,
            "user sensor-{user}\ntopic readwrite site/{user}/#\ntopic deny site/{user}/secret\n\
             topic read alerts/#\ntopic write commands/{user}/+/ack\n"
        );
    }
    text.push_str(
        "pattern read users/%u/#\npattern readwrite clients/%c/#\npattern deny x/%u\n\
         pattern read status/%c/+/state\n",
    );
    text
}

fn allows(c: &mut Criterion) {
    let acl = Acl::parse(&acl_file(), Path::new("bench.acl")).expect("a valid file");
    let who = Who {
        username: Some("sensor-42"),
        client_id: "gateway-sensor-42",
    };
    let mut group = c.benchmark_group("acl_allows");
    for (name, topic, expected) in [
        ("own_rule", "site/42/sensor/7/temp", true),
        ("pattern", "status/gateway-sensor-42/7/state", true),
        ("denied_after_all_rules", "site/41/sensor/7/temp", false),
    ] {
        assert_eq!(acl.allows(who, topic, Access::Read), expected, "{topic}");
        group.bench_function(name, |b| {
            b.iter(|| acl.allows(black_box(who), black_box(topic), Access::Read))
        });
    }
    group.finish();
}

criterion_group!(benches, allows);
criterion_main!(benches);
