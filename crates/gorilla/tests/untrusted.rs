//! Property tests on untrusted input: arbitrary and mutated bytes with arbitrary claimed
//! counts never panic, never over-allocate, and the two decoders agree.

use minitrue_gorilla::{decode_into, DecodeError, Encoded, EncodedView, Encoder};
use proptest::prelude::*;

/// What `decode_into` and the iterator each report for a (stream, count) pair.
fn decode_both_ways(stream: &[u8], count: usize) -> Result<Vec<(i64, u64)>, DecodeError> {
    let (mut times, mut values) = (vec![-1i64; 3], vec![-1.0f64; 3]);
    let bulk = decode_into(stream, count, &mut times, &mut values);
    let max_points = 4 * stream.len() + 1;
    assert!(times.capacity() <= 3 + max_points.max(count.min(max_points)) + 64);
    let bulk = match bulk {
        Ok(()) => {
            assert_eq!(times.len(), 3 + count);
            assert_eq!(values.len(), 3 + count);
            Ok(times[3..].iter().copied().zip(values[3..].iter().map(|v| v.to_bits())).collect())
        }
        Err(error) => {
            assert_eq!((times.len(), values.len()), (3, 3), "vectors restored on error");
            Err(error)
        }
    };

    let mut iterator_points = Vec::new();
    let mut iterator_error = None;
    let mut decoder = EncodedView::from_parts(stream, count).decoder();
    for item in decoder.by_ref() {
        match item {
            Ok((time, value)) => iterator_points.push((time, value.to_bits())),
            Err(error) => {
                assert!(iterator_error.is_none(), "at most one error");
                iterator_error = Some(error);
            }
        }
    }
    assert!(decoder.next().is_none(), "fused");
    match (&bulk, iterator_error) {
        (Ok(points), None) => assert_eq!(points, &iterator_points),
        (Err(bulk_error), Some(iterator_error)) => assert_eq!(bulk_error, &iterator_error),
        (bulk, iterator) => panic!("decoders disagree: bulk {bulk:?}, iterator {iterator:?}"),
    }
    bulk
}

/// Re-encoding decoded points and decoding again gives the same points.
fn assert_reencodes(points: &[(i64, u64)]) {
    let mut encoder = Encoder::new();
    for &(time, bits) in points {
        encoder.push(time, f64::from_bits(bits));
    }
    let (mut times, mut values) = (Vec::new(), Vec::new());
    encoder.view().decode_into(&mut times, &mut values).expect("re-encoded stream decodes");
    let again: Vec<(i64, u64)> =
        times.into_iter().zip(values.into_iter().map(f64::to_bits)).collect();
    assert_eq!(again, points);
}

fn any_count() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..64, 0usize..4096, any::<usize>()]
}

fn sample_stream() -> (Vec<u8>, usize) {
    let mut encoder = Encoder::new();
    let mut value = 21.0f64;
    for i in 0..40i64 {
        value = ((value + [0.01, -0.02, 0.0, 0.03][i as usize % 4]) * 100.0).round() / 100.0;
        let jitter = [0, 3, -70, 300, -3000, 1 << 40][i as usize % 6];
        encoder.push(1_700_000_000_000_000_000 + i * 1_000_000_000 + jitter, value);
    }
    encoder.push(i64::MIN, f64::NAN);
    let count = encoder.len();
    (encoder.finish().stream_bytes().to_vec(), count)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_streams_never_panic(
        stream in prop::collection::vec(any::<u8>(), 0..400),
        count in any_count(),
    ) {
        if let Ok(points) = decode_both_ways(&stream, count) {
            prop_assert_eq!(points.len(), count);
            assert_reencodes(&points);
        }
    }

    #[test]
    fn mutated_valid_streams_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        cut in any::<prop::sample::Index>(),
        cut_it in any::<bool>(),
        count_delta in -2i64..=2,
    ) {
        let (mut stream, count) = sample_stream();
        for (index, bit) in &flips {
            let at = index.index(stream.len());
            stream[at] ^= 1 << bit;
        }
        if cut_it {
            stream.truncate(cut.index(stream.len() + 1));
        }
        let count = (count as i64 + count_delta).max(0) as usize;
        let intact = flips.is_empty() && !cut_it && count_delta == 0;
        match decode_both_ways(&stream, count) {
            Ok(points) => {
                prop_assert_eq!(points.len(), count);
                assert_reencodes(&points);
            }
            Err(error) => prop_assert!(!intact, "intact stream failed: {error}"),
        }
    }

    #[test]
    fn arbitrary_serialized_blocks_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(encoded) = Encoded::from_bytes(&bytes) {
            prop_assert!(encoded.len() as u64 <= 4 * bytes.len() as u64 + 1);
            prop_assert_eq!(encoded.to_bytes(), bytes, "the header is canonical");
            if let Ok(points) = decode_both_ways(encoded.stream_bytes(), encoded.len()) {
                assert_reencodes(&points);
            }
        }
    }

    #[test]
    fn serialized_headers_with_valid_streams_parse(count in 0usize..=41, version in any::<u8>()) {
        let (stream, stream_count) = sample_stream();
        let mut bytes = vec![version, count as u8];
        bytes.extend_from_slice(&stream);
        let parsed = Encoded::from_bytes(&bytes);
        if version != 1 {
            prop_assert_eq!(parsed, Err(DecodeError::UnsupportedVersion { found: version, supported: 1 }));
        } else {
            let parsed = parsed.expect("header is valid");
            let decoded = decode_both_ways(parsed.stream_bytes(), parsed.len());
            prop_assert_eq!(decoded.is_ok(), count == stream_count);
        }
    }
}

#[test]
fn huge_counts_are_rejected_before_reserving() {
    let (stream, _) = sample_stream();
    for count in [usize::MAX, usize::MAX / 16, 4 * stream.len() + 2] {
        let (mut times, mut values) = (Vec::new(), Vec::new());
        let error = decode_into(&stream, count, &mut times, &mut values).unwrap_err();
        assert!(matches!(error, DecodeError::CountTooLarge { .. }), "{error}");
        assert_eq!((times.capacity(), values.capacity()), (0, 0));
    }
    let mut header = vec![1u8];
    header.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    header.extend_from_slice(&stream);
    assert!(matches!(Encoded::from_bytes(&header), Err(DecodeError::CountTooLarge { .. })));
}
