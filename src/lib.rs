//! Cairn: a durable MQTT 3.1.1 + 5.0 broker for edge gateways.
//!
//! The library holds everything; the `cairn` binary is a thin CLI over [`server::Server`].
// Denied, not forbidden: one system call without a safe wrapper in our dependencies,
// `sched_setscheduler` for the bridges' thread (src/bridge/thread.rs), is allowed where made.
#![deny(unsafe_code)]
// The documentation is for Cairn's developers (`cargo doc --document-private-items`): module
// docs link the private items they are made of.
#![allow(rustdoc::private_intra_doc_links)]

pub mod access;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod codec;
pub mod config;
pub mod metrics;
pub mod model;
pub mod server;
pub mod service;
pub mod store;
pub mod transport;
