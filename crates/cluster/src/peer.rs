//! Talking to other nodes over Arrow Flight: replica writes as `DoPut` with a path descriptor
//! `["minitrue", "replica-write", <tags JSON>]` and record batches in `readings`' schema;
//! plan fragments of distributed queries as `DoGet` tickets ([`Peers::run_fragment`]).
//!
//! The receiving side is the node's ordinary Flight door, which hands these descriptors to
//! [`crate::Replicator::apply_replica`]; see [`ReplicaWrite::from_path`]. With a cluster
//! secret, every call carries a fresh peer credential ([`PeerLink`]), without which the door
//! refuses these calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor, Ticket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use minitrue_common::{Point, SeriesKey};
use minitrue_query::FRAGMENT_TICKET_PREFIX;
use minitrue_storage::{readings_schema, DeleteRequest, Tags};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::transport::{PeerTls, TlsConnector};
use minitrue_auth::cluster::{PeerSigner, PEER_HEADER};

/// Largest message a peer call sends or accepts, as the Flight door's limit: 64 MiB.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;

/// Rows per record batch of a replica write (about 3 MiB), so that a write of any size
/// travels, and is stored by the peer, one bounded message at a time.
pub const REPLICA_BATCH_ROWS: usize = 65_536;

/// The first two elements of a replica write's path descriptor.
pub const REPLICA_WRITE_PATH: [&str; 2] = ["minitrue", "replica-write"];

/// The Flight action type of a delete sent to every node of the ring; its body is a JSON
/// [`DeleteAction`], its one result the JSON count of points deleted in the ranges the
/// action names for counting.
pub const REPLICA_DELETE_ACTION: &str = "minitrue.replica-delete";

/// A delete as it travels to a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteAction {
    pub requests: Vec<DeleteRequest>,
    /// The ring positions whose deleted points this node counts (each point is counted by
    /// one node only); empty for a delivered hint.
    pub counted: minitrue_common::TokenSet,
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {address}: {message}")]
    Call { address: SocketAddr, message: String },
    #[error("replica write is malformed: {0}")]
    Malformed(String),
}

/// A series' tags as they travel in a replica write's descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeriesTagsWire {
    device_id: String,
    metric: String,
    tags: Vec<(String, String)>,
}

/// A replica write as received: the points and the tags of their series.
#[derive(Debug, Default)]
pub struct ReplicaWrite {
    pub points: Vec<Point>,
    pub series_tags: Vec<(SeriesKey, Tags)>,
}

impl ReplicaWrite {
    /// The tags carried by a replica write's path descriptor, or `None` when `path` is not a
    /// replica write at all.
    pub fn from_path(path: &[String]) -> Option<Result<Vec<(SeriesKey, Tags)>, PeerError>> {
        if path.len() != 3 || path[0] != REPLICA_WRITE_PATH[0] || path[1] != REPLICA_WRITE_PATH[1] {
            return None;
        }
        Some(decode_tags(&path[2]))
    }
}

pub(crate) fn decode_tags(text: &str) -> Result<Vec<(SeriesKey, Tags)>, PeerError> {
    let wire: Vec<SeriesTagsWire> =
        serde_json::from_str(text).map_err(|e| PeerError::Malformed(format!("tags: {e}")))?;
    wire.into_iter()
        .map(|entry| {
            let key = SeriesKey::new(&entry.device_id, &entry.metric)
                .map_err(|e| PeerError::Malformed(e.to_string()))?;
            Ok((key, Tags::from(entry.tags)))
        })
        .collect()
}

pub(crate) fn encode_tags(series_tags: &[(SeriesKey, Tags)]) -> String {
    let wire: Vec<SeriesTagsWire> = series_tags
        .iter()
        .map(|(key, tags)| SeriesTagsWire {
            device_id: key.device_id().to_string(),
            metric: key.metric().to_string(),
            tags: tags.to_vec(),
        })
        .collect();
    serde_json::to_string(&wire).unwrap_or_else(|_| "[]".to_string())
}

/// Points as a record batch in `readings`' schema.
pub fn points_to_batch(points: &[Point]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let times: TimestampNanosecondArray = points.iter().map(|p| Some(p.time)).collect();
    let devices: StringArray = points.iter().map(|p| Some(p.series.device_id())).collect();
    let metrics: StringArray = points.iter().map(|p| Some(p.series.metric())).collect();
    let values: Float64Array = points.iter().map(|p| Some(p.value)).collect();
    RecordBatch::try_new(
        readings_schema(),
        vec![
            Arc::new(times.with_timezone("UTC")),
            Arc::new(devices),
            Arc::new(metrics),
            Arc::new(values),
        ],
    )
}

/// The points of a record batch in `readings`' schema (what [`points_to_batch`] writes).
pub fn batch_to_points(batch: &RecordBatch) -> Result<Vec<Point>, PeerError> {
    let malformed = |what: &str| PeerError::Malformed(what.to_string());
    if batch.num_columns() != 4 {
        return Err(malformed("a replica batch has four columns: time, device_id, metric, value"));
    }
    let column_is = |index: usize, ok: fn(&DataType) -> bool| ok(batch.column(index).data_type());
    if !column_is(0, |t| matches!(t, DataType::Timestamp(TimeUnit::Nanosecond, _))) {
        return Err(malformed("time is not a nanosecond timestamp"));
    }
    if !column_is(1, |t| *t == DataType::Utf8) {
        return Err(malformed("device_id"));
    }
    if !column_is(2, |t| *t == DataType::Utf8) {
        return Err(malformed("metric"));
    }
    if !column_is(3, |t| *t == DataType::Float64) {
        return Err(malformed("value is not a double"));
    }
    // NULLs and invalid names are refused the way `INSERT INTO readings` refuses them.
    let mut points = Vec::with_capacity(batch.num_rows());
    minitrue_query::batch_to_points(batch, 0, &mut points)
        .map_err(|e| PeerError::Malformed(e.to_string()))?;
    Ok(points)
}

/// How this node reaches its peers: over TLS or not, and the credential its calls carry.
#[derive(Clone, Debug, Default)]
pub struct PeerLink {
    /// Calls go over TLS with this configuration (`--tls-cert`).
    pub tls: Option<PeerTls>,
    /// Signs every call with the cluster secret; `None` only with `--insecure-cluster`.
    pub signer: Option<Arc<PeerSigner>>,
}

/// Flight clients to peers, one channel per address, made on first use.
pub struct Peers {
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    timeout: Duration,
    link: PeerLink,
}

impl Peers {
    /// Calls give up after `timeout` (connecting included) and go as `link` says.
    pub fn new(timeout: Duration, link: PeerLink) -> Peers {
        Peers { channels: Mutex::new(HashMap::new()), timeout, link }
    }

    fn client(&self, address: SocketAddr) -> Result<FlightClient, PeerError> {
        let mut client = FlightClient::new_from_inner(self.limited_client(address)?);
        if let Some(signer) = &self.link.signer {
            client
                .add_header(PEER_HEADER, &signer.credential())
                .map_err(|e| PeerError::Call { address, message: e.to_string() })?;
        }
        Ok(client)
    }

    /// `message` as a request carrying this node's peer credential.
    fn signed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(signer) = &self.link.signer {
            // The credential is base64url and digits: always a valid header value.
            if let Ok(value) = signer.credential().parse() {
                request.metadata_mut().insert(PEER_HEADER, value);
            }
        }
        request
    }

    /// A raw Flight client with the Flight door's message limit rather than tonic's 4 MiB
    /// (repair answers are one message of up to that size); every peer client is one.
    fn limited_client(
        &self,
        address: SocketAddr,
    ) -> Result<FlightServiceClient<Channel>, PeerError> {
        Ok(FlightServiceClient::new(self.channel(address)?)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
    }

    fn channel(&self, address: SocketAddr) -> Result<Channel, PeerError> {
        let mut channels = self.channels.lock();
        let channel = match channels.get(&address) {
            Some(channel) => channel.clone(),
            None => {
                let scheme = if self.link.tls.is_some() { "https" } else { "http" };
                let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
                    .map_err(|e| PeerError::Call { address, message: e.to_string() })?
                    .connect_timeout(self.timeout)
                    .timeout(self.timeout)
                    .tcp_nodelay(true);
                let channel = match &self.link.tls {
                    Some(tls) => endpoint
                        .connect_with_connector_lazy(TlsConnector::new(tls.clone(), address)),
                    None => endpoint.connect_lazy(),
                };
                channels.insert(address, channel.clone());
                channel
            }
        };
        Ok(channel)
    }

    /// Writes `points` (and their series' tags) on the peer at `address`; resolves when the
    /// peer has them durably.
    pub async fn write_replica(
        &self,
        address: SocketAddr,
        points: &[Point],
        series_tags: &[(SeriesKey, Tags)],
    ) -> Result<(), PeerError> {
        let call = |message: String| PeerError::Call { address, message };
        let batches = points
            .chunks(REPLICA_BATCH_ROWS)
            .map(|chunk| points_to_batch(chunk).map_err(FlightError::from))
            .collect::<Vec<_>>();
        let path = vec![
            REPLICA_WRITE_PATH[0].to_string(),
            REPLICA_WRITE_PATH[1].to_string(),
            encode_tags(series_tags),
        ];
        let data = FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(MAX_PEER_MESSAGE_BYTES / 2)
            .with_flight_descriptor(Some(FlightDescriptor::new_path(path)))
            .build(futures::stream::iter(batches));
        let mut client = self.client(address)?;
        let results = client.do_put(data).await.map_err(|e| call(e.to_string()))?;
        results.try_collect::<Vec<_>>().await.map_err(|e| call(e.to_string()))?;
        Ok(())
    }

    /// Applies `requests` on the peer at `address`; resolves with the points it deleted in
    /// the series on `counted`.
    pub async fn delete_replica(
        &self,
        address: SocketAddr,
        requests: &[DeleteRequest],
        counted: &minitrue_common::TokenSet,
    ) -> Result<u64, PeerError> {
        let action = DeleteAction { requests: requests.to_vec(), counted: counted.clone() };
        let body = serde_json::to_vec(&action)
            .map_err(|e| PeerError::Call { address, message: e.to_string() })?;
        let count = self.action(address, REPLICA_DELETE_ACTION, body).await?;
        serde_json::from_slice(&count)
            .map_err(|e| PeerError::Call { address, message: format!("bad delete result: {e}") })
    }

    /// Runs the Flight action `kind` with `body` on the peer at `address` and returns its one
    /// result (any size the door sends).
    pub async fn action(
        &self,
        address: SocketAddr,
        kind: &str,
        body: Vec<u8>,
    ) -> Result<bytes::Bytes, PeerError> {
        let call = |message: String| PeerError::Call { address, message };
        let mut client = self.limited_client(address)?;
        let action = arrow_flight::Action::new(kind, body);
        let results: Vec<arrow_flight::Result> = client
            .do_action(self.signed(action))
            .await
            .map_err(|status| call(status.message().to_string()))?
            .into_inner()
            .try_collect()
            .await
            .map_err(|status| call(status.message().to_string()))?;
        match <[arrow_flight::Result; 1]>::try_from(results) {
            Ok([result]) => Ok(result.body),
            Err(results) => Err(call(format!("{} results to {kind}, not one", results.len()))),
        }
    }

    /// Runs a plan fragment on the peer at `address` (a `DoGet` whose ticket is
    /// [`FRAGMENT_TICKET_PREFIX`] + `payload`) and streams its batches, each with the bytes
    /// that arrived for it (its IPC message, and the schema before the first).
    pub async fn run_fragment(
        &self,
        address: SocketAddr,
        payload: &[u8],
    ) -> Result<FragmentBatches, tonic::Status> {
        let mut client =
            self.limited_client(address).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut ticket = Vec::with_capacity(FRAGMENT_TICKET_PREFIX.len() + payload.len());
        ticket.extend_from_slice(FRAGMENT_TICKET_PREFIX);
        ticket.extend_from_slice(payload);
        let response = client.do_get(self.signed(Ticket { ticket: ticket.into() })).await?;
        let arrived = Arc::new(AtomicUsize::new(0));
        let counted = arrived.clone();
        let messages = response
            .into_inner()
            .map_err(|status| FlightError::Tonic(Box::new(status)))
            .inspect_ok(move |data| {
                counted.fetch_add(data.data_header.len() + data.data_body.len(), Ordering::Relaxed);
            });
        let batches = FlightRecordBatchStream::new_from_flight_data(messages).map(move |batch| {
            batch.map(|batch| (batch, arrived.swap(0, Ordering::Relaxed))).map_err(|error| {
                match error {
                    FlightError::Tonic(status) => *status,
                    other => tonic::Status::internal(other.to_string()),
                }
            })
        });
        Ok(batches.boxed())
    }
}

/// A fragment's batches as they arrive from a peer, with their bytes on the wire.
pub type FragmentBatches = BoxStream<'static, Result<(RecordBatch, usize), tonic::Status>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_tags_survive_the_wire_format() {
        let key = |d: &str, m: &str| SeriesKey::new(d, m).unwrap();
        let points = vec![
            Point { series: key("s1", "temperature"), time: 1, value: 20.5 },
            Point { series: key("s1", "temperature"), time: 2, value: f64::NAN },
            Point { series: key("s2", "humidity"), time: -5, value: -0.0 },
        ];
        let back = batch_to_points(&points_to_batch(&points).unwrap()).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in points.iter().zip(&back) {
            assert_eq!(
                (&a.series, a.time, a.value.to_bits()),
                (&b.series, b.time, b.value.to_bits())
            );
        }
        // NULLs and bad names are refused, not stored.
        let batch = points_to_batch(&points).unwrap();
        let null_value = Float64Array::from(vec![Some(1.0), None, Some(2.0)]);
        let mut columns = batch.columns().to_vec();
        columns[3] = Arc::new(null_value);
        // What a sender that declares the column nullable could send.
        let fields: Vec<arrow::datatypes::Field> = readings_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let nullable = Arc::new(arrow::datatypes::Schema::new(fields));
        let with_null = RecordBatch::try_new(nullable, columns).unwrap();
        assert!(matches!(batch_to_points(&with_null), Err(PeerError::Malformed(_))));
        let tags: Vec<(SeriesKey, Tags)> = vec![(
            key("s1", "temperature"),
            Tags::from(vec![("site".to_string(), "north".to_string())]),
        )];
        let path: Vec<String> = vec!["minitrue".into(), "replica-write".into(), encode_tags(&tags)];
        assert_eq!(ReplicaWrite::from_path(&path).unwrap().unwrap(), tags);
        assert!(ReplicaWrite::from_path(&["readings".to_string()]).is_none());
        let bad = vec!["minitrue".into(), "replica-write".into(), "{".into()];
        assert!(matches!(ReplicaWrite::from_path(&bad), Some(Err(PeerError::Malformed(_)))));
    }
}
