use std::path::Path;

use proptest::prelude::*;

use super::*;

/// Written by `mosquitto_passwd -b FILE alice apw` (Mosquitto 2.0.11).
const ALICE: &str = "alice:$7$101$Cc/iDPxDKF1Zimjo$w9dQs2sxLYaBMho3uKaFQ9V5X0JqPQ4h+4ePbMCTib0CoEncwdSWBfVoUUA8Laua+GBQaTPb7zyJmAYaI2hZEw==";
/// SHA-512 of "old secret" then the salt 1..=12 (Python's hashlib), Mosquitto 1.x's format.
const LEGACY: &str = "legacy:$6$AQIDBAUGBwgJCgsM$m12pCyk9j1FdEa/V38NjyDTkXOUZzS+8dMdrySHtBhPsM0gHO2mqlalXFIxSJEGZdn3LWZK8VZzq2AowZq6kJQ==";
/// PBKDF2-HMAC-SHA512 of "pw", salt 1..=12, 1000 iterations (Python's hashlib).
const SLOW: &str = "slow:$7$1000$AQIDBAUGBwgJCgsM$vgfrbwJ5lH2tRBXbIbGh0JySWtd9ZNMJirL5swRIIumrNEKOnjTYItK6iGr+AByM7v4kj/fsE3v9kMMM4kpQ5A==";

fn parse(text: &str) -> Result<PasswordFile, AuthFileError> {
    PasswordFile::parse(text, Path::new("/etc/cairn/passwd"))
}

/// The line number and the problem of a refused file.
fn refusal(text: &str) -> (usize, LineProblem) {
    match parse(text) {
        Err(AuthFileError::Line { line, problem, .. }) => (line, problem),
        other => panic!("{text:?} should be refused for a line, got {other:?}"),
    }
}

#[test]
fn verifies_both_schemes() {
    let file = parse(&format!("{ALICE}\n{LEGACY}\n{SLOW}\n")).expect("valid");
    assert!(file.verify("alice", b"apw"));
    assert!(!file.verify("alice", b"apw "));
    assert!(!file.verify("alice", b""));
    assert!(file.verify("legacy", b"old secret"));
    assert!(!file.verify("legacy", b"old secreT"));
    assert!(file.verify("slow", b"pw"));
    assert!(!file.verify("slow", b"apw"));
    assert!(!file.verify("nobody", b"apw"));
    assert!(file.contains("legacy") && !file.contains("nobody"));
    assert_eq!(
        file.users().collect::<Vec<_>>(),
        ["alice", "legacy", "slow"]
    );
}

#[test]
fn comments_blank_lines_and_blanks_around_fields_are_mosquittos() {
    let text = format!(
        "# users\n\n   \n\t{ALICE}  \r\n  {}\t\n",
        LEGACY.replace(':', " : ")
    );
    let file = parse(&text).expect("valid");
    assert!(file.verify("alice", b"apw"));
    assert!(file.verify("legacy", b"old secret"));
    // Like Mosquitto, the hash ends at a further ':'.
    let file = parse(&format!("{ALICE}:anything")).expect("valid");
    assert!(file.verify("alice", b"apw"));
}

#[test]
fn lines_cairn_cannot_read_are_refused_with_their_number() {
    let valid = format!("# comment\n{ALICE}\n");
    let user = |user: &str| user.to_string();
    for (bad, problem) in [
        ("garbage".to_string(), LineProblem::MissingColon),
        (":$7$...".to_string(), LineProblem::EmptyUser),
        (
            "bob:plain-text".to_string(),
            LineProblem::UnknownHashScheme { user: user("bob") },
        ),
        (
            "bob:".to_string(),
            LineProblem::UnknownHashScheme { user: user("bob") },
        ),
        (
            "bob:$5$AQIDBAUGBwgJCgsM$abc".to_string(),
            LineProblem::UnknownHashScheme { user: user("bob") },
        ),
        (
            "bob:$7$0$AQIDBAUGBwgJCgsM$abc".to_string(),
            LineProblem::BadHash {
                user: user("bob"),
                what: "an iteration count that is not a positive number",
            },
        ),
        (
            "bob:$6$AQIDBAUGBwgJCgsM".to_string(),
            LineProblem::BadHash {
                user: user("bob"),
                what: "no hash after the salt",
            },
        ),
        (
            "bob:$6$AQIDBAUGBwgJCg$AAAA".to_string(),
            LineProblem::BadHash {
                user: user("bob"),
                what: "a salt that is not 12 bytes",
            },
        ),
        (
            "bob:$6$AQIDBAUGBwgJCgsM$not*base64".to_string(),
            LineProblem::BadHash {
                user: user("bob"),
                what: "a hash that is not base64",
            },
        ),
        (
            "bob:$6$AQIDBAUGBwgJCgsM$AAAA".to_string(),
            LineProblem::BadHash {
                user: user("bob"),
                what: "a hash that is not 64 bytes",
            },
        ),
        (
            format!("{LEGACY}$extra"),
            LineProblem::BadHash {
                user: user("legacy"),
                what: "more '$' fields than its scheme has",
            },
        ),
        (
            ALICE.to_string(),
            LineProblem::DuplicateUser {
                user: user("alice"),
                first_line: 2,
            },
        ),
    ] {
        assert_eq!(refusal(&format!("{valid}{bad}\n")), (3, problem), "{bad}");
    }
}

#[test]
fn errors_name_the_file_and_line_but_never_the_hash() {
    let hash = "$6$AQIDBAUGBwgJCgsM$AAAA";
    let message = parse(&format!("bob:{hash}")).expect_err("bad").to_string();
    assert!(
        message.starts_with("/etc/cairn/passwd, line 1: "),
        "{message}"
    );
    assert!(message.contains("\"bob\""), "{message}");
    assert!(!message.contains("AQIDBAUGBwgJCgsM"), "{message}");
    let debug = format!("{:?}", parse(ALICE).expect("valid"));
    assert!(!debug.contains("w9dQs2sx"), "{debug}");
}

#[test]
fn load_names_a_missing_file() {
    let error = PasswordFile::load(Path::new("/nonexistent/passwd")).expect_err("missing");
    assert!(matches!(error, AuthFileError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/passwd"), "{error}");
}

#[test]
fn set_password_writes_mosquitto_passwd_2s_form_in_place() {
    let mut file = parse(&format!("# head\n{ALICE}\n{LEGACY}\n")).expect("valid");
    file.set_password("alice", b"new").expect("valid entry");
    file.set_password("carol", b"c").expect("valid entry");
    let text = file.to_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# head");
    assert!(lines[1].starts_with("alice:$7$101$"), "{}", lines[1]);
    assert_eq!(lines[2], LEGACY, "another user's line is untouched");
    assert!(lines[3].starts_with("carol:$7$101$"), "{}", lines[3]);
    let fields: Vec<&str> = lines[3].split('$').collect();
    assert_eq!(STANDARD.decode(fields[3]).expect("salt").len(), SALT_LEN);
    assert_eq!(STANDARD.decode(fields[4]).expect("hash").len(), HASH_LEN);
    let reread = parse(&text).expect("valid");
    assert!(reread.verify("alice", b"new") && !reread.verify("alice", b"apw"));
    assert!(reread.verify("carol", b"c"));
    assert!(reread.verify("legacy", b"old secret"));
    // A fresh salt each time.
    let mut again = reread.clone();
    again.set_password("carol", b"c").expect("valid entry");
    assert_ne!(again.to_text(), text);
}

#[test]
fn remove_drops_only_that_users_line() {
    let mut file = parse(&format!("{ALICE}\n# note\n{LEGACY}\n")).expect("valid");
    assert!(file.remove("alice"));
    assert!(!file.remove("alice"));
    assert!(!file.contains("alice") && !file.verify("alice", b"apw"));
    assert_eq!(file.to_text(), format!("# note\n{LEGACY}\n"));
}

#[test]
fn user_names_and_passwords_that_cannot_be_written_are_refused() {
    let mut file = PasswordFile::default();
    for (user, error) in [
        ("", EntryError::EmptyUser),
        ("a:b", EntryError::UserWithColon),
        ("a\tb", EntryError::UserWithControl),
        ("a\u{7f}", EntryError::UserWithControl),
        ("#admin", EntryError::UserStartsWithHash),
        (" bob", EntryError::UserWithOuterSpace),
        ("bob ", EntryError::UserWithOuterSpace),
    ] {
        assert_eq!(file.set_password(user, b"pw"), Err(error), "{user:?}");
    }
    let long = "u".repeat(MAX_LEN + 1);
    assert_eq!(
        file.set_password(&long, b"pw"),
        Err(EntryError::UserTooLong)
    );
    assert_eq!(
        file.set_password("bob", b""),
        Err(EntryError::EmptyPassword)
    );
    let long = vec![b'p'; MAX_LEN + 1];
    assert_eq!(
        file.set_password("bob", &long),
        Err(EntryError::PasswordTooLong)
    );
    assert_eq!(file.users().count(), 0);
    file.set_password("a b", b"pw")
        .expect("inner spaces are fine");
}

#[test]
fn an_unknown_user_costs_what_most_users_cost() {
    let file = parse(&format!("{ALICE}\n{SLOW}\n{LEGACY}\n")).expect("valid");
    // One of each: any of them; with two 1000-iteration users, that one.
    let slow2 = SLOW.replacen("slow", "slow2", 1);
    let file2 = parse(&format!("{ALICE}\n{SLOW}\n{slow2}\n")).expect("valid");
    assert!(matches!(
        file2.decoy,
        StoredHash::Pbkdf2 { iterations, .. } if iterations.get() == 1000
    ));
    assert!(file.hashes.values().any(|hash| hash.decoy() == file.decoy));
    assert!(matches!(
        PasswordFile::default().decoy,
        StoredHash::Pbkdf2 { iterations, .. } if iterations == NEW_ITERATIONS
    ));
    let legacy_only = parse(LEGACY).expect("valid");
    assert!(matches!(legacy_only.decoy, StoredHash::Sha512 { .. }));
}

#[test]
fn same_bytes_compares_whole_slices() {
    assert!(same_bytes(b"abc", b"abc"));
    assert!(!same_bytes(b"abc", b"abd"));
    assert!(!same_bytes(b"abc", b"ab"));
    assert!(same_bytes(b"", b""));
}

proptest! {
    // Few cases: each set_password is a PBKDF2.
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// What `cairn passwd` writes reads back the same: the users in order, each with their
    /// password, the comments kept.
    #[test]
    fn written_files_read_back(
        entries in prop::collection::btree_map(
            "[a-zA-Z0-9_.@]([a-zA-Z0-9_.@ #-]{0,10}[a-zA-Z0-9_.@])?",
            "[ -~]{1,16}",
            0..4,
        ),
        comment in "# [ -~]{0,20}",
    ) {
        let mut file = parse(&format!("{comment}\n")).expect("a comment");
        let mut users = Vec::new();
        for (user, password) in &entries {
            file.set_password(user, password.as_bytes()).expect("valid entry");
            users.push((user.as_str(), password));
        }
        let reread = parse(&file.to_text()).expect("what it wrote");
        prop_assert_eq!(reread.to_text(), file.to_text());
        prop_assert_eq!(reread.users().collect::<Vec<_>>(), users.iter().map(|(u, _)| *u).collect::<Vec<_>>());
        for (user, password) in users {
            prop_assert!(reread.verify(user, password.as_bytes()));
        }
    }
}

/// A file written on Windows keeps its CR LF line ends when `cairn passwd` rewrites it: the
/// lines it did not change stay byte for byte as they were.
#[test]
fn a_crlf_file_is_written_back_with_crlf() {
    let text = format!("# head\r\n{ALICE}\r\n{LEGACY}\r\n");
    let mut file = parse(&text).expect("valid");
    assert_eq!(file.to_text(), text, "unchanged, byte for byte");
    file.set_password("carol", b"c").expect("valid entry");
    let written = file.to_text();
    assert!(written.starts_with(&text), "{written:?}");
    assert!(written.ends_with("\r\n"), "{written:?}");
    assert_eq!(written.matches("\r\n").count(), 4, "{written:?}");
    assert!(parse(&written).expect("valid").verify("carol", b"c"));
    let unix = parse(&format!("{ALICE}\n")).expect("valid");
    assert!(!unix.to_text().contains('\r'));
}
