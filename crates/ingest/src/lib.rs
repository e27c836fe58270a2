//! Ingestion: turning MQTT (and HTTP) messages into points.
//!
//! Place in the data flow: **MQTT subscriber / HTTP write → `ingest::formats` (this crate's
//! parsing core) → `storage::Engine::write`**. A subscriber hands each message to
//! [`Parser::parse`] as `(topic, payload, received_at_ns)`; the topic decides the format
//! (seed JSON on `iot/sensors/{metric}`, arrays of it, bare numbers on
//! `iot/sensors/{metric}/{device_id}`, InfluxDB line protocol on `telegraf/#`, configurable
//! topic templates such as `site/{site}/{device_id}/{metric}`), and the result is a
//! [`ParsedMessage`]: the valid [`Point`](minitrue_common::Point)s to write, one typed
//! [`Rejection`] per bad item (counted per [`RejectReason::label`] and republished with
//! [`dead_letter_payload`]), and the tags the topic or line carried per series (for the
//! `devices` table). Bad input never stops ingestion and never panics.
//!
//! The parsing core is pure and synchronous: no broker, no network, no clock, no storage.
//! [`topic`] holds MQTT topic filters and templates; [`formats`] the payload formats, the
//! timestamp rule ([`formats::timestamp`]) and the line-protocol mapping
//! ([`formats::line_protocol`]).
//!
//! ```
//! use minitrue_ingest::{FormatConfig, Interner, Parser};
//!
//! let parser = Parser::new(FormatConfig::default())?;
//! let mut interner = Interner::new(); // one per parsing thread, kept across messages
//! let received_at_ns = 1_609_459_260_000_000_000;
//! let message = parser.parse(
//!     "iot/sensors/temperature",
//!     br#"{"device_id":"sensor_1","metric_name":"temperature","timestamp":1609459200,"value":23.5}"#,
//!     received_at_ns,
//!     &mut interner,
//! );
//! assert_eq!(message.points[0].series.to_string(), "sensor_1:temperature");
//! assert_eq!(message.points[0].time, 1_609_459_200_000_000_000);
//! assert!(message.rejected.is_empty());
//!
//! let bad = parser.parse("iot/sensors/temperature/sensor_1", b"NaN", received_at_ns, &mut interner);
//! assert_eq!(bad.rejected[0].label(), "non_finite_value");
//! # Ok::<(), minitrue_ingest::IngestError>(())
//! ```

pub mod broker;
pub mod client;
mod error;
pub mod formats;
pub mod mqtt;
pub mod topic;

pub use error::IngestError;
pub use formats::timestamp::{
    parse_rfc3339, timestamp_from_f64, timestamp_from_int, timestamp_from_str, TimestampError,
};
pub use formats::{
    dead_letter_message, dead_letter_payload, ClockWindow, FormatConfig, Interner, Item, Limits,
    LineProtocolConfig, ParsedMessage, Parser, Precision, RejectReason, Rejection, SeriesTags,
    Tags, DEFAULT_MAX_SERIES,
};
pub use topic::{TemplateMatch, TopicFilter, TopicTemplate};

/// The wall clock in nanoseconds since the Unix epoch: the receive time of points that carry
/// no timestamp (saturating far in the future, 0 before 1970).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}
