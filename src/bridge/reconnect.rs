//! What a bridge does after a connection attempt or a connection ends: which address to dial
//! next, in which dialect, and how long to wait first. Pure decisions, tested without sockets;
//! the bridge's task carries them out.
//!
//! - A connection lost, or refused for a passing reason (server busy, quota, rate): the next
//!   jittered backoff delay, then the primary address again.
//! - No TCP connection, TLS handshake or CONNACK: the next address, after the backoff.
//! - Refused or disconnected with 0x9C/0x9D (use another server): the next address at once.
//! - Refused credentials, a banned or refused client id: an error, and the longest delay.
//! - A v5 CONNECT refused as unsupported: 3.1.1 at once (with `fallback_311`); a 3.1.1 one
//!   with the bridge bit refused: without the bit at once.
//! - A CONNECT refused for its Will (the state topic's): retained by a server that keeps no
//!   retained messages (0x9A), or at QoS 1 by one that takes QoS 0 only (0x9B): at once,
//!   without what was refused.

use std::time::Duration;

use crate::codec::{ProtocolVersion, ReasonCode};

use super::backoff::Backoff;
use super::handshake::{Dialect, Failure};
use super::uplink::Ended;

/// The next attempt: where, how, and after what wait.
#[derive(Debug)]
pub struct Reconnect {
    backoff: Backoff,
    /// How many addresses there are, and the index of the next one.
    addresses: usize,
    address: usize,
    pub dialect: Dialect,
    fallback_311: bool,
}

/// Why the bridge waits, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub reason: String,
    pub delay: Duration,
    /// The reason calls for an operator (bad credentials, a client id taken twice).
    pub alarming: bool,
}

impl Reconnect {
    pub fn new(
        backoff: Backoff,
        addresses: usize,
        dialect: Dialect,
        fallback_311: bool,
    ) -> Reconnect {
        Reconnect {
            backoff,
            addresses: addresses.max(1),
            address: 0,
            dialect,
            fallback_311,
        }
    }

    /// The index of the address to dial next.
    pub fn address(&self) -> usize {
        self.address % self.addresses
    }

    /// A connection that was up ended (not at shutdown); `stable` when it lasted the
    /// configured stable period, which restarts the backoff.
    pub fn after_connection(&mut self, ended: Ended, stable: bool) -> Wait {
        if stable {
            self.backoff.reset();
        }
        self.address = 0; // back to the primary
        match ended {
            // The caller stops instead; a wait is still a sound answer.
            Ended::Shutdown => self.backoff("the bridge is stopping".to_string()),
            Ended::Lost(why) => self.backoff(why),
            Ended::Disconnected(reason, why) => {
                let text = format!(
                    "the server disconnected with {reason:?}{}",
                    why.map(|why| format!(" ({why})")).unwrap_or_default()
                );
                match reason {
                    ReasonCode::UseAnotherServer | ReasonCode::ServerMoved => {
                        self.next_address(text)
                    }
                    ReasonCode::NotAuthorized | ReasonCode::Banned => self.longest(text),
                    ReasonCode::SessionTakenOver => Wait {
                        reason: format!("{text}: is this client id used twice?"),
                        delay: self.backoff.next_delay(),
                        alarming: true,
                    },
                    _ => self.backoff(text),
                }
            }
        }
    }

    /// An attempt failed before the bridge was connected.
    pub fn after_failure(&mut self, failure: Failure) -> Wait {
        let text = failure.to_string();
        let Failure::Refused { reason, .. } = failure else {
            self.address += 1;
            return self.backoff(text);
        };
        match reason {
            ReasonCode::UnsupportedProtocolVersion
                if self.dialect.version == ProtocolVersion::V5 && self.fallback_311 =>
            {
                self.dialect.version = ProtocolVersion::V311;
                self.at_once(format!("{text}: falling back to MQTT 3.1.1"))
            }
            ReasonCode::UnsupportedProtocolVersion
                if self.dialect.version == ProtocolVersion::V311 && self.dialect.bridge_bit =>
            {
                self.dialect.bridge_bit = false;
                self.at_once(format!("{text}: connecting without the bridge bit"))
            }
            ReasonCode::BadUserNameOrPassword
            | ReasonCode::NotAuthorized
            | ReasonCode::Banned
            | ReasonCode::ClientIdentifierNotValid
            | ReasonCode::BadAuthenticationMethod => self.longest(format!(
                "{text}: check the bridge's client_id, username and password_file"
            )),
            ReasonCode::UseAnotherServer | ReasonCode::ServerMoved => self.next_address(text),
            ReasonCode::RetainNotSupported if self.dialect.will_retain => {
                self.dialect.will_retain = false;
                self.at_once(format!(
                    "{text}: the server keeps no retained messages; the state topic's Will goes \
                     without RETAIN"
                ))
            }
            ReasonCode::QoSNotSupported if self.dialect.will_qos_1 => {
                self.dialect.will_qos_1 = false;
                self.at_once(format!(
                    "{text}: the server takes QoS 0 only; the state topic's Will goes at QoS 0"
                ))
            }
            _ => self.backoff(text),
        }
    }

    fn backoff(&mut self, reason: String) -> Wait {
        Wait {
            reason,
            delay: self.backoff.next_delay(),
            alarming: false,
        }
    }

    fn longest(&mut self, reason: String) -> Wait {
        Wait {
            reason,
            delay: self.backoff.longest(),
            alarming: true,
        }
    }

    fn next_address(&mut self, reason: String) -> Wait {
        self.address += 1;
        self.at_once(reason)
    }

    fn at_once(&mut self, reason: String) -> Wait {
        Wait {
            reason,
            delay: Duration::ZERO,
            alarming: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconnect(version: ProtocolVersion) -> Reconnect {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(120), 5);
        Reconnect::new(backoff, 2, Dialect::new(version, true), true)
    }

    fn refused(reason: ReasonCode) -> Failure {
        Failure::Refused { reason, why: None }
    }

    #[test]
    fn a_v5_refusal_as_unsupported_falls_back_then_drops_the_bridge_bit() {
        let mut next = reconnect(ProtocolVersion::V5);
        let wait = next.after_failure(refused(ReasonCode::UnsupportedProtocolVersion));
        assert_eq!(
            (next.dialect.version, wait.delay),
            (ProtocolVersion::V311, Duration::ZERO)
        );
        assert!(next.dialect.bridge_bit);
        let wait = next.after_failure(refused(ReasonCode::UnsupportedProtocolVersion));
        assert_eq!(
            (next.dialect.bridge_bit, wait.delay),
            (false, Duration::ZERO)
        );
        let wait = next.after_failure(refused(ReasonCode::UnsupportedProtocolVersion));
        assert!(
            wait.delay >= Duration::from_secs(1),
            "nothing left to try but waiting"
        );
    }

    /// A CONNECT refused for its Will's RETAIN (0x9A) or QoS (0x9B) goes again at once
    /// without it [MQTT-3.2.2-12] [MQTT-3.2.2-13]; refused again, it waits.
    #[test]
    fn a_will_the_server_refuses_goes_again_without_what_it_refused() {
        let mut next = reconnect(ProtocolVersion::V5);
        let wait = next.after_failure(refused(ReasonCode::RetainNotSupported));
        assert_eq!(
            (next.dialect.will_retain, wait.delay),
            (false, Duration::ZERO)
        );
        let wait = next.after_failure(refused(ReasonCode::QoSNotSupported));
        assert_eq!(
            (next.dialect.will_qos_1, wait.delay),
            (false, Duration::ZERO)
        );
        assert!(!next.dialect.will_retain, "still without RETAIN");
        for reason in [ReasonCode::RetainNotSupported, ReasonCode::QoSNotSupported] {
            let wait = next.after_failure(refused(reason));
            assert!(wait.delay >= Duration::from_secs(1), "{reason:?}");
        }
    }

    #[test]
    fn without_fallback_a_v5_bridge_stays_v5() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(120), 5);
        let dialect = Dialect::new(ProtocolVersion::V5, true);
        let mut next = Reconnect::new(backoff, 1, dialect, false);
        next.after_failure(refused(ReasonCode::UnsupportedProtocolVersion));
        assert_eq!(next.dialect.version, ProtocolVersion::V5);
    }

    #[test]
    fn refused_credentials_wait_the_longest_and_alarm() {
        for reason in [
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
            ReasonCode::Banned,
            ReasonCode::ClientIdentifierNotValid,
        ] {
            let wait = reconnect(ProtocolVersion::V5).after_failure(refused(reason));
            assert_eq!(wait.delay, Duration::from_secs(120), "{reason:?}");
            assert!(wait.alarming);
        }
    }

    #[test]
    fn use_another_server_moves_on_at_once_and_a_lost_link_returns_to_the_primary() {
        let mut next = reconnect(ProtocolVersion::V5);
        let wait = next.after_failure(refused(ReasonCode::UseAnotherServer));
        assert_eq!((next.address(), wait.delay), (1, Duration::ZERO));
        let wait = next.after_connection(Ended::Disconnected(ReasonCode::ServerMoved, None), false);
        assert_eq!((next.address(), wait.delay), (1, Duration::ZERO));
        next.after_connection(Ended::Lost("reset".into()), false);
        assert_eq!(next.address(), 0);
    }

    #[test]
    fn an_unreachable_address_moves_to_the_next_after_the_backoff() {
        let mut next = reconnect(ProtocolVersion::V5);
        let wait = next.after_failure(Failure::Unreachable("refused".into()));
        assert_eq!(next.address(), 1);
        assert!(wait.delay >= Duration::from_secs(1));
        next.after_failure(Failure::Unreachable("refused".into()));
        assert_eq!(next.address(), 0, "round the list");
    }

    #[test]
    fn busy_servers_and_lost_links_back_off_and_a_stable_link_resets_it() {
        let mut next = reconnect(ProtocolVersion::V5);
        for reason in [
            ReasonCode::ServerBusy,
            ReasonCode::QuotaExceeded,
            ReasonCode::ConnectionRateExceeded,
        ] {
            let wait = next.after_failure(refused(reason));
            assert!(
                !wait.alarming && wait.delay >= Duration::from_secs(1),
                "{reason:?}"
            );
        }
        let wait = next.after_connection(Ended::Lost("reset".into()), true);
        assert!(
            wait.delay < Duration::from_secs(3),
            "from the base again: {:?}",
            wait.delay
        );
        let taken = next.after_connection(
            Ended::Disconnected(ReasonCode::SessionTakenOver, None),
            false,
        );
        assert!(taken.alarming);
    }
}
