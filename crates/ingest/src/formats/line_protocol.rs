//! InfluxDB line protocol, as Telegraf's MQTT output and `POST /api/v2/write` send it.
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! # Syntax (the InfluxDB line-protocol reference and its EBNF)
//! - Lines end with `\n` or `\r\n`; empty lines and lines starting with `#` (after optional
//!   spaces) are skipped. Sections are separated by one or more spaces.
//! - Escapes: in the measurement `\,` and `\ `; in tag keys, tag values and field keys `\,`,
//!   `\=` and `\ `. A backslash before any other character is a literal backslash (so
//!   `a\\,b` reads `a\,b`). Unescaped control characters end a name (and make the line
//!   invalid). Names are UTF-8, tag values and names must not be empty.
//! - Field values: float (`1`, `-1.5`, `.5`, `1.`, `1e3`, `1.5E-3`; no `NaN`/`inf`), integer
//!   `-2i`, unsigned integer `2u`, boolean `t T true True TRUE f F false False FALSE`
//!   (1.0 / 0.0), string `"..."` with `\"` and `\\` escapes (may span lines).
//! - Timestamp: an optional signed integer in the configured [`Precision`] (ns by default);
//!   absent → the receive time.
//!
//! # Mapping onto series (see [`crate::LineProtocolConfig`])
//! `device_id` is the value of the first configured device tag present (default `device_id`,
//! then `host`), and that tag is removed; each numeric or boolean field becomes one point
//! with metric `measurement` when the field key is `value`, else
//! `measurement` + separator (`_`) + field key; the other tags (sorted by key, first of
//! duplicate keys kept) become the series' tags. Note that tags are not part of the series
//! key: `cpu,host=a,cpu=cpu0 usage=1` and `cpu,host=a,cpu=cpu1 usage=2` both write series
//! `(a, cpu_usage)`.
//!
//! # Rejections
//! A syntax error rejects its whole line (`MalformedLineProtocol`); a line without a device
//! tag (`MissingField`) or with a timestamp outside the window (`TimestampOutOfRange`)
//! likewise. Per field: a string field is `WrongType` (or skipped, see
//! [`crate::LineProtocolConfig::skip_string_fields`]), a float overflowing to infinity is
//! `NonFiniteValue`, an integer out of range `InvalidNumber`. Other lines and fields are kept.

use std::borrow::Cow;
use std::sync::Arc;

use minitrue_common::Point;

use super::{
    check_window, shorten, Emitter, Interner, Item, LineContext, Precision, RejectReason,
    Rejection, Tags,
};

/// A parsed field value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FieldValue {
    Number(f64),
    String,
    /// A syntactically valid float that overflows to infinity.
    NonFinite,
    /// An integer outside `i64` (or `u64` for `u`).
    IntOutOfRange,
}

/// A raw timestamp: the integer as written, or its sign when it overflows `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawTime {
    Absent,
    Value(i64),
    Overflow { negative: bool },
}

/// Buffers reused from line to line within one payload.
struct Scratch<'a> {
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: Vec<(Cow<'a, str>, FieldValue)>,
    metric: String,
    previous_tags: Option<Tags>,
}

/// Parses a line-protocol payload, appending points and rejections.
pub(crate) fn parse(
    payload: &[u8],
    context: &LineContext<'_>,
    interner: &mut Interner,
    emitter: &mut Emitter<'_>,
) {
    let mut scanner = Scanner { buf: payload, pos: 0, line: 1 };
    let mut scratch = Scratch {
        tags: Vec::new(),
        fields: Vec::new(),
        metric: String::new(),
        previous_tags: None,
    };
    loop {
        scanner.skip_spaces();
        match scanner.peek() {
            None => break,
            Some(b'\n') => {
                scanner.pos += 1;
                scanner.line += 1;
                continue;
            }
            Some(b'#') => {
                scanner.skip_rest_of_line();
                continue;
            }
            Some(b'\r') if scanner.peek_at(1) == Some(b'\n') => {
                scanner.pos += 2;
                scanner.line += 1;
                continue;
            }
            Some(_) => {}
        }
        let line = scanner.line;
        let line_start = scanner.pos;
        scratch.tags.clear();
        scratch.fields.clear();
        match scanner.entry(&mut scratch) {
            Ok((measurement, raw_time)) => {
                emit_line(line, &measurement, raw_time, &mut scratch, context, interner, emitter);
            }
            Err(detail) => {
                // Quote the start of the line (bounded, so many bad lines stay linear).
                let rest = &payload[line_start..payload.len().min(line_start + 256)];
                let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                let quoted = String::from_utf8_lossy(&rest[..line_end]);
                let reason = RejectReason::MalformedLineProtocol { line, detail };
                let detail = format!("line {line}: {detail}: {:?}", shorten(&quoted));
                emitter.reject(Rejection::with_detail(reason, detail, Item::Line(line)));
                scanner.skip_rest_of_line();
            }
        }
    }
}

/// Turns one syntactically valid line into points (or rejections).
fn emit_line(
    line: usize,
    measurement: &str,
    raw_time: RawTime,
    scratch: &mut Scratch<'_>,
    context: &LineContext<'_>,
    interner: &mut Interner,
    emitter: &mut Emitter<'_>,
) {
    let reject = |emitter: &mut Emitter<'_>, reason: RejectReason, detail: String| {
        emitter.reject(Rejection::with_detail(reason, detail, Item::Line(line)));
    };
    let device_index = context
        .config
        .device_tags
        .iter()
        .find_map(|name| scratch.tags.iter().position(|(key, _)| key == name));
    let Some(device_index) = device_index else {
        let detail = format!(
            "line {line}: none of the device tags {:?} is present",
            context.config.device_tags
        );
        return reject(emitter, RejectReason::missing("device_id"), detail);
    };
    let time = match time_ns(raw_time, context.precision, context.received_at_ns) {
        Ok(time) => time,
        Err(time_ns) => {
            let detail = format!("line {line}: timestamp overflows i64 nanoseconds");
            return reject(emitter, RejectReason::TimestampOutOfRange { time_ns }, detail);
        }
    };
    let time = match check_window(time, context.received_at_ns, &context.window) {
        Ok(time) => time,
        Err((reason, detail)) => return reject(emitter, reason, format!("line {line}: {detail}")),
    };
    let (_, device_id) = scratch.tags.remove(device_index);
    let tags = line_tags(scratch);

    for (key, value) in &scratch.fields {
        let value = match *value {
            FieldValue::Number(value) => value,
            FieldValue::String if context.config.skip_string_fields => continue,
            FieldValue::String => {
                let detail = format!("line {line}: field {:?} is a string", shorten(key));
                reject(emitter, RejectReason::wrong_type(key), detail);
                continue;
            }
            FieldValue::NonFinite => {
                let detail = format!("line {line}: field {:?} is not finite", shorten(key));
                reject(emitter, RejectReason::NonFiniteValue, detail);
                continue;
            }
            FieldValue::IntOutOfRange => {
                let detail = format!("line {line}: integer field {:?} out of range", shorten(key));
                reject(emitter, RejectReason::invalid_number(key), detail);
                continue;
            }
        };
        scratch.metric.clear();
        scratch.metric.push_str(measurement);
        if key != "value" {
            scratch.metric.push_str(&context.config.metric_separator);
            scratch.metric.push_str(key);
        }
        match interner.key(&device_id, &scratch.metric) {
            Ok(series) => {
                emitter.point(Point::new(series, time, value), tags.as_ref(), Item::Line(line))
            }
            Err(error) => {
                let detail = format!("line {line}: invalid series key: {error}");
                reject(emitter, RejectReason::InvalidSeriesKey(error), detail);
            }
        }
    }
}

/// The line's remaining tags, sorted and shared with the previous line when equal.
fn line_tags(scratch: &mut Scratch<'_>) -> Option<Tags> {
    if scratch.tags.is_empty() {
        return None;
    }
    scratch.tags.sort_by(|a, b| a.0.cmp(&b.0));
    scratch.tags.dedup_by(|later, earlier| later.0 == earlier.0);
    if let Some(previous) = &scratch.previous_tags {
        let same = previous.len() == scratch.tags.len()
            && previous.iter().zip(&scratch.tags).all(|((pk, pv), (k, v))| pk == k && pv == v);
        if same {
            return Some(previous.clone());
        }
    }
    let tags: Tags = Arc::from(
        scratch
            .tags
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect::<Vec<_>>(),
    );
    scratch.previous_tags = Some(tags.clone());
    Some(tags)
}

/// The point time in ns, or the saturated value when it does not fit.
fn time_ns(raw: RawTime, precision: Precision, received_at_ns: i64) -> Result<i64, i64> {
    match raw {
        RawTime::Absent => Ok(received_at_ns),
        RawTime::Value(t) => {
            t.checked_mul(precision.nanos_per_unit()).ok_or(if t < 0 { i64::MIN } else { i64::MAX })
        }
        RawTime::Overflow { negative: true } => Err(i64::MIN),
        RawTime::Overflow { negative: false } => Err(i64::MAX),
    }
}

fn is_nonprintable(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f
}

fn measurement_stop(byte: u8) -> bool {
    byte == b',' || byte == b' ' || is_nonprintable(byte)
}

fn measurement_escapable(byte: u8) -> bool {
    byte == b',' || byte == b' '
}

fn key_stop(byte: u8) -> bool {
    byte == b',' || byte == b'=' || byte == b' ' || is_nonprintable(byte)
}

fn key_escapable(byte: u8) -> bool {
    byte == b',' || byte == b'=' || byte == b' '
}

fn field_value_stop(byte: u8) -> bool {
    matches!(byte, b',' | b' ' | b'\r' | b'\n')
}

fn is_line_end(byte: Option<u8>) -> bool {
    matches!(byte, None | Some(b'\n' | b'\r'))
}

struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
    /// 1-based line number at `pos`.
    line: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.buf.get(self.pos + offset).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Moves past the next `\n` (or to the end).
    fn skip_rest_of_line(&mut self) {
        match self.buf[self.pos..].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                self.pos += offset + 1;
                self.line += 1;
            }
            None => self.pos = self.buf.len(),
        }
    }

    /// Parses one entry starting at a non-space, non-comment character; fills the scratch
    /// tags and fields and consumes the line end.
    fn entry(
        &mut self,
        scratch: &mut Scratch<'a>,
    ) -> Result<(Cow<'a, str>, RawTime), &'static str> {
        let measurement = self.name(measurement_stop, measurement_escapable)?;
        if measurement.is_empty() {
            return Err("missing measurement");
        }
        while self.peek() == Some(b',') {
            self.pos += 1;
            let key = self.name(key_stop, key_escapable)?;
            if key.is_empty() {
                return Err("expected a tag key after ','");
            }
            if self.peek() != Some(b'=') {
                return Err("expected '=' after tag key");
            }
            self.pos += 1;
            let value = self.name(key_stop, key_escapable)?;
            if value.is_empty() {
                return Err("empty tag value");
            }
            scratch.tags.push((key, value));
        }
        match self.peek() {
            Some(b' ') => self.skip_spaces(),
            None | Some(b'\n' | b'\r') => return Err("missing field set"),
            Some(_) => return Err("unexpected character in measurement or tag set"),
        }
        if is_line_end(self.peek()) {
            return Err("missing field set");
        }
        loop {
            let key = self.name(key_stop, key_escapable)?;
            if key.is_empty() {
                return Err("expected a field key");
            }
            if self.peek() != Some(b'=') {
                return Err("expected '=' after field key");
            }
            self.pos += 1;
            let value = self.field_value()?;
            scratch.fields.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                None | Some(b' ' | b'\n' | b'\r') => break,
                Some(_) => return Err("unexpected character after field value"),
            }
        }
        self.skip_spaces();
        let raw_time = if is_line_end(self.peek()) { RawTime::Absent } else { self.timestamp()? };
        self.skip_spaces();
        match self.peek() {
            None => {}
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
            }
            Some(b'\r') if self.peek_at(1) == Some(b'\n') => {
                self.pos += 2;
                self.line += 1;
            }
            Some(_) => return Err("unexpected text after timestamp"),
        }
        Ok((measurement, raw_time))
    }

    /// A measurement, key or tag value: up to the first unescaped stop byte, unescaped.
    fn name(
        &mut self,
        stop: fn(u8) -> bool,
        escapable: fn(u8) -> bool,
    ) -> Result<Cow<'a, str>, &'static str> {
        let start = self.pos;
        let mut escaped = false;
        while let Some(byte) = self.peek() {
            if byte == b'\\' {
                if self.peek_at(1).is_some_and(escapable) {
                    escaped = true;
                    self.pos += 2;
                } else {
                    self.pos += 1;
                }
                continue;
            }
            if stop(byte) {
                break;
            }
            self.pos += 1;
        }
        let raw = &self.buf[start..self.pos];
        let text = std::str::from_utf8(raw).map_err(|_| "name is not valid UTF-8")?;
        if !escaped {
            return Ok(Cow::Borrowed(text));
        }
        let mut unescaped = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(&next) = chars.peek() {
                    if next.is_ascii() && escapable(next as u8) {
                        unescaped.push(next);
                        chars.next();
                        continue;
                    }
                }
            }
            unescaped.push(c);
        }
        Ok(Cow::Owned(unescaped))
    }

    fn field_value(&mut self) -> Result<FieldValue, &'static str> {
        match self.peek() {
            Some(b'"') => {
                let (quote_pos, quote_line) = (self.pos, self.line);
                self.pos += 1;
                loop {
                    match self.peek() {
                        None => {
                            // Recover at the end of the quote's own line, so the lines the
                            // string swallowed are judged on their own.
                            self.pos = quote_pos;
                            self.line = quote_line;
                            return Err("unterminated string field value");
                        }
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(FieldValue::String);
                        }
                        Some(b'\\') => {
                            if self.peek_at(1) == Some(b'\n') {
                                self.line += 1;
                            }
                            self.pos = (self.pos + 2).min(self.buf.len());
                        }
                        Some(b'\n') => {
                            self.line += 1;
                            self.pos += 1;
                        }
                        Some(_) => self.pos += 1,
                    }
                }
            }
            Some(b't' | b'T' | b'f' | b'F') => match self.field_token() {
                b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(FieldValue::Number(1.0)),
                b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(FieldValue::Number(0.0)),
                _ => Err("invalid boolean field value"),
            },
            Some(b'-' | b'0'..=b'9' | b'.') => number_field(self.field_token()),
            _ => Err("field value has an unrecognized type"),
        }
    }

    fn field_token(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|byte| !field_value_stop(byte)) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    fn timestamp(&mut self) -> Result<RawTime, &'static str> {
        let token = self.field_token();
        let (negative, digits) = match token.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, token),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err("invalid timestamp");
        }
        let mut value: i64 = 0;
        for &digit in digits {
            let digit = i64::from(digit - b'0');
            let next = value.checked_mul(10).and_then(|v| {
                if negative {
                    v.checked_sub(digit)
                } else {
                    v.checked_add(digit)
                }
            });
            match next {
                Some(next) => value = next,
                None => return Ok(RawTime::Overflow { negative }),
            }
        }
        Ok(RawTime::Value(value))
    }
}

/// Classifies and converts a numeric field token (`1.5`, `-2i`, `3u`).
fn number_field(token: &[u8]) -> Result<FieldValue, &'static str> {
    let Ok(text) = std::str::from_utf8(token) else {
        return Err("invalid number");
    };
    if let Some(digits) = text.strip_suffix('i') {
        let unsigned = digits.strip_prefix('-').unwrap_or(digits);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid integer field value");
        }
        return Ok(digits
            .parse::<i64>()
            .map_or(FieldValue::IntOutOfRange, |v| FieldValue::Number(v as f64)));
    }
    if let Some(digits) = text.strip_suffix('u') {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid unsigned integer field value");
        }
        return Ok(digits
            .parse::<u64>()
            .map_or(FieldValue::IntOutOfRange, |v| FieldValue::Number(v as f64)));
    }
    if !is_float_syntax(token) {
        return Err("invalid float field value");
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(FieldValue::Number(value)),
        Ok(_) => Ok(FieldValue::NonFinite),
        Err(_) => Err("invalid float field value"),
    }
}

/// `[-] (digits [. [digits]] | . digits) [(e|E) [+|-] digits]`, the reference grammar.
fn is_float_syntax(token: &[u8]) -> bool {
    let mut pos = usize::from(token.first() == Some(&b'-'));
    let count_digits =
        |from: usize| token[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let integer_digits = count_digits(pos);
    pos += integer_digits;
    let mut fraction_digits = 0;
    if token.get(pos) == Some(&b'.') {
        pos += 1;
        fraction_digits = count_digits(pos);
        pos += fraction_digits;
    }
    if integer_digits == 0 && fraction_digits == 0 {
        return false;
    }
    if matches!(token.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(token.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let exponent_digits = count_digits(pos);
        if exponent_digits == 0 {
            return false;
        }
        pos += exponent_digits;
    }
    pos == token.len()
}
