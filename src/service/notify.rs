//! The sd_notify protocol: one-line state changes (`READY=1`, `STATUS=…`, `STOPPING=1`,
//! `WATCHDOG=1`) sent as datagrams to the socket systemd names in `NOTIFY_SOCKET` — a file
//! path, or `@name` for an abstract socket. Sending is best effort: a failure is logged and
//! never stops the broker. Says nothing about when to send what; [`super`] decides.
//!
//! Written over std's `UnixDatagram` rather than with a crate: the protocol is one datagram per
//! state change, and holding one socket for the process's life lets the variables be read once.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where the service manager listens, if it asked to be told.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    /// The variable's value, for logs.
    named: String,
}

impl Notifier {
    /// A notifier for the value of `NOTIFY_SOCKET`: an absolute path, or `@name` for a socket
    /// in the abstract namespace. `None` for an empty value; an error for an address this
    /// process cannot use (systemd's `vsock:` addresses among them).
    pub fn new(notify_socket: &str) -> io::Result<Option<Notifier>> {
        let to = match notify_socket.strip_prefix('@') {
            _ if notify_socket.is_empty() => return Ok(None),
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if notify_socket.starts_with('/') => SocketAddr::from_pathname(notify_socket)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "neither an absolute path nor an @abstract name",
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        // A service manager that does not read must not block the broker.
        socket.set_nonblocking(true)?;
        Ok(Some(Notifier {
            socket,
            to,
            named: notify_socket.to_string(),
        }))
    }

    /// Sends `state` (one or more `KEY=value` lines) in one datagram; logs a failure.
    pub fn send(&self, state: &str) {
        if let Err(error) = self.socket.send_to_addr(state.as_bytes(), &self.to) {
            tracing::warn!(socket = %self.named, %error, "cannot notify the service manager");
        }
    }
}

/// A `STATUS=` line: one line of free text (line breaks would end it early).
pub fn status(text: &str) -> String {
    format!("STATUS={}", text.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(receiver: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let read = receiver.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..read]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::new(path.to_str().expect("UTF-8 path"))
            .expect("a usable address")
            .expect("a notifier");
        notifier.send("READY=1\nSTATUS=serving");
        assert_eq!(received(&receiver), "READY=1\nSTATUS=serving");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("cairn-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
        let receiver = UnixDatagram::bind_addr(&address).expect("bind");
        let notifier = Notifier::new(&format!("@{name}"))
            .expect("a usable address")
            .expect("a notifier");
        notifier.send("STOPPING=1");
        assert_eq!(received(&receiver), "STOPPING=1");
    }

    #[test]
    fn an_empty_value_asks_for_nothing_and_a_relative_one_is_refused() {
        assert!(Notifier::new("").expect("not an error").is_none());
        let error = Notifier::new("run/notify").expect_err("relative paths are not addresses");
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        assert!(Notifier::new("vsock:2:1234").is_err());
    }

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(status("a\nb"), "STATUS=a b");
    }
}
