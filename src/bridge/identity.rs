//! Who a bridge is upstream: its client id (by default built from this machine's hostname) and
//! its password, read from `password_file` when it connects. The password is returned to the
//! caller only: never logged, never kept in the configuration.

use std::fs;
use std::io;
use std::path::Path;

use crate::config::BridgeConfig;

/// Where the kernel keeps the hostname; `/etc/hostname` is tried next.
const HOSTNAME_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/etc/hostname"];
/// The hostname used when no file gives one.
const UNKNOWN_HOSTNAME: &str = "localhost";

impl BridgeConfig {
    /// The client id upstream: `client_id` when given, else `cairn-<hostname>-<name>`, the
    /// same across restarts so that the upstream session is found again.
    pub fn client_id(&self) -> String {
        match &self.client_id {
            Some(client_id) => client_id.clone(),
            None => format!("cairn-{}-{}", hostname(), self.name),
        }
    }

    /// Whether a 3.1.1 CONNECT can carry the bridge's credentials: it sends a password only
    /// with a user name [MQTT-3.1.2-22].
    pub fn credentials_fit_311(&self) -> bool {
        self.password_file.is_none() || self.username.is_some()
    }

    /// The first line of `password_file` (without its line ending), or `None` when no file is
    /// configured. An error names the file, never its contents.
    pub fn read_password(&self) -> Result<Option<String>, io::Error> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let contents = fs::read(path).map_err(|error| naming(path, error))?;
        let first_line = contents.split(|&byte| byte == b'\n').next().unwrap_or(&[]);
        let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
        match String::from_utf8(first_line.to_vec()) {
            Ok(password) => Ok(Some(password)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the password file {} is not UTF-8", path.display()),
            )),
        }
    }
}

fn naming(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("cannot read the password file {}: {error}", path.display()),
    )
}

/// This machine's hostname: the first non-empty of [`HOSTNAME_FILES`], else
/// [`UNKNOWN_HOSTNAME`].
fn hostname() -> String {
    HOSTNAME_FILES
        .iter()
        .filter_map(|file| fs::read_to_string(file).ok())
        .map(|contents| contents.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| UNKNOWN_HOSTNAME.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;

    fn bridge(name: &str) -> BridgeConfig {
        let text = format!("name = {name:?}\naddresses = [\"localhost:1883\"]\n");
        toml::from_str(&text).expect("a bridge")
    }

    #[test]
    fn the_default_client_id_names_host_and_bridge() {
        let cloud = bridge("cloud");
        let expected = format!("cairn-{}-cloud", hostname());
        assert_eq!(cloud.client_id(), expected);
        assert!(!hostname().is_empty());
        assert!(!hostname().contains('\n'));
        let mut named = bridge("cloud");
        named.client_id = Some("gw-7".to_string());
        assert_eq!(named.client_id(), "gw-7");
    }

    fn password_file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(contents).expect("write");
        file
    }

    #[test]
    fn the_password_is_the_first_line_of_its_file() {
        let mut cloud = bridge("cloud");
        assert_eq!(cloud.read_password().expect("no file"), None);
        for (contents, password) in [
            (&b"s3cret\n"[..], "s3cret"),
            (b"s3cret\r\nsecond line\n", "s3cret"),
            (b"no newline", "no newline"),
            (b" spaces kept \n", " spaces kept "),
            (b"", ""),
        ] {
            let file = password_file(contents);
            cloud.password_file = Some(file.path().to_path_buf());
            let read = cloud.read_password().expect("readable");
            assert_eq!(read.as_deref(), Some(password), "{contents:?}");
        }
    }

    /// Neither an error nor the configuration's `Debug` shows the password.
    #[test]
    fn the_password_is_never_shown() {
        let mut cloud = bridge("cloud");
        let file = password_file(b"\xff\xfe-hunter2\n");
        cloud.password_file = Some(file.path().to_path_buf());
        let error = cloud.read_password().expect_err("not UTF-8");
        assert!(error
            .to_string()
            .contains(&file.path().display().to_string()));
        assert!(!error.to_string().contains("hunter2"));

        let readable = password_file(b"hunter2\n");
        cloud.password_file = Some(readable.path().to_path_buf());
        assert_eq!(
            cloud.read_password().expect("read").as_deref(),
            Some("hunter2")
        );
        assert!(!format!("{cloud:?}").contains("hunter2"));

        cloud.password_file = Some(PathBuf::from("/nonexistent/cairn/cloud.pass"));
        let missing = cloud.read_password().expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing
            .to_string()
            .contains("/nonexistent/cairn/cloud.pass"));
    }
}
