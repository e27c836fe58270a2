//! Fuzz the Gorilla decoders: storage decodes memtable streams and serialized blocks with
//! them, so on any bytes they must be total (no panic, no hang, no allocation beyond the
//! stream's size) and self-consistent.
//!
//! Input: the first 4 bytes are a claimed point count (little-endian, capped at 2^20), the rest
//! is a stream; the whole input is also tried as a serialized block (`Encoded::from_bytes`) and
//! as raw points (16 bytes each) for an encode/decode round trip.
//!
//! Run: `scripts/fuzz.sh 60 gorilla_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minitrue_gorilla::{decode_into, Encoded, EncodedView, Encoder};

/// Claimed counts above this are capped: enough to cover every stream the fuzzer builds.
const MAX_FUZZ_COUNT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Some((count_bytes, stream)) = data.split_first_chunk::<4>() {
        let count = (u32::from_le_bytes(*count_bytes) as usize).min(MAX_FUZZ_COUNT);
        check_stream(stream, count);
    }
    if let Ok(encoded) = Encoded::from_bytes(data) {
        assert_eq!(encoded.to_bytes(), data, "a parsed header re-serializes identically");
        check_stream(encoded.stream_bytes(), encoded.len());
    }
    check_round_trip(data);
});

/// Decodes `(stream, count)` both ways; they must agree, and a success must re-encode.
fn check_stream(stream: &[u8], count: usize) {
    let (mut times, mut values) = (Vec::new(), Vec::new());
    let bulk = decode_into(stream, count, &mut times, &mut values);
    assert!(times.capacity() <= 4 * stream.len() + 1, "reserved more than the stream can hold");
    let iterated: Vec<_> = EncodedView::from_parts(stream, count).decoder().collect();
    match bulk {
        Ok(()) => {
            assert_eq!((times.len(), values.len()), (count, count));
            assert_eq!(iterated.len(), count, "iterator yields the same number of points");
            let points: Vec<(i64, u64)> =
                times.iter().copied().zip(values.iter().map(|v| v.to_bits())).collect();
            for (item, &(time, bits)) in iterated.iter().zip(&points) {
                match item {
                    Ok((t, v)) => assert_eq!((*t, v.to_bits()), (time, bits)),
                    Err(error) => panic!("iterator failed where decode_into succeeded: {error}"),
                }
            }
            assert_eq!(reencode_and_decode(&points), points);
        }
        Err(error) => {
            assert!(times.is_empty() && values.is_empty(), "vectors restored on error");
            assert_eq!(iterated.last(), Some(&Err(error)), "iterator reports the same error");
        }
    }
}

/// The input as points (8 bytes time, 8 bytes value bits each) must round-trip exactly.
fn check_round_trip(data: &[u8]) {
    let points: Vec<(i64, u64)> = data
        .chunks_exact(16)
        .filter_map(|chunk| chunk.split_first_chunk::<8>())
        .filter_map(|(time, rest)| {
            Some((i64::from_le_bytes(*time), u64::from_le_bytes(*rest.first_chunk::<8>()?)))
        })
        .collect();
    assert_eq!(reencode_and_decode(&points), points);
}

fn reencode_and_decode(points: &[(i64, u64)]) -> Vec<(i64, u64)> {
    let mut encoder = Encoder::new();
    for &(time, bits) in points {
        encoder.push(time, f64::from_bits(bits));
    }
    let encoded = Encoded::from_bytes(&encoder.finish().to_bytes()).expect("own block parses");
    let (mut times, mut values) = (Vec::new(), Vec::new());
    encoded.as_view().decode_into(&mut times, &mut values).expect("own stream decodes");
    times.into_iter().zip(values.into_iter().map(f64::to_bits)).collect()
}
