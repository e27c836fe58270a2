//! Dead letters: what is republished (to the dead-letter topic) for a rejected message.
//!
//! A dead letter is a JSON object:
//!
//! ```json
//! {"topic": "iot/sensors/temperature", "reason": "malformed_json",
//!  "detail": "malformed JSON: EOF while parsing an object at line 1 column 12",
//!  "element": 3, "line": null,
//!  "payload": "{\"device_id\":", "payload_encoding": "utf8"}
//! ```
//!
//! `payload` is the original payload as a string when it is valid UTF-8
//! (`payload_encoding: "utf8"`), otherwise its standard base64 (`"base64"`), so the original
//! bytes can always be recovered. `element` / `line` locate the item ([`Item`]), `null` for
//! the whole message. [`dead_letter_message`] reports all rejections of a message at once in
//! a `rejections` array of `{reason, detail, element, line}`.

use base64::Engine as _;
use serde::Serialize;

use super::{Item, Rejection};

#[derive(Serialize)]
struct DeadLetter<'a> {
    topic: &'a str,
    reason: &'static str,
    detail: &'a str,
    element: Option<usize>,
    line: Option<usize>,
    payload: std::borrow::Cow<'a, str>,
    payload_encoding: &'static str,
}

#[derive(Serialize)]
struct DeadLetterMessage<'a> {
    topic: &'a str,
    rejections: Vec<RejectionEntry<'a>>,
    payload: std::borrow::Cow<'a, str>,
    payload_encoding: &'static str,
}

#[derive(Serialize)]
struct RejectionEntry<'a> {
    reason: &'static str,
    detail: &'a str,
    element: Option<usize>,
    line: Option<usize>,
}

fn location(item: Item) -> (Option<usize>, Option<usize>) {
    match item {
        Item::Message => (None, None),
        Item::Element(index) => (Some(index), None),
        Item::Line(line) => (None, Some(line)),
    }
}

fn encode_payload(payload: &[u8]) -> (std::borrow::Cow<'_, str>, &'static str) {
    match std::str::from_utf8(payload) {
        Ok(text) => (std::borrow::Cow::Borrowed(text), "utf8"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(payload).into(), "base64"),
    }
}

/// The dead letter for one rejection of a message received on `topic` (format in the
/// module docs). Always valid JSON.
pub fn dead_letter_payload(topic: &str, payload: &[u8], rejection: &Rejection) -> Vec<u8> {
    let (element, line) = location(rejection.item);
    let (payload, payload_encoding) = encode_payload(payload);
    let letter = DeadLetter {
        topic,
        reason: rejection.label(),
        detail: &rejection.detail,
        element,
        line,
        payload,
        payload_encoding,
    };
    // Serializing strings and integers into a Vec cannot fail.
    serde_json::to_vec(&letter).unwrap_or_default()
}

/// One dead letter for all rejections of a message (format in the module docs), so a
/// message with many bad elements is republished once. Always valid JSON.
pub fn dead_letter_message(topic: &str, payload: &[u8], rejections: &[Rejection]) -> Vec<u8> {
    let (payload, payload_encoding) = encode_payload(payload);
    let rejections = rejections
        .iter()
        .map(|rejection| {
            let (element, line) = location(rejection.item);
            RejectionEntry { reason: rejection.label(), detail: &rejection.detail, element, line }
        })
        .collect();
    let letter = DeadLetterMessage { topic, rejections, payload, payload_encoding };
    serde_json::to_vec(&letter).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectReason;

    #[test]
    fn utf8_payloads_are_kept_as_text() {
        let rejection = Rejection::with_detail(
            RejectReason::MalformedJson,
            "malformed JSON: EOF",
            Item::Message,
        );
        let letter = dead_letter_payload("iot/sensors/t", b"{\"a\":", &rejection);
        let parsed: serde_json::Value = serde_json::from_slice(&letter).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "topic": "iot/sensors/t", "reason": "malformed_json",
                "detail": "malformed JSON: EOF", "element": null, "line": null,
                "payload": "{\"a\":", "payload_encoding": "utf8"
            })
        );
    }

    #[test]
    fn binary_payloads_are_base64() {
        let rejection = Rejection::new(RejectReason::NonFiniteValue, Item::Line(3));
        let letter = dead_letter_payload("telegraf/x", &[0xff, 0x00, 0x41], &rejection);
        let parsed: serde_json::Value = serde_json::from_slice(&letter).unwrap();
        assert_eq!(parsed["payload"], "/wBB");
        assert_eq!(parsed["payload_encoding"], "base64");
        assert_eq!(parsed["reason"], "non_finite_value");
        assert_eq!(parsed["line"], 3);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(parsed["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, [0xff, 0x00, 0x41]);
    }

    #[test]
    fn whole_message_letter_lists_every_rejection() {
        let rejections = [
            Rejection::new(RejectReason::missing("value"), Item::Element(0)),
            Rejection::new(RejectReason::NonFiniteValue, Item::Element(2)),
        ];
        let letter = dead_letter_message("iot/sensors/t", b"[...]", &rejections);
        let parsed: serde_json::Value = serde_json::from_slice(&letter).unwrap();
        assert_eq!(parsed["rejections"][0]["reason"], "missing_field");
        assert_eq!(parsed["rejections"][1]["element"], 2);
        assert_eq!(parsed["payload"], "[...]");
    }
}
