//! Property tests of the parsing core: it never panics, and valid points encoded as seed JSON
//! or line protocol parse back to exactly the same points (values bit for bit).

use minitrue_common::{Point, SeriesKey};
use minitrue_ingest::{
    parse_rfc3339, timestamp_from_int, timestamp_from_str, FormatConfig, Interner, ParsedMessage,
    Parser,
};
use proptest::prelude::*;

const S: i64 = 1_000_000_000;
/// 2024-01-01T00:00:00Z.
const NOW: i64 = 1_704_067_200 * S;
/// Inside the default clock window: 9 years back, 23 hours ahead.
const EARLIEST: i64 = NOW - 9 * 365 * 86_400 * S;
const LATEST: i64 = NOW + 23 * 3600 * S;

fn parser() -> Parser {
    Parser::new(FormatConfig {
        topic_templates: vec!["site/{site}/{device_id}/{metric}".to_string()],
        ..FormatConfig::default()
    })
    .unwrap()
}

/// Checks what every outcome must satisfy, whatever the input.
fn check_invariants(parser: &Parser, message: &ParsedMessage) {
    let limits = parser.config().limits;
    assert!(message.points.len() <= limits.max_points_per_message);
    for point in &message.points {
        assert!(point.value.is_finite(), "{point:?}");
        assert!(parser.config().clock_window.contains(point.time, NOW), "{point:?}");
    }
    for rejection in &message.rejected {
        assert!(!rejection.detail.is_empty());
        assert!(minitrue_ingest::RejectReason::LABELS.contains(&rejection.label()));
    }
    for entry in &message.series_tags {
        assert!(message.points.iter().any(|p| p.series == entry.series));
        assert!(entry.tags.windows(2).all(|w| w[0].0 <= w[1].0), "tags sorted");
    }
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("iot/sensors/temperature".to_string()),
        Just("iot/sensors/temperature/sensor_1".to_string()),
        Just("site/berlin/pump/pressure".to_string()),
        Just("telegraf/host/cpu".to_string()),
        "[a-z/+#$]{0,20}",
        any::<String>(),
    ]
}

/// Text that looks like JSON or line protocol often enough to reach deep code paths.
fn json_like() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"device_id\"".to_string()),
        Just("\"metric_name\"".to_string()),
        Just("\"timestamp\"".to_string()),
        Just("\"value\"".to_string()),
        Just("\"temperature\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("\"2024-01-01T00:00:00Z\"".to_string()),
        Just("\"NaN\"".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("=".to_string()),
        Just("\\".to_string()),
        Just("host=h".to_string()),
        Just("1i".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "\"[a-z\\\\\"]{0,6}\"",
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(topic in topic(), payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let parser = parser();
        let message = parser.parse(&topic, &payload, NOW, &mut Interner::new());
        check_invariants(&parser, &message);
    }

    #[test]
    fn json_like_text_never_panics(topic in topic(), payload in json_like()) {
        let parser = parser();
        let message = parser.parse(&topic, &payload, NOW, &mut Interner::new());
        check_invariants(&parser, &message);
        let mut out = ParsedMessage::new();
        parser.parse_json_points(&payload, NOW, &mut Interner::new(), &mut out);
        check_invariants(&parser, &out);
    }
}

// ---------------------------------------------------------------- JSON round trip

/// Names that exercise JSON escaping: quotes, backslashes, non-ASCII, spaces.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ .,=:/\"\\\\é🍭-]{1,24}"
}

fn finite_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        -1000.0..1000.0f64,
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
    ]
}

/// How a timestamp is written in JSON.
#[derive(Debug, Clone, Copy)]
enum TimeForm {
    Seconds,
    Millis,
    Micros,
    Nanos,
    NanosString,
    Rfc3339 { offset_minutes: i64 },
    Absent,
}

fn time_form() -> impl Strategy<Value = TimeForm> {
    prop_oneof![
        Just(TimeForm::Seconds),
        Just(TimeForm::Millis),
        Just(TimeForm::Micros),
        Just(TimeForm::Nanos),
        Just(TimeForm::NanosString),
        (-(23 * 60 + 59)..=(23 * 60 + 59i64))
            .prop_map(|offset_minutes| TimeForm::Rfc3339 { offset_minutes }),
        Just(TimeForm::Absent),
    ]
}

/// `(y, m, d)` of a day number since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// RFC 3339 text of `time_ns` in a zone `offset_minutes` east of UTC, 9 fractional digits.
fn format_rfc3339(time_ns: i64, offset_minutes: i64) -> String {
    let local_ns = i128::from(time_ns) + i128::from(offset_minutes) * 60 * i128::from(S);
    let secs = local_ns.div_euclid(i128::from(S)) as i64;
    let nanos = local_ns.rem_euclid(i128::from(S)) as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let second_of_day = secs.rem_euclid(86_400);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let offset = offset_minutes.abs();
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}{sign}{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        offset / 60,
        offset % 60
    )
}

/// The JSON text for a timestamp and the time it must parse to.
fn encode_time(time_ns: i64, form: TimeForm) -> (Option<String>, i64) {
    let truncated = |unit: i64| time_ns.div_euclid(unit);
    match form {
        TimeForm::Seconds => (Some(truncated(S).to_string()), truncated(S) * S),
        TimeForm::Millis => {
            (Some(truncated(1_000_000).to_string()), truncated(1_000_000) * 1_000_000)
        }
        TimeForm::Micros => (Some(truncated(1_000).to_string()), truncated(1_000) * 1_000),
        TimeForm::Nanos => (Some(time_ns.to_string()), time_ns),
        TimeForm::NanosString => (Some(format!("\"{time_ns}\"")), time_ns),
        TimeForm::Rfc3339 { offset_minutes } => {
            (Some(format!("\"{}\"", format_rfc3339(time_ns, offset_minutes))), time_ns)
        }
        TimeForm::Absent => (None, NOW),
    }
}

#[derive(Debug, Clone)]
struct JsonPoint {
    device_id: String,
    metric: String,
    time_ns: i64,
    form: TimeForm,
    value: f64,
    value_as_string: bool,
}

fn json_point() -> impl Strategy<Value = JsonPoint> {
    (name(), name(), EARLIEST..=LATEST, time_form(), finite_value(), any::<bool>()).prop_map(
        |(device_id, metric, time_ns, form, value, value_as_string)| JsonPoint {
            device_id,
            metric,
            time_ns,
            form,
            value,
            value_as_string,
        },
    )
}

/// Encodes one seed-format object; returns it and the point it must parse to.
fn encode_json_point(point: &JsonPoint) -> (String, Point) {
    let (time_text, expected_time) = encode_time(point.time_ns, point.form);
    let value_text = if point.value_as_string {
        format!("\"{:?}\"", point.value)
    } else {
        format!("{:?}", point.value)
    };
    let mut object = format!(
        "{{\"device_id\":{},\"metric_name\":{},\"value\":{value_text}",
        serde_json::to_string(&point.device_id).unwrap(),
        serde_json::to_string(&point.metric).unwrap(),
    );
    if let Some(time_text) = time_text {
        object.push_str(&format!(",\"timestamp\":{time_text}"));
    }
    object.push('}');
    let series = SeriesKey::new(&point.device_id, &point.metric).unwrap();
    (object, Point::new(series, expected_time, point.value))
}

fn assert_same_points(actual: &[Point], expected: &[Point]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!((&a.series, a.time), (&e.series, e.time));
        assert_eq!(a.value.to_bits(), e.value.to_bits(), "{} vs {}", a.value, e.value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn json_points_round_trip(points in prop::collection::vec(json_point(), 1..20)) {
        let parser = parser();
        let mut interner = Interner::new();
        let (objects, expected): (Vec<String>, Vec<Point>) =
            points.iter().map(encode_json_point).unzip();

        // As one array through the HTTP entry point (each object names its series).
        let mut out = ParsedMessage::new();
        let array = format!("[{}]", objects.join(","));
        parser.parse_json_points(array.as_bytes(), NOW, &mut interner, &mut out);
        prop_assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_same_points(&out.points, &expected);

        // One by one on the seed topic of each metric, when the metric is a valid level.
        for (object, expected_point) in objects.iter().zip(&expected) {
            let metric = expected_point.series.metric();
            if metric.contains(['/', '+', '#']) {
                continue;
            }
            let topic = format!("iot/sensors/{metric}");
            let message = parser.parse(&topic, object.as_bytes(), NOW, &mut interner);
            prop_assert!(message.rejected.is_empty(), "{:?}", message.rejected);
            assert_same_points(&message.points, std::slice::from_ref(expected_point));
        }
    }

    #[test]
    fn bare_values_round_trip(value in finite_value(), device in "[a-z0-9_]{1,10}") {
        let parser = parser();
        let topic = format!("iot/sensors/temperature/{device}");
        let message = parser.parse(&topic, format!("{value:?}").as_bytes(), NOW, &mut Interner::new());
        let series = SeriesKey::new(&device, "temperature").unwrap();
        assert_same_points(&message.points, &[Point::new(series, NOW, value)]);
    }

    #[test]
    fn timestamp_units_round_trip(time_ns in 100_000_000 * S..=i64::MAX) {
        // From 1973-03-03 on, every unit is recognised by magnitude.
        prop_assert_eq!(timestamp_from_int(time_ns), Ok(time_ns));
        let micros = time_ns / 1_000;
        prop_assert_eq!(timestamp_from_int(micros), Ok(micros * 1_000));
        let millis = time_ns / 1_000_000;
        prop_assert_eq!(timestamp_from_int(millis), Ok(millis * 1_000_000));
        let secs = time_ns / S;
        prop_assert_eq!(timestamp_from_int(secs), Ok(secs * S));
        prop_assert_eq!(timestamp_from_str(&format!("{secs}.{:09}", time_ns % S)), Ok(time_ns));
    }

    #[test]
    fn rfc3339_round_trips(time_ns in any::<i64>(), offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i64)) {
        let text = format_rfc3339(time_ns, offset_minutes);
        prop_assert_eq!(parse_rfc3339(&text), Ok(time_ns), "{}", text);
    }
}

// ---------------------------------------------------------------- line protocol round trip

fn escape(text: &str, special: &[char]) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if special.contains(&c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Line-protocol names with every escapable character (no backslashes, no control chars).
fn lp_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ ,=.\"é🍭-]{1,16}"
}

#[derive(Debug, Clone)]
enum LpValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
}

impl LpValue {
    fn encode(&self) -> String {
        match self {
            LpValue::Float(v) => format!("{v:?}"),
            LpValue::Int(v) => format!("{v}i"),
            LpValue::UInt(v) => format!("{v}u"),
            LpValue::Bool(true) => "true".to_string(),
            LpValue::Bool(false) => "F".to_string(),
        }
    }

    fn as_f64(&self) -> f64 {
        match *self {
            LpValue::Float(v) => v,
            LpValue::Int(v) => v as f64,
            LpValue::UInt(v) => v as f64,
            LpValue::Bool(v) => f64::from(u8::from(v)),
        }
    }
}

fn lp_value() -> impl Strategy<Value = LpValue> {
    prop_oneof![
        finite_value().prop_map(LpValue::Float),
        any::<i64>().prop_map(LpValue::Int),
        any::<u64>().prop_map(LpValue::UInt),
        any::<bool>().prop_map(LpValue::Bool),
    ]
}

#[derive(Debug, Clone)]
struct LpLine {
    measurement: String,
    device_id: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, LpValue)>,
    time_ns: Option<i64>,
}

fn lp_line() -> impl Strategy<Value = LpLine> {
    let tag = (lp_name(), lp_name())
        .prop_filter("not a device tag", |(k, _)| k != "device_id" && k != "host");
    let field = (prop_oneof![Just("value".to_string()), lp_name()], lp_value());
    (
        lp_name().prop_filter("not a comment", |m| !m.starts_with('#')),
        lp_name(),
        prop::collection::vec(tag, 0..3),
        prop::collection::vec(field, 1..4),
        prop::option::of(EARLIEST..=LATEST),
    )
        .prop_map(|(measurement, device_id, tags, fields, time_ns)| LpLine {
            measurement,
            device_id,
            tags,
            fields,
            time_ns,
        })
}

fn encode_lp_line(line: &LpLine) -> String {
    let mut text = escape(&line.measurement, &[',', ' ']);
    let key_special = [',', '=', ' '];
    text.push_str(&format!(",device_id={}", escape(&line.device_id, &key_special)));
    for (key, value) in &line.tags {
        text.push_str(&format!(",{}={}", escape(key, &key_special), escape(value, &key_special)));
    }
    let fields: Vec<String> = line
        .fields
        .iter()
        .map(|(key, value)| format!("{}={}", escape(key, &key_special), value.encode()))
        .collect();
    text.push(' ');
    text.push_str(&fields.join(","));
    if let Some(time_ns) = line.time_ns {
        text.push_str(&format!(" {time_ns}"));
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn line_protocol_round_trips(lines in prop::collection::vec(lp_line(), 1..10), crlf in any::<bool>()) {
        let parser = parser();
        let separator = if crlf { "\r\n" } else { "\n" };
        let payload: Vec<String> = lines.iter().map(encode_lp_line).collect();
        let payload = payload.join(separator);
        let message = parser.parse("telegraf/host", payload.as_bytes(), NOW, &mut Interner::new());
        prop_assert!(message.rejected.is_empty(), "{:?}\n{}", message.rejected, payload);

        let mut expected = Vec::new();
        for line in &lines {
            for (key, value) in &line.fields {
                let metric = if key == "value" {
                    line.measurement.clone()
                } else {
                    format!("{}_{key}", line.measurement)
                };
                let series = SeriesKey::new(&line.device_id, &metric).unwrap();
                expected.push(Point::new(series, line.time_ns.unwrap_or(NOW), value.as_f64()));
            }
        }
        assert_same_points(&message.points, &expected);

        // Every point of a line with tags has its tags, sorted, first of duplicate keys kept.
        for line in &lines {
            let mut tags = line.tags.clone();
            tags.sort_by(|a, b| a.0.cmp(&b.0));
            tags.dedup_by(|later, earlier| later.0 == earlier.0);
            for point in message.points.iter().filter(|p| p.series.device_id() == line.device_id) {
                if tags.is_empty() {
                    continue;
                }
                let found = message.series_tags.iter().any(|e| e.series == point.series && *e.tags == tags[..]);
                let other_line_same_device = lines.iter().filter(|l| l.device_id == line.device_id).count() > 1;
                prop_assert!(found || other_line_same_device, "tags of {:?} missing", point.series);
            }
        }
        check_invariants(&parser, &message);
    }
}
