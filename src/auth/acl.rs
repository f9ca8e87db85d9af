//! STUB
use std::path::Path;

use super::AuthFileError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
}
#[derive(Debug, Default)]
pub struct Acl {
    rules: Vec<(Option<String>, String, bool, bool)>,
}
impl Acl {
    pub fn load(path: &Path) -> Result<Acl, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthFileError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Acl::parse(&text, path)
    }
    pub fn parse(text: &str, _path: &Path) -> Result<Acl, AuthFileError> {
        let mut user = None;
        let mut rules = Vec::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["user", name] => user = Some(name.to_string()),
                ["topic", "read", f] => rules.push((user.clone(), f.to_string(), true, false)),
                ["topic", "write", f] => rules.push((user.clone(), f.to_string(), false, true)),
                ["topic", "readwrite", f] | ["topic", f] => {
                    rules.push((user.clone(), f.to_string(), true, true))
                }
                _ => {}
            }
        }
        Ok(Acl { rules })
    }
    pub fn allows(&self, who: Who<'_>, topic: &str, access: Access) -> bool {
        self.rules.iter().any(|(u, f, r, w)| {
            u.as_deref() == who.username
                && crate::broker::topic::filter_matches(f, topic)
                && if access == Access::Read { *r } else { *w }
        })
    }
    pub fn may_subscribe(&self, who: Who<'_>, filter: &str) -> bool {
        self.rules
            .iter()
            .any(|(u, f, r, _)| u.as_deref() == who.username && *r && (f == filter || f == "#"))
    }
}
