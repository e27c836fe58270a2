//! Payload formats: from `(topic, payload, received_at)` to points, tags and rejections.
//!
//! [`Parser`] is built once from a [`FormatConfig`] and judges each message:
//!
//! 1. A payload over [`Limits::max_payload_bytes`] is rejected unparsed.
//! 2. The topic picks the format, first match wins:
//!    - a line-protocol filter ([`LineProtocolConfig::topic_filters`], default `telegraf/#`)
//!      → InfluxDB line protocol ([`line_protocol`]);
//!    - a user topic template, in configuration order ([`crate::TopicTemplate`]);
//!    - the seed topics `{prefix}/{metric}` and `{prefix}/{metric}/{device_id}`
//!      (prefix default `iot/sensors`);
//!    - otherwise the message is rejected as `UnknownTopic`.
//! 3. For template and seed topics the payload's shape picks the parser: a JSON object or
//!    array ([`json`]: the seed object `{"device_id","metric_name","timestamp","value"}`, or an
//!    array of them, each element judged on its own) or a bare value ([`bare`]: `23.5`,
//!    `"23.5"`, `true`). Fields the topic names (device, metric) may be omitted in the payload;
//!    if both name them they must agree.
//!
//! Every valid point is kept; every bad item becomes one [`Rejection`]. Parsing is pure and
//! synchronous and never panics. For a known series it allocates nothing per point beyond
//! the output vectors (series keys come from the caller's [`Interner`]); line protocol also
//! allocates names that contain escapes and each tag set that differs from the previous
//! line's.

pub mod bare;
mod config;
mod dead_letter;
mod interner;
pub mod json;
pub mod line_protocol;
mod reject;
pub mod timestamp;

use std::sync::Arc;

use minitrue_common::{Point, SeriesKey};

pub use config::{ClockWindow, FormatConfig, Limits, LineProtocolConfig, Precision};
pub use dead_letter::{dead_letter_message, dead_letter_payload};
pub use interner::{Interner, DEFAULT_MAX_SERIES};
pub use reject::{Item, RejectReason, Rejection};

use crate::topic::{is_valid_publish_topic, TemplateMatch, TopicFilter, TopicTemplate};
use crate::IngestError;

/// Tags of a series as `(name, value)` pairs sorted by name; shared between the entries of
/// one message that carry the same tags.
pub type Tags = Arc<[(String, String)]>;

/// The tags a message attached to one series (from topic-template placeholders or
/// line-protocol tags). Storage keeps them per series for the `devices` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesTags {
    pub series: SeriesKey,
    pub tags: Tags,
}

/// The outcome of parsing one message: the valid points, the rejected items and the tags of
/// the series the points belong to.
///
/// - `points` are in payload order (array order, line order, then field order within a line).
/// - `rejected` holds one entry per rejected item, in payload order.
/// - `series_tags` holds, for points whose source carries tags, the series and its tags.
///   Series without tags have no entry. Repeats of the same `(series, tags)` close together
///   are removed, but a series may still appear more than once (even with different tags if
///   the message disagrees with itself); consumers apply entries in order, the last wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedMessage {
    pub points: Vec<Point>,
    pub rejected: Vec<Rejection>,
    pub series_tags: Vec<SeriesTags>,
}

impl ParsedMessage {
    /// An empty outcome.
    pub fn new() -> ParsedMessage {
        ParsedMessage::default()
    }

    /// Empties the vectors, keeping their capacity for the next message.
    pub fn clear(&mut self) {
        self.points.clear();
        self.rejected.clear();
        self.series_tags.clear();
    }

    /// True when the message produced neither points nor rejections (e.g. an empty
    /// line-protocol batch).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.rejected.is_empty()
    }
}

/// A validated [`FormatConfig`], ready to judge messages.
///
/// Immutable and `Send + Sync`: share one (e.g. in an `Arc`) between threads, each with its
/// own [`Interner`]. Every method is pure: same inputs, same output; no I/O, no clock (the
/// caller passes the receive time).
#[derive(Debug, Clone)]
pub struct Parser {
    config: FormatConfig,
    line_protocol_filters: Vec<TopicFilter>,
    templates: Vec<TopicTemplate>,
    seed_templates: Vec<TopicTemplate>,
}

/// Where a topic's messages go.
enum Route<'s, 't> {
    LineProtocol,
    Series(TemplateMatch<'s, 't>),
    Unknown,
}

impl Parser {
    /// Validates `config`: templates and filters must parse, the seed prefix must be a plain
    /// topic prefix, `line_protocol.device_tags` must not be empty and
    /// `limits.max_points_per_message` must be at least 1.
    pub fn new(config: FormatConfig) -> Result<Parser, IngestError> {
        let line_protocol_filters = config
            .line_protocol
            .topic_filters
            .iter()
            .map(|filter| TopicFilter::parse(filter))
            .collect::<Result<Vec<_>, _>>()?;
        let templates = config
            .topic_templates
            .iter()
            .map(|template| TopicTemplate::parse(template))
            .collect::<Result<Vec<_>, _>>()?;
        let seed_templates = match &config.seed_topic_prefix {
            None => Vec::new(),
            Some(prefix) => {
                let plain = !prefix.is_empty()
                    && !prefix.ends_with('/')
                    && !prefix.contains(['+', '#', '{', '}', '\0']);
                if !plain {
                    return Err(IngestError::InvalidConfig {
                        field: "seed_topic_prefix",
                        reason: format!(
                            "{prefix:?} must be a non-empty topic prefix without wildcards, \
                             braces or a trailing '/'"
                        ),
                    });
                }
                vec![
                    TopicTemplate::parse_with(&format!("{prefix}/{{metric}}"), false)?,
                    TopicTemplate::parse_with(&format!("{prefix}/{{metric}}/{{device_id}}"), true)?,
                ]
            }
        };
        if config.line_protocol.device_tags.is_empty() {
            return Err(IngestError::InvalidConfig {
                field: "line_protocol.device_tags",
                reason: "at least one tag must name the device".to_string(),
            });
        }
        if config.limits.max_points_per_message == 0 {
            return Err(IngestError::InvalidConfig {
                field: "limits.max_points_per_message",
                reason: "must be at least 1".to_string(),
            });
        }
        Ok(Parser { config, line_protocol_filters, templates, seed_templates })
    }

    /// The configuration this parser was built from.
    pub fn config(&self) -> &FormatConfig {
        &self.config
    }

    /// The MQTT topic filters to subscribe to so that every configured format receives its
    /// messages: the line-protocol filters, each template with placeholders as `+`, and the
    /// seed topics (`iot/sensors/+`, `iot/sensors/+/+`). Duplicates removed, order kept.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut filters: Vec<String> = Vec::new();
        let candidates = self
            .line_protocol_filters
            .iter()
            .map(|filter| filter.as_str().to_string())
            .chain(self.templates.iter().map(TopicTemplate::subscription_filter))
            .chain(self.seed_templates.iter().map(TopicTemplate::subscription_filter));
        for candidate in candidates {
            if !filters.contains(&candidate) {
                filters.push(candidate);
            }
        }
        filters
    }

    /// Judges one MQTT message; see the module docs for the rules.
    ///
    /// `received_at_ns` is the receive time (ns since the epoch, UTC): the timestamp of points
    /// without one, and the centre of the clock window.
    pub fn parse(
        &self,
        topic: &str,
        payload: &[u8],
        received_at_ns: i64,
        interner: &mut Interner,
    ) -> ParsedMessage {
        let mut out = ParsedMessage::new();
        self.parse_into(topic, payload, received_at_ns, interner, &mut out);
        out
    }

    /// Like [`Parser::parse`], but appends to `out` (call [`ParsedMessage::clear`] first to
    /// reuse its allocations). Limits apply to what this call appends.
    pub fn parse_into(
        &self,
        topic: &str,
        payload: &[u8],
        received_at_ns: i64,
        interner: &mut Interner,
        out: &mut ParsedMessage,
    ) {
        let limits = self.config.limits;
        let mut emitter = Emitter::new(out, limits.max_points_per_message);
        if payload.len() > limits.max_payload_bytes {
            let reason =
                RejectReason::PayloadTooLarge { len: payload.len(), max: limits.max_payload_bytes };
            emitter.reject(Rejection::new(reason, Item::Message));
            return;
        }
        match self.route(topic) {
            Route::LineProtocol => {
                let context = LineContext {
                    config: &self.config.line_protocol,
                    precision: self.config.line_protocol.precision,
                    received_at_ns,
                    window: self.config.clock_window,
                };
                line_protocol::parse(payload, &context, interner, &mut emitter);
            }
            Route::Series(matched) => {
                let context =
                    SeriesContext::from_match(matched, received_at_ns, self.config.clock_window);
                parse_series_payload(payload, &context, interner, &mut emitter);
            }
            Route::Unknown => {
                let detail = format!(
                    "no line-protocol filter, topic template or seed topic matches {:?}",
                    shorten(topic)
                );
                emitter.reject(Rejection::with_detail(
                    RejectReason::UnknownTopic,
                    detail,
                    Item::Message,
                ));
            }
        }
    }

    /// Parses a JSON object or array of seed-format points where each point names its own
    /// `device_id` and `metric_name` (the HTTP `POST /api/v1/write` body). Appends to `out`.
    /// No size or point-count limit applies (the HTTP layer bounds its bodies); the clock
    /// window does.
    pub fn parse_json_points(
        &self,
        payload: &[u8],
        received_at_ns: i64,
        interner: &mut Interner,
        out: &mut ParsedMessage,
    ) {
        let mut emitter = Emitter::new(out, usize::MAX);
        let context = SeriesContext {
            device_id: None,
            metric: None,
            tags: None,
            received_at_ns,
            window: self.config.clock_window,
        };
        json::parse(payload, &context, interner, &mut emitter);
    }

    /// Parses a line-protocol body with the given timestamp precision (the HTTP
    /// `POST /api/v2/write?precision=` body), mapping lines as configured in
    /// [`LineProtocolConfig`]. Appends to `out`. No size or point-count limit applies; the
    /// clock window does.
    pub fn parse_line_protocol(
        &self,
        payload: &[u8],
        precision: Precision,
        received_at_ns: i64,
        interner: &mut Interner,
        out: &mut ParsedMessage,
    ) {
        let mut emitter = Emitter::new(out, usize::MAX);
        let context = LineContext {
            config: &self.config.line_protocol,
            precision,
            received_at_ns,
            window: self.config.clock_window,
        };
        line_protocol::parse(payload, &context, interner, &mut emitter);
    }

    fn route<'s, 't>(&'s self, topic: &'t str) -> Route<'s, 't> {
        if !is_valid_publish_topic(topic) {
            return Route::Unknown;
        }
        if self.line_protocol_filters.iter().any(|filter| filter.matches(topic)) {
            return Route::LineProtocol;
        }
        self.templates
            .iter()
            .chain(&self.seed_templates)
            .find_map(|template| template.match_topic(topic))
            .map_or(Route::Unknown, Route::Series)
    }
}

/// What the topic said about the points of a JSON or bare payload.
pub(crate) struct SeriesContext<'t> {
    pub(crate) device_id: Option<&'t str>,
    pub(crate) metric: Option<&'t str>,
    pub(crate) tags: Option<Tags>,
    pub(crate) received_at_ns: i64,
    pub(crate) window: ClockWindow,
}

impl<'t> SeriesContext<'t> {
    fn from_match(
        matched: TemplateMatch<'_, 't>,
        received_at_ns: i64,
        window: ClockWindow,
    ) -> SeriesContext<'t> {
        let tags = if matched.tags.is_empty() {
            None
        } else {
            let mut tags: Vec<(String, String)> = matched
                .tags
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            tags.sort();
            Some(Tags::from(tags))
        };
        SeriesContext {
            device_id: matched.device_id,
            metric: Some(matched.metric),
            tags,
            received_at_ns,
            window,
        }
    }
}

/// How line protocol is mapped, and when it was received.
pub(crate) struct LineContext<'c> {
    pub(crate) config: &'c LineProtocolConfig,
    pub(crate) precision: Precision,
    pub(crate) received_at_ns: i64,
    pub(crate) window: ClockWindow,
}

/// A JSON object/array goes to the JSON parser, anything else is a bare value.
fn parse_series_payload(
    payload: &[u8],
    context: &SeriesContext<'_>,
    interner: &mut Interner,
    emitter: &mut Emitter<'_>,
) {
    match payload.trim_ascii_start().first() {
        Some(b'{' | b'[') => json::parse(payload, context, interner, emitter),
        _ => bare::parse(payload, context, interner, emitter),
    }
}

/// How many recent `series_tags` entries are checked for a repeat before pushing one.
const TAG_DEDUP_WINDOW: usize = 8;

/// Appends one call's results to a [`ParsedMessage`], enforcing the point limit.
pub(crate) struct Emitter<'o> {
    out: &'o mut ParsedMessage,
    start_points: usize,
    start_rejected: usize,
    start_tags: usize,
    max_points: usize,
    limit_reported: bool,
}

impl<'o> Emitter<'o> {
    fn new(out: &'o mut ParsedMessage, max_points: usize) -> Emitter<'o> {
        Emitter {
            start_points: out.points.len(),
            start_rejected: out.rejected.len(),
            start_tags: out.series_tags.len(),
            out,
            max_points,
            limit_reported: false,
        }
    }

    /// Points appended by this call so far.
    fn added(&self) -> usize {
        self.out.points.len() - self.start_points
    }

    /// Appends a point (and its series' tags), or, past the limit, reports the first
    /// dropped item once and drops the point.
    pub(crate) fn point(&mut self, point: Point, tags: Option<&Tags>, item: Item) {
        if self.added() >= self.max_points {
            if !self.limit_reported {
                self.limit_reported = true;
                let reason = RejectReason::TooManyPoints { max: self.max_points };
                let detail = format!(
                    "more than {} points in one message; this item and all after it dropped",
                    self.max_points
                );
                self.reject(Rejection::with_detail(reason, detail, item));
            }
            return;
        }
        if let Some(tags) = tags {
            self.series_tags(&point.series, tags);
        }
        self.out.points.push(point);
    }

    fn series_tags(&mut self, series: &SeriesKey, tags: &Tags) {
        let entries = &self.out.series_tags;
        let recent_start = self.start_tags.max(entries.len().saturating_sub(TAG_DEDUP_WINDOW));
        let repeated = entries[recent_start..].iter().any(|entry| {
            entry.series == *series && (Arc::ptr_eq(&entry.tags, tags) || entry.tags == *tags)
        });
        if !repeated {
            self.out.series_tags.push(SeriesTags { series: series.clone(), tags: tags.clone() });
        }
    }

    pub(crate) fn reject(&mut self, rejection: Rejection) {
        self.out.rejected.push(rejection);
    }

    /// Removes everything this call appended (a payload that turned out malformed as a
    /// whole).
    pub(crate) fn rollback(&mut self) {
        self.out.points.truncate(self.start_points);
        self.out.rejected.truncate(self.start_rejected);
        self.out.series_tags.truncate(self.start_tags);
        self.limit_reported = false;
    }
}

/// A judged item's failure: reason and detail; the caller adds where it was.
pub(crate) type ItemResult<T> = Result<T, (RejectReason, String)>;

/// Checks a converted timestamp against the clock window.
pub(crate) fn check_window(
    time_ns: i64,
    received_at_ns: i64,
    window: &ClockWindow,
) -> ItemResult<i64> {
    if window.contains(time_ns, received_at_ns) {
        return Ok(time_ns);
    }
    let detail = format!(
        "timestamp {time_ns} ns is outside the clock window (received at {received_at_ns} ns, \
         {} s back, {} s ahead)",
        window.max_past_secs, window.max_future_secs
    );
    Err((RejectReason::TimestampOutOfRange { time_ns }, detail))
}

/// Maps a [`timestamp::TimestampError`] to a rejection.
pub(crate) fn timestamp_rejection(error: timestamp::TimestampError) -> (RejectReason, String) {
    match error {
        timestamp::TimestampError::Invalid { detail } => {
            (RejectReason::InvalidTimestamp, format!("invalid timestamp: {detail}"))
        }
        timestamp::TimestampError::OutOfRange { time_ns } => (
            RejectReason::TimestampOutOfRange { time_ns },
            "timestamp is not representable as i64 nanoseconds (1677..2262)".to_string(),
        ),
    }
}

/// Converts a number from text (JSON string value, bare payload): Rust float syntax,
/// surrounding ASCII whitespace ignored; `"NaN"`/`"inf"` are numbers but not finite.
pub(crate) fn value_from_text(field: &str, text: &str) -> ItemResult<f64> {
    let trimmed = text.trim_ascii();
    match trimmed.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err((
            RejectReason::NonFiniteValue,
            format!("{field} {:?} is not finite", shorten(trimmed)),
        )),
        Err(_) => Err((
            RejectReason::invalid_number(field),
            format!("{field} {:?} is not a number", shorten(trimmed)),
        )),
    }
}

/// At most 64 characters of `text`, for details that quote input.
pub(crate) fn shorten(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests;
