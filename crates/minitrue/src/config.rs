//! Node configuration: command-line flags > `MINITRUE_*` environment variables > TOML file >
//! defaults. Every port can be 0 (the OS picks a free one; the bound addresses are printed and
//! written to `--ready-file`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use minitrue_ingest::mqtt::MqttLogin;
use serde::{Deserialize, Serialize};

/// What a node does (the seed's modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ingest and answer queries.
    All,
    /// Accept and store data, no query endpoints.
    #[value(alias = "ingestion")]
    #[serde(alias = "ingestion")]
    Ingest,
    /// Answer queries only.
    Query,
}

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

/// `minitrue serve` flags. Every one may also come from `MINITRUE_<NAME>` (upper case,
/// underscores) or from the TOML file given by `--config` (same names, underscores).
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings (flags and environment override it).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's unique id in the cluster.
    #[arg(long = "node-id", alias = "node_id")]
    pub node_id: Option<String>,
    /// Local directory for the WAL (and the data files, unless --store-url is given).
    #[arg(long = "data-dir", alias = "data_dir")]
    pub data_dir: Option<PathBuf>,
    /// Object store for data files: file:///path or s3://bucket/prefix.
    #[arg(long = "store-url")]
    pub store_url: Option<String>,
    /// Address every listener binds (default 127.0.0.1: nothing is exposed unless asked).
    #[arg(long)]
    pub listen: Option<IpAddr>,
    /// Address of the Postgres door (default: --listen), e.g. to keep SQL on loopback while
    /// MQTT faces the sensors' network.
    #[arg(long = "pg-listen")]
    pub pg_listen: Option<IpAddr>,
    /// Address of the HTTP door (default: --listen).
    #[arg(long = "http-listen")]
    pub http_listen: Option<IpAddr>,
    /// Address of the Arrow Flight door (default: --listen).
    #[arg(long = "flight-listen")]
    pub flight_listen: Option<IpAddr>,
    /// Address of the embedded broker's MQTT and MQTTS ports (default: --listen).
    #[arg(long = "mqtt-listen")]
    pub mqtt_listen: Option<IpAddr>,
    /// HTTP API, WebSocket, web UI, /metrics, /health.
    #[arg(long = "http-port", alias = "port")]
    pub http_port: Option<u16>,
    /// Postgres wire protocol.
    #[arg(long = "pg-port")]
    pub pg_port: Option<u16>,
    /// Arrow Flight (Flight SQL and the peer service).
    #[arg(long = "flight-port")]
    pub flight_port: Option<u16>,
    /// Gossip (UDP).
    #[arg(long = "gossip-port", alias = "tcp_port", alias = "tcp-port")]
    pub gossip_port: Option<u16>,
    /// Embedded MQTT broker (used when no --broker is given).
    #[arg(long = "mqtt-port")]
    pub mqtt_port: Option<u16>,
    /// Seed nodes to join: host:gossip_port,…
    #[arg(long)]
    pub seeds: Option<String>,
    /// The IP other nodes reach this one at (default: --listen; required when listening on
    /// 0.0.0.0 or ::).
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// Nodes gossip only with nodes of the same cluster id (default `minitrue`).
    #[arg(long = "cluster-id")]
    pub cluster_id: Option<String>,
    /// Copies of every series, primary included (default 3; capped at the cluster's size).
    #[arg(long = "replication-factor")]
    pub replication_factor: Option<usize>,
    /// Owners that must store a point before a write is acknowledged (default 2; capped at
    /// the series' owner count).
    #[arg(long = "write-quorum")]
    pub write_quorum: Option<usize>,
    /// Gossip interval in milliseconds (default 500); failures are detected after about 20.
    #[arg(long = "gossip-interval-ms")]
    pub gossip_interval_ms: Option<u64>,
    /// Seconds a node may be dead before its ranges pass to the others (default 900).
    #[arg(long = "dead-node-timeout")]
    pub dead_node_timeout: Option<u64>,
    /// Seconds between anti-entropy rounds with the nodes sharing this one's ranges (default
    /// 600; 0: only when the node starts and when the ring changes).
    #[arg(long = "repair-interval")]
    pub repair_interval: Option<u64>,
    /// External MQTT broker URL (mqtt://host:1883, mqtts://…); default: the embedded broker.
    /// Credentials do not belong in it (it is printed): see --broker-username.
    #[arg(long)]
    pub broker: Option<String>,
    /// User name at the external broker.
    #[arg(long = "broker-username")]
    pub broker_username: Option<String>,
    /// A file whose first line is the password at the external broker (or set
    /// MINITRUE_BROKER_PASSWORD).
    #[arg(long = "broker-password-file")]
    pub broker_password_file: Option<PathBuf>,
    /// PEM CA certificate an mqtts:// --broker's certificate must chain to (default: the
    /// machine's trusted roots).
    #[arg(long = "broker-ca")]
    pub broker_ca: Option<PathBuf>,
    /// PEM client certificate for an mqtts:// --broker that asks for one (with --broker-key).
    #[arg(long = "broker-cert")]
    pub broker_cert: Option<PathBuf>,
    /// PEM private key of --broker-cert.
    #[arg(long = "broker-key")]
    pub broker_key: Option<PathBuf>,
    /// With --broker, `shared` (default): each message goes to one node of the cluster, which
    /// routes it; `every-node`: every node receives every message and keeps what it owns.
    #[arg(long = "mqtt-subscription", value_enum)]
    pub mqtt_subscription: Option<MqttSubscription>,
    /// MQTT topic templates mapping topic levels to device_id, metric and tags, e.g.
    /// `site/{site}/{device_id}/{metric}` (repeat the flag for several).
    #[arg(long = "topic-template")]
    #[serde(alias = "topic_templates")]
    pub topic_template: Option<Vec<String>>,
    /// Also run N simulated sensors (default 3) publishing temperature every second to the
    /// node's broker: data to query right away.
    #[arg(long, num_args = 0..=1, default_missing_value = "3")]
    pub simulate: Option<u32>,
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Start even when listening beyond loopback with no users (anyone who reaches the node
    /// may read, write and delete; warned at every start). Users, once created, still apply.
    #[arg(long = "insecure-no-auth", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_no_auth: Option<bool>,
    /// Users to create when the node has none yet (first start of a container): a file of
    /// `name role password` lines, e.g. a mounted secret. Ignored once any user exists.
    #[arg(long = "bootstrap-users")]
    pub bootstrap_users: Option<PathBuf>,
    /// PEM certificate chain for TLS on the Postgres, HTTP, Flight and MQTTS doors (with
    /// --tls-key; both are read again on SIGHUP). It must name the address the node
    /// advertises to its peers (an IP subjectAltName) when the node is in a cluster.
    #[arg(long = "tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates the other nodes' certificates must chain to (calls between nodes
    /// go over TLS when --tls-cert is set); default: the certificates in --tls-cert.
    #[arg(long = "tls-ca")]
    pub tls_ca: Option<PathBuf>,
    /// Refuse plaintext: Postgres sessions without TLS fail at startup, and the embedded
    /// broker listens only on its MQTTS port.
    #[arg(long = "tls-required", num_args = 0..=1, default_missing_value = "true")]
    pub tls_required: Option<bool>,
    /// MQTT over TLS for the embedded broker (with --tls-cert; default 8883).
    #[arg(long = "mqtts-port")]
    pub mqtts_port: Option<u16>,
    /// Serve `GET /metrics` without credentials (for a Prometheus that cannot send a token).
    #[arg(long = "metrics-public", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_public: Option<bool>,
    /// Write the bound addresses here as JSON once the node is ready (for scripts and tests).
    #[arg(long = "ready-file")]
    pub ready_file: Option<PathBuf>,
    /// Print the resolved configuration as JSON and exit (checks a deployment's settings).
    #[arg(long = "print-config")]
    #[serde(skip)]
    pub print_config: bool,
}

/// The resolved configuration of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeConfig {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub store_url: Option<String>,
    pub listen: IpAddr,
    pub pg_listen: IpAddr,
    pub http_listen: IpAddr,
    pub flight_listen: IpAddr,
    pub mqtt_listen: IpAddr,
    pub http_port: u16,
    pub pg_port: u16,
    pub flight_port: u16,
    pub gossip_port: u16,
    pub mqtt_port: u16,
    pub seeds: Vec<String>,
    pub advertise_address: Option<IpAddr>,
    pub cluster_id: String,
    pub replication_factor: usize,
    pub write_quorum: usize,
    pub gossip_interval: Duration,
    pub dead_node_timeout: Duration,
    /// `None`: repairs only at start and after ring changes.
    pub repair_interval: Option<Duration>,
    /// Without user name or password (they are in `broker_login`).
    pub broker: Option<String>,
    /// The login at the external broker; never printed.
    #[serde(serialize_with = "masked_login")]
    pub broker_login: Option<MqttLogin>,
    pub broker_ca: Option<PathBuf>,
    pub broker_cert: Option<PathBuf>,
    pub broker_key: Option<PathBuf>,
    pub mqtt_subscription: MqttSubscription,
    pub topic_templates: Vec<String>,
    /// Simulated sensors to run (0: none).
    pub simulate: u32,
    pub mode: Mode,
    pub insecure_no_auth: bool,
    pub metrics_public: bool,
    pub bootstrap_users: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_required: bool,
    pub mqtts_port: u16,
    pub ready_file: Option<PathBuf>,
}

impl ServeArgs {
    /// Layers flags over `env` (a lookup of `MINITRUE_*` variables) over the TOML file over
    /// defaults.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<NodeConfig> {
        let file = match &self.config {
            Some(path) => load_toml(path)?,
            None => ServeArgs::default(),
        };
        let from_env = ServeArgs::from_env(env)?;
        let pick = |flag: &Option<String>, env: &Option<String>, file: &Option<String>| {
            flag.clone().or_else(|| env.clone()).or_else(|| file.clone())
        };
        macro_rules! layer {
            ($field:ident) => {
                self.$field
                    .clone()
                    .or_else(|| from_env.$field.clone())
                    .or_else(|| file.$field.clone())
            };
        }
        let seeds = pick(&self.seeds, &from_env.seeds, &file.seeds).unwrap_or_default();
        let (broker, url_login) = match layer!(broker) {
            Some(url) => {
                let (url, login) = split_credentials(&url)?;
                (Some(url), login)
            }
            None => (None, None),
        };
        let password = match layer!(broker_password_file) {
            Some(path) => Some(first_line(&path)?),
            None => env("MINITRUE_BROKER_PASSWORD"),
        };
        let broker_login = match (layer!(broker_username), password, url_login) {
            (Some(username), Some(password), _) => Some(MqttLogin { username, password }),
            (Some(username), None, _) => anyhow::bail!(
                "--broker-username {username} needs --broker-password-file or \
                 MINITRUE_BROKER_PASSWORD"
            ),
            (None, _, login) => login,
        };
        let listen = layer!(listen).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        Ok(NodeConfig {
            node_id: layer!(node_id).unwrap_or_else(|| "node1".to_string()),
            data_dir: layer!(data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            store_url: layer!(store_url),
            listen,
            pg_listen: layer!(pg_listen).unwrap_or(listen),
            http_listen: layer!(http_listen).unwrap_or(listen),
            flight_listen: layer!(flight_listen).unwrap_or(listen),
            mqtt_listen: layer!(mqtt_listen).unwrap_or(listen),
            http_port: layer!(http_port).unwrap_or(8080),
            pg_port: layer!(pg_port).unwrap_or(5432),
            flight_port: layer!(flight_port).unwrap_or(50051),
            gossip_port: layer!(gossip_port).unwrap_or(9000),
            mqtt_port: layer!(mqtt_port).unwrap_or(1883),
            seeds: seeds
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            advertise_address: layer!(advertise_address),
            cluster_id: layer!(cluster_id).unwrap_or_else(|| "minitrue".to_string()),
            replication_factor: layer!(replication_factor).unwrap_or(3).max(1),
            write_quorum: layer!(write_quorum).unwrap_or(2).max(1),
            gossip_interval: Duration::from_millis(
                layer!(gossip_interval_ms).unwrap_or(500).max(10),
            ),
            dead_node_timeout: Duration::from_secs(layer!(dead_node_timeout).unwrap_or(900)),
            repair_interval: match layer!(repair_interval).unwrap_or(600) {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            broker,
            broker_login,
            broker_ca: layer!(broker_ca),
            broker_cert: layer!(broker_cert),
            broker_key: layer!(broker_key),
            mqtt_subscription: layer!(mqtt_subscription).unwrap_or(MqttSubscription::Shared),
            topic_templates: layer!(topic_template).unwrap_or_default(),
            simulate: layer!(simulate).unwrap_or(0),
            mode: layer!(mode).unwrap_or(Mode::All),
            insecure_no_auth: layer!(insecure_no_auth).unwrap_or(false),
            metrics_public: layer!(metrics_public).unwrap_or(false),
            bootstrap_users: layer!(bootstrap_users),
            tls_cert: layer!(tls_cert),
            tls_key: layer!(tls_key),
            tls_ca: layer!(tls_ca),
            tls_required: layer!(tls_required).unwrap_or(false),
            mqtts_port: layer!(mqtts_port).unwrap_or(8883),
            ready_file: layer!(ready_file),
        })
    }

    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ServeArgs> {
        fn parsed<T: std::str::FromStr>(
            env: &dyn Fn(&str) -> Option<String>,
            name: &str,
        ) -> anyhow::Result<Option<T>>
        where
            T::Err: std::fmt::Display,
        {
            match env(name) {
                None => Ok(None),
                Some(text) => {
                    text.parse().map(Some).map_err(|e| anyhow::anyhow!("{name}={text:?}: {e}"))
                }
            }
        }
        let mode = match env("MINITRUE_MODE") {
            None => None,
            Some(text) => Some(
                Mode::from_str(&text, true)
                    .map_err(|e| anyhow::anyhow!("MINITRUE_MODE={text:?}: {e}"))?,
            ),
        };
        Ok(ServeArgs {
            config: None,
            node_id: env("MINITRUE_NODE_ID"),
            data_dir: env("MINITRUE_DATA_DIR").map(PathBuf::from),
            store_url: env("MINITRUE_STORE_URL"),
            listen: parsed(env, "MINITRUE_LISTEN")?,
            pg_listen: parsed(env, "MINITRUE_PG_LISTEN")?,
            http_listen: parsed(env, "MINITRUE_HTTP_LISTEN")?,
            flight_listen: parsed(env, "MINITRUE_FLIGHT_LISTEN")?,
            mqtt_listen: parsed(env, "MINITRUE_MQTT_LISTEN")?,
            http_port: parsed(env, "MINITRUE_HTTP_PORT")?,
            pg_port: parsed(env, "MINITRUE_PG_PORT")?,
            flight_port: parsed(env, "MINITRUE_FLIGHT_PORT")?,
            gossip_port: parsed(env, "MINITRUE_GOSSIP_PORT")?,
            mqtt_port: parsed(env, "MINITRUE_MQTT_PORT")?,
            seeds: env("MINITRUE_SEEDS"),
            advertise_address: parsed(env, "MINITRUE_ADVERTISE_ADDRESS")?,
            cluster_id: env("MINITRUE_CLUSTER_ID"),
            replication_factor: parsed(env, "MINITRUE_REPLICATION_FACTOR")?,
            write_quorum: parsed(env, "MINITRUE_WRITE_QUORUM")?,
            gossip_interval_ms: parsed(env, "MINITRUE_GOSSIP_INTERVAL_MS")?,
            dead_node_timeout: parsed(env, "MINITRUE_DEAD_NODE_TIMEOUT")?,
            repair_interval: parsed(env, "MINITRUE_REPAIR_INTERVAL")?,
            broker: env("MINITRUE_BROKER"),
            broker_ca: env("MINITRUE_BROKER_CA").map(PathBuf::from),
            broker_cert: env("MINITRUE_BROKER_CERT").map(PathBuf::from),
            broker_key: env("MINITRUE_BROKER_KEY").map(PathBuf::from),
            broker_username: env("MINITRUE_BROKER_USERNAME"),
            broker_password_file: env("MINITRUE_BROKER_PASSWORD_FILE").map(PathBuf::from),
            mqtt_subscription: match env("MINITRUE_MQTT_SUBSCRIPTION") {
                None => None,
                Some(text) => Some(
                    MqttSubscription::from_str(&text, true)
                        .map_err(|e| anyhow::anyhow!("MINITRUE_MQTT_SUBSCRIPTION={text:?}: {e}"))?,
                ),
            },
            topic_template: env("MINITRUE_TOPIC_TEMPLATE")
                .map(|t| t.split(',').map(|s| s.trim().to_string()).collect()),
            simulate: parsed(env, "MINITRUE_SIMULATE")?,
            mode,
            insecure_no_auth: parsed(env, "MINITRUE_INSECURE_NO_AUTH")?,
            metrics_public: parsed(env, "MINITRUE_METRICS_PUBLIC")?,
            bootstrap_users: env("MINITRUE_BOOTSTRAP_USERS").map(PathBuf::from),
            tls_cert: env("MINITRUE_TLS_CERT").map(PathBuf::from),
            tls_key: env("MINITRUE_TLS_KEY").map(PathBuf::from),
            tls_ca: env("MINITRUE_TLS_CA").map(PathBuf::from),
            tls_required: parsed(env, "MINITRUE_TLS_REQUIRED")?,
            mqtts_port: parsed(env, "MINITRUE_MQTTS_PORT")?,
            ready_file: env("MINITRUE_READY_FILE").map(PathBuf::from),
            print_config: false,
        })
    }
}

/// `mqtt://user:password@host:port` → the URL without them, and them. A URL with a password
/// works, with a warning: the password belongs in a file or the environment.
fn split_credentials(url: &str) -> anyhow::Result<(String, Option<MqttLogin>)> {
    let mut parsed =
        url::Url::parse(url).with_context(|| format!("--broker {:?} is not a URL", redact(url)))?;
    if parsed.username().is_empty() && parsed.password().is_none() {
        return Ok((url.to_string(), None));
    }
    let decode = |text: &str| {
        url::form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    let login = MqttLogin {
        username: decode(parsed.username()),
        password: decode(parsed.password().unwrap_or("")),
    };
    tracing::warn!(
        "the --broker URL carries credentials: use --broker-username with \
         --broker-password-file or MINITRUE_BROKER_PASSWORD instead"
    );
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed.to_string(), Some(login)))
}

/// `url` with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The first line of a secret file (a password given as `--…-password-file`, e.g. a mounted
/// secret), without its line end.
pub(crate) fn first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn masked_login<S: serde::Serializer>(
    login: &Option<MqttLogin>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match login {
        Some(login) => serializer.serialize_str(&format!("{} / ********", login.username)),
        None => serializer.serialize_none(),
    }
}

fn load_toml(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(argv: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(argv.iter().copied())).unwrap().args
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = parse(&[]).resolve(&no_env).unwrap();
        assert_eq!(
            (
                config.http_port,
                config.pg_port,
                config.flight_port,
                config.gossip_port,
                config.mqtt_port
            ),
            (8080, 5432, 50051, 9000, 1883)
        );
        assert_eq!(config.listen, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.mode, Mode::All);
    }

    #[test]
    fn seed_spellings_are_accepted() {
        let config = parse(&[
            "--port",
            "8081",
            "--tcp_port",
            "9001",
            "--node_id",
            "ing2",
            "--data_dir",
            "/tmp/d",
            "--mode",
            "ingestion",
            "--seeds",
            "localhost:9000, localhost:9001",
        ])
        .resolve(&no_env)
        .unwrap();
        assert_eq!((config.http_port, config.gossip_port), (8081, 9001));
        assert_eq!(config.node_id, "ing2");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(config.mode, Mode::Ingest);
        assert_eq!(config.seeds, vec!["localhost:9000", "localhost:9001"]);
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "pg_port = 7000\nhttp_port = 7001\nmqtt_port = 7002\nmode = \"query\"\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "MINITRUE_HTTP_PORT" => Some("6001".to_string()),
            "MINITRUE_MQTT_PORT" => Some("6002".to_string()),
            _ => None,
        };
        let config = parse(&["--config", file.to_str().unwrap(), "--mqtt-port", "5002"])
            .resolve(&env)
            .unwrap();
        assert_eq!(config.pg_port, 7000, "file over default");
        assert_eq!(config.http_port, 6001, "env over file");
        assert_eq!(config.mqtt_port, 5002, "flag over env");
        assert_eq!(config.mode, Mode::Query);
        assert_eq!(config.gossip_port, 9000, "default");
    }

    #[test]
    fn each_door_may_listen_on_its_own_address() {
        let config = parse(&[
            "--listen",
            "10.0.0.5",
            "--mqtt-listen",
            "0.0.0.0",
            "--pg-listen",
            "127.0.0.1",
        ])
        .resolve(&no_env)
        .unwrap();
        assert_eq!(config.mqtt_listen, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(config.pg_listen, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.http_listen, "10.0.0.5".parse::<IpAddr>().unwrap(), "--listen");
        assert_eq!(config.flight_listen, config.listen);
    }

    #[test]
    fn broker_credentials_never_stay_in_the_printed_url() {
        let config = parse(&["--broker", "mqtt://sensor:s%40cret@broker.lan:1883"])
            .resolve(&no_env)
            .unwrap();
        assert_eq!(config.broker.as_deref(), Some("mqtt://broker.lan:1883"));
        let login = config.broker_login.clone().unwrap();
        assert_eq!((login.username.as_str(), login.password.as_str()), ("sensor", "s@cret"));
        let printed = serde_json::to_string(&config).unwrap();
        assert!(!printed.contains("s@cret") && !printed.contains("s%40cret"), "{printed}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker-password");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let config = parse(&[
            "--broker",
            "mqtts://broker.lan:8883",
            "--broker-username",
            "node",
            "--broker-password-file",
            file.to_str().unwrap(),
        ])
        .resolve(&no_env)
        .unwrap();
        assert_eq!(config.broker_login.unwrap().password, "from-a-file");
        let env = |name: &str| (name == "MINITRUE_BROKER_PASSWORD").then(|| "from-env".to_string());
        let config = parse(&["--broker", "mqtt://b:1883", "--broker-username", "node"])
            .resolve(&env)
            .unwrap();
        assert_eq!(config.broker_login.unwrap().password, "from-env");
        assert!(parse(&["--broker", "mqtt://b:1883", "--broker-username", "node"])
            .resolve(&no_env)
            .is_err());
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let env = |name: &str| (name == "MINITRUE_PG_PORT").then(|| "lots".to_string());
        let error = parse(&[]).resolve(&env).unwrap_err().to_string();
        assert!(error.contains("MINITRUE_PG_PORT"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "pg_prot = 1\n").unwrap();
        let error = format!(
            "{:#}",
            parse(&["--config", file.to_str().unwrap()]).resolve(&no_env).unwrap_err()
        );
        assert!(error.contains("pg_prot"), "unknown keys are refused: {error}");
    }
}
