//! MQTT.js run by Node.js: `js/client.js` (one client doing one job, printing one line per
//! event) with the `mqtt` package that `npm ci` installs in `js/node_modules` from the lock
//! file. A test without Node.js or the package is skipped, or fails under `CI=true`.

use std::path::PathBuf;

use crate::common::programs::{self, Finished, Running};

/// Where the JavaScript side lives.
fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/websocket/js")
}

/// Whether MQTT.js can run here; when not, the test is skipped (or fails under `CI=true`).
pub fn mqtt_js_available(test: &str) -> bool {
    if !programs::available("node", "nodejs", test) {
        return false;
    }
    let package = js_dir().join("node_modules/mqtt/package.json");
    programs::ready_or_skip(
        package.is_file(),
        test,
        "MQTT.js is not installed in tests/websocket/js/node_modules",
        "run `npm ci` in tests/websocket/js",
    )
}

/// `node client.js JOB URL ARGS…`, running in the background.
pub fn spawn(job: &str, url: &str, args: &[&str]) -> Running {
    let script = js_dir().join("client.js");
    let mut all = vec![
        script.display().to_string(),
        job.to_string(),
        url.to_string(),
    ];
    all.extend(args.iter().map(|arg| arg.to_string()));
    Running::spawn("node", &all)
}

/// Runs `node client.js JOB URL ARGS…` to its end and asserts it succeeded.
pub async fn run(job: &str, url: &str, args: &[&str]) -> Finished {
    let finished = spawn(job, url, args).finish().await;
    finished.assert_success(&format!("MQTT.js {job} on {url}"));
    finished
}
