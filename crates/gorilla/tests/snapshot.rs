//! Format snapshots: the exact serialized bytes of fixed series.
//!
//! If one of these fails, the on-disk/in-memory format changed. That is allowed only with a
//! [`FORMAT_VERSION`] bump, a decoder that still reads the old version, and the old bytes kept
//! here as a fixture that must keep decoding to the same points.

use minitrue_gorilla::{Encoded, Encoder, FORMAT_VERSION};

/// Six readings of one sensor: regular 1 s timestamps, one late (+3 ms) and one repeated,
/// two-decimal values, a repeat, a NaN with a payload and `-0.0`.
fn fixture_points() -> Vec<(i64, f64)> {
    let start = 1_700_000_000_000_000_000i64;
    let second = 1_000_000_000i64;
    vec![
        (start, 21.37),
        (start + second, 21.37),
        (start + 2 * second, 21.39),
        (start + 3 * second + 3_000_000, 21.35),
        (start + 3 * second + 3_000_000, f64::from_bits(0x7FF8_0000_0000_002A)),
        (start + 5 * second, -0.0),
    ]
}

/// Version 1 serialization of [`fixture_points`].
const FIXTURE_V1_HEX: &str = concat!(
    "01",                                                                   // version
    "06",                                                                   // count
    "17979cfe362a0000",                                                     // first time
    "40355eb851eb851f",                                                     // 21.37
    "f1dcd65001caef5bd6f5bd6efc005b8d81749d2749d27dec4376f40c5d7f9ab3333333337e7707cd40c1ffffc0000000000150",
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex fixture"))
        .collect()
}

#[test]
fn serialized_bytes_are_stable() {
    assert_eq!(FORMAT_VERSION, 1);
    let mut encoder = Encoder::new();
    for (time, value) in fixture_points() {
        encoder.push(time, value);
    }
    assert_eq!(hex(&encoder.finish().to_bytes()), FIXTURE_V1_HEX);
}

#[test]
fn version_1_fixture_decodes_to_the_fixture_points() {
    let encoded = Encoded::from_bytes(&unhex(FIXTURE_V1_HEX)).expect("fixture parses");
    let decoded: Vec<(i64, u64)> = encoded
        .as_view()
        .decoder()
        .map(|point| point.map(|(time, value)| (time, value.to_bits())))
        .collect::<Result<_, _>>()
        .expect("fixture decodes");
    let expected: Vec<(i64, u64)> =
        fixture_points().into_iter().map(|(time, value)| (time, value.to_bits())).collect();
    assert_eq!(decoded, expected);
}

#[test]
fn fixture_header_and_first_point_are_as_documented() {
    let bytes = unhex(FIXTURE_V1_HEX);
    assert_eq!(bytes[0], 0x01, "format version");
    assert_eq!(bytes[1], 0x06, "point count, LEB128");
    assert_eq!(bytes[2..10], 1_700_000_000_000_000_000i64.to_be_bytes(), "raw first timestamp");
    assert_eq!(bytes[10..18], 21.37f64.to_bits().to_be_bytes(), "raw first value");
}
