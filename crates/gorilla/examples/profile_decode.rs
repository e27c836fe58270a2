// TEMPORARY profiling helper (to be deleted).
use minitrue_gorilla::Encoder;
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n = 1_000_000usize;
    let mut s = 7u64;
    let mut next = || { s = s.wrapping_add(0x9E37_79B9_7F4A_7C15); let mut z = s; z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9); z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB); z ^ (z >> 31) };
    let mut walk = 21.0f64;
    let mut enc = Encoder::new();
    let mut hist = [0u32; 65];
    let mut prev = 0u64;
    for i in 0..n as i64 {
        let u = ((next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let v = ((next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        walk += 0.02 * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        let val = (walk * 100.0).round() / 100.0;
        let x = val.to_bits() ^ prev; prev = val.to_bits();
        if x != 0 { hist[(64 - x.leading_zeros().min(31) - x.trailing_zeros()) as usize] += 1; } else { hist[0] += 1; }
        enc.push(1_700_000_000_000_000_000 + i * 1_000_000_000, val);
    }
    if mode == "hist" { for (m, c) in hist.iter().enumerate() { if *c > 0 { println!("{m}: {c}"); } } return; }
    let e = enc.finish();
    let (mut t, mut v) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let start = std::time::Instant::now();
    for _ in 0..200 { t.clear(); v.clear(); e.as_view().decode_into(&mut t, &mut v).unwrap(); }
    println!("{:.1} M/s", 200.0 * n as f64 / start.elapsed().as_secs_f64() / 1e6);
}
