//! Mosquitto's password file, as `mosquitto_passwd` 2.0 writes it and Mosquitto 2.0 reads it
//! (`src/security_default.c` `pwfile__parse`, `unpwd__decode_passwords`, `pw__digest`): one
//! `user:hash` a line, where the hash is
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 of the password with a 12-byte salt,
//!   64 bytes of output (what `mosquitto_passwd` 2.0 writes, with 101 iterations), or
//! - `$6$<salt>$<hash>`: SHA-512 of the password followed by the 12-byte salt (Mosquitto 1.x),
//!
//! salt and hash in standard base64 with padding. A line starting with `#` is a comment, a
//! blank line is skipped, spaces around the user and the hash are trimmed. Where Mosquitto logs
//! a line it cannot use and drops that user, this refuses the whole file, naming the line: a
//! broker must neither lock a user out nor let one in by surprise.
//!
//! It owns the users' hashes, verifying a password against them, and the lines in order so that
//! `cairn passwd` rewrites one user without touching the other lines. Never logs, never prints
//! a hash.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, pbkdf2};

use super::{read_text, trim_blanks, AuthFileError, LineProblem};

/// Bytes of salt in both schemes (Mosquitto's `SALT_LEN`).
const SALT_LEN: usize = 12;
/// Bytes of a SHA-512 hash or PBKDF2-HMAC-SHA512 output.
const HASH_LEN: usize = 64;
/// PBKDF2 iterations of a new password: `mosquitto_passwd` 2.0's `PW_DEFAULT_ITERATIONS`.
const NEW_ITERATIONS: NonZeroU32 = NonZeroU32::new(101).expect("nonzero");
/// Longest user name or password `mosquitto_passwd` accepts (an MQTT string's limit).
const MAX_LEN: usize = 65535;

/// Reads base64 as OpenSSL does for Mosquitto: standard alphabet, padding optional.
const BASE64_READ: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A password file: each user's stored hash, and every line in order.
#[derive(Clone, Default)]
pub struct PasswordFile {
    /// The file's lines without their line endings, in order.
    lines: Vec<Line>,
    /// Each user's stored hash.
    hashes: HashMap<String, StoredHash>,
    /// What [`PasswordFile::verify`] computes for a user who is not in the file: the scheme and
    /// iteration count most users have, so an unknown name costs the same as a known one.
    decoy: StoredHash,
    /// The file's lines end with CR LF (its first line does): written back the same way.
    crlf: bool,
}

#[derive(Clone)]
enum Line {
    /// A comment or a blank line, kept as it was.
    Other(String),
    /// A user's line, kept as it was until its password changes.
    User { name: String, text: String },
}

/// One user's stored password hash.
#[derive(Clone, PartialEq, Eq, Hash)]
enum StoredHash {
    /// `$6$`: SHA-512 over the password, then the salt.
    Sha512 {
        salt: [u8; SALT_LEN],
        hash: [u8; HASH_LEN],
    },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: NonZeroU32,
        salt: [u8; SALT_LEN],
        hash: [u8; HASH_LEN],
    },
}

impl Default for StoredHash {
    /// The decoy of a file without users: what a new password costs.
    fn default() -> StoredHash {
        StoredHash::Pbkdf2 {
            iterations: NEW_ITERATIONS,
            salt: [0; SALT_LEN],
            hash: [0; HASH_LEN],
        }
    }
}

/// Why `cairn passwd` cannot write a user's password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the user name is empty")]
    EmptyUser,
    #[error("the user name must not contain ':'")]
    UserWithColon,
    #[error("the user name must not contain control characters")]
    UserWithControl,
    #[error("the user name must not start with '#' (the line would be a comment)")]
    UserStartsWithHash,
    #[error("the user name must not start or end with a space (it would be trimmed)")]
    UserWithOuterSpace,
    #[error("the user name is longer than {MAX_LEN} bytes")]
    UserTooLong,
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the password is longer than {MAX_LEN} bytes")]
    PasswordTooLong,
    #[error("the system's random number generator failed")]
    Random,
}

impl PasswordFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, AuthFileError> {
        PasswordFile::parse(&read_text(path)?, path)
    }

    /// Reads a password file's `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, AuthFileError> {
        let mut file = PasswordFile {
            crlf: text.lines().next().is_some_and(|first| {
                text.as_bytes().get(first.len()..first.len() + 2) == Some(b"\r\n")
            }),
            ..PasswordFile::default()
        };
        let mut first_lines = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let Some((name, hash)) =
                parse_line(raw).map_err(|problem| AuthFileError::line(path, number, problem))?
            else {
                file.lines.push(Line::Other(raw.to_string()));
                continue;
            };
            if let Some(&first_line) = first_lines.get(name) {
                let problem = LineProblem::DuplicateUser {
                    user: name.to_string(),
                    first_line,
                };
                return Err(AuthFileError::line(path, number, problem));
            }
            first_lines.insert(name, number);
            file.hashes.insert(name.to_string(), hash);
            file.lines.push(Line::User {
                name: name.to_string(),
                text: raw.to_string(),
            });
        }
        file.decoy = file.most_common_cost();
        Ok(file)
    }

    /// Whether `user` has a line in the file.
    pub fn contains(&self, user: &str) -> bool {
        self.hashes.contains_key(user)
    }

    /// Whether `password` is `user`'s. Costly by design (PBKDF2): the caller runs it on a
    /// blocking thread. An unknown user gets false after the same work as a known one, so the
    /// time taken does not tell which users exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.hashes.get(user) {
            Some(stored) => stored.matches(password),
            None => {
                // The decoy's hash is zeros: no password matches it, and the answer is false
                // whatever it says.
                let _ = self.decoy.matches(password);
                false
            }
        }
    }

    /// The users, in the order of their lines.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::User { name, .. } => Some(name.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Sets `user`'s password as `mosquitto_passwd` 2.0 does (`$7$`, 101 iterations, a fresh
    /// 12-byte salt): their line is replaced in place, or a new line added at the end.
    pub fn set_password(&mut self, user: &str, password: &[u8]) -> Result<(), EntryError> {
        check_user_name(user)?;
        if password.is_empty() {
            return Err(EntryError::EmptyPassword);
        }
        if password.len() > MAX_LEN {
            return Err(EntryError::PasswordTooLong);
        }
        let mut salt = [0; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| EntryError::Random)?;
        let mut hash = [0; HASH_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            NEW_ITERATIONS,
            &salt,
            password,
            &mut hash,
        );
        let stored = StoredHash::Pbkdf2 {
            iterations: NEW_ITERATIONS,
            salt,
            hash,
        };
        let new_text = format!("{user}:{}", stored.encode());
        let existing = self.lines.iter_mut().find_map(|line| match line {
            Line::User { name, text } if name == user => Some(text),
            _ => None,
        });
        match existing {
            Some(text) => *text = new_text,
            None => self.lines.push(Line::User {
                name: user.to_string(),
                text: new_text,
            }),
        }
        self.hashes.insert(user.to_string(), stored);
        self.decoy = self.most_common_cost();
        Ok(())
    }

    /// Removes `user`'s line; false if there is none.
    pub fn remove(&mut self, user: &str) -> bool {
        if self.hashes.remove(user).is_none() {
            return false;
        }
        self.lines
            .retain(|line| !matches!(line, Line::User { name, .. } if name == user));
        self.decoy = self.most_common_cost();
        true
    }

    /// The file's text: every line in order, each ended by a newline (CR LF if the file read
    /// had them).
    pub fn to_text(&self) -> String {
        let ending = if self.crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for line in &self.lines {
            let (Line::Other(line) | Line::User { text: line, .. }) = line;
            text.push_str(line);
            text.push_str(ending);
        }
        text
    }

    /// A hash of no password with the scheme and iteration count most users have (the default
    /// for a new password when there are none).
    fn most_common_cost(&self) -> StoredHash {
        let mut counts: HashMap<StoredHash, usize> = HashMap::new();
        for stored in self.hashes.values() {
            *counts.entry(stored.decoy()).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|&(_, count)| count)
            .map(|(decoy, _)| decoy)
            .unwrap_or_default()
    }
}

impl fmt::Debug for PasswordFile {
    /// The users only: a hash never appears in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StoredHash {
    /// Whether `password` hashes to this (in constant time for the comparison).
    fn matches(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Sha512 { salt, hash } => {
                let mut context = digest::Context::new(&digest::SHA512);
                context.update(password);
                context.update(salt);
                same_bytes(context.finish().as_ref(), hash)
            }
            StoredHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
        }
    }

    /// The same scheme and cost with a zero salt and hash.
    fn decoy(&self) -> StoredHash {
        match self {
            StoredHash::Sha512 { .. } => StoredHash::Sha512 {
                salt: [0; SALT_LEN],
                hash: [0; HASH_LEN],
            },
            StoredHash::Pbkdf2 { iterations, .. } => StoredHash::Pbkdf2 {
                iterations: *iterations,
                salt: [0; SALT_LEN],
                hash: [0; HASH_LEN],
            },
        }
    }

    /// The text after `user:`.
    fn encode(&self) -> String {
        match self {
            StoredHash::Sha512 { salt, hash } => {
                format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            StoredHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => format!(
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
        }
    }
}

/// Whether `a` and `b` are equal, looking at every byte whatever the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y));
    a.len() == b.len() && std::hint::black_box(difference) == 0
}

/// One line: `None` for a comment or a blank line, else the user and their hash.
fn parse_line(raw: &str) -> Result<Option<(&str, StoredHash)>, LineProblem> {
    if raw.starts_with('#') || trim_blanks(raw).is_empty() {
        return Ok(None);
    }
    let (name, rest) = raw.split_once(':').ok_or(LineProblem::MissingColon)?;
    let name = trim_blanks(name);
    if name.is_empty() {
        return Err(LineProblem::EmptyUser);
    }
    // Like Mosquitto, the hash ends at a further ':'.
    let hash = trim_blanks(rest.split(':').next().unwrap_or_default());
    let bad = |what| LineProblem::BadHash {
        user: name.to_string(),
        what,
    };
    let mut fields = hash.split('$');
    if fields.next() != Some("") {
        return Err(LineProblem::UnknownHashScheme {
            user: name.to_string(),
        });
    }
    let stored = match fields.next() {
        Some("6") => {
            let (salt, hash) = salt_and_hash(&mut fields).map_err(bad)?;
            StoredHash::Sha512 { salt, hash }
        }
        Some("7") => {
            let iterations = fields
                .next()
                .and_then(|field| field.parse::<NonZeroU32>().ok())
                .ok_or_else(|| bad("an iteration count that is not a positive number"))?;
            let (salt, hash) = salt_and_hash(&mut fields).map_err(bad)?;
            StoredHash::Pbkdf2 {
                iterations,
                salt,
                hash,
            }
        }
        _ => {
            return Err(LineProblem::UnknownHashScheme {
                user: name.to_string(),
            })
        }
    };
    Ok(Some((name, stored)))
}

/// The last two `$` fields of a hash, decoded; what is wrong with them otherwise.
fn salt_and_hash<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
) -> Result<([u8; SALT_LEN], [u8; HASH_LEN]), &'static str> {
    let salt = fields.next().ok_or("no salt")?;
    let hash = fields.next().ok_or("no hash after the salt")?;
    if fields.next().is_some() {
        return Err("more '$' fields than its scheme has");
    }
    let salt = BASE64_READ
        .decode(salt)
        .map_err(|_| "a salt that is not base64")?;
    let salt = salt.try_into().map_err(|_| "a salt that is not 12 bytes")?;
    let hash = BASE64_READ
        .decode(hash)
        .map_err(|_| "a hash that is not base64")?;
    let hash = hash.try_into().map_err(|_| "a hash that is not 64 bytes")?;
    Ok((salt, hash))
}

/// Refuses the user names `mosquitto_passwd` refuses (empty, longer than 65535 bytes, with ':'
/// or control characters), and those a broker would read back as another name or a comment
/// (blanks at either end, a leading '#').
pub fn check_user_name(user: &str) -> Result<(), EntryError> {
    if user.is_empty() {
        Err(EntryError::EmptyUser)
    } else if user.len() > MAX_LEN {
        Err(EntryError::UserTooLong)
    } else if user.contains(':') {
        Err(EntryError::UserWithColon)
    } else if user.chars().any(char::is_control) {
        Err(EntryError::UserWithControl)
    } else if user.starts_with('#') {
        Err(EntryError::UserStartsWithHash)
    } else if user.trim() != user {
        Err(EntryError::UserWithOuterSpace)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
