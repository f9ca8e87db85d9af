//! Listening sockets: binding with a listen backlog deep enough for a reconnect storm, and
//! the process's file-descriptor limit, raised so that `limits.max_connections` can be
//! reached. It never serves a connection.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Connections the kernel may queue for `accept`. Linux caps it at `net.core.somaxconn`
/// (4096 by default since 5.4). A shallow queue overflows when thousands of clients connect
/// at once, and the kernel then drops connections that the client already believes open
/// (with SYN cookies): the broker never sees them, so no timeout can close them.
const LISTEN_BACKLOG: i32 = 65_535;

/// Binds a TCP listener on `addr` (address reuse on, as `TcpListener::bind`). An IPv6 address
/// listens for IPv6 only (`IPV6_V6ONLY`, as Mosquitto's listeners): with Linux's default,
/// `[::]:1883` would also take IPv4 and then fail beside `0.0.0.0:1883` with "address in use".
/// Call within the runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Raises the soft limit on open files to the hard limit: every connection is a file
/// descriptor, and the usual soft default (1024) is far below `limits.max_connections`.
/// Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ipv6_listener_takes_ipv6_only_and_an_ipv4_one_reuses_its_address() {
        let v6 = bind("[::1]:0".parse().expect("an address")).expect("IPv6 loopback binds");
        assert!(socket2::SockRef::from(&v6).only_v6().expect("IPV6_V6ONLY"));
        let v4 = bind("127.0.0.1:0".parse().expect("an address")).expect("IPv4 loopback binds");
        let v4 = socket2::SockRef::from(&v4);
        assert!(v4.reuse_address().expect("SO_REUSEADDR"));
        assert!(v4.is_listener().expect("SO_ACCEPTCONN"));
    }
}
