//! `[ingest]`: how messages and HTTP bodies become points, and how large they may be.

use clap::Args;
use serde::Serialize;

#[derive(Args, Debug, Clone, Serialize)]
pub struct IngestSettings {
    /// MQTT topic templates mapping topic levels to device_id, metric and tags, e.g.
    /// `site/{site}/{device_id}/{metric}` (repeat the flag for several).
    #[arg(
        id = "ingest.topic_template",
        long = "topic-template",
        env = "MINITRUE_TOPIC_TEMPLATE",
        value_delimiter = ','
    )]
    pub topic_template: Vec<String>,
    /// The largest HTTP write or SQL body accepted (after gzip inflation); larger ones get
    /// 413.
    #[arg(id = "ingest.http_max_body_bytes", long = "http-max-body-bytes", env = "MINITRUE_HTTP_MAX_BODY_BYTES",
          default_value_t = minitrue_server::DEFAULT_MAX_BODY_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub http_max_body_bytes: u64,
}
