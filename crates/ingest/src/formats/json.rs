//! JSON payloads: the seed object, arrays of them, and value objects on template topics.
//!
//! One point is a JSON object with the fields (all others are ignored):
//!
//! | field         | accepted                                                  | if absent/null            |
//! |---------------|-----------------------------------------------------------|---------------------------|
//! | `device_id`   | string                                                    | the topic's device, else `MissingField` |
//! | `metric_name` | string                                                    | the topic's metric, else `MissingField` |
//! | `value`       | number, numeric string (`"23.5"`), boolean (1.0 / 0.0)    | `MissingField` (`null`: `WrongType`) |
//! | `timestamp`   | number or numeric string (magnitude rule), RFC 3339 string | the receive time          |
//!
//! When the topic names a device or metric and the object names another, the object is
//! rejected (`DeviceMismatch` / `MetricMismatch`). A payload is one such object or an array
//! of them; each array element is judged separately (a non-object element is
//! `WrongType { field: "point" }`). A payload that is not valid JSON as a whole is rejected
//! once as `MalformedJson` and yields no points. If a field appears twice in one object the
//! last occurrence wins.
//!
//! Parsing streams: elements are judged as serde_json reads them, strings are borrowed from
//! the payload unless they contain escapes, and nothing is allocated per element except the
//! output point.

use std::borrow::Cow;
use std::fmt;

use minitrue_common::Point;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::timestamp::{
    timestamp_from_f64, timestamp_from_int, timestamp_from_str, timestamp_from_u64,
};
use super::{
    check_window, shorten, timestamp_rejection, value_from_text, Emitter, Interner, Item,
    ItemResult, RejectReason, Rejection, SeriesContext,
};

/// One JSON value where a scalar is expected; compound values are kept only as their type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'de> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'de, str>),
    Object,
    Array,
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Object => "an object",
            Scalar::Array => "an array",
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
}

/// The fields of one point object, as written.
#[derive(Debug, Default)]
pub(crate) struct RawPoint<'de> {
    device_id: Option<Scalar<'de>>,
    metric_name: Option<Scalar<'de>>,
    timestamp: Option<Scalar<'de>>,
    value: Option<Scalar<'de>>,
}

/// One element of a payload: a point object, or something else (named by its type).
#[derive(Debug)]
pub(crate) enum RawItem<'de> {
    Point(RawPoint<'de>),
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for RawItem<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// The point fields we read; anything else is skipped.
enum FieldName {
    DeviceId,
    MetricName,
    Timestamp,
    Value,
    Other,
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldNameVisitor)
    }
}

struct FieldNameVisitor;

impl Visitor<'_> for FieldNameVisitor {
    type Value = FieldName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match v {
            "device_id" => FieldName::DeviceId,
            "metric_name" => FieldName::MetricName,
            "timestamp" => FieldName::Timestamp,
            "value" => FieldName::Value,
            _ => FieldName::Other,
        })
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = RawItem<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a point object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut point = RawPoint::default();
        while let Some(name) = map.next_key::<FieldName>()? {
            let slot = match name {
                FieldName::DeviceId => &mut point.device_id,
                FieldName::MetricName => &mut point.metric_name,
                FieldName::Timestamp => &mut point.timestamp,
                FieldName::Value => &mut point.value,
                FieldName::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<Scalar<'de>>()?);
        }
        Ok(RawItem::Point(point))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawItem::NotObject("an array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("null"))
    }
}

/// Streams an array's elements into a callback.
struct ArrayVisitor<F>(F);

impl<'de, F: FnMut(usize, RawItem<'de>)> Visitor<'de> for ArrayVisitor<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of point objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while let Some(item) = seq.next_element::<RawItem<'de>>()? {
            (self.0)(index, item);
            index += 1;
        }
        Ok(())
    }
}

/// Parses a JSON object or array payload, appending points and rejections.
pub(crate) fn parse(
    payload: &[u8],
    context: &SeriesContext<'_>,
    interner: &mut Interner,
    emitter: &mut Emitter<'_>,
) {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let is_array = payload.trim_ascii_start().first() == Some(&b'[');
    let parsed = if is_array {
        let judge_element = |index: usize, item: RawItem<'_>| {
            judge_item(item, context, interner, emitter, Item::Element(index));
        };
        (&mut deserializer).deserialize_seq(ArrayVisitor(judge_element))
    } else {
        RawItem::deserialize(&mut deserializer)
            .map(|item| judge_item(item, context, interner, emitter, Item::Message))
    };
    if let Err(error) = parsed.and_then(|()| deserializer.end()) {
        emitter.rollback();
        emitter.reject(Rejection::with_detail(
            RejectReason::MalformedJson,
            format!("malformed JSON: {error}"),
            Item::Message,
        ));
    }
}

fn judge_item(
    item: RawItem<'_>,
    context: &SeriesContext<'_>,
    interner: &mut Interner,
    emitter: &mut Emitter<'_>,
    position: Item,
) {
    let judged = match item {
        RawItem::Point(raw) => point_from_raw(&raw, context, interner),
        RawItem::NotObject(type_name) => Err((
            RejectReason::wrong_type("point"),
            format!("expected a point object, got {type_name}"),
        )),
    };
    match judged {
        Ok(point) => emitter.point(point, context.tags.as_ref(), position),
        Err((reason, detail)) => emitter.reject(Rejection::with_detail(reason, detail, position)),
    }
}

/// Judges one point object: names, series key, value, timestamp, in that order (the first
/// problem found is reported).
pub(crate) fn point_from_raw(
    raw: &RawPoint<'_>,
    context: &SeriesContext<'_>,
    interner: &mut Interner,
) -> ItemResult<Point> {
    let device_id = resolve_name("device_id", context.device_id, raw.device_id.as_ref())?;
    let metric = resolve_name("metric_name", context.metric, raw.metric_name.as_ref())?;
    let series = interner.key(device_id, metric).map_err(|error| {
        let detail = format!("invalid series key: {error}");
        (RejectReason::InvalidSeriesKey(error), detail)
    })?;
    let value = match &raw.value {
        None => return Err((RejectReason::missing("value"), "value is missing".to_string())),
        Some(scalar) => value_from_scalar(scalar)?,
    };
    let time = match &raw.timestamp {
        None | Some(Scalar::Null) => context.received_at_ns,
        Some(scalar) => timestamp_from_scalar(scalar)?,
    };
    let time = check_window(time, context.received_at_ns, &context.window)?;
    Ok(Point::new(series, time, value))
}

/// The name from the payload, checked against the topic's; or the topic's.
fn resolve_name<'a>(
    field: &'static str,
    from_topic: Option<&'a str>,
    from_payload: Option<&'a Scalar<'_>>,
) -> ItemResult<&'a str> {
    match (from_payload, from_topic) {
        (None | Some(Scalar::Null), Some(topic_name)) => Ok(topic_name),
        (None | Some(Scalar::Null), None) => {
            let detail = format!("{field} is missing and the topic does not name it");
            Err((RejectReason::missing(field), detail))
        }
        (Some(Scalar::Str(payload_name)), topic_name) => {
            let payload_name: &'a str = payload_name.as_ref();
            match topic_name {
                Some(topic_name) if topic_name != payload_name => {
                    Err(mismatch(field, topic_name, payload_name))
                }
                _ => Ok(payload_name),
            }
        }
        (Some(other), _) => {
            let detail = format!("{field}: expected a string, got {}", other.type_name());
            Err((RejectReason::wrong_type(field), detail))
        }
    }
}

fn mismatch(field: &str, topic_name: &str, payload_name: &str) -> (RejectReason, String) {
    let detail = format!(
        "{field} {:?} in the payload differs from {:?} in the topic",
        shorten(payload_name),
        shorten(topic_name)
    );
    let reason = if field == "device_id" {
        RejectReason::DeviceMismatch {
            topic_device: topic_name.to_string(),
            payload_device: payload_name.to_string(),
        }
    } else {
        RejectReason::MetricMismatch {
            topic_metric: topic_name.to_string(),
            payload_metric: payload_name.to_string(),
        }
    };
    (reason, detail)
}

/// A value: finite number, numeric string, or boolean (1.0 / 0.0).
pub(crate) fn value_from_scalar(scalar: &Scalar<'_>) -> ItemResult<f64> {
    match scalar {
        Scalar::Float(value) if value.is_finite() => Ok(*value),
        Scalar::Float(_) => Err((RejectReason::NonFiniteValue, "value is not finite".to_string())),
        Scalar::Int(value) => Ok(*value as f64),
        Scalar::UInt(value) => Ok(*value as f64),
        Scalar::Bool(value) => Ok(if *value { 1.0 } else { 0.0 }),
        Scalar::Str(text) => value_from_text("value", text),
        Scalar::Null | Scalar::Object | Scalar::Array => Err((
            RejectReason::wrong_type("value"),
            format!(
                "value: expected a number, numeric string or boolean, got {}",
                scalar.type_name()
            ),
        )),
    }
}

/// A present, non-null timestamp converted to nanoseconds (not yet window-checked).
fn timestamp_from_scalar(scalar: &Scalar<'_>) -> ItemResult<i64> {
    let converted = match scalar {
        Scalar::Int(t) => timestamp_from_int(*t),
        Scalar::UInt(t) => timestamp_from_u64(*t),
        Scalar::Float(t) => timestamp_from_f64(*t),
        Scalar::Str(text) => timestamp_from_str(text),
        Scalar::Null | Scalar::Bool(_) | Scalar::Object | Scalar::Array => {
            let detail =
                format!("timestamp: expected a number or string, got {}", scalar.type_name());
            return Err((RejectReason::wrong_type("timestamp"), detail));
        }
    };
    converted.map_err(timestamp_rejection)
}
