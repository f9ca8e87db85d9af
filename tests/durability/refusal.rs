//! The store refusing to start rather than risk the data (design.md promise 1): a second
//! `cairn serve` on a data directory another cairn holds, and a `cairn.redb` that is not a
//! database, each make `serve` exit non-zero at once with a message naming the file, and the
//! file is left exactly as it was.

use std::path::Path;
use std::process::Output;

use cairn::codec::{ProtocolVersion, QoS};

use crate::common::binary::stderr;
use crate::common::clients::subscribe_ok;
use crate::common::prng::SplitMix64;
use crate::common::{publish_packet, RawClient};
use crate::process::{self, serve_to_end};
use crate::support::{expect_message, publish};

/// The database file in a data directory.
const DATABASE_FILE: &str = "cairn.redb";

/// Asserts `serve` exited by itself with a failure code, and its message names `file` and
/// contains `says`.
fn assert_refused(output: &Output, file: &Path, says: &str) {
    let message = stderr(output);
    assert!(
        matches!(output.status.code(), Some(code) if code != 0),
        "cairn serve exits with a failure code, not {}: {message}",
        output.status
    );
    assert!(
        message.contains(&file.display().to_string()),
        "the message names {}: {message}",
        file.display()
    );
    assert!(
        message.to_lowercase().contains(says),
        "the message says {says:?}: {message}"
    );
}

/// A QoS 1 round trip through the broker at `addr`.
async fn assert_serves(addr: std::net::SocketAddr) {
    let mut client = RawClient::connect(addr, ProtocolVersion::V5, "still-serving").await;
    subscribe_ok(&mut client, 1, "refusal/alive", QoS::AtLeastOnce).await;
    publish(
        &mut client,
        publish_packet("refusal/alive", QoS::AtLeastOnce, Some(2), b"alive"),
    )
    .await;
    let delivered = expect_message(&mut client, "alive", QoS::AtLeastOnce, false).await;
    client.acknowledge(&delivered).await;
}

/// A second `cairn serve` on a data directory a running cairn holds exits non-zero at once,
/// saying another cairn is running on that directory and naming the file; the first keeps
/// serving.
#[tokio::test]
async fn second_serve_on_a_data_directory_in_use_exits_naming_it() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let first = process::start(data_dir.path()).await;
    let second = serve_to_end(data_dir.path()).await;
    assert_refused(
        &second,
        &data_dir.path().join(DATABASE_FILE),
        "another cairn is running on this data directory",
    );
    assert_serves(first.addr).await;
    first.kill().await;
}

/// Bytes that are not a redb database: a deterministic pseudo-random pattern.
fn garbage(len: usize) -> Vec<u8> {
    let mut random = SplitMix64::new(0x9E37_79B9);
    (0..len).map(|_| random.byte()).collect()
}

/// A `cairn.redb` of garbage (short and page-sized) makes `serve` exit non-zero with a message
/// naming the file and saying it was left untouched; the file is byte for byte what it was.
#[tokio::test]
async fn garbage_database_file_is_refused_and_left_unchanged() {
    for len in [100, 64 * 1024] {
        let data_dir = tempfile::tempdir().expect("a data directory");
        let file = data_dir.path().join(DATABASE_FILE);
        let contents = garbage(len);
        std::fs::write(&file, &contents).expect("write the garbage file");
        let output = serve_to_end(data_dir.path()).await;
        assert_refused(&output, &file, "untouched");
        assert!(
            std::fs::read(&file).expect("the file is still there") == contents,
            "{} ({len} bytes of garbage) was changed",
            file.display()
        );
    }
}
