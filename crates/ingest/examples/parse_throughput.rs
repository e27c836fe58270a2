//! Parsing throughput of the ingest formats, in points per second on one thread.
//!
//! Four workloads, each parsed like the MQTT subscriber will (one `Parser`, one `Interner`
//! and one reused `ParsedMessage` per thread; 1 000 devices so every series key is a cache
//! hit after warm-up):
//! - single-point seed JSON messages on `iot/sensors/temperature`,
//! - 100-point JSON arrays on `iot/sensors/temperature`,
//! - bare numbers on `iot/sensors/temperature/{device_id}`,
//! - line-protocol batches of 100 lines × 2 fields on `telegraf/...` (Telegraf's batch mode).
//!
//! Run: `cargo run --release -p minitrue-ingest --example parse_throughput [rounds]`
//! (default 5 rounds; the best and median round are printed).

use std::hint::black_box;
use std::time::{Duration, Instant};

use minitrue_ingest::{FormatConfig, Interner, ParsedMessage, Parser};

const DEVICES: usize = 1_000;
const NOW_NS: i64 = 1_700_000_000_000_000_000;
const NOW_MS: i64 = NOW_NS / 1_000_000;

struct Workload {
    name: &'static str,
    messages: Vec<(String, Vec<u8>)>,
}

fn single_json(count: usize) -> Workload {
    let messages = (0..count)
        .map(|i| {
            let payload = format!(
                r#"{{"device_id":"sensor_{}","metric_name":"temperature","timestamp":{},"value":{:?}}}"#,
                i % DEVICES,
                NOW_MS - (count - i) as i64,
                20.0 + (i % 97) as f64 * 0.125
            );
            ("iot/sensors/temperature".to_string(), payload.into_bytes())
        })
        .collect();
    Workload { name: "seed JSON, 1 point/message", messages }
}

fn json_arrays(count: usize, per_message: usize) -> Workload {
    let messages = (0..count)
        .map(|m| {
            let elements: Vec<String> = (0..per_message)
                .map(|j| {
                    let i = m * per_message + j;
                    format!(
                        r#"{{"device_id":"sensor_{}","timestamp":{},"value":{:?}}}"#,
                        i % DEVICES,
                        NOW_MS - (count * per_message - i) as i64,
                        20.0 + (i % 97) as f64 * 0.125
                    )
                })
                .collect();
            let payload = format!("[{}]", elements.join(","));
            ("iot/sensors/temperature".to_string(), payload.into_bytes())
        })
        .collect();
    Workload { name: "seed JSON, 100-point arrays", messages }
}

fn bare_numbers(count: usize) -> Workload {
    let messages = (0..count)
        .map(|i| {
            let topic = format!("iot/sensors/temperature/sensor_{}", i % DEVICES);
            (topic, format!("{:?}", 20.0 + (i % 97) as f64 * 0.125).into_bytes())
        })
        .collect();
    Workload { name: "bare numbers, 1 point/message", messages }
}

fn line_protocol(count: usize, lines_per_message: usize) -> Workload {
    let messages = (0..count)
        .map(|m| {
            let mut payload = String::new();
            for j in 0..lines_per_message {
                let i = m * lines_per_message + j;
                payload.push_str(&format!(
                    "weather,host=sensor_{},site=plant{} temperature={:?},humidity={}i {}\n",
                    i % DEVICES,
                    i % 4,
                    20.0 + (i % 97) as f64 * 0.125,
                    40 + i % 50,
                    NOW_NS - (count * lines_per_message - i) as i64 * 1_000_000
                ));
            }
            ("telegraf/host/weather".to_string(), payload.into_bytes())
        })
        .collect();
    Workload { name: "line protocol, 100 lines x 2 fields", messages }
}

/// Parses every message once; returns (points, elapsed).
fn run_once(parser: &Parser, interner: &mut Interner, workload: &Workload) -> (usize, Duration) {
    let mut out = ParsedMessage::new();
    let mut points = 0;
    let started = Instant::now();
    for (topic, payload) in &workload.messages {
        out.clear();
        parser.parse_into(topic, payload, NOW_NS, interner, &mut out);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
        points += black_box(out.points.len());
    }
    (points, started.elapsed())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map(|r| r.parse()).transpose()?.unwrap_or(5);
    let parser = Parser::new(FormatConfig::default())?;
    let workloads = [
        single_json(200_000),
        json_arrays(2_000, 100),
        bare_numbers(200_000),
        line_protocol(1_000, 100),
    ];
    println!("| workload | points | bytes/point | best points/s | median points/s | ns/point |");
    println!("|---|---|---|---|---|---|");
    for workload in &workloads {
        let mut interner = Interner::new();
        run_once(&parser, &mut interner, workload); // warm-up: fills the interner
        let mut rates = Vec::with_capacity(rounds);
        let mut points = 0;
        for _ in 0..rounds.max(1) {
            let (count, elapsed) = run_once(&parser, &mut interner, workload);
            points = count;
            rates.push(count as f64 / elapsed.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        let best = rates[rates.len() - 1];
        let median = rates[rates.len() / 2];
        let bytes: usize = workload.messages.iter().map(|(_, p)| p.len()).sum();
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            workload.name,
            points,
            bytes as f64 / points as f64,
            best,
            median,
            1e9 / median
        );
    }
    Ok(())
}
