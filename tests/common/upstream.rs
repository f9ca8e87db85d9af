//! Real upstream brokers for the bridge tests, on loopback ports picked free at start: a
//! Mosquitto (plain, with the limits a cloud broker announces, or with a password and ACL file
//! as the reference for Cairn's reading of them) and a two-node ejabberd cluster. A test whose broker is not installed is skipped, or fails under `CI=true` (see
//! [`super::programs::available`]). Every broker is stopped when its value is dropped; nothing
//! here listens on anything but 127.0.0.1.

mod ejabberd;
mod mosquitto;

// The brokers by their short paths; a test binary that uses neither would call them unused.
#[allow(unused_imports)]
pub use ejabberd::EjabberdCluster;
#[allow(unused_imports)]
pub use mosquitto::{MosquittoProfile, MosquittoUpstream};

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::net::TcpStream;

use super::WAIT;

/// Pause between two connection attempts while a broker starts or stops.
const POLL: Duration = Duration::from_millis(20);

/// How long a broker may take to start or stop: three times [`WAIT`], for an Erlang VM booting
/// on a loaded machine.
const STARTUP: Duration = WAIT.saturating_mul(3);

/// `N` different ports on 127.0.0.1 that were free a moment ago (bound to port 0 together,
/// then released). Another process may take one before the broker binds it, so callers retry
/// with new ones where they can.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners = [(); N].map(|()| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"));
    listeners.map(|listener| listener.local_addr().expect("a bound address").port())
}

/// The loopback address with `port`.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether something accepts TCP connections on `addr` now.
async fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

/// Waits until nothing accepts connections on `addr` any more (a stopped or dropped broker's
/// process is gone, a dropped proxy's listener closed); false if something still does after
/// [`STARTUP`].
pub async fn wait_until_refused(addr: SocketAddr) -> bool {
    tokio::time::timeout(STARTUP, async {
        while accepts(addr).await {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .is_ok()
}
