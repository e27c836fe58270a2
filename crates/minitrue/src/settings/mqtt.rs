//! `[mqtt]`: the broker the node subscribes to (its own embedded one unless `broker` is
//! given) and the subscriber's limits; maps onto the ingest crate's [`SubscriberConfig`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use minitrue_ingest::client::BrokerTls;
use minitrue_ingest::mqtt::{MqttLogin, SubscriberConfig};
use serde::{Deserialize, Serialize, Serializer};

/// How the nodes of a cluster subscribe to the MQTT broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MqttSubscription {
    /// One shared subscription for the cluster: the broker hands each message to one node,
    /// which routes its points to their owners.
    Shared,
    /// The seed's way: every node receives every message and keeps the points it owns.
    EveryNode,
}

fn subscriber() -> SubscriberConfig {
    SubscriberConfig::new("", "")
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct MqttSettings {
    /// External MQTT broker URL (mqtt://host:1883, mqtts://…); default: the embedded broker.
    /// Credentials do not belong in it (it is printed): see --broker-username.
    #[arg(id = "mqtt.broker", long = "broker", env = "MINITRUE_BROKER")]
    pub broker: Option<String>,
    /// User name at the external broker.
    #[arg(id = "mqtt.broker_username", long = "broker-username", env = "MINITRUE_BROKER_USERNAME")]
    pub broker_username: Option<String>,
    /// A file whose first line is the password at the external broker (or set
    /// MINITRUE_BROKER_PASSWORD).
    #[arg(
        id = "mqtt.broker_password_file",
        long = "broker-password-file",
        env = "MINITRUE_BROKER_PASSWORD_FILE"
    )]
    pub broker_password_file: Option<PathBuf>,
    /// PEM CA certificate an mqtts:// --broker's certificate must chain to (default: the
    /// machine's trusted roots).
    #[arg(id = "mqtt.broker_ca", long = "broker-ca", env = "MINITRUE_BROKER_CA")]
    pub broker_ca: Option<PathBuf>,
    /// PEM client certificate for an mqtts:// --broker that asks for one (with --broker-key).
    #[arg(id = "mqtt.broker_cert", long = "broker-cert", env = "MINITRUE_BROKER_CERT")]
    pub broker_cert: Option<PathBuf>,
    /// PEM private key of --broker-cert.
    #[arg(id = "mqtt.broker_key", long = "broker-key", env = "MINITRUE_BROKER_KEY")]
    pub broker_key: Option<PathBuf>,
    /// With --broker, `shared`: each message goes to one node of the cluster, which routes
    /// it; `every-node`: every node receives every message and keeps what it owns.
    #[arg(id = "mqtt.mqtt_subscription", long = "mqtt-subscription", env = "MINITRUE_MQTT_SUBSCRIPTION",
          value_enum, default_value_t = MqttSubscription::Shared)]
    pub mqtt_subscription: MqttSubscription,
    /// Most messages written in one batch (one WAL sync); also the broker's in-flight window.
    #[arg(id = "mqtt.max_batch_messages", long = "mqtt-max-batch-messages", env = "MINITRUE_MQTT_MAX_BATCH_MESSAGES",
          default_value_t = subscriber().max_batch_messages as u64, value_parser = clap::value_parser!(u64).range(10..=65_535))]
    pub max_batch_messages: u64,
    /// The largest MQTT packet accepted from the broker.
    #[arg(id = "mqtt.max_packet_bytes", long = "mqtt-max-packet-bytes", env = "MINITRUE_MQTT_MAX_PACKET_BYTES",
          default_value_t = subscriber().max_packet_bytes as u64, value_parser = clap::value_parser!(u64).range(1024..=(256 << 20)))]
    pub max_packet_bytes: u64,
    /// Where rejected messages are republished with their reasons.
    #[arg(id = "mqtt.dead_letter_topic", long = "mqtt-dead-letter-topic", env = "MINITRUE_MQTT_DEAD_LETTER_TOPIC",
          default_value_t = subscriber().dead_letter_topic)]
    pub dead_letter_topic: String,
    /// The login at the external broker, read from --broker-username with the password file
    /// or MINITRUE_BROKER_PASSWORD (or taken out of the URL); printed masked.
    #[arg(skip)]
    #[serde(serialize_with = "masked_login")]
    pub login: Option<MqttLogin>,
}

impl MqttSettings {
    /// TLS towards the external broker.
    pub fn broker_tls(&self) -> BrokerTls {
        BrokerTls {
            ca: self.broker_ca.clone(),
            cert: self.broker_cert.clone(),
            key: self.broker_key.clone(),
        }
    }

    /// The subscriber's configuration for `broker_url` as `client_id` (the URL, login and TLS
    /// are the caller's: the embedded broker has its own).
    pub fn subscriber(&self, broker_url: &str, client_id: &str) -> SubscriberConfig {
        let mut config = SubscriberConfig::new(broker_url, client_id);
        config.max_batch_messages = self.max_batch_messages as usize;
        config.max_packet_bytes = self.max_packet_bytes as usize;
        config.dead_letter_topic = self.dead_letter_topic.clone();
        config
    }
}

fn masked_login<S: Serializer>(
    login: &Option<MqttLogin>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match login {
        Some(login) => serializer.serialize_str(&format!("{} / ********", login.username)),
        None => serializer.serialize_none(),
    }
}
