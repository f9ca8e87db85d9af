//! Mosquitto's ACL file, read and applied as Mosquitto 2.0's default security does
//! (`src/security_default.c`: `aclfile__parse`, `add__acl`, `add__acl_pattern`,
//! `acl__find_acls`, `mosquitto_acl_check_default`):
//!
//! - `user NAME` starts the rules of NAME (several blocks of one name add up); `topic [ACCESS]
//!   FILTER` is a rule of the current user, or, before the first `user` line, of clients
//!   *without* a user name (not of everyone); `pattern [ACCESS] FILTER` is a rule of every
//!   client wherever it stands, with `%c` the client id and `%u` the user name (a pattern with
//!   `%u` is skipped for a client without one). ACCESS is `read`, `write`, `readwrite` (the
//!   default) or `deny`; the filter is the rest of the line and may hold spaces.
//! - Words are separated by spaces (not tabs); trailing white space is ignored; a line starting
//!   with `#` in its first column is a comment.
//! - A client's `topic` rules decide first, then the patterns. Within each, a matching `deny`
//!   wins over any grant; a matching grant of another access decides nothing. A client whose
//!   user name or client id holds `+` or `#` gets nothing from the patterns. Nothing matching:
//!   denied (an ACL file without a rule for a client denies it everything).
//! - A topic starting with `$` is matched only by a filter starting with `$` [MQTT-4.7.2-1].
//!
//! It answers whether a client may publish to or receive a topic, and whether a SUBSCRIBE is
//! accepted; what the broker then does (reason codes, dropping, logging) is not its business.

use std::collections::HashMap;
use std::path::Path;

use super::filter::{self, RuleFilter};
use super::{is_blank, read_text, trim_blanks, AuthFileError, LineProblem};

/// What a client does with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Receive messages published to it (a SUBSCRIBE asks for this on a filter).
    Read,
    /// Publish to it.
    Write,
}

/// The client a question is about.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// The user name of its CONNECT (or its certificate's identity); `None` for an anonymous
    /// client.
    pub username: Option<&'a str>,
    pub client_id: &'a str,
}

/// The rules of an ACL file. `Acl::default()` is an empty file: it denies everything.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// The `topic` rules before the first `user` line: Mosquitto gives them to clients without a
    /// user name.
    anonymous: Rules,
    /// Each user's `topic` rules.
    users: HashMap<String, Rules>,
    /// The `pattern` rules, for everyone.
    patterns: Rules,
}

/// Rules in the order Mosquitto tries them: every deny, then the grants.
#[derive(Debug, Clone, Default)]
struct Rules {
    denies: Vec<RuleFilter>,
    grants: Vec<Grant>,
}

#[derive(Debug, Clone)]
struct Grant {
    read: bool,
    write: bool,
    filter: RuleFilter,
}

/// The ACCESS word of a `topic` or `pattern` line.
#[derive(Clone, Copy)]
enum RuleAccess {
    Grant { read: bool, write: bool },
    Deny,
}

/// What one rule says about a question: nothing (try the next), or the answer.
type Verdict = Option<bool>;

impl Acl {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Acl, AuthFileError> {
        Acl::parse(&read_text(path)?, path)
    }

    /// Reads an ACL file's `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Acl, AuthFileError> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let error = |problem| AuthFileError::line(path, index + 1, problem);
            let line = raw.trim_end_matches(is_blank);
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim_start_matches(' ');
            let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
            match keyword {
                "" => {}
                "user" => {
                    let name = trim_blanks(rest);
                    if name.is_empty() {
                        return Err(error(LineProblem::MissingUserName));
                    }
                    user = Some(name.to_string());
                }
                "topic" | "pattern" => {
                    let (access, filter) = access_and_filter(rest).map_err(error)?;
                    if !filter::is_valid(filter) {
                        return Err(error(LineProblem::InvalidFilter(filter.to_string())));
                    }
                    let (rules, filter) = if keyword == "pattern" {
                        (&mut acl.patterns, RuleFilter::pattern(filter))
                    } else {
                        let rules = match &user {
                            Some(name) => acl.users.entry(name.clone()).or_default(),
                            None => &mut acl.anonymous,
                        };
                        (rules, RuleFilter::topic(filter))
                    };
                    rules.add(access, filter);
                }
                other => return Err(error(LineProblem::UnknownKeyword(other.to_string()))),
            }
        }
        Ok(acl)
    }

    /// May `who` publish to (Write) or receive a message on (Read) the topic name `topic`?
    pub fn allows(&self, who: Who<'_>, topic: &str, access: Access) -> bool {
        self.decide(
            who,
            |deny| deny.matches(who, topic).then_some(false),
            |grant| {
                let wanted = match access {
                    Access::Read => grant.read,
                    Access::Write => grant.write,
                };
                (wanted && grant.filter.matches(who, topic)).then_some(true)
            },
        )
    }

    /// Is a SUBSCRIBE to `filter` accepted? (Its deliveries are then still checked per topic
    /// with [`Acl::allows`]`(.., Read)`.) Mosquitto 2.0 accepts every SUBSCRIBE and only
    /// filters deliveries; this refuses one that could never deliver anything: taking the rules
    /// in the order [`Acl::allows`] does, the first read grant whose filter shares a topic with
    /// `filter` accepts it, and a deny matching every topic of `filter` before it refuses it
    /// (as does finding neither). A shared subscription (`$share/{group}/{filter}`) is judged
    /// by its filter.
    pub fn may_subscribe(&self, who: Who<'_>, filter: &str) -> bool {
        let filter = filter
            .strip_prefix("$share/")
            .and_then(|group_and_filter| group_and_filter.split_once('/'))
            .map_or(filter, |(_, filter)| filter);
        self.decide(
            who,
            |deny| filter::covers(&deny.expanded(who), filter).then_some(false),
            |grant| {
                (grant.read && filter::overlap(&grant.filter.expanded(who), filter)).then_some(true)
            },
        )
    }

    /// Asks `deny` then `grant` of each rule that applies to `who`, in Mosquitto's order, and
    /// returns the first answer; denied if none answers.
    fn decide(
        &self,
        who: Who<'_>,
        mut deny: impl FnMut(&RuleFilter) -> Verdict,
        mut grant: impl FnMut(&Grant) -> Verdict,
    ) -> bool {
        let own = match who.username {
            Some(name) => self.users.get(name),
            None => Some(&self.anonymous),
        };
        if let Some(verdict) = own.and_then(|rules| rules.decide(|_| true, &mut deny, &mut grant)) {
            return verdict;
        }
        // Mosquitto: a name with a wildcard could reach other clients' topics through `%u` or
        // `%c`, so such a client gets nothing from the patterns.
        let has_wildcard = |name: &str| name.contains(['+', '#']);
        if self.patterns.is_empty()
            || who.username.is_some_and(has_wildcard)
            || has_wildcard(who.client_id)
        {
            return false;
        }
        let applies = |filter: &RuleFilter| who.username.is_some() || !filter.names_user();
        self.patterns
            .decide(applies, &mut deny, &mut grant)
            .unwrap_or(false)
    }
}

impl Rules {
    fn add(&mut self, access: RuleAccess, filter: RuleFilter) {
        match access {
            RuleAccess::Deny => self.denies.push(filter),
            RuleAccess::Grant { read, write } => self.grants.push(Grant {
                read,
                write,
                filter,
            }),
        }
    }

    fn is_empty(&self) -> bool {
        self.denies.is_empty() && self.grants.is_empty()
    }

    /// The first answer of `deny` over the denies, then of `grant` over the grants, among the
    /// rules whose filter `applies`.
    fn decide(
        &self,
        applies: impl Fn(&RuleFilter) -> bool,
        deny: &mut impl FnMut(&RuleFilter) -> Verdict,
        grant: &mut impl FnMut(&Grant) -> Verdict,
    ) -> Verdict {
        self.denies
            .iter()
            .filter(|filter| applies(filter))
            .find_map(deny)
            .or_else(|| {
                self.grants
                    .iter()
                    .filter(|rule| applies(&rule.filter))
                    .find_map(grant)
            })
    }
}

/// The ACCESS word (if any) and the filter of a `topic` or `pattern` line, after the keyword.
/// As in Mosquitto, a single word is the filter (with `readwrite`), so `topic read` grants
/// both on the topic `read`.
fn access_and_filter(rest: &str) -> Result<(RuleAccess, &str), LineProblem> {
    let rest = rest.trim_start_matches(' ');
    let (word, filter) = match rest.split_once(' ') {
        Some((word, filter)) => (word, trim_blanks(filter)),
        None if rest.is_empty() => return Err(LineProblem::MissingTopic),
        None => {
            let both = RuleAccess::Grant {
                read: true,
                write: true,
            };
            return Ok((both, rest));
        }
    };
    let access = match word {
        "read" => RuleAccess::Grant {
            read: true,
            write: false,
        },
        "write" => RuleAccess::Grant {
            read: false,
            write: true,
        },
        "readwrite" => RuleAccess::Grant {
            read: true,
            write: true,
        },
        "deny" => RuleAccess::Deny,
        other => return Err(LineProblem::BadAccess(other.to_string())),
    };
    Ok((access, filter))
}

#[cfg(test)]
mod tests;
