//! Checks of the bridge's test kit: the fault-injecting proxy against a plain TCP echo
//! upstream, and the real upstream brokers (Mosquitto with its profiles, an ejabberd cluster)
//! answering an MQTT client.

mod ejabberd;
mod mosquitto;
mod proxy;
