//! Bare values: the whole payload is one value for the series the topic names.
//!
//! Accepted payloads (surrounding ASCII whitespace ignored): a number in Rust/JSON float
//! syntax (`23.5`, `-1e3`, ` 42 `, `+7`, `.5`), `true` / `false` (1.0 / 0.0), or a JSON string
//! holding a number (`"23.5"`). `NaN`, `inf`, `-Infinity` are rejected as `NonFiniteValue`,
//! `null` as `WrongType`, anything else as `InvalidNumber`. The point's time is the receive
//! time. The topic must name both the device and the metric
//! (`iot/sensors/{metric}/{device_id}` or a template); otherwise `MissingField`.

use minitrue_common::Point;

use super::json::{value_from_scalar, Scalar};
use super::{
    value_from_text, Emitter, Interner, Item, ItemResult, RejectReason, Rejection, SeriesContext,
};

/// Parses a bare-value payload, appending one point or one rejection.
pub(crate) fn parse(
    payload: &[u8],
    context: &SeriesContext<'_>,
    interner: &mut Interner,
    emitter: &mut Emitter<'_>,
) {
    match point_from_bare(payload, context, interner) {
        Ok(point) => emitter.point(point, context.tags.as_ref(), Item::Message),
        Err((reason, detail)) => {
            emitter.reject(Rejection::with_detail(reason, detail, Item::Message))
        }
    }
}

fn point_from_bare(
    payload: &[u8],
    context: &SeriesContext<'_>,
    interner: &mut Interner,
) -> ItemResult<Point> {
    let Some(device_id) = context.device_id else {
        let detail = "a bare value needs a topic that names the device, like \
                      iot/sensors/{metric}/{device_id}";
        return Err((RejectReason::missing("device_id"), detail.to_string()));
    };
    let metric = context.metric.unwrap_or_default();
    let series = interner.key(device_id, metric).map_err(|error| {
        let detail = format!("invalid series key: {error}");
        (RejectReason::InvalidSeriesKey(error), detail)
    })?;
    let value = value_from_bare(payload)?;
    Ok(Point::new(series, context.received_at_ns, value))
}

fn value_from_bare(payload: &[u8]) -> ItemResult<f64> {
    let trimmed = payload.trim_ascii();
    if trimmed.first() == Some(&b'"') {
        return match serde_json::from_slice::<Scalar<'_>>(trimmed) {
            Ok(scalar) => value_from_scalar(&scalar),
            Err(error) => {
                Err((RejectReason::MalformedJson, format!("malformed JSON string: {error}")))
            }
        };
    }
    let Ok(text) = std::str::from_utf8(trimmed) else {
        return Err((RejectReason::invalid_number("value"), "payload is not UTF-8".to_string()));
    };
    match text {
        "true" => Ok(1.0),
        "false" => Ok(0.0),
        "null" => Err((RejectReason::wrong_type("value"), "value is null".to_string())),
        _ => value_from_text("value", text),
    }
}
