//! Why a message, or one item of it, was not turned into points.

use minitrue_common::{ErrorKind, SeriesKeyError};

/// The typed reason a message or one of its items was rejected.
///
/// [`RejectReason::label`] gives a stable snake_case label per variant for counters
/// (`ingest_rejected_total{reason="malformed_json"}`) and the dead-letter topic; the labels
/// never change once released. Structured fields say what exactly was wrong; the
/// human-readable detail lives in [`Rejection::detail`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RejectReason {
    /// The payload is larger than [`crate::Limits::max_payload_bytes`]; it was not parsed.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge { len: usize, max: usize },
    /// The message holds more points than [`crate::Limits::max_points_per_message`]; the first
    /// `max` were kept, the rest dropped.
    #[error("more than {max} points in one message")]
    TooManyPoints { max: usize },
    /// No line-protocol filter, topic template or seed topic matches the topic.
    #[error("no format is configured for this topic")]
    UnknownTopic,
    /// The payload is not valid JSON (the whole message is rejected: nothing in it can be
    /// trusted).
    #[error("malformed JSON")]
    MalformedJson,
    /// A line of line protocol does not follow the syntax; the whole line is rejected.
    #[error("malformed line protocol on line {line}: {detail}")]
    MalformedLineProtocol { line: usize, detail: &'static str },
    /// A field has a JSON type (or line-protocol type) that cannot be used there, e.g.
    /// `"value": null`, `"device_id": 7`, a string field in line protocol, or an array element
    /// that is not an object (`field` = `"point"`).
    #[error("field {field} has the wrong type")]
    WrongType { field: String },
    /// A required field is absent (`value`, or `device_id` when the topic does not name it).
    #[error("field {field} is missing")]
    MissingField { field: String },
    /// A field that must hold a number holds a string (or bare payload) that is not one, or
    /// an integer out of range.
    #[error("field {field} is not a valid number")]
    InvalidNumber { field: String },
    /// The value is NaN or infinite (`"NaN"`, `"inf"`, `1e999` in line protocol).
    #[error("value is not finite")]
    NonFiniteValue,
    /// The timestamp is neither a number nor an RFC 3339 date-time, or names an impossible
    /// date (month 13, February 30).
    #[error("invalid timestamp")]
    InvalidTimestamp,
    /// The timestamp is valid but outside the clock window around the receive time, or not
    /// representable as `i64` nanoseconds (then `time_ns` is saturated to `i64::MIN`/`MAX`).
    #[error("timestamp {time_ns} ns is outside the accepted clock window")]
    TimestampOutOfRange { time_ns: i64 },
    /// The payload's `metric_name` differs from the metric the topic names.
    #[error("metric {payload_metric:?} in the payload differs from {topic_metric:?} in the topic")]
    MetricMismatch { topic_metric: String, payload_metric: String },
    /// The payload's `device_id` differs from the device the topic names.
    #[error("device {payload_device:?} in the payload differs from {topic_device:?} in the topic")]
    DeviceMismatch { topic_device: String, payload_device: String },
    /// The device or metric name is empty, too long or contains control characters.
    #[error("invalid series key: {0}")]
    InvalidSeriesKey(SeriesKeyError),
}

impl RejectReason {
    /// Every label [`RejectReason::label`] can return, so counters can be registered (at 0)
    /// before the first rejection.
    pub const LABELS: &'static [&'static str] = &[
        "payload_too_large",
        "too_many_points",
        "unknown_topic",
        "malformed_json",
        "malformed_line_protocol",
        "wrong_type",
        "missing_field",
        "invalid_number",
        "non_finite_value",
        "invalid_timestamp",
        "timestamp_out_of_range",
        "metric_mismatch",
        "device_mismatch",
        "invalid_series_key",
    ];

    /// A stable snake_case label for counters and dead letters, e.g. `"malformed_json"`.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::PayloadTooLarge { .. } => "payload_too_large",
            RejectReason::TooManyPoints { .. } => "too_many_points",
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MalformedLineProtocol { .. } => "malformed_line_protocol",
            RejectReason::WrongType { .. } => "wrong_type",
            RejectReason::MissingField { .. } => "missing_field",
            RejectReason::InvalidNumber { .. } => "invalid_number",
            RejectReason::NonFiniteValue => "non_finite_value",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            RejectReason::MetricMismatch { .. } => "metric_mismatch",
            RejectReason::DeviceMismatch { .. } => "device_mismatch",
            RejectReason::InvalidSeriesKey(_) => "invalid_series_key",
        }
    }

    /// The kind of failure: always [`ErrorKind::InvalidInput`] (resending the same bytes
    /// fails the same way). The HTTP write path may still answer `PayloadTooLarge` with 413.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }

    pub(crate) fn wrong_type(field: &str) -> RejectReason {
        RejectReason::WrongType { field: field.to_string() }
    }

    pub(crate) fn missing(field: &str) -> RejectReason {
        RejectReason::MissingField { field: field.to_string() }
    }

    pub(crate) fn invalid_number(field: &str) -> RejectReason {
        RejectReason::InvalidNumber { field: field.to_string() }
    }
}

/// Which part of a message a [`Rejection`] concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Item {
    /// The whole message (oversize payload, unknown topic, malformed JSON, a single-object
    /// or bare-number payload).
    Message,
    /// The element at this 0-based index of a JSON array payload.
    Element(usize),
    /// The line with this 1-based number of a line-protocol payload (all its fields, or the
    /// one field named in the reason).
    Line(usize),
}

/// One rejected message or item: the reason, a short human detail and where it was.
///
/// A [`crate::ParsedMessage`] holds one `Rejection` per rejected item; the valid points of
/// the same message are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// What was wrong, typed.
    pub reason: RejectReason,
    /// A short explanation for logs and the dead-letter topic, e.g. the JSON parser's
    /// message with line and column.
    pub detail: String,
    /// Where in the message.
    pub item: Item,
}

impl Rejection {
    /// A rejection whose detail is the reason's own message.
    pub fn new(reason: RejectReason, item: Item) -> Rejection {
        let detail = reason.to_string();
        Rejection { reason, detail, item }
    }

    /// A rejection with an explicit detail.
    pub fn with_detail(reason: RejectReason, detail: impl Into<String>, item: Item) -> Rejection {
        Rejection { reason, detail: detail.into(), item }
    }

    /// The reason's stable label, see [`RejectReason::label`].
    pub fn label(&self) -> &'static str {
        self.reason.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_listed_and_unique() {
        let samples = [
            RejectReason::PayloadTooLarge { len: 2, max: 1 },
            RejectReason::TooManyPoints { max: 1 },
            RejectReason::UnknownTopic,
            RejectReason::MalformedJson,
            RejectReason::MalformedLineProtocol { line: 1, detail: "x" },
            RejectReason::wrong_type("value"),
            RejectReason::missing("value"),
            RejectReason::invalid_number("value"),
            RejectReason::NonFiniteValue,
            RejectReason::InvalidTimestamp,
            RejectReason::TimestampOutOfRange { time_ns: 0 },
            RejectReason::MetricMismatch { topic_metric: "a".into(), payload_metric: "b".into() },
            RejectReason::DeviceMismatch { topic_device: "a".into(), payload_device: "b".into() },
            RejectReason::InvalidSeriesKey(SeriesKeyError::Empty { field: "metric" }),
        ];
        let labels: Vec<&str> = samples.iter().map(RejectReason::label).collect();
        assert_eq!(labels, RejectReason::LABELS);
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
        for label in labels {
            assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{label}");
        }
    }
}
