//! Unit tests of the formats, one group per format plus routing, limits and rejections.

use std::sync::Arc;

use minitrue_common::{Point, SeriesKey, SeriesKeyError};

use super::*;

const S: i64 = 1_000_000_000;
/// 2021-01-01T00:01:00Z: one minute after the seed README's example timestamp.
const NOW: i64 = 1_609_459_260 * S;
const SEED_TS: i64 = 1_609_459_200 * S;

fn config() -> FormatConfig {
    FormatConfig {
        topic_templates: vec!["site/{site}/{device_id}/{metric}".to_string()],
        ..FormatConfig::default()
    }
}

fn parser() -> Parser {
    Parser::new(config()).unwrap()
}

fn parse(topic: &str, payload: &str) -> ParsedMessage {
    parser().parse(topic, payload.as_bytes(), NOW, &mut Interner::new())
}

fn key(device_id: &str, metric: &str) -> SeriesKey {
    SeriesKey::new(device_id, metric).unwrap()
}

fn point(device_id: &str, metric: &str, time: i64, value: f64) -> Point {
    Point::new(key(device_id, metric), time, value)
}

fn reasons(message: &ParsedMessage) -> Vec<(RejectReason, Item)> {
    message.rejected.iter().map(|r| (r.reason.clone(), r.item)).collect()
}

/// The single rejection of a message that produced no points.
fn rejected_only(message: &ParsedMessage) -> RejectReason {
    assert!(message.points.is_empty(), "unexpected points: {:?}", message.points);
    assert_eq!(message.rejected.len(), 1, "expected one rejection: {:?}", message.rejected);
    message.rejected[0].reason.clone()
}

fn seed(body: &str) -> ParsedMessage {
    parse("iot/sensors/temperature", body)
}

// ---------------------------------------------------------------- seed JSON object

#[test]
fn seed_object_from_the_readme() {
    let message = seed(
        r#"{"device_id":"sensor_1","metric_name":"temperature","timestamp":1609459200,"value":23.5}"#,
    );
    assert_eq!(message.points, [point("sensor_1", "temperature", SEED_TS, 23.5)]);
    assert!(message.rejected.is_empty());
    assert!(message.series_tags.is_empty(), "seed topics carry no tags");
}

#[test]
fn metric_name_falls_back_to_the_topic() {
    let message = seed(r#"{"device_id":"sensor_1","value":1}"#);
    assert_eq!(message.points, [point("sensor_1", "temperature", NOW, 1.0)]);
    let message = seed(r#"{"device_id":"sensor_1","metric_name":null,"value":1}"#);
    assert_eq!(message.points, [point("sensor_1", "temperature", NOW, 1.0)]);
}

#[test]
fn metric_name_must_agree_with_the_topic() {
    let message = seed(r#"{"device_id":"sensor_1","metric_name":"humidity","value":1}"#);
    assert_eq!(
        rejected_only(&message),
        RejectReason::MetricMismatch {
            topic_metric: "temperature".into(),
            payload_metric: "humidity".into()
        }
    );
    assert_eq!(message.rejected[0].item, Item::Message);
    assert!(message.rejected[0].detail.contains("humidity"));
}

#[test]
fn device_id_is_required_and_must_be_a_string() {
    assert_eq!(rejected_only(&seed(r#"{"value":1}"#)), RejectReason::missing("device_id"));
    assert_eq!(
        rejected_only(&seed(r#"{"device_id":null,"value":1}"#)),
        RejectReason::missing("device_id")
    );
    assert_eq!(
        rejected_only(&seed(r#"{"device_id":7,"value":1}"#)),
        RejectReason::wrong_type("device_id")
    );
    assert_eq!(
        rejected_only(&seed(r#"{"device_id":"d","metric_name":["t"],"value":1}"#)),
        RejectReason::wrong_type("metric_name")
    );
}

#[test]
fn values_accept_numbers_numeric_strings_and_booleans() {
    let cases = [
        (r#"23.5"#, 23.5),
        (r#"-7"#, -7.0),
        (r#"18446744073709551615"#, 18_446_744_073_709_551_615.0),
        (r#"1e-7"#, 1e-7),
        (r#""23.5""#, 23.5),
        (r#"" 42 ""#, 42.0),
        (r#""-1e3""#, -1000.0),
        (r#"true"#, 1.0),
        (r#"false"#, 0.0),
    ];
    for (value, expected) in cases {
        let message = seed(&format!(r#"{{"device_id":"d","value":{value}}}"#));
        assert_eq!(message.points, [point("d", "temperature", NOW, expected)], "{value}");
    }
}

#[test]
fn json_values_are_bit_exact() {
    // -2.6199553353573986e-132 parsed one ulp off without serde_json's float_roundtrip.
    for value in [-2.6199553353573986e-132f64, 0.1, 5e-324, 1.7976931348623157e308, -0.0, 23.5] {
        let message = seed(&format!(r#"{{"device_id":"d","value":{value:?}}}"#));
        assert_eq!(message.points[0].value.to_bits(), value.to_bits(), "{value:?}");
    }
}

#[test]
fn bad_values_are_rejected_with_their_reason() {
    let cases = [
        (r#"null"#, RejectReason::wrong_type("value")),
        (r#"{"x":1}"#, RejectReason::wrong_type("value")),
        (r#"[1]"#, RejectReason::wrong_type("value")),
        (r#""NaN""#, RejectReason::NonFiniteValue),
        (r#""inf""#, RejectReason::NonFiniteValue),
        (r#""-Infinity""#, RejectReason::NonFiniteValue),
        (r#""abc""#, RejectReason::invalid_number("value")),
        (r#""""#, RejectReason::invalid_number("value")),
        (r#""0x10""#, RejectReason::invalid_number("value")),
    ];
    for (value, expected) in cases {
        let message = seed(&format!(r#"{{"device_id":"d","value":{value}}}"#));
        assert_eq!(rejected_only(&message), expected, "{value}");
    }
    assert_eq!(rejected_only(&seed(r#"{"device_id":"d"}"#)), RejectReason::missing("value"));
}

#[test]
fn json_timestamps_in_every_accepted_form() {
    let cases = [
        ("1609459200", SEED_TS),
        ("1609459200123", SEED_TS + 123_000_000),
        ("1609459200123456", SEED_TS + 123_456_000),
        ("1609459200123456789", SEED_TS + 123_456_789),
        ("1609459200.25", SEED_TS + 250_000_000),
        ("1609459200123.5", SEED_TS + 123_500_000),
        (r#""1609459200""#, SEED_TS),
        (r#""1609459200.5""#, SEED_TS + 500_000_000),
        (r#""2021-01-01T00:00:00Z""#, SEED_TS),
        (r#""2021-01-01 01:00:00.5+01:00""#, SEED_TS + 500_000_000),
        ("null", NOW),
    ];
    for (timestamp, expected) in cases {
        let message = seed(&format!(r#"{{"device_id":"d","timestamp":{timestamp},"value":1}}"#));
        assert_eq!(message.points, [point("d", "temperature", expected, 1.0)], "{timestamp}");
    }
    let message = seed(r#"{"device_id":"d","value":1}"#);
    assert_eq!(message.points[0].time, NOW, "absent timestamp is the receive time");
}

#[test]
fn bad_json_timestamps_are_rejected() {
    let cases = [
        ("true", RejectReason::wrong_type("timestamp")),
        ("{}", RejectReason::wrong_type("timestamp")),
        (r#""2021-13-01T00:00:00Z""#, RejectReason::InvalidTimestamp),
        (r#""2021-02-30T00:00:00Z""#, RejectReason::InvalidTimestamp),
        (r#""yesterday""#, RejectReason::InvalidTimestamp),
        (r#""""#, RejectReason::InvalidTimestamp),
        // 1e10 s is year 2286: seconds by magnitude, beyond i64 nanoseconds.
        ("10000000000", RejectReason::TimestampOutOfRange { time_ns: i64::MAX }),
        // 1990 is more than 10 years before the receive time.
        ("631152000", RejectReason::TimestampOutOfRange { time_ns: 631_152_000 * S }),
        // Two days ahead.
        ("1609632060", RejectReason::TimestampOutOfRange { time_ns: 1_609_632_060 * S }),
    ];
    for (timestamp, expected) in cases {
        let message = seed(&format!(r#"{{"device_id":"d","timestamp":{timestamp},"value":1}}"#));
        assert_eq!(rejected_only(&message), expected, "{timestamp}");
    }
    // 23 hours ahead is inside the default window.
    let ahead = NOW / S + 23 * 3600;
    let message = seed(&format!(r#"{{"device_id":"d","timestamp":{ahead},"value":1}}"#));
    assert_eq!(message.points.len(), 1);
}

#[test]
fn malformed_json_rejects_the_whole_message() {
    for body in [
        r#"{"device_id":"d","value":1"#,
        r#"{"device_id":"d","value":1} trailing"#,
        r#"{"device_id":"d","value":NaN}"#,
        r#"{"device_id":"d","value":1e999}"#,
        "{",
        "{\"device_id\":\"\\x\"}",
    ] {
        let message = seed(body);
        assert_eq!(rejected_only(&message), RejectReason::MalformedJson, "{body}");
        assert_eq!(message.rejected[0].item, Item::Message);
        assert!(message.rejected[0].detail.starts_with("malformed JSON: "), "{body}");
    }
}

#[test]
fn escaped_strings_unknown_fields_and_duplicates() {
    let message = seed(
        r#"{"unit":"C","device_id":"sen\u0073or_\"1\"","nested":{"a":[1,2]},"value":1,"value":2}"#,
    );
    assert_eq!(message.points, [point("sensor_\"1\"", "temperature", NOW, 2.0)]);
}

#[test]
fn invalid_series_keys_are_rejected() {
    assert_eq!(
        rejected_only(&seed(r#"{"device_id":"","value":1}"#)),
        RejectReason::InvalidSeriesKey(SeriesKeyError::Empty { field: "device_id" })
    );
    assert_eq!(
        rejected_only(&seed(r#"{"device_id":"a\u0001b","value":1}"#)),
        RejectReason::InvalidSeriesKey(SeriesKeyError::ControlCharacter { field: "device_id" })
    );
    let long_metric = "m".repeat(300);
    let message = parse(&format!("iot/sensors/{long_metric}"), r#"{"device_id":"d","value":1}"#);
    assert_eq!(
        rejected_only(&message),
        RejectReason::InvalidSeriesKey(SeriesKeyError::TooLong { field: "metric", len: 300 })
    );
}

// ---------------------------------------------------------------- JSON arrays

#[test]
fn arrays_keep_good_elements_and_reject_bad_ones() {
    let message = seed(
        r#"[
            {"device_id":"a","timestamp":1609459200,"value":1},
            {"device_id":"b","value":"NaN"},
            42,
            {"device_id":"c","metric_name":"humidity","value":3},
            {"value":4},
            {"device_id":"d","timestamp":"2021-01-01T00:00:00Z","value":5},
            null,
            []
        ]"#,
    );
    assert_eq!(
        message.points,
        [point("a", "temperature", SEED_TS, 1.0), point("d", "temperature", SEED_TS, 5.0)]
    );
    assert_eq!(
        reasons(&message),
        [
            (RejectReason::NonFiniteValue, Item::Element(1)),
            (RejectReason::wrong_type("point"), Item::Element(2)),
            (
                RejectReason::MetricMismatch {
                    topic_metric: "temperature".into(),
                    payload_metric: "humidity".into()
                },
                Item::Element(3)
            ),
            (RejectReason::missing("device_id"), Item::Element(4)),
            (RejectReason::wrong_type("point"), Item::Element(6)),
            (RejectReason::wrong_type("point"), Item::Element(7)),
        ]
    );
}

#[test]
fn empty_array_is_an_empty_message() {
    assert!(seed(" [ ] ").is_empty());
}

#[test]
fn malformed_array_yields_no_points() {
    let message = seed(r#"[{"device_id":"a","value":1},{"device_id":"b","value":"NaN"},{"#);
    assert_eq!(rejected_only(&message), RejectReason::MalformedJson);
}

#[test]
fn too_many_points_keeps_the_first_ones() {
    let parser = Parser::new(FormatConfig {
        limits: Limits { max_points_per_message: 2, ..Limits::default() },
        ..config()
    })
    .unwrap();
    let body = r#"[{"device_id":"a","value":1},{"device_id":"b","value":"x"},
                   {"device_id":"c","value":3},{"device_id":"d","value":4},
                   {"device_id":"e","value":5}]"#;
    let message = parser.parse("iot/sensors/t", body.as_bytes(), NOW, &mut Interner::new());
    assert_eq!(message.points, [point("a", "t", NOW, 1.0), point("c", "t", NOW, 3.0)]);
    assert_eq!(
        reasons(&message),
        [
            (RejectReason::invalid_number("value"), Item::Element(1)),
            (RejectReason::TooManyPoints { max: 2 }, Item::Element(3)),
        ]
    );
}

// ---------------------------------------------------------------- bare values

#[test]
fn bare_numbers_on_the_device_topic() {
    for (body, expected) in [
        ("23.5", 23.5),
        ("-1e3", -1000.0),
        (" 42 ", 42.0),
        ("\n7\r\n", 7.0),
        ("+3", 3.0),
        (".5", 0.5),
        ("\"23.5\"", 23.5),
        ("true", 1.0),
        ("false", 0.0),
    ] {
        let message = parse("iot/sensors/temperature/sensor_1", body);
        assert_eq!(message.points, [point("sensor_1", "temperature", NOW, expected)], "{body:?}");
    }
}

#[test]
fn bad_bare_values_are_rejected() {
    let topic = "iot/sensors/temperature/sensor_1";
    let cases: [(&[u8], RejectReason); 9] = [
        (b"NaN", RejectReason::NonFiniteValue),
        (b"inf", RejectReason::NonFiniteValue),
        (b"-Infinity", RejectReason::NonFiniteValue),
        (b"abc", RejectReason::invalid_number("value")),
        (b"", RejectReason::invalid_number("value")),
        (b"1 2", RejectReason::invalid_number("value")),
        (b"\xff\xfe", RejectReason::invalid_number("value")),
        (b"null", RejectReason::wrong_type("value")),
        (b"\"unterminated", RejectReason::MalformedJson),
    ];
    for (body, expected) in cases {
        let message = parser().parse(topic, body, NOW, &mut Interner::new());
        assert_eq!(rejected_only(&message), expected, "{body:?}");
    }
}

#[test]
fn bare_value_needs_a_device_in_the_topic() {
    assert_eq!(rejected_only(&seed("23.5")), RejectReason::missing("device_id"));
}

#[test]
fn json_object_on_the_device_topic() {
    let topic = "iot/sensors/temperature/sensor_1";
    let message = parse(topic, r#"{"value":21,"timestamp":"2021-01-01T00:00:00Z"}"#);
    assert_eq!(message.points, [point("sensor_1", "temperature", SEED_TS, 21.0)]);
    let message = parse(topic, r#"{"device_id":"sensor_2","value":21}"#);
    assert_eq!(
        rejected_only(&message),
        RejectReason::DeviceMismatch {
            topic_device: "sensor_1".into(),
            payload_device: "sensor_2".into()
        }
    );
    let message = parse(topic, r#"[{"value":1},{"value":2,"timestamp":1609459200}]"#);
    assert_eq!(
        message.points,
        [
            point("sensor_1", "temperature", NOW, 1.0),
            point("sensor_1", "temperature", SEED_TS, 2.0)
        ]
    );
}

// ---------------------------------------------------------------- topic templates

#[test]
fn template_topics_give_device_metric_and_tags() {
    let message = parse("site/berlin/pump7/pressure", "3.25");
    assert_eq!(message.points, [point("pump7", "pressure", NOW, 3.25)]);
    let expected_tags: Tags = Arc::from(vec![("site".to_string(), "berlin".to_string())]);
    assert_eq!(
        message.series_tags,
        [SeriesTags { series: key("pump7", "pressure"), tags: expected_tags.clone() }]
    );

    let message = parse(
        "site/berlin/pump7/pressure",
        r#"[{"value":1,"timestamp":1609459200},{"value":2},{"value":"x"}]"#,
    );
    assert_eq!(message.points.len(), 2);
    assert_eq!(message.series_tags.len(), 1, "one entry per series and tag set");
    assert_eq!(message.series_tags[0].tags, expected_tags);
    assert_eq!(reasons(&message), [(RejectReason::invalid_number("value"), Item::Element(2))]);
}

#[test]
fn template_tags_are_sorted_by_name() {
    let parser = Parser::new(FormatConfig {
        topic_templates: vec!["{zone}/{device_id}/{area}/{metric}".to_string()],
        ..FormatConfig::default()
    })
    .unwrap();
    let message = parser.parse("z1/d/a1/m", b"1", NOW, &mut Interner::new());
    let tags: Vec<(String, String)> = message.series_tags[0].tags.to_vec();
    assert_eq!(tags, [("area".into(), "a1".into()), ("zone".into(), "z1".into())]);
}

#[test]
fn routing_order_and_unknown_topics() {
    let parser = Parser::new(FormatConfig {
        topic_templates: vec![
            "data/{device_id}/{metric}".to_string(),
            "iot/sensors/{metric}/{device_id}/{room}".to_string(),
        ],
        line_protocol: LineProtocolConfig {
            topic_filters: vec!["data/lp/#".to_string()],
            ..LineProtocolConfig::default()
        },
        ..FormatConfig::default()
    })
    .unwrap();
    let mut interner = Interner::new();
    // The line-protocol filter wins over the template that also matches.
    let message = parser.parse("data/lp/x", b"m,host=h value=1", NOW, &mut interner);
    assert_eq!(message.points, [point("h", "m", NOW, 1.0)]);
    let message = parser.parse("data/dev/temp", b"1", NOW, &mut interner);
    assert_eq!(message.points, [point("dev", "temp", NOW, 1.0)]);
    // User templates come before the seed topics.
    let message = parser.parse("iot/sensors/t/d/kitchen", b"1", NOW, &mut interner);
    assert_eq!(message.points, [point("d", "t", NOW, 1.0)]);
    assert_eq!(message.series_tags[0].tags[0], ("room".to_string(), "kitchen".to_string()));

    for topic in [
        "foo/bar",
        "iot/sensors",
        "iot/other/t",
        "iot/sensors/t/d/x/y",
        "",
        "iot/sensors/+",
        "iot/#",
    ] {
        let message = parser.parse(topic, b"1", NOW, &mut interner);
        assert_eq!(rejected_only(&message), RejectReason::UnknownTopic, "{topic:?}");
    }
}

#[test]
fn seed_topics_can_be_disabled_or_moved() {
    let parser =
        Parser::new(FormatConfig { seed_topic_prefix: None, ..FormatConfig::default() }).unwrap();
    let message = parser.parse("iot/sensors/t/d", b"1", NOW, &mut Interner::new());
    assert_eq!(rejected_only(&message), RejectReason::UnknownTopic);
    let parser = Parser::new(FormatConfig {
        seed_topic_prefix: Some("home/a".to_string()),
        ..FormatConfig::default()
    })
    .unwrap();
    let message = parser.parse("home/a/t/d", b"1", NOW, &mut Interner::new());
    assert_eq!(message.points, [point("d", "t", NOW, 1.0)]);
    assert_eq!(parser.subscriptions(), ["telegraf/#", "home/a/+", "home/a/+/+"]);
}

#[test]
fn subscriptions_cover_every_format() {
    assert_eq!(
        parser().subscriptions(),
        ["telegraf/#", "site/+/+/+", "iot/sensors/+", "iot/sensors/+/+"]
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let bad_template = FormatConfig { topic_templates: vec!["a/{metric}".into()], ..config() };
    assert!(matches!(Parser::new(bad_template), Err(IngestError::BadTopicTemplate { .. })));
    let mut bad_filter = config();
    bad_filter.line_protocol.topic_filters = vec!["a/#/b".into()];
    assert!(matches!(Parser::new(bad_filter), Err(IngestError::BadTopicFilter { .. })));
    for prefix in ["", "iot/", "iot/+", "a/{x}"] {
        let bad_prefix = FormatConfig { seed_topic_prefix: Some(prefix.into()), ..config() };
        let error = Parser::new(bad_prefix).unwrap_err();
        assert!(matches!(error, IngestError::InvalidConfig { field: "seed_topic_prefix", .. }));
        assert_eq!(error.kind(), minitrue_common::ErrorKind::InvalidInput);
    }
    let mut no_device_tags = config();
    no_device_tags.line_protocol.device_tags.clear();
    assert!(matches!(Parser::new(no_device_tags), Err(IngestError::InvalidConfig { .. })));
    let zero_points = FormatConfig {
        limits: Limits { max_points_per_message: 0, ..Limits::default() },
        ..config()
    };
    assert!(matches!(Parser::new(zero_points), Err(IngestError::InvalidConfig { .. })));
}

// ---------------------------------------------------------------- limits

#[test]
fn oversize_payloads_are_rejected_before_parsing() {
    let parser = Parser::new(FormatConfig {
        limits: Limits { max_payload_bytes: 10, ..Limits::default() },
        ..config()
    })
    .unwrap();
    let mut interner = Interner::new();
    let message = parser.parse("nowhere/at/all", &[b'x'; 11], NOW, &mut interner);
    assert_eq!(rejected_only(&message), RejectReason::PayloadTooLarge { len: 11, max: 10 });
    let message = parser.parse("iot/sensors/t/d", b"1234567.89", NOW, &mut interner);
    assert_eq!(message.points.len(), 1, "exactly at the limit is accepted");
}

#[test]
fn parse_into_appends_and_limits_each_call() {
    let parser = Parser::new(FormatConfig {
        limits: Limits { max_points_per_message: 1, ..Limits::default() },
        ..config()
    })
    .unwrap();
    let mut interner = Interner::new();
    let mut out = ParsedMessage::new();
    parser.parse_into("iot/sensors/t/a", b"1", NOW, &mut interner, &mut out);
    parser.parse_into("iot/sensors/t/b", b"2", NOW, &mut interner, &mut out);
    parser.parse_into(
        "iot/sensors/t",
        b"[{\"device_id\":\"c\",\"value\":3},{",
        NOW,
        &mut interner,
        &mut out,
    );
    assert_eq!(out.points, [point("a", "t", NOW, 1.0), point("b", "t", NOW, 2.0)]);
    assert_eq!(reasons(&out), [(RejectReason::MalformedJson, Item::Message)]);
    out.clear();
    assert!(out.is_empty());
}

// ---------------------------------------------------------------- line protocol

fn lp(payload: &str) -> ParsedMessage {
    parse("telegraf/host1/weather", payload)
}

fn lp_with(config: LineProtocolConfig, payload: &str) -> ParsedMessage {
    let parser =
        Parser::new(FormatConfig { line_protocol: config, ..FormatConfig::default() }).unwrap();
    parser.parse("telegraf/x", payload.as_bytes(), NOW, &mut Interner::new())
}

#[test]
fn line_protocol_maps_fields_to_metrics() {
    let message =
        lp("weather,device_id=d1,site=x temperature=21.5,humidity=40i,value=7 1609459200000000000");
    assert_eq!(
        message.points,
        [
            point("d1", "weather_temperature", SEED_TS, 21.5),
            point("d1", "weather_humidity", SEED_TS, 40.0),
            point("d1", "weather", SEED_TS, 7.0),
        ]
    );
    assert!(message.rejected.is_empty());
    let tags: Tags = Arc::from(vec![("site".to_string(), "x".to_string())]);
    let series: Vec<SeriesKey> = message.series_tags.iter().map(|e| e.series.clone()).collect();
    assert_eq!(
        series,
        [key("d1", "weather_temperature"), key("d1", "weather_humidity"), key("d1", "weather")]
    );
    assert!(message.series_tags.iter().all(|e| e.tags == tags));
}

#[test]
fn line_protocol_device_tag_preference() {
    // device_id wins over host; host stays a tag.
    let message = lp("cpu,host=h1,device_id=d1 usage=1");
    assert_eq!(message.points, [point("d1", "cpu_usage", NOW, 1.0)]);
    assert_eq!(message.series_tags[0].tags[0], ("host".to_string(), "h1".to_string()));
    // host is the fallback, consumed.
    let message = lp("cpu,host=h1 usage=1");
    assert_eq!(message.points, [point("h1", "cpu_usage", NOW, 1.0)]);
    assert!(message.series_tags.is_empty());
    // Neither: rejected.
    let message = lp("cpu,region=eu usage=1");
    assert_eq!(rejected_only(&message), RejectReason::missing("device_id"));
    assert_eq!(message.rejected[0].item, Item::Line(1));
    // Configured tag and separator.
    let config = LineProtocolConfig {
        device_tags: vec!["serial".into()],
        metric_separator: ".".into(),
        ..LineProtocolConfig::default()
    };
    let message = lp_with(config, "cpu,host=h1,serial=s9 usage=1");
    assert_eq!(message.points, [point("s9", "cpu.usage", NOW, 1.0)]);
}

#[test]
fn line_protocol_value_types() {
    let message = lp(concat!(
        "m,host=h a=1,b=-1.5,c=.5,d=1.,e=1e3,f=1.5E-3,g=-2i,h=3u,",
        "i=t,j=T,k=true,l=True,m=TRUE,n=f,o=F,p=false,q=False,r=FALSE"
    ));
    let values: Vec<f64> = message.points.iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        [
            1.0, -1.5, 0.5, 1.0, 1000.0, 0.0015, -2.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0,
            0.0, 0.0
        ]
    );
    assert!(message.rejected.is_empty());
}

#[test]
fn line_protocol_field_level_rejections_keep_the_other_fields() {
    let message =
        lp(r#"m,host=h a=1,s="text",big=1e999,i=9223372036854775808i,u=18446744073709551616u,b=2"#);
    assert_eq!(message.points, [point("h", "m_a", NOW, 1.0), point("h", "m_b", NOW, 2.0)]);
    assert_eq!(
        reasons(&message),
        [
            (RejectReason::wrong_type("s"), Item::Line(1)),
            (RejectReason::NonFiniteValue, Item::Line(1)),
            (RejectReason::invalid_number("i"), Item::Line(1)),
            (RejectReason::invalid_number("u"), Item::Line(1)),
        ]
    );
    let message = lp("m,host=h i=-9223372036854775808i,u=18446744073709551615u");
    assert_eq!(message.points.len(), 2, "extremes of i64 and u64 are accepted");

    let skip = LineProtocolConfig { skip_string_fields: true, ..LineProtocolConfig::default() };
    let message = lp_with(skip, r#"m,host=h s="text, with = \"quotes\" and spaces",v=1"#);
    assert_eq!(message.points, [point("h", "m_v", NOW, 1.0)]);
    assert!(message.rejected.is_empty());
}

#[test]
fn line_protocol_escaping_follows_the_reference() {
    let cases = [
        // Measurement with escaped spaces and commas; '=' needs no escape there.
        (r"my\ Measurement,host=h v=1", "h", "my Measurement_v"),
        (r"cpu\,total,host=h v=1", "h", "cpu,total_v"),
        (r"a=b,host=h v=1", "h", "a=b_v"),
        // Tag values with escaped comma, equals sign and space.
        (r"m,host=us\,midwest v=1", "us,midwest", "m_v"),
        (r"m,host=a\=b v=1", "a=b", "m_v"),
        (r"m,host=server\ 01 v=1", "server 01", "m_v"),
        // Field keys with escapes.
        (r"m,host=h field\ key\,x\=y=1", "h", "m_field key,x=y"),
        // A backslash before anything else is literal; '\\,' reads '\,'.
        (r"m,host=a\b v=1", r"a\b", "m_v"),
        (r"m,host=a\\,b v=1", r"a\,b", "m_v"),
        // Unicode.
        ("myMeasurement,host=🍭 fieldKey=1", "🍭", "myMeasurement_fieldKey"),
        // Double quotes are plain characters outside string fields.
        (
            r#""measurement\ with\ quotes",host=tag\,value\,with"commas" v=1"#,
            r#"tag,value,with"commas""#,
            r#""measurement with quotes"_v"#,
        ),
    ];
    for (line, device_id, metric) in cases {
        let message = lp(line);
        assert_eq!(message.points, [point(device_id, metric, NOW, 1.0)], "{line}");
    }
    // `\\ ` is a literal backslash followed by an escaped space: `m\ v=1` is all measurement.
    assert_eq!(
        rejected_only(&lp(r"m\\ v=1")),
        RejectReason::MalformedLineProtocol { line: 1, detail: "missing field set" }
    );
    // An unescaped '=' ends a tag value.
    assert_eq!(
        rejected_only(&lp(r"m,host=a\\,b=c v=1")),
        RejectReason::MalformedLineProtocol {
            line: 1,
            detail: "unexpected character in measurement or tag set"
        }
    );
    let message = lp(r"m,host=h,tag\ key=tag\ value v=1");
    assert_eq!(message.series_tags[0].tags[0], ("tag key".to_string(), "tag value".to_string()));
}

#[test]
fn line_protocol_comments_blank_lines_crlf_and_multiline_strings() {
    let skip = LineProtocolConfig { skip_string_fields: true, ..LineProtocolConfig::default() };
    let payload = "# a comment\n\n   \nm,host=h v=1\r\n  m,host=h v=2 \nm,host=h s=\"two\nlines\",v=3\nm,host=h v=\nm,host=h v=5";
    let message = lp_with(skip, payload);
    let values: Vec<f64> = message.points.iter().map(|p| p.value).collect();
    assert_eq!(values, [1.0, 2.0, 3.0, 5.0]);
    assert_eq!(
        reasons(&message),
        [(
            RejectReason::MalformedLineProtocol {
                line: 8,
                detail: "field value has an unrecognized type"
            },
            Item::Line(8)
        )]
    );
}

#[test]
fn malformed_lines_are_rejected_one_by_one() {
    let cases = [
        ("m,host=h", "missing field set"),
        ("m,host=h ", "missing field set"),
        ("m,host=h  \r\n", "missing field set"),
        (",host=h v=1", "missing measurement"),
        ("m, v=1", "expected a tag key after ','"),
        ("m,=x v=1", "expected a tag key after ','"),
        ("m,host v=1", "expected '=' after tag key"),
        ("m,host= v=1", "empty tag value"),
        ("m,host=h=i v=1", "unexpected character in measurement or tag set"),
        ("m,host=h v", "expected '=' after field key"),
        ("m,host=h =1", "expected a field key"),
        ("m,host=h v=", "field value has an unrecognized type"),
        ("m,host=h v=abc", "field value has an unrecognized type"),
        ("m,host=h v=1,,w=2", "expected a field key"),
        ("m,host=h v=1,", "expected a field key"),
        ("m,host=h v=1x", "invalid float field value"),
        ("m,host=h v=1.2.3", "invalid float field value"),
        ("m,host=h v=--1", "invalid float field value"),
        ("m,host=h v=-", "invalid float field value"),
        ("m,host=h v=1e", "invalid float field value"),
        ("m,host=h v=.", "invalid float field value"),
        ("m,host=h v=1.5i", "invalid integer field value"),
        ("m,host=h v=-1u", "invalid unsigned integer field value"),
        ("m,host=h v=tru", "invalid boolean field value"),
        ("m,host=h v=yes", "field value has an unrecognized type"),
        ("m,host=h v=\"open", "unterminated string field value"),
        ("m,host=h v=1\"x\"", "invalid float field value"),
        ("m,host=h v=\"a\"x", "unexpected character after field value"),
        ("m,host=h v=1 abc", "invalid timestamp"),
        ("m,host=h v=1 1.5", "invalid timestamp"),
        ("m,host=h v=1 -", "invalid timestamp"),
        ("m,host=h v=1 123 x", "unexpected text after timestamp"),
        ("m,host=h v=1\rx", "unexpected text after timestamp"),
        ("m,host=h\tv=1", "unexpected character in measurement or tag set"),
        ("m,host=\u{1}h v=1", "empty tag value"),
        ("\rx", "missing measurement"),
    ];
    for (line, detail) in cases {
        let payload = format!("m,host=h ok=1\n{line}\nm,host=h ok=2");
        let message = lp(&payload);
        assert_eq!(message.points.len(), 2, "{line:?}: neighbours kept");
        assert_eq!(
            reasons(&message),
            [(RejectReason::MalformedLineProtocol { line: 2, detail }, Item::Line(2))],
            "{line:?}"
        );
    }
    let message = parser().parse("telegraf/x", b"m,host=\xff v=1", NOW, &mut Interner::new());
    assert_eq!(
        rejected_only(&message),
        RejectReason::MalformedLineProtocol { line: 1, detail: "name is not valid UTF-8" }
    );
}

#[test]
fn line_protocol_timestamps_and_precision() {
    let ms =
        LineProtocolConfig { precision: Precision::Milliseconds, ..LineProtocolConfig::default() };
    let message = lp_with(ms.clone(), "m,host=h v=1 1609459200123");
    assert_eq!(message.points[0].time, SEED_TS + 123_000_000);
    let message = lp_with(ms, "m,host=h v=1");
    assert_eq!(message.points[0].time, NOW, "absent timestamp is the receive time");
    let seconds =
        LineProtocolConfig { precision: Precision::Seconds, ..LineProtocolConfig::default() };
    let message = lp_with(seconds, "m,host=h v=1 9999999999999");
    assert_eq!(rejected_only(&message), RejectReason::TimestampOutOfRange { time_ns: i64::MAX });

    let message = lp("m,host=h v=1 99999999999999999999");
    assert_eq!(rejected_only(&message), RejectReason::TimestampOutOfRange { time_ns: i64::MAX });
    let message = lp("m,host=h v=1 -99999999999999999999");
    assert_eq!(rejected_only(&message), RejectReason::TimestampOutOfRange { time_ns: i64::MIN });
    let message = lp("m,host=h v=1 0");
    assert_eq!(rejected_only(&message), RejectReason::TimestampOutOfRange { time_ns: 0 });
    assert_eq!(message.rejected[0].item, Item::Line(1));
}

#[test]
fn line_protocol_invalid_series_key() {
    let measurement = "m".repeat(250);
    let message = lp(&format!("{measurement},host=h value=1,longer_field=2"));
    assert_eq!(message.points, [point("h", &measurement, NOW, 1.0)]);
    assert!(matches!(
        reasons(&message)[..],
        [(
            RejectReason::InvalidSeriesKey(SeriesKeyError::TooLong { field: "metric", .. }),
            Item::Line(1)
        )]
    ));
}

#[test]
fn line_protocol_tags_are_shared_and_not_repeated() {
    let message = lp("m,host=h,b=2,a=1 x=1,y=2 1609459200000000000\nm,host=h,a=1,b=2 x=3,y=4\nm,host=h,a=1,b=3 x=5\nm,host=h,a=1,a=9 z=1");
    assert_eq!(message.points.len(), 6);
    let entries: Vec<(String, Vec<(String, String)>)> = message
        .series_tags
        .iter()
        .map(|e| (e.series.metric().to_string(), e.tags.to_vec()))
        .collect();
    let ab = |b: &str| vec![("a".to_string(), "1".to_string()), ("b".to_string(), b.to_string())];
    assert_eq!(
        entries,
        [
            ("m_x".to_string(), ab("2")),
            ("m_y".to_string(), ab("2")),
            ("m_x".to_string(), ab("3")),
            ("m_z".to_string(), vec![("a".to_string(), "1".to_string())]),
        ],
        "sorted by key, repeats dropped, first of duplicate keys kept"
    );
    assert!(Arc::ptr_eq(&message.series_tags[0].tags, &message.series_tags[1].tags));
}

#[test]
fn line_protocol_empty_payload_is_empty() {
    assert!(lp("").is_empty());
    assert!(lp("\n\n# only comments\n").is_empty());
}

// ---------------------------------------------------------------- HTTP entry points

#[test]
fn http_json_points_must_name_device_and_metric() {
    let mut out = ParsedMessage::new();
    parser().parse_json_points(
        br#"[{"device_id":"d","metric_name":"m","value":1},{"device_id":"d","value":2}]"#,
        NOW,
        &mut Interner::new(),
        &mut out,
    );
    assert_eq!(out.points, [point("d", "m", NOW, 1.0)]);
    assert_eq!(reasons(&out), [(RejectReason::missing("metric_name"), Item::Element(1))]);
}

#[test]
fn http_line_protocol_takes_its_precision() {
    let mut out = ParsedMessage::new();
    parser().parse_line_protocol(
        b"m,host=h v=1 1609459200",
        Precision::Seconds,
        NOW,
        &mut Interner::new(),
        &mut out,
    );
    assert_eq!(out.points, [point("h", "m_v", SEED_TS, 1.0)]);
}

// ---------------------------------------------------------------- dead letters

#[test]
fn every_rejection_makes_a_dead_letter() {
    let message = seed(r#"[{"device_id":"a","value":null}]"#);
    let letter = dead_letter_payload("iot/sensors/temperature", b"payload", &message.rejected[0]);
    let parsed: serde_json::Value = serde_json::from_slice(&letter).unwrap();
    assert_eq!(parsed["reason"], "wrong_type");
    assert_eq!(parsed["element"], 0);
    assert_eq!(parsed["topic"], "iot/sensors/temperature");
    assert!(parsed["detail"].as_str().unwrap().contains("null"));
}
