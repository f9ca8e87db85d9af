//! The login check of one CONNECT under its listener's `auth` mode: a verified client
//! certificate, or a user name and password checked against the password file. Password
//! hashes are costly by design (PBKDF2), so they are checked on a blocking thread, never on an
//! async worker and never under the engine's lock; a success is remembered for a short time
//! so that a device reconnecting (or a reconnect storm) is not checked again each time. The
//! passwords themselves are never stored, logged or kept beyond the check.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::{AccessControl, Rules};
use crate::codec::ReasonCode;
use crate::config::AuthMode;

/// How long a successful login is remembered.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);
/// Most logins remembered at once; the cache starts afresh when full.
const REMEMBERED_MAX: usize = 4096;

/// What a CONNECT presents, and where it comes from.
#[derive(Debug)]
pub struct Login {
    /// The listener's `auth`.
    pub mode: AuthMode,
    /// The client's address, for the slowdown of repeated failures.
    pub addr: IpAddr,
    /// The identity of a client certificate the TLS handshake verified, if any.
    pub certificate: Option<String>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

/// A login let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The client's user name for the ACL: from its certificate, its checked password, or
    /// (on an anonymous listener without a password file) as it says.
    pub username: Option<Arc<str>>,
    /// Whether a password file vouched for it: such a client is disconnected when a reload
    /// removes its user.
    pub by_password: bool,
}

/// Why a login was refused. Its text goes to the log and (v5) the CONNACK's Reason String:
/// it never holds the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user, wrong or missing password: v5 0x86, 3.1.1 return code 4.
    BadCredentials(&'static str),
    /// No identity where one is required: v5 0x87, 3.1.1 return code 5.
    NotAuthorized(&'static str),
}

impl Refusal {
    /// The CONNACK reason code (the codec writes the 3.1.1 return code for it).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Refusal::BadCredentials(_) => ReasonCode::BadUserNameOrPassword,
            Refusal::NotAuthorized(_) => ReasonCode::NotAuthorized,
        }
    }

    /// Why, for the log.
    pub fn why(&self) -> &'static str {
        match self {
            Refusal::BadCredentials(why) | Refusal::NotAuthorized(why) => why,
        }
    }
}

impl AccessControl {
    /// Checks `login` under the rules in force. An address with recent failures waits first
    /// (see [`super::Throttle`]), whatever the outcome, so it cannot tell a slow refusal from a
    /// slow success; each refused password counts towards its next wait.
    pub async fn log_in(&self, login: Login) -> Result<Granted, Refusal> {
        let addr = login.addr;
        let wait = self.throttle.wait_for(addr, Instant::now());
        if !wait.is_zero() {
            self.logins_slowed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %addr, wait_ms = wait.as_millis() as u64, "slowing down a login after repeated failures");
            tokio::time::sleep(wait).await;
        }
        let outcome = self.decide(login).await;
        match &outcome {
            Err(_) => {
                self.logins_refused.fetch_add(1, Ordering::Relaxed);
                self.throttle.failed(addr, Instant::now());
            }
            Ok(granted) if granted.by_password => self.throttle.succeeded(addr),
            Ok(_) => {}
        }
        outcome
    }

    async fn decide(&self, login: Login) -> Result<Granted, Refusal> {
        let Login {
            mode,
            certificate,
            username,
            password,
            ..
        } = login;
        let certified = |name: String| Granted {
            username: Some(Arc::from(name)),
            by_password: false,
        };
        match (mode, certificate) {
            (AuthMode::Certificate | AuthMode::PasswordOrCertificate, Some(name)) => {
                Ok(certified(name))
            }
            (AuthMode::Certificate, None) => Err(Refusal::NotAuthorized(
                "no verified client certificate with an identity",
            )),
            (AuthMode::Anonymous, _) if username.is_none() => Ok(Granted {
                username: None,
                by_password: false,
            }),
            (AuthMode::Anonymous, _) if self.rules().passwords.is_none() => Ok(Granted {
                username: username.map(Arc::from),
                by_password: false,
            }),
            _ => self.check_password(username, password).await,
        }
    }

    /// A user name and password against the password file.
    async fn check_password(
        &self,
        username: Option<String>,
        password: Option<Bytes>,
    ) -> Result<Granted, Refusal> {
        let Some(username) = username else {
            return Err(Refusal::NotAuthorized("no user name"));
        };
        let Some(password) = password else {
            return Err(Refusal::BadCredentials("no password"));
        };
        let key = self.cache.key(&username, &password);
        let rules = self.rules();
        let known = self.cache.remembers(&key, Instant::now()) || {
            let user = username.clone();
            let verified = tokio::task::spawn_blocking(move || verify(&rules, &user, &password));
            verified.await.unwrap_or(false)
        };
        if !known {
            return Err(Refusal::BadCredentials(
                "unknown user name or wrong password",
            ));
        }
        self.cache.remember(key, Instant::now());
        Ok(Granted {
            username: Some(Arc::from(username)),
            by_password: true,
        })
    }
}

/// The costly check itself, on a blocking thread.
fn verify(rules: &Rules, username: &str, password: &[u8]) -> bool {
    rules
        .passwords
        .as_ref()
        .is_some_and(|passwords| passwords.verify(username, password))
}

/// Recent successful logins, each under a digest of the user name and password salted with
/// a secret drawn at start-up, so the cache holds nothing a memory dump could turn back into
/// a password. A reload empties it.
#[derive(Debug, Default)]
pub struct LoginCache {
    entries: Mutex<HashMap<CacheKey, Instant>>,
    secret: OnceLock<[u8; 32]>,
}

/// A digest of one user name and password.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl LoginCache {
    fn key(&self, username: &str, password: &[u8]) -> CacheKey {
        let secret = self.secret.get_or_init(|| {
            let mut secret = [0; 32];
            // Without randomness the digest is still one-way; it is only easier to test
            // guesses against, which needs the memory dump anyway.
            let _ = SystemRandom::new().fill(&mut secret);
            secret
        });
        let mut context = digest::Context::new(&digest::SHA512_256);
        context.update(secret);
        context.update(&(username.len() as u64).to_be_bytes());
        context.update(username.as_bytes());
        context.update(password);
        let mut key = [0; 32];
        key.copy_from_slice(context.finish().as_ref());
        CacheKey(key)
    }

    fn remembers(&self, key: &CacheKey, now: Instant) -> bool {
        self.lock().get(key).is_some_and(|&until| now < until)
    }

    fn remember(&self, key: CacheKey, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= REMEMBERED_MAX {
            entries.retain(|_, until| now < *until);
            if entries.len() >= REMEMBERED_MAX {
                entries.clear();
            }
        }
        entries.insert(key, now + REMEMBERED_FOR);
    }

    /// Forgets every login (the password file changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Instant>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
