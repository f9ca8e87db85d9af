//! A real browser: headless Chromium (Debian's `chromium`) loads `browser/page.html`, whose
//! MQTT.js browser bundle connects to a `ws` listener as a browser does (its own WebSocket,
//! an `Origin` header, the `mqtt` subprotocol), subscribes, publishes at QoS 1, gets its
//! message back and reports over MQTT to a TCP client of the test. A test without Chromium or
//! the bundle is skipped, or fails under `CI=true`.

use std::path::PathBuf;
use std::time::Duration;

use cairn::codec::Packet;

use crate::common::clients::text;
use crate::common::programs::{self, Running};
use crate::node::mqtt_js_available;
use crate::{tcp_watcher, ws_and_tcp_broker};

/// How long a browser may take to start and report on a loaded machine.
const BROWSER_WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_browser_exchanges_messages_over_websockets() {
    const TEST: &str = "a_browser_exchanges_messages_over_websockets";
    if !programs::available("chromium", "chromium", TEST) || !mqtt_js_available(TEST) {
        return;
    }
    let broker = ws_and_tcp_broker().await;
    let mut watcher = tcp_watcher(&broker, "browser/result").await;
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/websocket/browser/page.html");
    let profile = tempfile::tempdir().expect("a profile directory for the browser");
    let args = [
        "--headless".to_string(),
        // Tests run as root in CI, where Chromium's sandbox cannot start.
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--no-first-run".to_string(),
        format!("--user-data-dir={}", profile.path().display()),
        format!("file://{}?url=ws://{}/mqtt", page.display(), broker.addr),
    ];
    let _browser = Running::spawn("chromium", &args);
    let reported = tokio::time::timeout(BROWSER_WAIT, watcher.read_packet())
        .await
        .expect("the page reported within the wait");
    let Some(Packet::Publish(result)) = reported else {
        panic!("expected the page's report, got {reported:?}");
    };
    assert_eq!(text(&result), "ok: ping");
}
