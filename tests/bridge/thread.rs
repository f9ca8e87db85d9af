//! The bridges' thread (the real binary): the uplinks run on a thread of their own, scheduled
//! as a batch job, beside the connections' thread, which keeps the normal policy.

use cairn::config::Direction;

use crate::support::{bridge, rule, FakeCloud, GatewayProcess};

/// Linux's scheduling policies, as /proc reports them.
const SCHED_NORMAL: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// Each thread of process `pid`: its name and its scheduling policy (field 41 of
/// `/proc/<pid>/task/<tid>/stat`).
fn threads_of(pid: u32) -> Vec<(String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .map(|task| {
            let path = task.expect("a thread").path();
            let name = std::fs::read_to_string(path.join("comm")).expect("its name");
            let stat = std::fs::read_to_string(path.join("stat")).expect("its stat");
            // The fields after the name, which may hold spaces, start with the third.
            let after_name = &stat[stat.rfind(')').expect("a name in parentheses") + 1..];
            let policy = after_name
                .split_whitespace()
                .nth(41 - 3)
                .and_then(|field| field.parse().ok())
                .expect("a policy field");
            (name.trim().to_owned(), policy)
        })
        .collect()
}

#[tokio::test]
async fn bridges_run_on_a_batch_thread_beside_the_connections() {
    let cloud = FakeCloud::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = vec![rule("sensors/#", Direction::Out, 1, "", "")];
    let gateway = GatewayProcess::new(dir.path(), vec![bridge("cloud", cloud.addr(), rules)]);
    let process = gateway.start().await;
    // The bridge dials: its task runs.
    let _link = cloud.accept_connect().await;

    let threads = threads_of(process.pid());
    let bridges: Vec<u32> = threads
        .iter()
        .filter(|(name, _)| name == "cairn-bridges")
        .map(|&(_, policy)| policy)
        .collect();
    assert_eq!(
        bridges,
        [SCHED_BATCH],
        "one batch thread for the bridges: {threads:?}"
    );
    let connections = threads
        .iter()
        .find(|(name, _)| name == "cairn")
        .expect("the connections' thread");
    assert_eq!(connections.1, SCHED_NORMAL, "{threads:?}");
}
