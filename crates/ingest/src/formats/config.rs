//! Configuration of the payload formats: which topics carry what, limits, clock window.
//!
//! Plain data with defaults and serde support (every field optional in a config file), turned
//! into a ready-to-use [`crate::Parser`] by [`crate::Parser::new`], which validates it.

use serde::{Deserialize, Serialize};

/// Everything the parser needs to judge a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FormatConfig {
    /// Prefix of the seed topics: `{prefix}/{metric}` carries the seed JSON (object or array),
    /// `{prefix}/{metric}/{device_id}` a bare number or value object. `None` disables them.
    /// Default `"iot/sensors"`.
    pub seed_topic_prefix: Option<String>,
    /// User topic templates such as `site/{site}/{device_id}/{metric}`, tried in order; see
    /// [`crate::TopicTemplate`]. Default: none.
    pub topic_templates: Vec<String>,
    /// Line protocol (Telegraf's MQTT output).
    pub line_protocol: LineProtocolConfig,
    /// Size limits.
    pub limits: Limits,
    /// Which timestamps are believable.
    pub clock_window: ClockWindow,
}

impl Default for FormatConfig {
    fn default() -> Self {
        FormatConfig {
            seed_topic_prefix: Some("iot/sensors".to_string()),
            topic_templates: Vec::new(),
            line_protocol: LineProtocolConfig::default(),
            limits: Limits::default(),
            clock_window: ClockWindow::default(),
        }
    }
}

/// How line protocol is recognised and mapped onto series.
///
/// Mapping of one line `measurement,tags fields timestamp`:
/// - `device_id` = the value of the first tag named in [`Self::device_tags`] that the line
///   has (default `device_id`, then `host`); that tag is consumed, a line without any of
///   them is rejected with `MissingField { field: "device_id" }`.
/// - one point per field: metric = `measurement` when the field key is `value`, otherwise
///   `measurement` + [`Self::metric_separator`] + field key (`cpu usage_idle=…` →
///   `cpu_usage_idle`).
/// - the remaining tags become the series' tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineProtocolConfig {
    /// MQTT topic filters whose messages are line protocol. Default `["telegraf/#"]`.
    pub topic_filters: Vec<String>,
    /// Tags that name the device, in order of preference. Default `["device_id", "host"]`.
    pub device_tags: Vec<String>,
    /// Unit of line-protocol timestamps on MQTT. Default nanoseconds.
    pub precision: Precision,
    /// Joins measurement and field key into the metric name. Default `"_"`.
    pub metric_separator: String,
    /// When true, string fields are skipped silently instead of rejected as `WrongType`
    /// (Telegraf plugins often mix a few string fields into numeric lines). Default false.
    pub skip_string_fields: bool,
}

impl Default for LineProtocolConfig {
    fn default() -> Self {
        LineProtocolConfig {
            topic_filters: vec!["telegraf/#".to_string()],
            device_tags: vec!["device_id".to_string(), "host".to_string()],
            precision: Precision::Nanoseconds,
            metric_separator: "_".to_string(),
            skip_string_fields: false,
        }
    }
}

/// Unit of an integer line-protocol timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Precision {
    #[default]
    #[serde(rename = "ns")]
    Nanoseconds,
    #[serde(rename = "us")]
    Microseconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

impl Precision {
    /// Parses the InfluxDB `precision` parameter: `ns`/`n`, `us`/`u`/`µs`, `ms`, `s`.
    pub fn parse(text: &str) -> Option<Precision> {
        match text {
            "ns" | "n" => Some(Precision::Nanoseconds),
            "us" | "u" | "µs" => Some(Precision::Microseconds),
            "ms" => Some(Precision::Milliseconds),
            "s" => Some(Precision::Seconds),
            _ => None,
        }
    }

    /// Nanoseconds per unit.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }
}

/// Size limits, applied before and during parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Larger payloads are rejected (`PayloadTooLarge`) without being parsed. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Points kept from one message; the rest are dropped with one `TooManyPoints`
    /// rejection. Default 100 000.
    pub max_points_per_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_payload_bytes: 1 << 20, max_points_per_message: 100_000 }
    }
}

/// Seconds in ten years of 365.25 days.
const TEN_YEARS_SECS: u64 = 3_652 * 86_400 + 43_200;

/// Which timestamps are believable, relative to the receive time of the message.
///
/// A point is accepted when `received_at - max_past <= time <= received_at + max_future`;
/// otherwise it is rejected with `TimestampOutOfRange` (a sensor with a reset clock sending
/// 1970, or a unit mix-up, must not scatter points across decades).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockWindow {
    /// How far in the past a timestamp may be. Default 10 years (3652.5 days).
    pub max_past_secs: u64,
    /// How far in the future a timestamp may be. Default 1 day.
    pub max_future_secs: u64,
}

impl Default for ClockWindow {
    fn default() -> Self {
        ClockWindow { max_past_secs: TEN_YEARS_SECS, max_future_secs: 86_400 }
    }
}

impl ClockWindow {
    /// A window that accepts every representable timestamp.
    pub const UNLIMITED: ClockWindow =
        ClockWindow { max_past_secs: u64::MAX, max_future_secs: u64::MAX };

    /// True when `time_ns` lies in the window around `received_at_ns` (saturating at the
    /// ends of the `i64` range).
    pub fn contains(&self, time_ns: i64, received_at_ns: i64) -> bool {
        // i128 holds u64::MAX seconds in nanoseconds (1.8e28) and any i64 sum of them.
        const NANOS_PER_SEC: i128 = 1_000_000_000;
        let past = i128::from(self.max_past_secs) * NANOS_PER_SEC;
        let future = i128::from(self.max_future_secs) * NANOS_PER_SEC;
        let time = i128::from(time_ns);
        let received = i128::from(received_at_ns);
        received - past <= time && time <= received + future
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_window_bounds_are_inclusive_and_saturate() {
        let window = ClockWindow { max_past_secs: 10, max_future_secs: 1 };
        let now = 1_000_000_000_000;
        assert!(window.contains(now - 10_000_000_000, now));
        assert!(!window.contains(now - 10_000_000_001, now));
        assert!(window.contains(now + 1_000_000_000, now));
        assert!(!window.contains(now + 1_000_000_001, now));
        assert!(ClockWindow::UNLIMITED.contains(i64::MIN, 0));
        assert!(ClockWindow::UNLIMITED.contains(i64::MAX, 0));
        assert!(ClockWindow::UNLIMITED.contains(i64::MIN, i64::MAX));
        assert!(ClockWindow::default().contains(now, now));
    }

    #[test]
    fn precision_parses_influx_spellings() {
        assert_eq!(Precision::parse("ns"), Some(Precision::Nanoseconds));
        assert_eq!(Precision::parse("u"), Some(Precision::Microseconds));
        assert_eq!(Precision::parse("ms"), Some(Precision::Milliseconds));
        assert_eq!(Precision::parse("s"), Some(Precision::Seconds));
        assert_eq!(Precision::parse("h"), None);
    }

    #[test]
    fn config_reads_partial_json_with_defaults() {
        let config: FormatConfig = serde_json::from_str(
            r#"{"topic_templates":["site/{site}/{device_id}/{metric}"],
                "line_protocol":{"precision":"ms"}}"#,
        )
        .unwrap();
        assert_eq!(config.line_protocol.precision, Precision::Milliseconds);
        assert_eq!(config.line_protocol.device_tags, ["device_id", "host"]);
        assert_eq!(config.seed_topic_prefix.as_deref(), Some("iot/sensors"));
        assert_eq!(config.limits, Limits::default());
    }
}
