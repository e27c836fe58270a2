// TEMPORARY profiling helper (to be deleted).
use minitrue_gorilla::Encoder;
fn main() {
    let n = 1_000_000usize;
    let mut s = 7u64;
    let mut next = || { s = s.wrapping_add(0x9E37_79B9_7F4A_7C15); let mut z = s; z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9); z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB); z ^ (z >> 31) };
    let mut walk = 21.0f64;
    let mut pts = Vec::new();
    for i in 0..n as i64 {
        let u = ((next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let v = ((next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        walk += 0.02 * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        pts.push((1_700_000_000_000_000_000 + i * 1_000_000_000, (walk * 100.0).round() / 100.0));
    }
    let mut reused = Encoder::new();
    let mut best = f64::MAX;
    for _ in 0..100 {
        reused.clear();
        let start = std::time::Instant::now();
        for &(t, v) in &pts { reused.push(t, v); }
        std::hint::black_box(reused.bit_len());
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!("reused: best {:.1} M/s", n as f64 / best / 1e6);
    for presized in [false, true] {
        let mut best = f64::MAX;
        for _ in 0..100 {
            let start = std::time::Instant::now();
            let mut e = if presized { Encoder::with_capacity_points(n) } else { Encoder::new() };
            for &(t, v) in &pts { e.push(t, v); }
            std::hint::black_box(e.finish());
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!("presized {presized}: best {:.1} M/s", n as f64 / best / 1e6);
    }
}
