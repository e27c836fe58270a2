//! Fuzz the JSON and bare-value payload parsers: every MQTT message on a seed or template
//! topic goes through them, so on any bytes they must be total (no panic) and keep their
//! contract: only finite values inside the clock window come out, a malformed document yields
//! no points and exactly one rejection, and every rejection makes a dead letter.
//!
//! Run: `scripts/fuzz.sh 60 ingest_json`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minitrue_ingest::{
    dead_letter_payload, FormatConfig, Interner, ParsedMessage, Parser, RejectReason,
};

const NOW: i64 = 1_700_000_000_000_000_000;

/// Seed topics (object/array, bare value) and a template topic (tags).
const TOPICS: [&str; 3] =
    ["iot/sensors/temperature", "iot/sensors/temperature/sensor_1", "site/berlin/pump7/pressure"];

fn parser() -> &'static Parser {
    static PARSER: OnceLock<Parser> = OnceLock::new();
    PARSER.get_or_init(|| {
        let config = FormatConfig {
            topic_templates: vec!["site/{site}/{device_id}/{metric}".to_string()],
            ..FormatConfig::default()
        };
        Parser::new(config).expect("the fuzz configuration is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let parser = parser();
    let mut interner = Interner::new();
    for topic in TOPICS {
        let message = parser.parse(topic, data, NOW, &mut interner);
        check(parser, &message);
        for rejection in &message.rejected {
            let letter = dead_letter_payload(topic, data, rejection);
            assert!(letter.starts_with(b"{\"topic\":") && letter.ends_with(b"}"));
        }
    }
    let mut out = ParsedMessage::new();
    parser.parse_json_points(data, NOW, &mut interner, &mut out);
    check(parser, &out);
});

fn check(parser: &Parser, message: &ParsedMessage) {
    let config = parser.config();
    assert!(message.points.len() <= config.limits.max_points_per_message);
    for point in &message.points {
        assert!(point.value.is_finite(), "non-finite value {point:?}");
        assert!(config.clock_window.contains(point.time, NOW), "time outside window {point:?}");
    }
    for rejection in &message.rejected {
        assert!(RejectReason::LABELS.contains(&rejection.label()));
        assert!(!rejection.detail.is_empty());
    }
    let malformed =
        message.rejected.iter().any(|r| matches!(r.reason, RejectReason::MalformedJson));
    if malformed {
        assert!(message.points.is_empty(), "a malformed document yields no points");
        assert_eq!(message.rejected.len(), 1, "a malformed document is rejected once");
    }
    for entry in &message.series_tags {
        assert!(message.points.iter().any(|p| p.series == entry.series));
    }
}
