//! STUB
use std::collections::HashMap;
use std::path::Path;

use super::AuthFileError;

#[derive(Debug, Default)]
pub struct PasswordFile {
    users: HashMap<String, String>,
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthFileError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        PasswordFile::parse(&text, path)
    }
    pub fn parse(text: &str, _path: &Path) -> Result<PasswordFile, AuthFileError> {
        let users = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Ok(PasswordFile { users })
    }
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.users.get(user).map(|p| p.as_bytes()) == Some(password)
    }
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
    pub fn set_password(&mut self, user: &str, password: &[u8]) -> Result<(), std::fmt::Error> {
        self.users.insert(
            user.to_string(),
            String::from_utf8_lossy(password).into_owned(),
        );
        Ok(())
    }
    pub fn remove(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }
    pub fn to_text(&self) -> String {
        self.users
            .iter()
            .map(|(u, p)| format!("{u}:{p}\n"))
            .collect()
    }
}
