//! Anti-entropy: two owners of the same ranges compare what they hold and repair the
//! differences, so replicas converge whatever hints were lost or never kept (a node whose
//! disk was replaced, a damaged hint, a write that failed everywhere but on one owner).
//!
//! What is compared is a two-level Merkle tree over the ranges the two nodes share:
//! - a leaf is one series in one hour ([`BUCKET_NS`]): its point count and the wrapping sum of
//!   its points' hashes (xxHash64 of time and value bits, seeded with the series' hash);
//! - a range's digest is the same count and sum over all its leaves.
//!
//! Because a digest is a sum, it is computed in one pass over a scan, in any order, with one
//! accumulator per range. The initiator asks the peer for its range digests
//! ([`REPAIR_DIGEST_ACTION`]), asks for the leaves of only the ranges that differ, and fetches
//! the points of only the leaves that differ ([`REPAIR_POINTS_ACTION`]). Both sides then get
//! what they lack ([`reconcile`]): the union of the two, and where both hold a point at the
//! same time with different values, the value whose bits are greater (there is no write time
//! to prefer the later one; any fixed rule makes replicas converge).
//!
//! A repair never runs while a live node announces hints for either side: a hinted delete
//! not yet delivered would otherwise be undone by copying the deleted points back.
//!
//! The [`Repairer`] runs repairs: when this node starts (it is `recovering` until it has
//! repaired with every live node it shares ranges with), after the ring changes (a node gone
//! or back: the ranges that changed owner are copied to their new owners), and every
//! `interval`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Float64Array, StringArray, TimestampNanosecondArray};
use futures::TryStreamExt;
use minitrue_common::{
    series_token, Metric, MetricsSource, Point, SeriesKey, TimeRange, Token, TokenSet,
};
use minitrue_storage::{Engine, ScanRequest, SeriesFilter, StorageError, Tags};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use twox_hash::XxHash64;

use crate::hints::{points_from_ipc, points_ipc};
use crate::membership::{LocalKeys, NodeState};
use crate::peer::PeerLink;
use crate::peer::{PeerError, Peers};
use crate::ring::NodeId;
use crate::topology::{Topology, TopologyWatch};

/// The Flight action that answers digests: its body a JSON [`DigestQuestion`], its result the
/// JSON list of [`Digest`]s (one per range asked) or of [`Leaf`]s.
pub const REPAIR_DIGEST_ACTION: &str = "minitrue.repair-digest";

/// The Flight action that answers the points of leaves: its body the JSON list of
/// [`LeafKey`]s, its result an Arrow IPC stream of the points with their series' tags.
pub const REPAIR_POINTS_ACTION: &str = "minitrue.repair-points";

/// The time width of a leaf: one hour.
pub const BUCKET_NS: i64 = 3_600_000_000_000;

/// Leaves whose points are fetched in one call, by point count (a bigger leaf goes alone).
const POINTS_PER_CALL: u64 = 50_000;

/// Why a repair did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("{0} is not reachable")]
    Unreachable(NodeId),
    #[error("hints for {0} are still waiting to be delivered")]
    HintsWaiting(NodeId),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("a peer's repair answer is malformed: {0}")]
    Malformed(String),
    #[error("the two nodes do not see the same ring yet")]
    RingsDiffer,
}

/// A ring range `(start, end]` as [`crate::ring::TokenRange`] gives it.
pub type RangeBounds = (Token, Token);

/// A digest action's body: what is asked, on which ring. A node whose ring differs refuses
/// (its owners differ, so the ranges would be compared against the wrong copies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestQuestion {
    /// [`crate::Ring::fingerprint`] of the asking node's ring.
    pub ring: u64,
    pub ask: DigestRequest,
}

/// What a digest action asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestRequest {
    /// One [`Digest`] per range, in the order given.
    Ranges(Vec<RangeBounds>),
    /// Every [`Leaf`] inside the ranges.
    Leaves(Vec<RangeBounds>),
}

/// Points summarized: how many, and the wrapping sum of their hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub count: u64,
    pub hash: u64,
}

impl Digest {
    fn add(&mut self, point_hash: u64) {
        self.count += 1;
        self.hash = self.hash.wrapping_add(point_hash);
    }
}

/// One series in one [`BUCKET_NS`]-wide bucket of time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeafKey {
    pub device_id: String,
    pub metric: String,
    /// `time.div_euclid(BUCKET_NS)`.
    pub bucket: i64,
}

/// A leaf with its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    pub key: LeafKey,
    pub digest: Digest,
}

/// The hash of one point of the series whose seed is `series_seed`.
fn point_hash(series_seed: u64, time: i64, value: f64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&time.to_le_bytes());
    bytes[8..].copy_from_slice(&value.to_bits().to_le_bytes());
    XxHash64::oneshot(series_seed, &bytes)
}

/// Which of a list of ranges a token falls in.
struct RangeIndex {
    /// Inclusive intervals with the index of their range, sorted.
    intervals: Vec<(Token, Token, usize)>,
    tokens: TokenSet,
}

impl RangeIndex {
    fn new(ranges: &[RangeBounds]) -> RangeIndex {
        let mut intervals = Vec::new();
        for (index, &(start, end)) in ranges.iter().enumerate() {
            for &(lo, hi) in TokenSet::range(start, end).intervals() {
                intervals.push((lo, hi, index));
            }
        }
        intervals.sort_unstable();
        let tokens = TokenSet::from_intervals(intervals.iter().map(|&(lo, hi, _)| (lo, hi)));
        RangeIndex { intervals, tokens }
    }

    fn find(&self, token: Token) -> Option<usize> {
        let after = self.intervals.partition_point(|&(lo, _, _)| lo <= token);
        let &(_, hi, index) = self.intervals.get(after.checked_sub(1)?)?;
        (token <= hi).then_some(index)
    }
}

/// Calls `visit(device_id, metric, time, value)` for every point the scan returns.
async fn for_each_point(
    engine: &Engine,
    request: ScanRequest,
    mut visit: impl FnMut(&str, &str, i64, f64),
) -> Result<(), StorageError> {
    let mut batches = engine.scan(request)?;
    while let Some(batch) = batches.try_next().await? {
        let column = |i: usize| batch.column(i).as_any();
        let (Some(times), Some(devices), Some(metrics), Some(values)) = (
            column(0).downcast_ref::<TimestampNanosecondArray>(),
            column(1).downcast_ref::<StringArray>(),
            column(2).downcast_ref::<StringArray>(),
            column(3).downcast_ref::<Float64Array>(),
        ) else {
            return Err(StorageError::Task("a scan returned columns of other types".into()));
        };
        for row in 0..batch.num_rows() {
            visit(devices.value(row), metrics.value(row), times.value(row), values.value(row));
        }
    }
    Ok(())
}

/// The series a scan is on, with what is derived from it once per series.
#[derive(Default)]
struct SeriesCursor {
    device_id: String,
    metric: String,
    seed: u64,
    range: Option<usize>,
}

impl SeriesCursor {
    /// Moves to `(device_id, metric)` unless already there.
    fn at(&mut self, device_id: &str, metric: &str, ranges: &RangeIndex) -> &SeriesCursor {
        if self.device_id != device_id || self.metric != metric || self.device_id.is_empty() {
            let token = series_token(device_id, metric);
            self.device_id = device_id.to_string();
            self.metric = metric.to_string();
            self.seed = token;
            self.range = ranges.find(token);
        }
        self
    }
}

fn scan_of(tokens: TokenSet) -> ScanRequest {
    let series = SeriesFilter { tokens: Some(tokens), ..SeriesFilter::all() };
    ScanRequest::new(series, TimeRange::ALL)
}

/// This node's digest of each range, in the order given.
pub async fn range_digests(
    engine: &Engine,
    ranges: &[RangeBounds],
) -> Result<Vec<Digest>, StorageError> {
    let index = RangeIndex::new(ranges);
    let mut digests = vec![Digest::default(); ranges.len()];
    if index.tokens.is_empty() {
        return Ok(digests);
    }
    let mut cursor = SeriesCursor::default();
    for_each_point(engine, scan_of(index.tokens.clone()), |device, metric, time, value| {
        let series = cursor.at(device, metric, &index);
        if let Some(range) = series.range {
            digests[range].add(point_hash(series.seed, time, value));
        }
    })
    .await?;
    Ok(digests)
}

/// This node's leaves inside `ranges`.
pub async fn leaf_digests(
    engine: &Engine,
    ranges: &[RangeBounds],
) -> Result<BTreeMap<LeafKey, Digest>, StorageError> {
    let index = RangeIndex::new(ranges);
    let mut leaves: BTreeMap<LeafKey, Digest> = BTreeMap::new();
    if index.tokens.is_empty() {
        return Ok(leaves);
    }
    let mut cursor = SeriesCursor::default();
    for_each_point(engine, scan_of(index.tokens.clone()), |device, metric, time, value| {
        let series = cursor.at(device, metric, &index);
        if series.range.is_none() {
            return;
        }
        let key = LeafKey {
            device_id: series.device_id.clone(),
            metric: series.metric.clone(),
            bucket: time.div_euclid(BUCKET_NS),
        };
        let hash = point_hash(series.seed, time, value);
        leaves.entry(key).or_default().add(hash);
    })
    .await?;
    Ok(leaves)
}

/// This node's points of `leaves`, with the tags of their series.
pub async fn leaf_points(
    engine: &Engine,
    leaves: &[LeafKey],
) -> Result<(Vec<Point>, Vec<(SeriesKey, Tags)>), StorageError> {
    let mut per_series: BTreeMap<(&str, &str), BTreeSet<i64>> = BTreeMap::new();
    for leaf in leaves {
        per_series.entry((&leaf.device_id, &leaf.metric)).or_default().insert(leaf.bucket);
    }
    let mut points = Vec::new();
    let mut series_tags = Vec::new();
    for ((device_id, metric), buckets) in per_series {
        let (Some(&first), Some(&last)) = (buckets.first(), buckets.last()) else { continue };
        let Ok(key) = SeriesKey::new(device_id, metric) else { continue };
        let time = TimeRange::new(
            first.saturating_mul(BUCKET_NS),
            last.saturating_add(1).saturating_mul(BUCKET_NS),
        );
        let request = ScanRequest::new(SeriesFilter::series(device_id, metric), time);
        for_each_point(engine, request, |_, _, time, value| {
            if buckets.contains(&time.div_euclid(BUCKET_NS)) {
                points.push(Point { series: key.clone(), time, value });
            }
        })
        .await?;
        if let Some(tags) = engine.series_tags(&key) {
            series_tags.push((key, tags));
        }
    }
    Ok((points, series_tags))
}

/// What each side lacks of the other's points of the same leaves: `(to_mine, to_theirs)`.
/// Written on both sides (a point is keyed by series and time, the last write wins), both
/// hold the union, and where both had the same series and time with different values, the
/// value with the greater bits.
pub fn reconcile(mine: &[Point], theirs: &[Point]) -> (Vec<Point>, Vec<Point>) {
    let index = |points: &[Point]| -> HashMap<(SeriesKey, i64), u64> {
        points.iter().map(|p| ((p.series.clone(), p.time), p.value.to_bits())).collect()
    };
    let (my_values, their_values) = (index(mine), index(theirs));
    let missing_or_smaller = |values: &HashMap<(SeriesKey, i64), u64>, point: &Point| {
        values
            .get(&(point.series.clone(), point.time))
            .is_none_or(|&bits| bits < point.value.to_bits())
    };
    // Each side's own last value per (series, time) decides, as its engine would.
    let last_of = |points: &[Point]| -> Vec<Point> {
        let mut seen: HashMap<(SeriesKey, i64), usize> = HashMap::new();
        let mut out: Vec<Point> = Vec::new();
        for point in points {
            match seen.get(&(point.series.clone(), point.time)) {
                Some(&at) => out[at] = point.clone(),
                None => {
                    seen.insert((point.series.clone(), point.time), out.len());
                    out.push(point.clone());
                }
            }
        }
        out
    };
    let to_mine =
        last_of(theirs).into_iter().filter(|p| missing_or_smaller(&my_values, p)).collect();
    let to_theirs =
        last_of(mine).into_iter().filter(|p| missing_or_smaller(&their_values, p)).collect();
    (to_mine, to_theirs)
}

/// Answers a peer's repair actions from `engine`; a digest asked on another ring than `ring`
/// is refused. (What [`Repairer::answer`] runs; public for the fuzz target.)
pub async fn answer_from(
    engine: &Engine,
    ring: u64,
    kind: &str,
    body: &[u8],
) -> Result<Vec<u8>, RepairError> {
    let malformed = |e: serde_json::Error| RepairError::Malformed(e.to_string());
    match kind {
        REPAIR_DIGEST_ACTION => {
            let question: DigestQuestion = serde_json::from_slice(body).map_err(malformed)?;
            if question.ring != ring {
                return Err(RepairError::RingsDiffer);
            }
            match question.ask {
                DigestRequest::Ranges(ranges) => {
                    serde_json::to_vec(&range_digests(engine, &ranges).await?).map_err(malformed)
                }
                DigestRequest::Leaves(ranges) => {
                    let leaves: Vec<Leaf> = leaf_digests(engine, &ranges)
                        .await?
                        .into_iter()
                        .map(|(key, digest)| Leaf { key, digest })
                        .collect();
                    serde_json::to_vec(&leaves).map_err(malformed)
                }
            }
        }
        REPAIR_POINTS_ACTION => {
            let leaves: Vec<LeafKey> = serde_json::from_slice(body).map_err(malformed)?;
            let (points, series_tags) = leaf_points(engine, &leaves).await?;
            points_ipc(&points, &series_tags).map_err(RepairError::Malformed)
        }
        other => Err(RepairError::Malformed(format!("no repair action {other}"))),
    }
}

/// Which side a repair writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Both sides end with the union.
    Both,
    /// Only the peer is written: this node hands the series it holds over.
    PushOnly,
}

/// When repairs run.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// Between two rounds with every peer (`None`: only at start and after ring changes).
    pub interval: Option<Duration>,
    /// How long to wait after the ring changed before repairing, so that gossip agrees.
    pub settle: Duration,
    /// How often a waiting repair looks again (hints delivered, a peer reachable).
    pub retry: Duration,
    pub peer_timeout: Duration,
    /// TLS for calls to peers (when the cluster's Flight doors speak TLS).
    pub peer_link: PeerLink,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            interval: Some(Duration::from_secs(600)),
            settle: Duration::from_secs(3),
            retry: Duration::from_millis(500),
            peer_timeout: Duration::from_secs(30),
            peer_link: PeerLink::default(),
        }
    }
}

/// What one repair with one peer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    pub ranges_compared: u64,
    pub ranges_differing: u64,
    pub leaves_differing: u64,
    /// Points this node took from the peer.
    pub points_received: u64,
    /// Points this node sent the peer.
    pub points_sent: u64,
}

#[derive(Default)]
struct RepairCounters {
    repairs: AtomicU64,
    failed: AtomicU64,
    deferred: AtomicU64,
    ranges_compared: AtomicU64,
    ranges_differing: AtomicU64,
    leaves_differing: AtomicU64,
    points_received: AtomicU64,
    points_sent: AtomicU64,
    series_handed_off: AtomicU64,
    points_handed_off: AtomicU64,
    /// Progress of the current pass: peers to repair with, and done; the ranges shared with
    /// them (a range shared with two peers counts twice), and compared.
    pass_peers: AtomicU64,
    pass_peers_done: AtomicU64,
    pass_ranges: AtomicU64,
    pass_ranges_done: AtomicU64,
}

/// Runs anti-entropy repairs for this node (see the module documentation).
pub struct Repairer {
    topology: TopologyWatch,
    engine: Arc<Engine>,
    peers: Peers,
    config: RepairConfig,
    counters: Arc<RepairCounters>,
}

impl Repairer {
    pub fn new(topology: TopologyWatch, engine: Arc<Engine>, config: RepairConfig) -> Arc<Self> {
        Arc::new(Repairer {
            topology,
            engine,
            peers: Peers::new(config.peer_timeout, config.peer_link.clone()),
            config,
            counters: Arc::default(),
        })
    }

    /// Answers a peer's repair question (a Flight action of [`REPAIR_DIGEST_ACTION`] or
    /// [`REPAIR_POINTS_ACTION`]) from this node's engine.
    pub async fn answer(&self, kind: &str, body: &[u8]) -> Result<Vec<u8>, RepairError> {
        let ring = self.topology.current().ring.fingerprint();
        answer_from(&self.engine, ring, kind, body).await
    }

    /// The ring ranges `local` and `peer` both own.
    fn shared_ranges(topology: &Topology, peer: &NodeId) -> Vec<RangeBounds> {
        topology
            .ring
            .ranges()
            .filter(|range| range.owners.contains(&topology.local) && range.owners.contains(peer))
            .map(|range| (range.start, range.end))
            .collect()
    }

    /// The nodes this node shares ranges with.
    fn co_owners(topology: &Topology) -> BTreeSet<NodeId> {
        let mut partners: BTreeSet<NodeId> = BTreeSet::new();
        for range in topology.ring.ranges() {
            if range.owners.contains(&topology.local) {
                partners.extend(range.owners.iter().filter(|o| **o != topology.local).cloned());
            }
        }
        partners
    }

    /// The live nodes this node shares ranges with.
    fn partners(topology: &Topology) -> Vec<NodeId> {
        Self::co_owners(topology).into_iter().filter(|node| topology.is_alive(node)).collect()
    }

    /// Whether a co-owner that is not alive may still be one whose liveness this starting
    /// node has not established yet (seen down for less than three settles): recovery waits
    /// for it rather than turning active without its ranges.
    fn undecided_partners(&self, topology: &Topology) -> bool {
        Self::co_owners(topology).iter().any(|node| {
            topology.member(node).is_some_and(|status| {
                !status.member.alive
                    && status.down_for.is_none_or(|down| down < self.config.settle * 3)
            })
        })
    }

    /// Compares the ranges shared with `peer` and repairs both sides.
    pub async fn repair_with(&self, peer: &NodeId) -> Result<RepairReport, RepairError> {
        let topology = self.topology.current();
        let ranges = Self::shared_ranges(&topology, peer);
        self.repair_ranges(&topology, peer, ranges, Direction::Both).await
    }

    /// Gives `peer` what it lacks of `ranges` (of the current ring) from what this node
    /// holds, taking nothing back: how a leaving node hands its ranges to their next owners.
    pub async fn push_ranges(
        &self,
        peer: &NodeId,
        ranges: Vec<RangeBounds>,
    ) -> Result<RepairReport, RepairError> {
        let topology = self.topology.current();
        self.repair_ranges(&topology, peer, ranges, Direction::PushOnly).await
    }

    /// Compares `ranges` with `peer`; copies what each side lacks (`Both`), or only what the
    /// peer lacks of the series this node holds (`PushOnly`: handing ranges over).
    async fn repair_ranges(
        &self,
        topology: &Topology,
        peer: &NodeId,
        ranges: Vec<RangeBounds>,
        direction: Direction,
    ) -> Result<RepairReport, RepairError> {
        for node in [peer, &topology.local] {
            if topology.has_hints_waiting_for(node) {
                return Err(RepairError::HintsWaiting(node.clone()));
            }
        }
        let address = topology
            .live_flight_address(peer)
            .ok_or_else(|| RepairError::Unreachable(peer.clone()))?;
        let ring = topology.ring.fingerprint();
        let mut report =
            RepairReport { ranges_compared: ranges.len() as u64, ..Default::default() };
        if ranges.is_empty() {
            return Ok(report);
        }
        let (mine, theirs) = tokio::try_join!(
            async { Ok::<_, RepairError>(range_digests(&self.engine, &ranges).await?) },
            self.ask::<Vec<Digest>>(address, ring, DigestRequest::Ranges(ranges.clone())),
        )?;
        if theirs.len() != ranges.len() {
            return Err(RepairError::Malformed(format!(
                "{} range digests for {} ranges",
                theirs.len(),
                ranges.len()
            )));
        }
        let differing: Vec<RangeBounds> = ranges
            .iter()
            .zip(mine.iter().zip(&theirs))
            .filter(|(_, (mine, theirs))| mine != theirs)
            .map(|(range, _)| *range)
            .collect();
        report.ranges_differing = differing.len() as u64;
        if differing.is_empty() {
            return Ok(report);
        }
        let (my_leaves, their_leaves) = tokio::try_join!(
            async { Ok::<_, RepairError>(leaf_digests(&self.engine, &differing).await?) },
            self.ask::<Vec<Leaf>>(address, ring, DigestRequest::Leaves(differing.clone())),
        )?;
        let their_leaves: BTreeMap<LeafKey, Digest> =
            their_leaves.into_iter().map(|leaf| (leaf.key, leaf.digest)).collect();
        let mut leaves: BTreeMap<&LeafKey, u64> = BTreeMap::new();
        for (key, digest) in &my_leaves {
            if their_leaves.get(key) != Some(digest) {
                leaves.insert(key, digest.count);
            }
        }
        for (key, digest) in &their_leaves {
            // Handing over, only the series this node holds matter.
            if my_leaves.get(key) != Some(digest) && direction == Direction::Both {
                let count = leaves.entry(key).or_default();
                *count = (*count).max(digest.count);
            }
        }
        report.leaves_differing = leaves.len() as u64;
        let mut chunk: Vec<LeafKey> = Vec::new();
        let mut chunk_points = 0u64;
        for (key, count) in leaves {
            if !chunk.is_empty() && chunk_points + count > POINTS_PER_CALL {
                let leaves = std::mem::take(&mut chunk);
                self.repair_leaves(address, &leaves, direction, &mut report).await?;
                chunk_points = 0;
            }
            chunk.push(key.clone());
            chunk_points += count;
        }
        if !chunk.is_empty() {
            self.repair_leaves(address, &chunk, direction, &mut report).await?;
        }
        Ok(report)
    }

    /// Exchanges the points of `leaves` with the peer at `address` so both hold the same.
    async fn repair_leaves(
        &self,
        address: SocketAddr,
        leaves: &[LeafKey],
        direction: Direction,
        report: &mut RepairReport,
    ) -> Result<(), RepairError> {
        let body = serde_json::to_vec(leaves).map_err(|e| RepairError::Malformed(e.to_string()))?;
        let (their_bytes, (mine, my_tags)) = tokio::try_join!(
            async {
                Ok::<_, RepairError>(self.peers.action(address, REPAIR_POINTS_ACTION, body).await?)
            },
            async { Ok::<_, RepairError>(leaf_points(&self.engine, leaves).await?) },
        )?;
        let (theirs, their_tags) = points_from_ipc(&their_bytes).map_err(RepairError::Malformed)?;
        let (mut to_mine, to_theirs) = reconcile(&mine, &theirs);
        if direction == Direction::PushOnly {
            to_mine.clear();
        }
        if !to_mine.is_empty() {
            let untagged: Vec<(SeriesKey, Tags)> = their_tags
                .into_iter()
                .filter(|(key, _)| self.engine.series_tags(key).is_none())
                .collect();
            if !untagged.is_empty() {
                self.engine.set_series_tags(&untagged).await?;
            }
            self.engine.write(&to_mine).await?;
        }
        if !to_theirs.is_empty() {
            let sending: BTreeSet<&SeriesKey> = to_theirs.iter().map(|p| &p.series).collect();
            let tags: Vec<(SeriesKey, Tags)> =
                my_tags.into_iter().filter(|(key, _)| sending.contains(key)).collect();
            self.peers.write_replica(address, &to_theirs, &tags).await?;
        }
        report.points_received += to_mine.len() as u64;
        report.points_sent += to_theirs.len() as u64;
        Ok(())
    }

    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        address: SocketAddr,
        ring: u64,
        ask: DigestRequest,
    ) -> Result<T, RepairError> {
        let body = serde_json::to_vec(&DigestQuestion { ring, ask })
            .map_err(|e| RepairError::Malformed(e.to_string()))?;
        let answer = self.peers.action(address, REPAIR_DIGEST_ACTION, body).await?;
        serde_json::from_slice(&answer).map_err(|e| RepairError::Malformed(e.to_string()))
    }

    /// Whether the ring is calm enough to drop what this node no longer owns: every ring
    /// node alive and active (a recovering one may still need this node's copy) and no hints
    /// waiting anywhere.
    fn calm(topology: &Topology) -> bool {
        topology.members.iter().all(|status| {
            let member = &status.member;
            (!status.in_ring || (member.alive && member.state == Some(NodeState::Active)))
                && (!member.alive || member.hints_for.is_empty())
        })
    }

    /// Hands the series this node stores but no longer owns (after a node joined, or came
    /// back after being gone) to their owners, then drops them here. Runs only on a calm ring;
    /// returns the series dropped, or `None` when the ring was not calm.
    pub async fn hand_off(&self) -> Result<Option<u64>, RepairError> {
        let topology = self.topology.current();
        if !Self::calm(&topology) || topology.ring.is_empty() {
            return Ok(None);
        }
        let ring = &topology.ring;
        let stray: Vec<SeriesKey> = self
            .engine
            .series()
            .into_iter()
            .map(|info| info.series)
            .filter(|key| {
                !ring.series_owners(key.device_id(), key.metric()).contains(&topology.local)
            })
            .collect();
        if stray.is_empty() {
            return Ok(Some(0));
        }
        // The ranges holding them, per owner.
        let mut per_owner: BTreeMap<NodeId, BTreeSet<RangeBounds>> = BTreeMap::new();
        for key in &stray {
            let token = series_token(key.device_id(), key.metric());
            if let Some(range) = ring.range_of(token) {
                for owner in range.owners {
                    per_owner.entry(owner.clone()).or_default().insert((range.start, range.end));
                }
            }
        }
        for (owner, ranges) in per_owner {
            let ranges: Vec<RangeBounds> = ranges.into_iter().collect();
            let report = self.repair_ranges(&topology, &owner, ranges, Direction::PushOnly).await?;
            self.counters.points_handed_off.fetch_add(report.points_sent, Ordering::Relaxed);
        }
        for key in &stray {
            let delete = minitrue_storage::DeleteRequest {
                device_id: key.device_id().to_string(),
                metric: Some(key.metric().to_string()),
                time: TimeRange::ALL,
            };
            self.engine.delete(delete).await?;
        }
        self.counters.series_handed_off.fetch_add(stray.len() as u64, Ordering::Relaxed);
        tracing::info!(series = stray.len(), "handed over series this node no longer owns");
        Ok(Some(stray.len() as u64))
    }

    /// Repairs with each of `peers`; true when every one of them was repaired.
    async fn pass(&self, peers: &[NodeId]) -> bool {
        let c = &self.counters;
        let topology = self.topology.current();
        let ranges: u64 =
            peers.iter().map(|peer| Self::shared_ranges(&topology, peer).len() as u64).sum();
        c.pass_peers.store(peers.len() as u64, Ordering::Relaxed);
        c.pass_peers_done.store(0, Ordering::Relaxed);
        c.pass_ranges.store(ranges, Ordering::Relaxed);
        c.pass_ranges_done.store(0, Ordering::Relaxed);
        let mut complete = true;
        for peer in peers {
            match self.repair_with(peer).await {
                Ok(report) => {
                    c.repairs.fetch_add(1, Ordering::Relaxed);
                    c.pass_peers_done.fetch_add(1, Ordering::Relaxed);
                    c.pass_ranges_done.fetch_add(report.ranges_compared, Ordering::Relaxed);
                    c.ranges_compared.fetch_add(report.ranges_compared, Ordering::Relaxed);
                    c.ranges_differing.fetch_add(report.ranges_differing, Ordering::Relaxed);
                    c.leaves_differing.fetch_add(report.leaves_differing, Ordering::Relaxed);
                    c.points_received.fetch_add(report.points_received, Ordering::Relaxed);
                    c.points_sent.fetch_add(report.points_sent, Ordering::Relaxed);
                    if report.ranges_differing > 0 {
                        tracing::info!(
                            peer = %peer,
                            ranges = report.ranges_compared,
                            differing = report.ranges_differing,
                            leaves = report.leaves_differing,
                            received = report.points_received,
                            sent = report.points_sent,
                            "repaired"
                        );
                    }
                }
                Err(
                    error @ (RepairError::HintsWaiting(_)
                    | RepairError::Unreachable(_)
                    | RepairError::RingsDiffer),
                ) => {
                    c.deferred.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %peer, %error, "repair deferred");
                    complete = false;
                }
                Err(error) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %peer, %error, "repair failed; it will be retried");
                    complete = false;
                }
            }
        }
        complete
    }

    /// Recovers this node (when `announce` is given it starts `recovering` and turns
    /// `active` once repaired), then repairs after ring changes and every `interval`, until
    /// `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        announce: Option<LocalKeys>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let repairer = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = repairer.topology.settled() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            // Recovery: every live node this one shares ranges with, both sides repaired.
            loop {
                let topology = repairer.topology.current();
                let partners = Self::partners(&topology);
                let undecided = repairer.undecided_partners(&topology);
                if repairer.pass(&partners).await && !undecided {
                    break;
                }
                if stopped(&mut stop, repairer.config.retry).await {
                    return;
                }
            }
            if let Some(keys) = &announce {
                keys.set_state(NodeState::Active).await;
                tracing::info!("recovered: this node is active");
            }
            // Afterwards each pair is repaired by the node with the smaller id, when the ring
            // changed (after a settle, so that gossip agrees) and every interval; series this
            // node no longer owns are handed over once the ring is calm.
            let mut ring = repairer.topology.current().ring.clone();
            let mut last_round = tokio::time::Instant::now();
            let mut pending_round = false;
            // What this node held before the ring last changed may now be another's.
            let mut hand_off_due = true;
            loop {
                if stopped(&mut stop, repairer.config.retry).await {
                    return;
                }
                let topology = repairer.topology.current();
                if topology.is_in_state(&topology.local, NodeState::Left) {
                    // Decommissioned: this node owns nothing any more, and what it still
                    // holds is a copy the others have.
                    return;
                }
                if !Arc::ptr_eq(&ring, &topology.ring) {
                    ring = topology.ring.clone();
                    pending_round = true;
                    hand_off_due = true;
                    if stopped(&mut stop, repairer.config.settle).await {
                        return;
                    }
                }
                if hand_off_due {
                    match repairer.hand_off().await {
                        Ok(Some(_)) => hand_off_due = false,
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "hand-off failed; it will be retried"),
                    }
                }
                let due =
                    repairer.config.interval.is_some_and(|every| last_round.elapsed() >= every);
                if !(pending_round || due) {
                    continue;
                }
                let topology = repairer.topology.current();
                // A recovering peer repairs with every partner itself; repairing it from here
                // at the same time would copy the same points twice.
                let peers: Vec<NodeId> = Self::partners(&topology)
                    .into_iter()
                    .filter(|peer| *peer > topology.local && !topology.is_recovering(peer))
                    .collect();
                pending_round = !repairer.pass(&peers).await;
                last_round = tokio::time::Instant::now();
            }
        })
    }

    /// The repair counters, for `/metrics` and `system.metrics`.
    pub fn metrics(&self) -> Arc<dyn MetricsSource> {
        let counters = self.counters.clone();
        Arc::new(move |out: &mut Vec<Metric>| {
            let c = &counters;
            let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
            out.extend([
                Metric::counter(
                    "minitrue_cluster_repairs_total",
                    "Repairs with a peer that ran to the end",
                    load(&c.repairs),
                ),
                Metric::counter(
                    "minitrue_cluster_repairs_failed_total",
                    "Repairs with a peer that failed (retried later)",
                    load(&c.failed),
                ),
                Metric::counter(
                    "minitrue_cluster_repairs_deferred_total",
                    "Repairs put off: the peer unreachable or hints still waiting",
                    load(&c.deferred),
                ),
                Metric::counter(
                    "minitrue_cluster_repair_ranges_compared_total",
                    "Ring ranges compared with a peer",
                    load(&c.ranges_compared),
                ),
                Metric::counter(
                    "minitrue_cluster_repair_ranges_differing_total",
                    "Ring ranges whose digests differed from a peer's",
                    load(&c.ranges_differing),
                ),
                Metric::counter(
                    "minitrue_cluster_repair_leaves_differing_total",
                    "Series-hours whose digests differed from a peer's",
                    load(&c.leaves_differing),
                ),
                Metric::counter(
                    "minitrue_cluster_repair_points_received_total",
                    "Points taken from peers by repair",
                    load(&c.points_received),
                ),
                Metric::counter(
                    "minitrue_cluster_repair_points_sent_total",
                    "Points sent to peers by repair",
                    load(&c.points_sent),
                ),
                Metric::counter(
                    "minitrue_cluster_series_handed_off_total",
                    "Series given to their new owners and dropped here",
                    load(&c.series_handed_off),
                ),
                Metric::counter(
                    "minitrue_cluster_points_handed_off_total",
                    "Points sent to new owners before dropping them here",
                    load(&c.points_handed_off),
                ),
                Metric::gauge(
                    "minitrue_cluster_repair_pass_peers",
                    "Peers in the current (or last) repair pass",
                    load(&c.pass_peers) as f64,
                ),
                Metric::gauge(
                    "minitrue_cluster_repair_pass_peers_done",
                    "Peers of the current (or last) repair pass repaired",
                    load(&c.pass_peers_done) as f64,
                ),
                Metric::gauge(
                    "minitrue_cluster_repair_pass_ranges",
                    "Ranges shared with the peers of the current (or last) repair pass: what \
                     a joining or restarted node compares and copies",
                    load(&c.pass_ranges) as f64,
                ),
                Metric::gauge(
                    "minitrue_cluster_repair_pass_ranges_done",
                    "Ranges of the current (or last) repair pass compared and repaired",
                    load(&c.pass_ranges_done) as f64,
                ),
            ]);
        })
    }
}

/// Waits `wait`; true when `stop` turned true meanwhile (or can no longer change).
async fn stopped(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(device: &str, time: i64, value: f64) -> Point {
        Point { series: SeriesKey::new(device, "temperature").unwrap(), time, value }
    }

    /// What a side holds after writing `incoming` over `held` (the last write wins).
    fn apply(held: &[Point], incoming: &[Point]) -> BTreeMap<(SeriesKey, i64), u64> {
        held.iter()
            .chain(incoming)
            .map(|p| ((p.series.clone(), p.time), p.value.to_bits()))
            .collect()
    }

    #[test]
    fn reconcile_sends_each_side_what_it_lacks() {
        let mine = vec![point("a", 1, 1.0), point("a", 2, 2.0), point("b", 1, 5.0)];
        let theirs = vec![point("a", 2, 2.0), point("a", 3, 3.0), point("b", 1, 6.0)];
        let (to_mine, to_theirs) = reconcile(&mine, &theirs);
        assert_eq!(to_mine, vec![point("a", 3, 3.0), point("b", 1, 6.0)]);
        assert_eq!(to_theirs, vec![point("a", 1, 1.0)]);
    }

    #[test]
    fn ranges_index_tokens_including_the_wrapping_range() {
        let index = RangeIndex::new(&[(10, 20), (20, 5), (5, 10)]);
        assert_eq!(index.find(15), Some(0));
        assert_eq!(index.find(20), Some(0));
        assert_eq!(index.find(21), Some(1));
        assert_eq!(index.find(u64::MAX), Some(1));
        assert_eq!(index.find(0), Some(1));
        assert_eq!(index.find(6), Some(2));
        let partial = RangeIndex::new(&[(10, 20)]);
        assert_eq!(partial.find(5), None);
        assert_eq!(partial.find(21), None);
    }

    async fn engine(dir: &std::path::Path) -> Arc<Engine> {
        let mut config = minitrue_storage::EngineConfig::new(dir);
        config.background_interval = None;
        Engine::open(config).await.unwrap().0
    }

    /// Two engines, the same points but one changed value, one missing point and one extra
    /// series, across a flush on one side: digests find exactly those leaves, and writing
    /// what `reconcile` says makes every digest equal.
    #[tokio::test]
    async fn digests_find_the_differing_leaves_and_reconcile_repairs_them() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (engine(dir_a.path()).await, engine(dir_b.path()).await);
        let hour = BUCKET_NS;
        let mut points = Vec::new();
        for device in ["s1", "s2", "s3"] {
            for i in 0..30 {
                points.push(point(device, i * hour / 10, i as f64));
            }
        }
        a.write(&points).await.unwrap();
        a.flush().await.unwrap();
        let mut theirs = points.clone();
        theirs[5].value = 99.0; // s1, bucket 0
        theirs.remove(40); // s2, bucket 1
        theirs.push(point("s4", 7, 1.0));
        b.write(&theirs).await.unwrap();

        let all = vec![(0, 0)]; // one range: the whole ring
        let (da, db) =
            (range_digests(&a, &all).await.unwrap(), range_digests(&b, &all).await.unwrap());
        assert_ne!(da, db);
        assert_eq!(da[0].count, 90);
        let (la, lb) =
            (leaf_digests(&a, &all).await.unwrap(), leaf_digests(&b, &all).await.unwrap());
        let differing: BTreeSet<LeafKey> = la
            .keys()
            .chain(lb.keys())
            .filter(|key| la.get(*key) != lb.get(*key))
            .cloned()
            .collect();
        let named: Vec<(String, i64)> =
            differing.iter().map(|k| (k.device_id.clone(), k.bucket)).collect();
        assert_eq!(named, [("s1".into(), 0), ("s2".into(), 1), ("s4".into(), 0)]);

        let leaves: Vec<LeafKey> = differing.into_iter().collect();
        let (mine, _) = leaf_points(&a, &leaves).await.unwrap();
        let (other, _) = leaf_points(&b, &leaves).await.unwrap();
        assert_eq!(mine.len(), 10 + 10);
        assert_eq!(other.len(), 10 + 9 + 1);
        let (to_a, to_b) = reconcile(&mine, &other);
        a.write(&to_a).await.unwrap();
        b.write(&to_b).await.unwrap();
        assert_eq!(range_digests(&a, &all).await.unwrap(), range_digests(&b, &all).await.unwrap());
        // Ranges split the same digest: per range sums add up to the whole.
        let halves = vec![(0, u64::MAX / 2), (u64::MAX / 2, 0)];
        let split = range_digests(&a, &halves).await.unwrap();
        let whole = range_digests(&a, &all).await.unwrap()[0];
        assert_eq!(split[0].count + split[1].count, whole.count);
        assert_eq!(split[0].hash.wrapping_add(split[1].hash), whole.hash);
    }

    proptest! {
        /// Whatever two replicas hold, after each writes what `reconcile` sends it they hold
        /// the same points.
        #[test]
        fn replicas_converge(
            mine in proptest::collection::vec((0u8..3, 0i64..20, -3i8..3), 0..40),
            theirs in proptest::collection::vec((0u8..3, 0i64..20, -3i8..3), 0..40),
        ) {
            let points = |raw: &[(u8, i64, i8)]| -> Vec<Point> {
                raw.iter().map(|&(d, t, v)| point(&format!("d{d}"), t, v as f64 / 2.0)).collect()
            };
            let (mine, theirs) = (points(&mine), points(&theirs));
            let (to_mine, to_theirs) = reconcile(&mine, &theirs);
            prop_assert_eq!(apply(&mine, &to_mine), apply(&theirs, &to_theirs));
        }

        /// A digest does not depend on the order points are visited in.
        #[test]
        fn digests_are_order_free(times in proptest::collection::vec(any::<i64>(), 0..50)) {
            let mut forward = Digest::default();
            let mut backward = Digest::default();
            for &t in &times {
                forward.add(point_hash(7, t, t as f64));
            }
            for &t in times.iter().rev() {
                backward.add(point_hash(7, t, t as f64));
            }
            prop_assert_eq!(forward, backward);
        }
    }
}
