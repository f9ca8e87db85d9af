//! `cairn passwd` run as a process: it creates, updates and deletes users in Mosquitto's format
//! as `mosquitto_passwd` 2.0 does, keeps the other lines and the file's mode, and refuses bad
//! user names, empty passwords, a missing file without `-c` and a file it cannot read.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cairn::auth::PasswordFile;

use crate::common::binary::{assert_exit, run, stderr};

/// Exit code of a command that could not do its job.
const EXIT_FAILED: i32 = 1;

/// A `$6$` line (SHA-512 of "old secret" then the salt 1..=12), as an older file holds them.
const LEGACY: &str = "legacy:$6$AQIDBAUGBwgJCgsM$m12pCyk9j1FdEa/V38NjyDTkXOUZzS+8dMdrySHtBhPsM0gHO2mqlalXFIxSJEGZdn3LWZK8VZzq2AowZq6kJQ==";

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("the file exists")
        .permissions()
        .mode()
        & 0o777
}

async fn passwd(args: &[&str]) -> std::process::Output {
    run(&[&["passwd"], args].concat()).await
}

/// A temporary directory and the password file in it (not created yet).
struct Scratch {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("passwd");
        Scratch { dir, file }
    }

    /// With the file created by `cairn passwd -c -b FILE user password`.
    async fn with_user(user: &str, password: &str) -> Scratch {
        let scratch = Scratch::new();
        let output = passwd(&["-c", "-b", scratch.path(), user, password]).await;
        assert_exit(&output, 0, "create");
        scratch
    }

    fn path(&self) -> &str {
        self.file.to_str().expect("UTF-8 path")
    }
}

#[tokio::test]
async fn passwd_creates_a_file_as_mosquitto_passwd_2_does() {
    let scratch = Scratch::new();
    let (file, path) = (scratch.file.as_path(), scratch.path());
    let output = passwd(&["-c", "--batch", path, "alice", "a pw:with colon"]).await;
    assert_exit(&output, 0, "cairn passwd -c --batch");
    assert_eq!(
        mode(file),
        0o640,
        "a new file is readable by its group only"
    );
    let text = fs::read_to_string(file).expect("written");
    // user:$7$101$<16 base64 characters: 12 bytes>$<88: 64 bytes>, one line.
    let fields: Vec<&str> = text.trim_end().split('$').collect();
    assert_eq!(fields[..3], ["alice:", "7", "101"], "{text}");
    assert_eq!((fields[3].len(), fields[4].len()), (16, 88), "{text}");
    assert_eq!(text.lines().count(), 1);
    let read = PasswordFile::load(file).expect("readable");
    assert!(read.verify("alice", b"a pw:with colon"));
    assert!(!read.verify("alice", b"a pw"));

    // -c again replaces the whole file.
    let output = passwd(&["-c", "-b", path, "bob", "bpw"]).await;
    assert_exit(&output, 0, "cairn passwd -c over an existing file");
    let read = PasswordFile::load(file).expect("readable");
    assert_eq!(read.users().collect::<Vec<_>>(), ["bob"]);
}

#[tokio::test]
async fn passwd_updates_one_user_and_keeps_every_other_line_and_the_mode() {
    let scratch = Scratch::with_user("alice", "old").await;
    let (file, path) = (scratch.file.as_path(), scratch.path());
    let alice = fs::read_to_string(file).expect("written");
    let before = format!("# gateway users\n{LEGACY}\n\n{alice}");
    fs::write(file, &before).expect("write");
    fs::set_permissions(file, fs::Permissions::from_mode(0o600)).expect("chmod");

    assert_exit(&passwd(&["-b", path, "alice", "new"]).await, 0, "update");
    assert_exit(&passwd(&["-b", path, "carol", "cpw"]).await, 0, "add");
    let after = fs::read_to_string(file).expect("written");
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines[..3], ["# gateway users", LEGACY, ""], "{after}");
    assert!(lines[3].starts_with("alice:$7$101$") && lines[3] != alice.trim_end());
    assert!(lines[4].starts_with("carol:$7$101$"), "{after}");
    assert_eq!(lines.len(), 5);
    assert_eq!(mode(file), 0o600, "the file keeps its mode");
    let read = PasswordFile::load(file).expect("readable");
    assert!(read.verify("alice", b"new") && !read.verify("alice", b"old"));
    assert!(read.verify("legacy", b"old secret"));
    assert!(read.verify("carol", b"cpw"));
    let leftovers: Vec<_> = fs::read_dir(scratch.dir.path()).expect("dir").collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

#[tokio::test]
async fn passwd_deletes_a_user_and_refuses_an_absent_one() {
    let scratch = Scratch::with_user("alice", "apw").await;
    let (file, path) = (scratch.file.as_path(), scratch.path());
    assert_exit(&passwd(&["-b", path, "bob", "bpw"]).await, 0, "add");
    assert_exit(&passwd(&["-D", path, "alice"]).await, 0, "delete");
    let read = PasswordFile::load(file).expect("readable");
    assert_eq!(read.users().collect::<Vec<_>>(), ["bob"]);
    assert!(read.verify("bob", b"bpw"));

    let before = fs::read(file).expect("file");
    let output = passwd(&["-D", path, "alice"]).await;
    assert_exit(&output, EXIT_FAILED, "delete an absent user");
    assert!(
        stderr(&output).contains("user \"alice\" is not in"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read(file).expect("file"), before, "unchanged");
}

#[tokio::test]
async fn passwd_refuses_bad_user_names_and_empty_passwords() {
    let scratch = Scratch::with_user("alice", "apw").await;
    let (file, path) = (scratch.file.as_path(), scratch.path());
    let before = fs::read(file).expect("file");
    for (user, password, message) in [
        ("a:b", "pw", "must not contain ':'"),
        ("a\tb", "pw", "must not contain control characters"),
        ("", "pw", "the user name is empty"),
        ("#admin", "pw", "must not start with '#'"),
        ("bob", "", "the password is empty"),
    ] {
        let output = passwd(&["-b", path, user, password]).await;
        assert_exit(&output, EXIT_FAILED, &format!("user {user:?}"));
        assert!(
            stderr(&output).contains(message),
            "{user:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            fs::read(file).expect("file"),
            before,
            "unchanged after {user:?}"
        );
    }
}

#[tokio::test]
async fn passwd_without_c_refuses_a_missing_file_as_mosquitto_passwd_does() {
    let scratch = Scratch::new();
    let (file, path) = (scratch.file.as_path(), scratch.path());
    let output = passwd(&["-b", path, "alice", "apw"]).await;
    assert_exit(&output, EXIT_FAILED, "a missing file without -c");
    assert!(
        stderr(&output).contains("does not exist (-c creates it)"),
        "{}",
        stderr(&output)
    );
    assert!(!file.exists());
    let output = passwd(&["-D", path, "alice"]).await;
    assert_exit(&output, EXIT_FAILED, "-D on a missing file");
}

#[tokio::test]
async fn passwd_refuses_a_file_with_a_line_it_cannot_read() {
    let scratch = Scratch::new();
    let (file, path) = (scratch.file.as_path(), scratch.path());
    let before = format!("{LEGACY}\nbob:plain-text-password\n");
    fs::write(file, &before).expect("write");
    let output = passwd(&["-b", path, "alice", "apw"]).await;
    assert_exit(&output, EXIT_FAILED, "a file with a plain-text password");
    let message = stderr(&output);
    assert!(
        message.contains("line 2") && message.contains("\"bob\""),
        "{message}"
    );
    assert!(!message.contains("plain-text-password"), "{message}");
    assert_eq!(fs::read_to_string(file).expect("file"), before, "unchanged");
}
