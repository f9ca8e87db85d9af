//! Password files crossing between Mosquitto and Cairn: Cairn's `PasswordFile` verifies what
//! the real `mosquitto_passwd` writes (`$7$` with the default and other iteration counts, and
//! `$6$` with `-H sha512`), and the real Mosquitto lets in the users `cairn passwd` writes, and
//! refuses a wrong password.

use std::path::Path;

use cairn::auth::PasswordFile;

use crate::clients::{clients_available, publish, Login, PASSWD};
use crate::common::binary::{assert_exit, run};
use crate::common::programs;
use crate::common::upstream::{MosquittoProfile, MosquittoUpstream};

/// Runs `mosquitto_passwd args…` and fails the test if it does not succeed.
async fn mosquitto_passwd(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    programs::run(PASSWD, &args)
        .await
        .assert_success(&format!("{PASSWD} {}", args.join(" ")));
}

#[tokio::test]
async fn cairn_verifies_files_written_by_mosquitto_passwd() {
    let test = "cairn_verifies_files_written_by_mosquitto_passwd";
    if !programs::available(PASSWD, "mosquitto", test) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("passwd");
    let path = file.to_str().expect("UTF-8 path");
    mosquitto_passwd(&["-c", "-b", path, "alice", "first"]).await;
    mosquitto_passwd(&["-b", path, "bob the builder", "p:w d"]).await;
    mosquitto_passwd(&["-I", "1000", "-b", path, "many", "rounds"]).await;
    mosquitto_passwd(&["-H", "sha512", "-b", path, "legacy", "old secret"]).await;
    mosquitto_passwd(&["-b", path, "alice", "second"]).await;
    let text = std::fs::read_to_string(&file).expect("written");
    assert!(text.contains("\nmany:$7$1000$"), "{text}");
    assert!(text.contains("\nlegacy:$6$"), "{text}");

    let read = PasswordFile::load(&file).expect("Cairn reads mosquitto_passwd's file");
    assert_eq!(
        read.users().collect::<Vec<_>>(),
        ["alice", "bob the builder", "many", "legacy"]
    );
    for (user, right, wrong) in [
        ("alice", "second", "first"),
        ("bob the builder", "p:w d", "p:w"),
        ("many", "rounds", "round"),
        ("legacy", "old secret", "old secret "),
    ] {
        assert!(read.verify(user, right.as_bytes()), "{user}");
        assert!(
            !read.verify(user, wrong.as_bytes()),
            "{user} with {wrong:?}"
        );
    }
    assert!(!read.verify("nobody", b"second"));
}

/// `cairn passwd FLAGS… FILE USER PASSWORD`, which must succeed.
async fn cairn_passwd(flags: &[&str], file: &Path, user: &str, password: &str) {
    let path = file.to_str().expect("UTF-8 path");
    let args = [&["passwd"], flags, &[path, user, password]].concat();
    assert_exit(&run(&args).await, 0, &format!("cairn {}", args.join(" ")));
}

#[tokio::test]
async fn mosquitto_accepts_users_written_by_cairn_passwd() {
    let test = "mosquitto_accepts_users_written_by_cairn_passwd";
    if !clients_available(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("passwd");
    cairn_passwd(&["-c", "-b"], &file, "alice", "apw").await;
    cairn_passwd(&["--batch"], &file, "bob", "b pw:x").await;
    cairn_passwd(&["-b"], &file, "alice", "apw2").await;
    let text = std::fs::read_to_string(&file).expect("written");
    let profile = MosquittoProfile::Secured {
        anonymous: false,
        acl: false,
    };
    let Some(mosquitto) =
        MosquittoUpstream::start_with_files(profile, &[("passwd", &text)], test).await
    else {
        return;
    };
    for (user, expected) in [
        (Some(("alice", "apw2")), true),
        (Some(("bob", "b pw:x")), true),
        (Some(("alice", "apw")), false),
        (Some(("bob", "b pw")), false),
        (Some(("carol", "apw2")), false),
        (None, false),
    ] {
        let login = Login {
            client_id: "interop",
            user,
        };
        let finished = publish(mosquitto.addr(), login, "t", "m").await;
        assert_eq!(
            finished.status.success(),
            expected,
            "{user:?}: {finished:#?}\nmosquitto's log: {}",
            mosquitto.log()
        );
    }
}
