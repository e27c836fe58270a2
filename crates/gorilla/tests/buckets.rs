//! Exact bit layouts at every bucket boundary, written out by hand from the format table in the
//! crate documentation (not derived from the encoder).

use minitrue_gorilla::{decode_into, paper_bit_count, DecodeError, Encoded, Encoder};

/// The stream bits after the raw first point, as a string of `0`/`1`.
fn later_bits(encoder: &Encoder) -> String {
    let view = encoder.view();
    let bit_len = encoder.bit_len() as usize;
    (128..bit_len)
        .map(|i| if view.stream_bytes()[i / 8] >> (7 - i % 8) & 1 == 1 { '1' } else { '0' })
        .collect()
}

fn encode(points: &[(i64, f64)]) -> Encoder {
    let mut encoder = Encoder::new();
    for &(time, value) in points {
        encoder.push(time, value);
    }
    encoder
}

fn decode(encoder: &Encoder) -> Vec<(i64, u64)> {
    let (mut times, mut values) = (Vec::new(), Vec::new());
    encoder.view().decode_into(&mut times, &mut values).expect("own stream decodes");
    times.into_iter().zip(values.into_iter().map(f64::to_bits)).collect()
}

fn assert_round_trip(points: &[(i64, f64)]) {
    let encoder = encode(points);
    let expected: Vec<(i64, u64)> = points.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    assert_eq!(decode(&encoder), expected);
}

/// Bits of a `width`-bit field holding `value`, most significant first.
fn field(value: u64, width: u32) -> String {
    (0..width).rev().map(|bit| if value >> bit & 1 == 1 { '1' } else { '0' }).collect()
}

/// Timestamp bits of point 1 for `(0, 1.0), (dod, 1.0)`: the first delta is a dod against 0.
fn timestamp_bits_for_first_delta(dod: i64) -> String {
    let points = [(0, 1.0), (dod, 1.0)];
    assert_round_trip(&points);
    let encoder = encode(&points);
    let bits = later_bits(&encoder);
    assert!(bits.ends_with('0'), "the repeated value is a single 0 bit");
    bits[..bits.len() - 1].to_string()
}

#[test]
fn timestamp_bucket_boundaries() {
    let cases: &[(i64, String)] = &[
        (0, "0".into()),
        (1, format!("10{}", field(64, 7))),
        (-63, format!("10{}", field(0, 7))),
        (64, format!("10{}", field(127, 7))),
        (-64, format!("110{}", field(255 - 64, 9))),
        (65, format!("110{}", field(65 + 255, 9))),
        (-255, format!("110{}", field(0, 9))),
        (256, format!("110{}", field(511, 9))),
        (-256, format!("1110{}", field(2047 - 256, 12))),
        (257, format!("1110{}", field(2047 + 257, 12))),
        (-2047, format!("1110{}", field(0, 12))),
        (2048, format!("1110{}", field(4095, 12))),
        (-2048, format!("11110{}", field(u64::from(-2048i32 as u32), 32))),
        (2049, format!("11110{}", field(2049, 32))),
        (i64::from(i32::MIN), format!("11110{}", field(0x8000_0000, 32))),
        (i64::from(i32::MAX), format!("11110{}", field(0x7FFF_FFFF, 32))),
        (i64::from(i32::MIN) - 1, format!("11111{}", field((i64::from(i32::MIN) - 1) as u64, 64))),
        (i64::from(i32::MAX) + 1, format!("11111{}", field(0x8000_0000, 64))),
        (i64::MIN, format!("11111{}", field(1 << 63, 64))),
        (i64::MAX, format!("11111{}", field(u64::MAX >> 1, 64))),
    ];
    for (dod, expected) in cases {
        assert_eq!(&timestamp_bits_for_first_delta(*dod), expected, "dod {dod}");
    }
}

#[test]
fn delta_of_delta_is_taken_against_the_previous_delta() {
    let second = 1_000_000_000;
    let points = [(0, 1.0), (second, 1.0), (2 * second, 1.0), (3 * second + 5, 1.0)];
    assert_round_trip(&points);
    // dod(1) = 1e9 (32-bit bucket), dod(2) = 0, dod(3) = 5.
    let expected = format!("11110{}0" /* value */, field(second as u64, 32))
        + "00"
        + &format!("10{}0", field(5 + 63, 7));
    assert_eq!(later_bits(&encode(&points)), expected);
}

#[test]
fn extreme_and_wrapping_timestamps_round_trip() {
    let sequences: &[&[i64]] = &[
        &[i64::MIN, i64::MAX, i64::MIN, i64::MAX],
        &[i64::MAX, i64::MIN, 0, -1, 1, i64::MIN + 1, i64::MAX - 1],
        &[5, 5, 5, 4, 3, 2, 2, 100, -100],
        &[0, i64::MAX, i64::MAX, i64::MAX],
    ];
    for times in sequences {
        let points: Vec<(i64, f64)> = times.iter().map(|&t| (t, 0.5)).collect();
        assert_round_trip(&points);
    }
}

#[test]
fn value_windows_follow_the_paper() {
    let bits = [
        0u64,
        0x0000_00FF_0000_0000, // xor: 24 leading, 32 trailing, 8 meaningful → 11
        0x0000_00E7_0000_0000, // xor 0x18 << 32 fits the window → 10 + 8 bits
        0x0000_00E7_0000_0000, // same → 0
        0x0000_01E7_0000_0000, // xor 1 << 40: 23 leading < 24 → 11 with a new window
        0x0000_01E7_0000_0001, // xor 1: 63 leading zeros, stored as 31 → m = 33
        0x8000_01E7_0000_0000, // xor bit 63 and bit 0 → m = 64, stored as 0
        0x8000_01E7_0000_0001, // xor 1 fits the full-width window → 10 + 64 bits
    ];
    let points: Vec<(i64, f64)> = bits.iter().map(|&b| (7, f64::from_bits(b))).collect();
    assert_round_trip(&points);
    let expected = [
        format!("0 11 {} {} {}", field(24, 5), field(8, 6), field(0xFF, 8)),
        format!("0 10 {}", field(0x18, 8)),
        "0 0".to_string(),
        format!("0 11 {} {} {}", field(23, 5), field(1, 6), "1"),
        format!("0 11 {} {} {}", field(31, 5), field(33, 6), field(1, 33)),
        format!("0 11 {} {} {}", field(0, 5), field(0, 6), field((1 << 63) | 1, 64)),
        format!("0 10 {}", field(1, 64)),
    ]
    .concat()
    .replace(' ', "");
    let encoder = encode(&points);
    assert_eq!(later_bits(&encoder), expected);
    assert_eq!(encoder.bit_len(), paper_bit_count(points.iter().copied()));
}

#[test]
fn special_floats_round_trip_bit_for_bit() {
    let specials = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7FF0_0000_0000_0001), // signalling NaN, smallest payload
        f64::from_bits(0x7FF7_FFFF_FFFF_FFFF), // signalling NaN, largest payload
        f64::from_bits(0xFFF8_0000_DEAD_BEEF), // negative quiet NaN with payload
        f64::from_bits(1),                     // smallest subnormal
        f64::from_bits(0x000F_FFFF_FFFF_FFFF), // largest subnormal
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
    ];
    let points: Vec<(i64, f64)> =
        specials.iter().enumerate().map(|(i, &v)| (i as i64 * 1000, v)).collect();
    assert_round_trip(&points);
    let reversed: Vec<(i64, f64)> = points.iter().rev().copied().collect();
    assert_round_trip(&reversed);
}

#[test]
fn empty_encoder() {
    let encoder = Encoder::new();
    assert!(encoder.is_empty());
    assert_eq!((encoder.len(), encoder.bit_len(), encoder.encoded_bytes()), (0, 0, 0));
    assert_eq!(encoder.last(), None);
    assert_eq!(encoder.heap_bytes(), 0);
    assert!(encoder.view().stream_bytes().is_empty());
    assert_eq!(encoder.view().decoder().count(), 0);
    assert!(decode(&encoder).is_empty());
    let encoded = encoder.finish();
    assert!(encoded.is_empty());
    assert_eq!(encoded.to_bytes(), [0x01, 0x00]);
    assert_eq!(Encoded::from_bytes(&[0x01, 0x00]), Ok(encoded));
    assert_eq!(paper_bit_count([]), 0);
}

#[test]
fn first_point_only_is_raw() {
    let value = f64::from_bits(0x7FF4_0000_0000_1234);
    let encoder = encode(&[(-2, value)]);
    assert_eq!(encoder.bit_len(), 128);
    assert_eq!(encoder.len(), 1);
    assert_eq!(encoder.last().map(|(t, v)| (t, v.to_bits())), Some((-2, value.to_bits())));
    let mut expected = (-2i64).to_be_bytes().to_vec();
    expected.extend_from_slice(&value.to_bits().to_be_bytes());
    assert_eq!(encoder.view().stream_bytes(), expected);
    assert_eq!(decode(&encoder), [(-2, value.to_bits())]);
    assert_eq!(paper_bit_count([(-2, value)]), 128);
}

#[test]
fn empty_stream_with_claimed_points_is_rejected_without_allocating() {
    let (mut times, mut values) = (Vec::new(), Vec::new());
    let error = decode_into(&[], usize::MAX, &mut times, &mut values).unwrap_err();
    assert_eq!(
        error,
        DecodeError::CountTooLarge { count: usize::MAX as u64, max_points: 0, stream_bytes: 0 }
    );
    assert_eq!(times.capacity(), 0);
    assert_eq!(values.capacity(), 0);
}

#[test]
fn corrupt_value_headers_are_reported() {
    // First point, then timestamp `0` and value `10` with no window yet.
    let mut stream = vec![0u8; 16];
    stream.push(0b0100_0000);
    let error = decode_into(&stream, 2, &mut Vec::new(), &mut Vec::new()).unwrap_err();
    assert_eq!(error, DecodeError::MissingValueWindow { point_index: 1 });

    // Timestamp `0`, value `11` with 31 leading zeros and 40 meaningful bits (71 > 64).
    let mut stream = vec![0u8; 16];
    let bits = format!("011{}{}", field(31, 5), field(40, 6)) + &"0".repeat(40);
    let padded = format!("{bits:0<width$}", width = bits.len().div_ceil(8) * 8);
    for chunk in padded.as_bytes().chunks(8) {
        stream.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
    }
    let error = decode_into(&stream, 2, &mut Vec::new(), &mut Vec::new()).unwrap_err();
    assert_eq!(
        error,
        DecodeError::BadValueWindow { point_index: 1, leading_zeros: 31, meaningful_bits: 40 }
    );
}

#[test]
fn truncation_and_trailing_data_are_reported() {
    let points: Vec<(i64, f64)> = (0..10).map(|i| (i * 1_000, 20.0 + i as f64 / 7.0)).collect();
    let encoded = encode(&points).finish();
    let stream = encoded.stream_bytes();
    let (mut times, mut values) = (vec![1], vec![1.0]);

    let cut = &stream[..stream.len() - 1];
    match decode_into(cut, 10, &mut times, &mut values) {
        Err(DecodeError::Truncated { point_index: 9, bits_available, .. }) => {
            assert_eq!(bits_available, cut.len() as u64 * 8)
        }
        other => panic!("expected truncation in the last point, got {other:?}"),
    }
    assert_eq!((times.len(), values.len()), (1, 1), "vectors restored on error");

    let mut longer = stream.to_vec();
    longer.push(0);
    assert!(matches!(
        decode_into(&longer, 10, &mut times, &mut values),
        Err(DecodeError::TrailingData { .. })
    ));
    assert!(matches!(
        decode_into(stream, 9, &mut times, &mut values),
        Err(DecodeError::TrailingData { .. })
    ));
    assert_eq!((times.len(), values.len()), (1, 1));
    decode_into(stream, 10, &mut times, &mut values).expect("intact stream decodes");
    assert_eq!(times.len(), 11);
}
