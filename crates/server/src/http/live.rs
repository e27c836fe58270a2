//! `GET /ws/live`: acknowledged points as they are written, over a WebSocket, for the web UI's
//! live monitor.
//!
//! Query parameters: `device` and `metric` (comma-separated names; absent = all) and
//! `max_rate` (points per second sent to this client, default 200, at most 5000). Every
//! 250 ms the node sends what matched since the last message, thinned to the rate: at most the
//! latest point of each series, and at most `max_rate / 4` points, the series taking turns when
//! there are more. So a 100 k points/s ingest never floods a browser, and `matched` still says
//! how many points arrived. Messages are JSON text:
//!
//! - first `{"type":"hello","interval_ms":250,"max_rate":…}`;
//! - then `{"type":"points","points":[[device,metric,epoch_ms,value],…],"matched":n,
//!   "dropped":n,"missed_writes":n,"interval_ms":250}` (`missed_writes`: writes this client
//!   fell too far behind to see, see [`LiveSource`]).
//!
//! The client's messages are ignored; closing the socket ends the stream.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use minitrue_common::{LiveBatch, Metric, Point};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use super::{ApiError, HttpState};

/// Where live points come from (the storage engine, wired by the binary).
pub trait LiveSource: Send + Sync {
    /// Every acknowledged write from now on. A receiver that falls behind misses the oldest
    /// writes (`RecvError::Lagged`) instead of slowing ingestion.
    fn subscribe(&self) -> Receiver<LiveBatch>;
}

const TICK: Duration = Duration::from_millis(250);
const DEFAULT_MAX_RATE: u32 = 200;
const MAX_RATE_LIMIT: u32 = 5000;

#[derive(Debug, Deserialize)]
pub(crate) struct LiveParams {
    device: Option<String>,
    metric: Option<String>,
    max_rate: Option<u32>,
}

/// Which points a client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LiveFilter {
    devices: Option<HashSet<String>>,
    metrics: Option<HashSet<String>>,
    /// Points per tick.
    budget: usize,
}

impl LiveFilter {
    fn new(params: &LiveParams) -> Result<Self, ApiError> {
        let names = |list: &Option<String>| {
            list.as_deref().map(|list| {
                list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect()
            })
        };
        let rate = params.max_rate.unwrap_or(DEFAULT_MAX_RATE);
        if rate == 0 || rate > MAX_RATE_LIMIT {
            return Err(ApiError::invalid(format!(
                "max_rate {rate} is not between 1 and {MAX_RATE_LIMIT} points per second"
            )));
        }
        let per_tick = (f64::from(rate) * TICK.as_secs_f64()).ceil() as usize;
        Ok(LiveFilter {
            devices: names(&params.device).filter(|set: &HashSet<String>| !set.is_empty()),
            metrics: names(&params.metric).filter(|set: &HashSet<String>| !set.is_empty()),
            budget: per_tick.max(1),
        })
    }

    fn matches(&self, point: &Point) -> bool {
        self.devices.as_ref().is_none_or(|d| d.contains(point.series.device_id()))
            && self.metrics.as_ref().is_none_or(|m| m.contains(point.series.metric()))
    }
}

/// Counters of the live stream (in `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct LiveCounters {
    connections: AtomicU64,
    open: AtomicU64,
    points_sent: AtomicU64,
    points_dropped: AtomicU64,
}

impl LiveCounters {
    pub(crate) fn metrics(self: Arc<Self>) -> impl Fn(&mut Vec<Metric>) + Send + Sync {
        move |out: &mut Vec<Metric>| {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            out.push(Metric::counter(
                "minitrue_live_connections_total",
                "WebSocket live streams opened",
                load(&self.connections),
            ));
            out.push(Metric::gauge(
                "minitrue_live_connections",
                "WebSocket live streams open now",
                load(&self.open) as f64,
            ));
            out.push(Metric::counter(
                "minitrue_live_points_sent_total",
                "Points sent to live streams",
                load(&self.points_sent),
            ));
            out.push(Metric::counter(
                "minitrue_live_points_dropped_total",
                "Points that matched a live stream but were thinned out by its rate limit",
                load(&self.points_dropped),
            ));
        }
    }
}

pub(crate) async fn live(
    State(state): State<Arc<HttpState>>,
    Query(params): Query<LiveParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let source = state.live.clone().ok_or_else(|| ApiError {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: "this node has no live stream (it does not store points)".to_string(),
    })?;
    let filter = LiveFilter::new(&params)?;
    let counters = state.live_counters.clone();
    let receiver = source.subscribe();
    Ok(upgrade.on_upgrade(move |socket| stream(socket, receiver, filter, counters)).into_response())
}

/// What matched since the last message.
#[derive(Default)]
struct Pending {
    /// The latest point per series.
    latest: HashMap<(Arc<str>, Arc<str>), (i64, f64)>,
    matched: u64,
    missed_writes: u64,
}

async fn stream(
    mut socket: WebSocket,
    mut points: Receiver<LiveBatch>,
    filter: LiveFilter,
    counters: Arc<LiveCounters>,
) {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    counters.open.fetch_add(1, Ordering::Relaxed);
    let hello = json!({
        "type": "hello",
        "interval_ms": TICK.as_millis() as u64,
        "max_rate": (filter.budget as f64 / TICK.as_secs_f64()).round() as u64,
    });
    let mut open = socket.send(Message::Text(hello.to_string())).await.is_ok();
    let mut pending = Pending::default();
    let mut ticks = tokio::time::interval(TICK);
    let mut turn = 0usize;
    while open {
        tokio::select! {
            batch = points.recv() => match batch {
                Ok(batch) => {
                    for point in batch.iter().filter(|p| filter.matches(p)) {
                        pending.matched += 1;
                        let key = (point.series.device_id_arc().clone(), point.series.metric_arc().clone());
                        pending.latest.insert(key, (point.time, point.value));
                    }
                }
                Err(RecvError::Lagged(missed)) => pending.missed_writes += missed,
                Err(RecvError::Closed) => open = false,
            },
            _ = ticks.tick() => {
                if pending.matched == 0 && pending.missed_writes == 0 {
                    continue;
                }
                let message = thin(std::mem::take(&mut pending), filter.budget, &mut turn);
                counters.points_sent.fetch_add(message.sent, Ordering::Relaxed);
                counters.points_dropped.fetch_add(message.dropped, Ordering::Relaxed);
                open = socket.send(Message::Text(message.json)).await.is_ok();
            }
            received = socket.recv() => {
                open = matches!(received, Some(Ok(message)) if !matches!(message, Message::Close(_)));
            }
        }
    }
    counters.open.fetch_sub(1, Ordering::Relaxed);
}

struct Thinned {
    json: String,
    sent: u64,
    dropped: u64,
}

/// One `points` message: the latest point of at most `budget` series, the series taking
/// turns (`turn` advances) when there are more.
fn thin(pending: Pending, budget: usize, turn: &mut usize) -> Thinned {
    let mut series: Vec<_> = pending.latest.into_iter().collect();
    series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if series.len() > budget {
        let start = *turn % series.len();
        series.rotate_left(start);
        series.truncate(budget);
        *turn = turn.wrapping_add(budget);
    }
    let sent = series.len() as u64;
    let points: Vec<_> = series
        .iter()
        .map(|((device, metric), (time, value))| {
            json!([&**device, &**metric, time.div_euclid(1_000_000), value])
        })
        .collect();
    let dropped = pending.matched.saturating_sub(sent);
    let json = json!({
        "type": "points",
        "points": points,
        "matched": pending.matched,
        "dropped": dropped,
        "missed_writes": pending.missed_writes,
        "interval_ms": TICK.as_millis() as u64,
    })
    .to_string();
    Thinned { json, sent, dropped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minitrue_common::SeriesKey;

    fn point(device: &str, metric: &str, time: i64, value: f64) -> Point {
        Point::new(SeriesKey::new(device, metric).expect("valid"), time, value)
    }

    fn params(device: Option<&str>, metric: Option<&str>, max_rate: Option<u32>) -> LiveParams {
        LiveParams { device: device.map(String::from), metric: metric.map(String::from), max_rate }
    }

    #[test]
    fn filters_by_device_and_metric_lists() {
        let filter = LiveFilter::new(&params(Some("a, b"), Some("temperature"), None)).unwrap();
        assert!(filter.matches(&point("a", "temperature", 0, 1.0)));
        assert!(filter.matches(&point("b", "temperature", 0, 1.0)));
        assert!(!filter.matches(&point("c", "temperature", 0, 1.0)));
        assert!(!filter.matches(&point("a", "humidity", 0, 1.0)));
        let all = LiveFilter::new(&params(Some(""), None, None)).unwrap();
        assert!(all.matches(&point("z", "anything", 0, 1.0)));
        assert_eq!(all.budget, 50, "200 points/s in 250 ms ticks");
    }

    #[test]
    fn refuses_rates_out_of_range() {
        assert!(LiveFilter::new(&params(None, None, Some(0))).is_err());
        assert!(LiveFilter::new(&params(None, None, Some(5001))).is_err());
        assert_eq!(LiveFilter::new(&params(None, None, Some(1))).unwrap().budget, 1);
    }

    #[test]
    fn thinning_keeps_the_latest_point_per_series_and_takes_turns() {
        let mut pending = Pending::default();
        for (device, time) in [("a", 1), ("b", 1), ("c", 1), ("a", 2)] {
            pending.matched += 1;
            pending.latest.insert((Arc::from(device), Arc::from("t")), (time * 1_000_000, 0.5));
        }
        let mut turn = 0;
        let first = thin(pending, 2, &mut turn);
        let message: serde_json::Value = serde_json::from_str(&first.json).unwrap();
        assert_eq!(message["points"], json!([["a", "t", 2, 0.5], ["b", "t", 1, 0.5]]));
        assert_eq!((message["matched"].as_u64(), message["dropped"].as_u64()), (Some(4), Some(2)));
        assert_eq!((first.sent, first.dropped), (2, 2));
        // Next tick, the same three series: `c` gets its turn first.
        let mut pending = Pending::default();
        for device in ["a", "b", "c"] {
            pending.matched += 1;
            pending.latest.insert((Arc::from(device), Arc::from("t")), (0, 1.0));
        }
        let second = thin(pending, 2, &mut turn);
        let message: serde_json::Value = serde_json::from_str(&second.json).unwrap();
        assert_eq!(message["points"][0][0], "c");
    }
}
