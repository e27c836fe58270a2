//! B1: Gorilla encode/decode throughput on one core, against a plain copy of the same points
//! measured in the same run; plus B2's bits per point against the paper's encoding.
//!
//! ```text
//! cargo bench -p minitrue-gorilla --bench codec              # full run (1 M points per series)
//! cargo bench -p minitrue-gorilla --bench codec -- --quick   # smoke run, well under a minute
//! ```
//!
//! First a summary table (best of repeated timed runs, in M points/s and as a ratio to the
//! memcpy reference), then criterion's statistical reports for the same operations. Data:
//! smart-city temperature readings like `shared/bench/smartcity.py` (regular 1 s timestamps in
//! ns, a two-decimal random walk around 21), with and without ±5 ms timestamp jitter.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use minitrue_gorilla::{paper_bit_count, Encoded, Encoder};

const FULL_POINTS: usize = 1_000_000;
const QUICK_POINTS: usize = 100_000;
const START_NS: i64 = 1_700_000_000_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;

/// A named test series as two column vectors, the shape decode produces.
struct Series {
    name: &'static str,
    times: Vec<i64>,
    values: Vec<f64>,
}

/// splitmix64: deterministic and dependency-free.
struct Random(u64);

impl Random {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn next_normal(&mut self) -> f64 {
        let (u, v) = (self.next_unit(), self.next_unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Like `shared/bench/smartcity.py` temperature: 1 s interval, value a random walk (step
/// stddev 0.02) from 21.0 rounded to 2 decimals; optional uniform ±jitter on timestamps.
fn smartcity(name: &'static str, points: usize, jitter_ms: i64, seed: u64) -> Series {
    let mut random = Random(seed);
    let mut walk = 21.0f64;
    let mut times = Vec::with_capacity(points);
    let mut values = Vec::with_capacity(points);
    for i in 0..points as i64 {
        let jitter_ns = if jitter_ms == 0 {
            0
        } else {
            let span = (2 * jitter_ms + 1) as u64;
            ((random.next_u64() % span) as i64 - jitter_ms) * 1_000_000
        };
        times.push(START_NS + i * SECOND_NS + jitter_ns);
        walk += 0.02 * random.next_normal();
        values.push((walk * 100.0).round() / 100.0);
    }
    Series { name, times, values }
}

/// Encodes into a fresh encoder: includes growing the buffer (allocation, page faults).
fn encode_fresh(series: &Series) -> Encoded {
    let mut encoder = Encoder::new();
    for (&time, &value) in series.times.iter().zip(&series.values) {
        encoder.push(time, value);
    }
    encoder.finish()
}

/// Encodes into a reused encoder: the codec alone, like the memcpy reference into
/// preallocated vectors.
fn encode_reused(series: &Series, encoder: &mut Encoder) {
    encoder.clear();
    for (&time, &value) in series.times.iter().zip(&series.values) {
        encoder.push(time, value);
    }
}

fn decode(encoded: &Encoded, times: &mut Vec<i64>, values: &mut Vec<f64>) {
    times.clear();
    values.clear();
    encoded.as_view().decode_into(times, values).expect("benchmark stream decodes");
}

fn copy_points(series: &Series, times: &mut [i64], values: &mut [f64]) {
    times.copy_from_slice(&series.times);
    values.copy_from_slice(&series.values);
}

/// Best per-run time of `run` over `budget` (at least 3 runs): other processes only ever
/// slow a run down.
fn best_time(budget: Duration, mut run: impl FnMut()) -> Duration {
    let started = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < 3 || started.elapsed() < budget {
        let run_started = Instant::now();
        run();
        best = best.min(run_started.elapsed());
        runs += 1;
    }
    best
}

fn print_summary(all_series: &[Series], budget: Duration) {
    println!("B1/B2 gorilla codec, one core, best run over {budget:?} per row");
    println!("{:<34} {:>12} {:>10}", "series / operation", "M points/s", "vs memcpy");
    for series in all_series {
        let points = series.times.len();
        let encoded = encode_fresh(series);
        let mut encoder = Encoder::with_capacity_points(points);
        let (mut times, mut values) = (Vec::with_capacity(points), Vec::with_capacity(points));
        let (mut copy_times, mut copy_values) = (vec![0i64; points], vec![0f64; points]);

        let copy_time = best_time(budget, || {
            copy_points(black_box(series), &mut copy_times, &mut copy_values);
            black_box((&copy_times, &copy_values));
        });
        let rows = [
            ("memcpy of the points (reference)", copy_time),
            (
                "encode, reused Encoder",
                best_time(budget, || {
                    encode_reused(black_box(series), &mut encoder);
                    black_box(encoder.bit_len());
                }),
            ),
            (
                "encode, Encoder::new + finish",
                best_time(budget, || {
                    black_box(encode_fresh(black_box(series)));
                }),
            ),
            (
                "decode_into",
                best_time(budget, || {
                    decode(black_box(&encoded), &mut times, &mut values);
                    black_box((&times, &values));
                }),
            ),
        ];
        println!("{} ({points} points)", series.name);
        for (operation, time) in rows {
            let rate = points as f64 / time.as_secs_f64() / 1e6;
            let ratio = copy_time.as_secs_f64() / time.as_secs_f64();
            println!("  {operation:<32} {rate:>12.1} {ratio:>10.3}");
        }
        let encoder_bits = encoder.bit_len();
        let paper_bits =
            paper_bit_count(series.times.iter().copied().zip(series.values.iter().copied()));
        println!(
            "  bits/point: encoder {:.2}, paper {:.2} ({:+.2}%)",
            encoder_bits as f64 / points as f64,
            paper_bits as f64 / points as f64,
            (encoder_bits as f64 / paper_bits as f64 - 1.0) * 100.0,
        );
    }
}

fn criterion_benches(criterion: &mut Criterion, all_series: &[Series]) {
    let mut group = criterion.benchmark_group("gorilla");
    for series in all_series {
        let points = series.times.len();
        group.throughput(Throughput::Elements(points as u64));
        let (mut copy_times, mut copy_values) = (vec![0i64; points], vec![0f64; points]);
        group.bench_with_input(BenchmarkId::new("memcpy", series.name), series, |b, series| {
            b.iter(|| copy_points(series, &mut copy_times, &mut copy_values))
        });
        let mut encoder = Encoder::with_capacity_points(points);
        group.bench_with_input(BenchmarkId::new("encode", series.name), series, |b, series| {
            b.iter(|| encode_reused(series, &mut encoder))
        });
        group.bench_with_input(
            BenchmarkId::new("encode_fresh", series.name),
            series,
            |b, series| b.iter(|| encode_fresh(series)),
        );
        let encoded = encode_fresh(series);
        let (mut times, mut values) = (Vec::with_capacity(points), Vec::with_capacity(points));
        group.bench_with_input(BenchmarkId::new("decode", series.name), &encoded, |b, encoded| {
            b.iter(|| decode(encoded, &mut times, &mut values))
        });
    }
    group.finish();
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let points = if quick { QUICK_POINTS } else { FULL_POINTS };
    let all_series =
        [smartcity("smartcity", points, 0, 7), smartcity("smartcity_jitter_5ms", points, 5, 7)];
    let budget = if quick { Duration::from_millis(300) } else { Duration::from_secs(2) };
    print_summary(&all_series, budget);

    let mut criterion = Criterion::default();
    if quick {
        criterion = criterion
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500));
    }
    let mut criterion = criterion.configure_from_args();
    criterion_benches(&mut criterion, &all_series);
    criterion.final_summary();
}
