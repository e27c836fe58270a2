//! `[node]`: who the node is and what it does.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
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

#[derive(Args, Debug, Clone, Serialize)]
pub struct NodeSettings {
    /// This node's unique id in the cluster.
    #[arg(
        id = "node.node_id",
        long = "node-id",
        alias = "node_id",
        env = "MINITRUE_NODE_ID",
        default_value = "node1"
    )]
    pub node_id: String,
    /// What the node does: `all`, `ingest` (stores, answers no queries) or `query`.
    #[arg(id = "node.mode", long = "mode", env = "MINITRUE_MODE", value_enum, default_value_t = Mode::All)]
    pub mode: Mode,
    /// Also run N simulated sensors (3 when given without N) publishing temperature every
    /// second to the node's broker: data to query right away.
    #[arg(id = "node.simulate", long = "simulate", env = "MINITRUE_SIMULATE", num_args = 0..=1, default_value_t = 0, default_missing_value = "3")]
    pub simulate: u32,
    /// Write the bound addresses here as JSON once the node is ready (for scripts and tests).
    #[arg(id = "node.ready_file", long = "ready-file", env = "MINITRUE_READY_FILE")]
    pub ready_file: Option<PathBuf>,
}
