//! Fuzz the line-protocol parser (Telegraf over MQTT, `POST /api/v2/write`): on any bytes it
//! must be total (no panic, linear time) and keep its contract: finite values inside the clock
//! window, rejections that point at a real line, tags sorted without duplicate keys, and
//! skipping string fields never loses a numeric point.
//!
//! Run: `scripts/fuzz.sh 60 ingest_line_protocol`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minitrue_ingest::{
    ClockWindow, FormatConfig, Interner, Item, LineProtocolConfig, ParsedMessage, Parser,
    Precision, RejectReason,
};

const NOW: i64 = 1_700_000_000_000_000_000;

fn parsers() -> &'static [Parser; 2] {
    static PARSERS: OnceLock<[Parser; 2]> = OnceLock::new();
    PARSERS.get_or_init(|| {
        let make = |skip_string_fields| {
            let config = FormatConfig {
                line_protocol: LineProtocolConfig {
                    skip_string_fields,
                    ..LineProtocolConfig::default()
                },
                clock_window: ClockWindow::UNLIMITED,
                ..FormatConfig::default()
            };
            Parser::new(config).expect("the fuzz configuration is valid")
        };
        [make(false), make(true)]
    })
}

fuzz_target!(|data: &[u8]| {
    let [strict, lenient] = parsers();
    let mut interner = Interner::new();
    let strict_message = strict.parse("telegraf/host/cpu", data, NOW, &mut interner);
    check(data, &strict_message);
    let lenient_message = lenient.parse("telegraf/host/cpu", data, NOW, &mut interner);
    check(data, &lenient_message);
    // Skipping string fields only removes WrongType rejections; the points are the same.
    assert_eq!(strict_message.points, lenient_message.points);
    let strict_other = strict_message
        .rejected
        .iter()
        .filter(|r| !matches!(r.reason, RejectReason::WrongType { .. }))
        .count();
    assert_eq!(strict_other, lenient_message.rejected.len());

    let mut out = ParsedMessage::new();
    strict.parse_line_protocol(data, Precision::Seconds, NOW, &mut interner, &mut out);
    check(data, &out);
});

fn check(data: &[u8], message: &ParsedMessage) {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    for point in &message.points {
        assert!(point.value.is_finite(), "non-finite value {point:?}");
    }
    for rejection in &message.rejected {
        assert!(RejectReason::LABELS.contains(&rejection.label()));
        match rejection.item {
            Item::Line(line) => assert!((1..=lines).contains(&line), "line {line} of {lines}"),
            other => assert_eq!(other, Item::Message, "line protocol rejects lines"),
        }
        if let RejectReason::MalformedLineProtocol { line, .. } = rejection.reason {
            assert_eq!(rejection.item, Item::Line(line));
        }
    }
    for entry in &message.series_tags {
        assert!(!entry.tags.is_empty());
        assert!(entry.tags.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique keys");
        assert!(message.points.iter().any(|p| p.series == entry.series));
    }
}
