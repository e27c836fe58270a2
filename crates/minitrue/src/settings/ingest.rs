//! `[ingest]`: how MQTT messages and HTTP bodies become points, and how much of them is taken;
//! maps onto the ingest crate's [`FormatConfig`] (whose defaults are the defaults here) and the
//! HTTP door's body limit.

use clap::Args;
use minitrue_ingest::{ClockWindow, FormatConfig, Precision};
use serde::Serialize;

use super::span::Span;

fn format() -> FormatConfig {
    FormatConfig::default()
}

fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::Nanoseconds => "ns",
        Precision::Microseconds => "us",
        Precision::Milliseconds => "ms",
        Precision::Seconds => "s",
    }
}

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
    /// Prefix of the seed topics (`<prefix>/<metric>` carries seed JSON, `<prefix>/<metric>/<device>`
    /// a bare number); empty: not subscribed.
    #[arg(id = "ingest.seed_topic_prefix", long = "seed-topic-prefix", env = "MINITRUE_SEED_TOPIC_PREFIX",
          default_value_t = format().seed_topic_prefix.unwrap_or_default())]
    pub seed_topic_prefix: String,
    /// MQTT topic filters whose messages are InfluxDB line protocol (Telegraf's MQTT output).
    #[arg(id = "ingest.line_protocol_topics", long = "line-protocol-topic", env = "MINITRUE_LINE_PROTOCOL_TOPIC",
          value_delimiter = ',', default_values_t = format().line_protocol.topic_filters)]
    pub line_protocol_topics: Vec<String>,
    /// Line-protocol tags naming the device, in order of preference.
    #[arg(id = "ingest.device_tags", long = "line-protocol-device-tag", env = "MINITRUE_LINE_PROTOCOL_DEVICE_TAG",
          value_delimiter = ',', default_values_t = format().line_protocol.device_tags)]
    pub device_tags: Vec<String>,
    /// Unit of line-protocol timestamps on MQTT: ns, us, ms or s.
    #[arg(id = "ingest.line_protocol_precision", long = "line-protocol-precision", env = "MINITRUE_LINE_PROTOCOL_PRECISION",
          default_value = precision_name(format().line_protocol.precision),
          value_parser = |text: &str| Precision::parse(text).map(precision_name).ok_or("not ns, us, ms or s"))]
    pub line_protocol_precision: &'static str,
    /// Joins a line's measurement and field key into the metric name.
    #[arg(id = "ingest.metric_separator", long = "line-protocol-metric-separator", env = "MINITRUE_LINE_PROTOCOL_METRIC_SEPARATOR",
          default_value_t = format().line_protocol.metric_separator)]
    pub metric_separator: String,
    /// Skip string fields of line protocol silently instead of rejecting them.
    #[arg(id = "ingest.skip_string_fields", long = "line-protocol-skip-string-fields", env = "MINITRUE_LINE_PROTOCOL_SKIP_STRING_FIELDS",
          num_args = 0..=1, default_value_t = format().line_protocol.skip_string_fields, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub skip_string_fields: bool,
    /// Larger MQTT payloads are rejected unparsed (counted, dead-lettered).
    #[arg(id = "ingest.max_payload_bytes", long = "max-payload-bytes", env = "MINITRUE_MAX_PAYLOAD_BYTES",
          default_value_t = format().limits.max_payload_bytes as u64, value_parser = clap::value_parser!(u64).range(64..=(64 << 20)))]
    pub max_payload_bytes: u64,
    /// Points kept from one message; the rest are rejected.
    #[arg(id = "ingest.max_points_per_message", long = "max-points-per-message", env = "MINITRUE_MAX_POINTS_PER_MESSAGE",
          default_value_t = format().limits.max_points_per_message as u64, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_points_per_message: u64,
    /// How far before its arrival a point's timestamp may be (older ones are rejected).
    #[arg(id = "ingest.max_past", long = "max-past", env = "MINITRUE_MAX_PAST",
          default_value_t = Span(std::time::Duration::from_secs(ClockWindow::default().max_past_secs)))]
    pub max_past: Span,
    /// How far after its arrival a point's timestamp may be.
    #[arg(id = "ingest.max_future", long = "max-future", env = "MINITRUE_MAX_FUTURE",
          default_value_t = Span(std::time::Duration::from_secs(ClockWindow::default().max_future_secs)))]
    pub max_future: Span,
    /// The largest HTTP write or SQL body accepted (after gzip inflation); larger ones get
    /// 413.
    #[arg(id = "ingest.http_max_body_bytes", long = "http-max-body-bytes", env = "MINITRUE_HTTP_MAX_BODY_BYTES",
          default_value_t = minitrue_server::DEFAULT_MAX_BODY_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub http_max_body_bytes: u64,
}

impl IngestSettings {
    /// How messages are parsed.
    pub fn format(&self) -> FormatConfig {
        let mut format = FormatConfig {
            seed_topic_prefix: Some(self.seed_topic_prefix.clone()).filter(|p| !p.is_empty()),
            topic_templates: self.topic_template.clone(),
            ..FormatConfig::default()
        };
        let line_protocol = &mut format.line_protocol;
        line_protocol.topic_filters = self.line_protocol_topics.clone();
        line_protocol.device_tags = self.device_tags.clone();
        line_protocol.precision =
            Precision::parse(self.line_protocol_precision).unwrap_or(line_protocol.precision);
        line_protocol.metric_separator = self.metric_separator.clone();
        line_protocol.skip_string_fields = self.skip_string_fields;
        format.limits.max_payload_bytes = self.max_payload_bytes as usize;
        format.limits.max_points_per_message = self.max_points_per_message as usize;
        format.clock_window = ClockWindow {
            max_past_secs: self.max_past.0.as_secs(),
            max_future_secs: self.max_future.0.as_secs(),
        };
        format
    }
}
