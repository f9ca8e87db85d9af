//! Listening sockets: binding with a listen backlog deep enough for a reconnect storm, and
//! the process's file-descriptor limit, raised so that `limits.max_connections` can be
//! reached. It never serves a connection.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may queue for `accept`. Linux caps it at `net.core.somaxconn`
/// (4096 by default since 5.4). A shallow queue overflows when thousands of clients connect
/// at once, and the kernel then drops connections that the client already believes open
/// (with SYN cookies): the broker never sees them, so no timeout can close them.
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds a TCP listener on `addr` (address reuse on, as `TcpListener::bind`).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft limit on open files to the hard limit: every connection is a file
/// descriptor, and the usual soft default (1024) is far below `limits.max_connections`.
/// Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}
