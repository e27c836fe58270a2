//! Gorilla codec for MiniTrue's in-memory series: delta-of-delta timestamps and XOR-compressed
//! `f64` values, exactly as in the Gorilla paper (Pelkonen et al., VLDB 2015), with nanosecond
//! timestamps.
//!
//! Where it sits in the data flow: MQTT/HTTP ingest → WAL → the per-series memtables of
//! `minitrue-storage`, which append every acknowledged point to an [`Encoder`]. Queries and
//! flushes take a zero-copy [`EncodedView`] of a memtable series (the encoder keeps accepting
//! points) and bulk-decode it with [`EncodedView::decode_into`] into a `Vec<i64>` and a
//! `Vec<f64>`, which storage turns into Arrow arrays without copying. The crate is a pure
//! codec: no I/O, no async runtime, no Arrow. Decoding is CPU work; async callers run it off
//! the runtime.
//!
//! Guarantees: every `(i64, f64)` sequence round-trips bit for bit (any NaN payload, `-0.0`,
//! infinities, subnormals; decreasing, repeated and extreme timestamps). Decoding untrusted
//! bytes ([`decode_into`], [`Encoded::from_bytes`], [`Decoder`]) never panics, never loops,
//! and never reserves memory for more points than the stream can hold.
//!
//! # Stream format
//!
//! A stream is a sequence of bits packed most significant bit first: bit `i` is bit
//! `7 - i % 8` of byte `i / 8`, and multi-bit fields are written most significant bit first.
//! The last byte is padded with zero bits; nothing else follows the last point. The stream
//! does not record the point count: [`Encoded`] and [`EncodedView`] carry it beside the
//! stream.
//!
//! The first point is 64 bits of timestamp (two's complement) then 64 bits of value (IEEE 754
//! bits, `f64::to_bits`). Every later point is its timestamp field then its value field.
//!
//! **Timestamp** of point `n ≥ 1`: with `delta(n) = t(n) - t(n-1)` and `delta(0) = 0`, the
//! field encodes `D = delta(n) - delta(n-1)`, all arithmetic wrapping in 64 bits (so any
//! sequence round-trips, including `i64::MIN`/`i64::MAX` neighbours). The smallest bucket
//! that holds `D` is used:
//!
//! | prefix  | payload | `D` range                 | payload holds                       |
//! |---------|---------|---------------------------|-------------------------------------|
//! | `0`     | —       | `0`                       |                                     |
//! | `10`    | 7 bits  | `[-63, 64]`               | `D + 63` (unsigned)                 |
//! | `110`   | 9 bits  | `[-255, 256]`             | `D + 255` (unsigned)                |
//! | `1110`  | 12 bits | `[-2047, 2048]`           | `D + 2047` (unsigned)               |
//! | `11110` | 32 bits | `[-2^31, 2^31 - 1]`       | `D` in 32-bit two's complement      |
//! | `11111` | 64 bits | anything else             | `D` in 64-bit two's complement      |
//!
//! The first three offset buckets are the paper's ranges. The paper's last bucket is `1111` +
//! 32 bits; nanosecond timestamps can have delta-of-deltas beyond 32 bits, so this format splits
//! it into `11110` + 32 bits and `11111` + 64 bits: one extra bit for each point whose `D` is
//! outside `[-2047, 2048]`, and nothing else (see [`paper_bit_count`]).
//!
//! **Value** of point `n ≥ 1`: `x = bits(n) XOR bits(n-1)`.
//!
//! | prefix | then                                                                     |
//! |--------|--------------------------------------------------------------------------|
//! | `0`    | nothing: `x = 0`, the value repeats bit for bit                          |
//! | `10`   | `m` bits: `x >> trailing`, using the `(leading, trailing, m)` window of the most recent `11` value |
//! | `11`   | 5 bits `leading`, 6 bits `m` (64 stored as 0), then `m` bits `x >> trailing`; sets the window |
//!
//! The encoder uses `10` when a window exists and `x` has at least the window's leading
//! zeros and at least its trailing zeros (the paper's rule); otherwise `11` with
//! `leading = min(leading_zeros(x), 31)`, `trailing = trailing_zeros(x)`,
//! `m = 64 - leading - trailing`. Before the first `11` value there is no window.
//! Decoders reject `10` without a window and `11` headers with `leading + m > 64`.
//!
//! # Serialized block
//!
//! [`Encoded::to_bytes`] writes one [`FORMAT_VERSION`] byte, the point count as minimal
//! unsigned LEB128, then the stream bytes. The `snapshot` tests pin these bytes. **A format
//! change bumps [`FORMAT_VERSION`], keeps decoding the old version, and ships a test fixture
//! of the old format** (the serialized bytes of a known series and the points they decode to).

#![warn(missing_docs)]

mod bits;
mod block;
mod decoder;
mod encoder;
mod error;
mod format;
mod paper;

pub use block::{Encoded, EncodedView, FORMAT_VERSION};
pub use decoder::{decode_into, Decoder};
pub use encoder::Encoder;
pub use error::{DecodeError, HeaderProblem};
pub use paper::paper_bit_count;
