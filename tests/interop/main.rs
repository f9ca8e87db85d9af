//! Interoperability: real MQTT clients against a broker started from the library — rumqttc
//! (MQTT 3.1.1 and 5.0) and Debian's Mosquitto command-line clients over TCP and TLS (with
//! certificates made in the test, mTLS and `cn_as_username`), and the transport's own client
//! connection, and the connect deadline of a TLS listener.

#[path = "../common/mod.rs"]
mod common;

mod mosquitto;
mod mosquitto_auth;
mod mosquitto_tcp;
mod mosquitto_tls;
mod rumqttc_v311;
mod rumqttc_v5;
mod tls_listener;
mod transport_client;
