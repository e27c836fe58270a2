//! Property tests: the codec against a naive model (a `Vec` of points), and its bit count
//! against the paper's.

use minitrue_gorilla::{paper_bit_count, Encoded, Encoder};
use proptest::prelude::*;

/// Points as the model keeps them: values by bit pattern, so NaNs compare exactly.
type ModelPoints = Vec<(i64, u64)>;

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<u64>().prop_map(f64::from_bits),
        2 => prop::sample::select(vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::from_bits(0x7FF0_0000_0000_0001),
            f64::from_bits(0xFFF0_0000_0000_0001),
            f64::from_bits(0x7FF8_0000_0000_0001),
            f64::from_bits(1),
            f64::from_bits(0x800F_FFFF_FFFF_FFFF),
            f64::MAX,
            f64::MIN,
            21.5,
        ]),
        // Two-decimal sensor readings: the common case, many `10` windows.
        4 => (-5000i64..5000).prop_map(|hundredths| 21.0 + hundredths as f64 / 100.0),
    ]
}

fn boundary_dods() -> Vec<i64> {
    let edges = [0, 64, -63, 256, -255, 2048, -2047, i64::from(i32::MAX), i64::from(i32::MIN)];
    let mut dods: Vec<i64> = edges.iter().flat_map(|e| [e - 1, *e, e + 1]).collect();
    dods.extend([i64::MIN, i64::MAX]);
    dods
}

fn any_times(len: usize) -> impl Strategy<Value = Vec<i64>> {
    let extremes = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    prop_oneof![
        prop::collection::vec(any::<i64>(), len),
        prop::collection::vec(prop::sample::select(extremes), len),
        // Regular with small jitter, as sensors report.
        (any::<i64>(), 1i64..=10_000_000_000, prop::collection::vec(-5_000_000i64..5_000_000, len))
            .prop_map(|(start, step, jitter)| {
                jitter
                    .iter()
                    .enumerate()
                    .map(|(i, j)| start.wrapping_add(step.wrapping_mul(i as i64)).wrapping_add(*j))
                    .collect()
            }),
        // Delta-of-deltas at and around every bucket boundary.
        prop::collection::vec(prop::sample::select(boundary_dods()), len).prop_map(|dods| {
            let (mut time, mut delta) = (0i64, 0i64);
            dods.iter()
                .map(|dod| {
                    delta = delta.wrapping_add(*dod);
                    time = time.wrapping_add(delta);
                    time
                })
                .collect()
        }),
        // Repeated and decreasing runs.
        (any::<i64>(), prop::collection::vec(-3i64..=1, len)).prop_map(|(start, steps)| {
            steps
                .iter()
                .scan(start, |time, step| {
                    *time = time.wrapping_add(step * 1_000);
                    Some(*time)
                })
                .collect()
        }),
    ]
}

fn any_points() -> impl Strategy<Value = Vec<(i64, f64)>> {
    (0usize..200).prop_flat_map(|len| {
        (any_times(len), prop::collection::vec(any_value(), len))
            .prop_map(|(times, values)| times.into_iter().zip(values).collect())
    })
}

fn model(points: &[(i64, f64)]) -> ModelPoints {
    points.iter().map(|&(time, value)| (time, value.to_bits())).collect()
}

fn encode(points: &[(i64, f64)]) -> Encoder {
    let mut encoder = Encoder::new();
    for &(time, value) in points {
        encoder.push(time, value);
    }
    encoder
}

fn bulk_decode(encoded: minitrue_gorilla::EncodedView<'_>) -> ModelPoints {
    let (mut times, mut values) = (vec![42], vec![4.2]);
    encoded.decode_into(&mut times, &mut values).expect("own stream decodes");
    assert_eq!((times[0], values[0]), (42, 4.2), "decode_into appends");
    times[1..].iter().copied().zip(values[1..].iter().map(|v| v.to_bits())).collect()
}

fn iterator_decode(encoded: minitrue_gorilla::EncodedView<'_>) -> ModelPoints {
    encoded
        .decoder()
        .map(|point| point.map(|(time, value)| (time, value.to_bits())))
        .collect::<Result<_, _>>()
        .expect("own stream decodes")
}

/// Later points whose delta-of-delta is outside `[-2047, 2048]`: the paper's `1111` prefix is
/// one bit shorter than ours for exactly these.
fn wide_bucket_points(points: &[(i64, f64)]) -> u64 {
    let mut previous_delta = 0i64;
    points
        .windows(2)
        .filter(|pair| {
            let delta = pair[1].0.wrapping_sub(pair[0].0);
            let dod = delta.wrapping_sub(previous_delta);
            previous_delta = delta;
            !(-2047..=2048).contains(&dod)
        })
        .count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trips_bit_for_bit(points in any_points()) {
        let expected = model(&points);
        let encoder = encode(&points);
        prop_assert_eq!(encoder.len(), points.len());
        prop_assert_eq!(encoder.last().map(|(t, v)| (t, v.to_bits())), expected.last().copied());
        prop_assert_eq!(encoder.encoded_bytes() as u64, encoder.bit_len().div_ceil(8));
        prop_assert_eq!(encoder.view().stream_bytes().len(), encoder.encoded_bytes());
        prop_assert!(encoder.heap_bytes() >= encoder.encoded_bytes());

        prop_assert_eq!(&bulk_decode(encoder.view()), &expected);
        prop_assert_eq!(&iterator_decode(encoder.view()), &expected);

        let encoded = encoder.finish();
        prop_assert_eq!(encoded.len(), points.len());
        prop_assert_eq!(encoded.heap_bytes(), encoded.stream_bytes().len());
        prop_assert_eq!(&bulk_decode(encoded.as_view()), &expected);
        let parsed = Encoded::from_bytes(&encoded.to_bytes());
        prop_assert_eq!(parsed.as_ref(), Ok(&encoded));
    }

    #[test]
    fn bit_len_is_the_papers_plus_one_bit_per_wide_timestamp(points in any_points()) {
        let encoder = encode(&points);
        let paper = paper_bit_count(points.iter().copied());
        prop_assert_eq!(encoder.bit_len(), paper + wide_bucket_points(&points));
    }

    #[test]
    fn a_cleared_encoder_matches_a_fresh_one(first in any_points(), second in any_points()) {
        let mut reused = encode(&first);
        reused.clear();
        prop_assert!(reused.is_empty());
        prop_assert_eq!((reused.bit_len(), reused.last()), (0, None));
        for &(time, value) in &second {
            reused.push(time, value);
        }
        let fresh = encode(&second);
        prop_assert_eq!(reused.view().stream_bytes(), fresh.view().stream_bytes());
        prop_assert_eq!(reused.bit_len(), fresh.bit_len());
        prop_assert_eq!(reused.finish(), fresh.finish());
    }

    #[test]
    fn views_taken_while_pushing_decode_to_the_prefix(points in any_points()) {
        let expected = model(&points);
        let mut encoder = Encoder::with_capacity_points(points.len() / 2);
        let mut snapshots = Vec::new();
        for (pushed, &(time, value)) in points.iter().enumerate() {
            prop_assert_eq!(&bulk_decode(encoder.view()), &expected[..pushed].to_vec());
            if pushed % 17 == 0 {
                snapshots.push((pushed, encoder.view().to_encoded()));
            }
            if pushed % 29 == 5 {
                encoder.shrink_to_fit();
            }
            encoder.push(time, value);
        }
        prop_assert_eq!(&bulk_decode(encoder.view()), &expected);
        // Owned copies of earlier views are unaffected by later pushes.
        for (pushed, snapshot) in snapshots {
            prop_assert_eq!(&bulk_decode(snapshot.as_view()), &expected[..pushed].to_vec());
        }
    }
}
