//! Password files for tests, written through Cairn's own [`PasswordFile`] (the format of
//! `mosquitto_passwd`: tests against the real tool are in `tests/auth_files`).

use std::path::{Path, PathBuf};

use cairn::auth::PasswordFile;

/// Writes a password file at `dir/name` with each (user, password) of `users`; returns its
/// path.
pub fn write_password_file(dir: &Path, name: &str, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(name);
    let mut file = PasswordFile::parse("", &path).expect("an empty password file");
    for (user, password) in users {
        file.set_password(user, password.as_bytes())
            .expect("a valid user and password");
    }
    std::fs::write(&path, file.to_text()).expect("write the password file");
    path
}
