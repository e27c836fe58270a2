//! Fuzz topic filters and templates: they are parsed from configuration and matched against
//! every incoming topic, so both must be total, and a template must only match topics that
//! its own subscription filter delivers.
//!
//! Input: `pattern \n topic` (split at the first newline; the whole input is also tried as a
//! topic for the default parser).
//!
//! Run: `scripts/fuzz.sh 60 ingest_topic`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minitrue_ingest::{FormatConfig, Interner, Parser, RejectReason, TopicFilter, TopicTemplate};

const NOW: i64 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, topic) = text.split_once('\n').unwrap_or((&text, "iot/sensors/t/d"));

    if let Ok(filter) = TopicFilter::parse(pattern) {
        filter.matches(topic);
        assert_eq!(filter.as_str(), pattern);
    }

    if let Ok(template) = TopicTemplate::parse(pattern) {
        let subscription = template.subscription_filter();
        let filter = TopicFilter::parse(&subscription).expect("a template's filter is valid");
        if let Some(matched) = template.match_topic(topic) {
            assert!(!matched.metric.is_empty());
            assert!(matched.device_id.is_some_and(|d| !d.is_empty()));
            assert_eq!(matched.tags.len(), template.tag_names().count());
            if !topic.starts_with('$') {
                assert!(filter.matches(topic), "{subscription} must deliver {topic}");
            }
        }
        // A parser with this template routes the topic without panicking.
        let config = FormatConfig {
            topic_templates: vec![pattern.to_string()],
            seed_topic_prefix: None,
            line_protocol: minitrue_ingest::LineProtocolConfig {
                topic_filters: Vec::new(),
                ..Default::default()
            },
            ..FormatConfig::default()
        };
        let parser = Parser::new(config).expect("a parsed template configures a parser");
        let message = parser.parse(topic, b"1", NOW, &mut Interner::new());
        let matched = template.match_topic(topic).is_some()
            && minitrue_ingest::topic::is_valid_publish_topic(topic);
        let unknown = message.rejected.iter().any(|r| r.reason == RejectReason::UnknownTopic);
        assert_eq!(matched, !unknown, "routing agrees with match_topic for {topic:?}");
    }

    let parser = Parser::new(FormatConfig::default()).expect("defaults are valid");
    parser.parse(&text, b"1", NOW, &mut Interner::new());
});
