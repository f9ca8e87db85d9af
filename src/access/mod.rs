//! Who may connect and what they may touch, as the broker applies it: the password and ACL
//! files in force ([`Rules`], replaced whole by a reload), the login check of each CONNECT
//! ([`login`]: run off the async workers, with a short cache of recent successes) and the
//! slowdown of addresses that keep failing ([`throttle`]). The file formats themselves are
//! [`crate::auth`]'s. It never touches the engine's state.

pub mod login;
pub mod throttle;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use login::LoginCache;

use crate::auth::AuthFileError;
use crate::auth::PasswordFile;
use crate::auth::{Access, Acl, Who};
use crate::config::Config;

pub use login::{Login, Refusal};
pub use throttle::Throttle;

/// A password or ACL file that cannot be used; the broker does not start (or a reload is
/// refused and the files in force stay) rather than let anyone in or lock everyone out.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("password_file: {0}")]
    Passwords(AuthFileError),
    #[error("acl_file: {0}")]
    Acl(AuthFileError),
}

/// The password and ACL files as read at start-up or at the last reload.
#[derive(Debug, Default)]
pub struct Rules {
    /// `None`: no `password_file`.
    pub passwords: Option<PasswordFile>,
    /// `None`: no `acl_file`; everyone may do everything.
    pub acl: Option<Acl>,
}

impl Rules {
    /// Reads the files `config` names.
    pub fn load(config: &Config) -> Result<Rules, AccessError> {
        let passwords =
            read(&config.password_file, PasswordFile::load).map_err(AccessError::Passwords)?;
        let acl = read(&config.acl_file, Acl::load).map_err(AccessError::Acl)?;
        Ok(Rules { passwords, acl })
    }

    /// What is wrong with each of `config`'s password and ACL files, both read as
    /// [`Rules::load`] reads them: every problem, where `load` stops at the first.
    pub fn file_problems(config: &Config) -> Vec<AccessError> {
        let passwords = read(&config.password_file, PasswordFile::load)
            .err()
            .map(AccessError::Passwords);
        let acl = read(&config.acl_file, Acl::load)
            .err()
            .map(AccessError::Acl);
        passwords.into_iter().chain(acl).collect()
    }

    /// Whether `who` may publish to (`Write`) or receive a message on (`Read`) `topic`.
    pub fn allows(&self, who: Who<'_>, topic: &str, access: Access) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.allows(who, topic, access))
    }

    /// Whether `who` may subscribe to `filter`; deliveries are still checked one by one.
    pub fn may_subscribe(&self, who: Who<'_>, filter: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.may_subscribe(who, filter))
    }
}

fn read<T>(
    path: &Option<PathBuf>,
    load: impl FnOnce(&std::path::Path) -> Result<T, AuthFileError>,
) -> Result<Option<T>, AuthFileError> {
    path.as_deref().map(load).transpose()
}

/// The rules in force and what logins share: the cache of recent successes and the
/// per-address slowdown.
#[derive(Debug)]
pub struct AccessControl {
    rules: RwLock<Arc<Rules>>,
    /// Whether an ACL file is in force: without one, the checks of every PUBLISH and every
    /// delivery skip the lock.
    has_acl: AtomicBool,
    cache: LoginCache,
    throttle: Throttle,
    /// Logins refused, and logins made to wait by [`Throttle`], since start.
    pub logins_refused: AtomicU64,
    pub logins_slowed: AtomicU64,
}

impl AccessControl {
    pub fn new(rules: Rules) -> AccessControl {
        AccessControl {
            has_acl: AtomicBool::new(rules.acl.is_some()),
            rules: RwLock::new(Arc::new(rules)),
            cache: LoginCache::default(),
            throttle: Throttle::default(),
            logins_refused: AtomicU64::new(0),
            logins_slowed: AtomicU64::new(0),
        }
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `rules` in force (a reload): logins from now on use them, and so does every
    /// check of a connected client's next packet and delivery. Remembered logins are
    /// forgotten: a changed password must be asked for again.
    pub fn replace(&self, rules: Rules) {
        self.has_acl.store(rules.acl.is_some(), Ordering::Relaxed);
        *self
            .rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(rules);
        self.cache.clear();
    }

    /// Whether `who` may publish to (`Write`) or receive a message on (`Read`) `topic`.
    pub fn allows(&self, who: Who<'_>, topic: &str, access: Access) -> bool {
        self.acl()
            .is_none_or(|rules| rules.allows(who, topic, access))
    }

    /// The rules in force when they include an ACL, for a series of checks; `None` when
    /// everyone may do everything (the check is then one atomic load, no lock).
    pub fn acl(&self) -> Option<Arc<Rules>> {
        self.has_acl.load(Ordering::Relaxed).then(|| self.rules())
    }
}
