//! Cairn's store counters (`$SYS/broker/store/commits`, `…/bytes_written`,
//! `…/messages_elided`) and queue length (`$SYS/broker/messages/queued`), read by a
//! short-lived client.
//!
//! Retained values may be up to one `sys_interval` old, so only live publications count: the
//! values are those of the first whole `$SYS` update (it opens with `$SYS/broker/version`)
//! after the reader subscribed.

use std::time::Duration;

use cairn::codec::{Packet, QoS};
use tokio::time::{sleep_until, Instant};

use crate::connection::{ClientOptions, MqttConnection};
use crate::error::LoadError;
use crate::run::client_id;

/// Filter covering every topic read here.
const SYS_FILTER: &str = "$SYS/broker/#";

/// The first topic of every `$SYS` update.
const FIRST_OF_UPDATE: &str = "$SYS/broker/version";
const COMMITS: &str = "$SYS/broker/store/commits";
const BYTES_WRITTEN: &str = "$SYS/broker/store/bytes_written";
const QUEUED: &str = "$SYS/broker/messages/queued";
const ELIDED: &str = "$SYS/broker/store/messages_elided";

/// The values read here, one slot per topic (see [`record`]).
pub type SysValues = [Option<u64>; 4];

/// Counters of the broker's store at one `$SYS` update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write transactions committed since the broker started.
    pub commits: u64,
    /// Bytes the store's writer sent to storage since the broker started.
    pub bytes_written: u64,
    /// Messages queued for all sessions now.
    pub queued: u64,
    /// Queue entries the store never wrote because they were enqueued and left the queue
    /// within one group commit, since the broker started.
    pub elided: u64,
}

/// Reads the next live `$SYS` update, waiting at most `wait` for it.
pub async fn read(options: &ClientOptions, wait: Duration) -> Result<StoreStats, LoadError> {
    let who = "$SYS reader".to_owned();
    let (mut connection, _) = MqttConnection::open(who, &client_id("sys", 0), options).await?;
    connection
        .subscribe(SYS_FILTER, QoS::AtMostOnce, options.handshake_timeout)
        .await?;
    let stats = next_update(&mut connection, wait).await?;
    connection.disconnect().await?;
    Ok(stats)
}

/// Collects the live values of the four topics.
async fn next_update(
    connection: &mut MqttConnection,
    wait: Duration,
) -> Result<StoreStats, LoadError> {
    let deadline = Instant::now() + wait;
    let mut values: SysValues = [None; 4];
    let mut update_started = false;
    loop {
        while let Some(packet) = connection.next_packet()? {
            let Packet::Publish(publish) = packet else {
                continue;
            };
            if publish.retain {
                continue;
            }
            update_started |= publish.topic == FIRST_OF_UPDATE;
            if update_started {
                record(&mut values, &publish.topic, &publish.payload)?;
            }
        }
        if let [Some(commits), Some(bytes_written), Some(queued), Some(elided)] = values {
            return Ok(StoreStats {
                commits,
                bytes_written,
                queued,
                elided,
            });
        }
        if Instant::now() >= deadline {
            return Err(LoadError::Timeout {
                who: connection.who().to_owned(),
                awaited: "live $SYS/broker/store/… values (is $SYS on, CAIRN_SYS_INTERVAL?)",
                timeout: wait,
            });
        }
        connection.pump(sleep_until(deadline)).await?;
    }
}

/// Stores the value of `topic` if it is one of the four read here.
pub fn record(values: &mut SysValues, topic: &str, payload: &[u8]) -> Result<(), LoadError> {
    let slot = match topic {
        COMMITS => 0,
        BYTES_WRITTEN => 1,
        QUEUED => 2,
        ELIDED => 3,
        _ => return Ok(()),
    };
    let text = String::from_utf8_lossy(payload);
    let value = text.trim().parse().map_err(|_| LoadError::SysValue {
        topic: topic.to_owned(),
        value: text.to_string(),
    })?;
    values[slot] = Some(value);
    Ok(())
}
