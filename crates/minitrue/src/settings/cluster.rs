//! `[cluster]`: membership, replication and repair; maps onto the cluster crate's
//! [`ReplicationConfig`] and [`RepairConfig`] (whose defaults are the defaults here).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use minitrue_auth::cluster::ClusterSecret;
use minitrue_cluster::repair::RepairConfig;
use minitrue_cluster::ReplicationConfig;
use serde::Serialize;

use super::span::Span;

#[derive(Args, Debug, Clone, Serialize)]
pub struct ClusterSettings {
    /// Seed nodes to join: host:gossip_port,…
    #[arg(id = "cluster.seeds", long = "seeds", env = "MINITRUE_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Nodes gossip only with nodes of the same cluster id.
    #[arg(
        id = "cluster.cluster_id",
        long = "cluster-id",
        env = "MINITRUE_CLUSTER_ID",
        default_value = "minitrue"
    )]
    pub cluster_id: String,
    /// Copies of every series, primary included (capped at the cluster's size).
    #[arg(id = "cluster.replication_factor", long = "replication-factor", env = "MINITRUE_REPLICATION_FACTOR",
          default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub replication_factor: u64,
    /// Owners that must store a point before a write is acknowledged (capped at the series'
    /// owner count).
    #[arg(id = "cluster.write_quorum", long = "write-quorum", env = "MINITRUE_WRITE_QUORUM",
          default_value_t = ReplicationConfig::default().write_quorum as u64, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub write_quorum: u64,
    /// Gossip interval in milliseconds; failures are detected after about 20.
    #[arg(id = "cluster.gossip_interval_ms", long = "gossip-interval-ms", env = "MINITRUE_GOSSIP_INTERVAL_MS",
          default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub gossip_interval_ms: u64,
    /// Seconds a node may be dead before its ranges pass to the others.
    #[arg(
        id = "cluster.dead_node_timeout",
        long = "dead-node-timeout",
        env = "MINITRUE_DEAD_NODE_TIMEOUT",
        default_value_t = 900
    )]
    pub dead_node_timeout: u64,
    /// Seconds between anti-entropy rounds with the nodes sharing this one's ranges (0: only
    /// when the node starts and when the ring changes).
    #[arg(id = "cluster.repair_interval", long = "repair-interval", env = "MINITRUE_REPAIR_INTERVAL",
          default_value_t = RepairConfig::default().interval.map_or(0, |interval| interval.as_secs()))]
    pub repair_interval: u64,
    /// How long a replica write or a query fragment may take on a peer.
    #[arg(id = "cluster.peer_timeout", long = "peer-timeout", env = "MINITRUE_PEER_TIMEOUT",
          default_value_t = Span(ReplicationConfig::default().peer_timeout))]
    pub peer_timeout: Span,
    /// How long one repair exchange with a peer may take.
    #[arg(id = "cluster.repair_timeout", long = "repair-timeout", env = "MINITRUE_REPAIR_TIMEOUT",
          default_value_t = Span(RepairConfig::default().peer_timeout))]
    pub repair_timeout: Span,
    /// How often waiting hints are offered to owners that are back.
    #[arg(id = "cluster.hint_interval", long = "hint-interval", env = "MINITRUE_HINT_INTERVAL",
          default_value_t = Span(ReplicationConfig::default().hint_interval))]
    pub hint_interval: Span,
    /// A file holding the cluster secret (`minitrue cluster secret` makes one; chmod 600):
    /// only nodes holding it gossip, replicate, repair or run query fragments with this one.
    /// The secret itself may come from MINITRUE_CLUSTER_SECRET instead.
    #[arg(
        id = "cluster.secret_file",
        long = "cluster-secret-file",
        env = "MINITRUE_CLUSTER_SECRET_FILE"
    )]
    pub secret_file: Option<PathBuf>,
    /// Run without a cluster secret even with --seeds or beyond loopback: anyone who reaches
    /// the gossip or Flight port can join the cluster, read and change its data (warned at
    /// every start).
    #[arg(id = "cluster.insecure_cluster", long = "insecure-cluster", env = "MINITRUE_INSECURE_CLUSTER",
          num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_cluster: bool,
    /// The secret, once read ([`crate::settings::Settings::resolve`]); shown only as where it
    /// came from.
    #[arg(skip)]
    #[serde(rename = "secret")]
    pub secret: Option<LoadedSecret>,
}

/// The cluster secret and where it was read from.
#[derive(Debug, Clone)]
pub struct LoadedSecret {
    pub secret: ClusterSecret,
    pub from: String,
}

impl Serialize for LoadedSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("(set, from {})", self.from))
    }
}

impl ClusterSettings {
    /// Reads the cluster secret from --cluster-secret-file or MINITRUE_CLUSTER_SECRET (looked
    /// up in `env`); giving both is refused, as one would silently lose.
    pub fn load_secret(&mut self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let from_env = env("MINITRUE_CLUSTER_SECRET").filter(|text| !text.trim().is_empty());
        self.secret = match (&self.secret_file, from_env) {
            (Some(_), Some(_)) => anyhow::bail!(
                "both --cluster-secret-file and MINITRUE_CLUSTER_SECRET are given: keep one"
            ),
            (Some(path), None) => Some(LoadedSecret {
                secret: ClusterSecret::read_file(path)?,
                from: path.display().to_string(),
            }),
            (None, Some(text)) => Some(LoadedSecret {
                secret: ClusterSecret::from_text(&text)
                    .map_err(|error| anyhow::anyhow!("MINITRUE_CLUSTER_SECRET: {error}"))?,
                from: "MINITRUE_CLUSTER_SECRET".to_string(),
            }),
            (None, None) => None,
        };
        Ok(())
    }

    /// The seeds as given, without blanks.
    pub fn seeds(&self) -> Vec<String> {
        self.seeds.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(String::from).collect()
    }

    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms)
    }

    pub fn dead_node_timeout(&self) -> Duration {
        Duration::from_secs(self.dead_node_timeout)
    }

    /// `None`: repairs only at start and after ring changes.
    pub fn repair_interval(&self) -> Option<Duration> {
        (self.repair_interval > 0).then(|| Duration::from_secs(self.repair_interval))
    }

    /// How writes are replicated (hints for a gone node are kept as long as it may be dead).
    pub fn replication(&self) -> ReplicationConfig {
        ReplicationConfig {
            write_quorum: self.write_quorum as usize,
            peer_timeout: self.peer_timeout.0,
            hint_interval: self.hint_interval.0,
            max_hint_age: self.dead_node_timeout(),
            peer_link: Default::default(),
        }
    }

    /// When repairs run (`settle`: how long gossip needs to agree after a change).
    pub fn repair(&self, settle: Duration) -> RepairConfig {
        RepairConfig {
            interval: self.repair_interval(),
            settle,
            peer_timeout: self.repair_timeout.0,
            ..RepairConfig::default()
        }
    }
}
