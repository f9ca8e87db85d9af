//! The password and ACL files against the real Mosquitto 2.0: Cairn's `PasswordFile` reads what
//! `mosquitto_passwd` writes and Mosquitto accepts the users `cairn passwd` writes; `cairn
//! passwd` creates, updates and deletes users as `mosquitto_passwd` does; and Cairn's `Acl`
//! answers what Mosquitto does with the same ACL file (what `mosquitto_sub` receives and what
//! `mosquitto_pub` gets delivered). A test whose Mosquitto program is missing is skipped, or
//! fails under `CI=true`.

#[path = "../common/mod.rs"]
mod common;

mod acl_differential;
mod clients;
mod passwd_command;
mod password_interop;
