//! The HTTP front door: writes for clients that don't speak MQTT, and the node's metrics.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/write` | JSON points: one seed object `{"device_id","metric_name","timestamp","value"}` or an array of them |
//! | `POST /api/v2/write?precision=ns\|us\|ms\|s` | InfluxDB 2 line protocol (what Telegraf's `influxdb_v2` output sends); `org`/`bucket` are accepted and ignored |
//! | `POST /write?precision=n\|u\|ms\|s` | InfluxDB 1 line protocol |
//! | `POST /api/v1/sql?format=json\|csv\|arrow` | one SQL statement (the body, or JSON `{"sql"}`), answered as JSON, CSV or an Arrow IPC stream ([`sql`]) |
//! | `POST /query` | the MiniTrue document's query: `{"device_id","metric_name","operation","start_time","end_time"}` → `{…,"result","count","duration_ns"}` |
//! | `GET /metrics` | Prometheus text format: every counter and gauge of the node |
//! | `GET /health`, `GET\|HEAD /ping` | liveness, in InfluxDB's shapes so its clients' checks pass |
//! | `GET /ws/live?device=&metric=&max_rate=` | WebSocket: acknowledged points as they are written, rate-limited ([`live`]) |
//! | `GET /api/v1/cluster` | the nodes, their state, ring share and storage figures ([`cluster`]) |
//! | `POST /api/v1/cluster/decommission`, `GET` the same | hand this node's ranges to the others and leave the cluster; its progress |
//! | `GET /`, `GET /assets/…` | the web UI ([`ui`]) |
//! | `POST /api/v1/login`, `POST /api/v1/logout`, `GET /api/v1/whoami` | the web UI's login (a session cookie) and who a request is |
//!
//! Every route passes [`access`] first: browser checks against cross-site requests and DNS
//! rebinding, then, when the node has users, credentials (token, password or the UI's
//! session) and the role the route needs.
//!
//! Writes take the same path as MQTT: [`Parser`] → [`PointSink`] (the WAL). The response is
//! sent after the points are durable. Bodies may be gzip-compressed (`Content-Encoding: gzip`,
//! Telegraf's default). Valid points of a body are stored even when others are rejected; the
//! response is then `400` with the counts and the first rejections (InfluxDB's partial-write
//! convention), and the rejections are counted per reason like MQTT ones.

mod access;
mod cluster;
mod live;
mod sql;
mod ui;

pub use cluster::{Decommissioning, NodeIdentity};
pub use live::LiveSource;

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use minitrue_auth::Gatekeeper;

use crate::tls_incoming::{tls_incoming, TlsIncoming};
use crate::DoorTls;
use minitrue_common::{ErrorKind, MetricsRegistry};
use minitrue_ingest::mqtt::{IngestCounters, PointSink, WriteBatch};
use minitrue_ingest::{Interner, Item, ParsedMessage, Parser, Precision};
use serde::Deserialize;
use serde_json::json;
use tokio_rustls::TlsAcceptor;

/// What the HTTP door needs from the node.
#[derive(Clone)]
pub struct HttpState {
    pub parser: Arc<Parser>,
    pub sink: Arc<dyn PointSink>,
    /// The HTTP door's own counters (also registered in `metrics` under `door="http"`).
    pub counters: Arc<IngestCounters>,
    pub metrics: MetricsRegistry,
    /// Largest request body, after decompression. Default 64 MiB.
    pub max_body_bytes: usize,
    /// The node's SQL session; `None` when the node only ingests (queries answer 503).
    pub sql: Option<SessionContext>,
    sql_counters: Arc<sql::SqlCounters>,
    /// Acknowledged points for `/ws/live`; `None` answers 503.
    pub live: Option<Arc<dyn LiveSource>>,
    live_counters: Arc<live::LiveCounters>,
    /// This node, for `/api/v1/cluster`.
    pub node: Option<NodeIdentity>,
    /// `/api/v1/cluster/decommission`; `None` answers 503 (not in a cluster).
    pub decommission: Option<Arc<dyn cluster::Decommissioning>>,
    /// Who may do what (see [`access`]).
    pub gate: Arc<Gatekeeper>,
    /// `GET /metrics` without credentials (`--metrics-public`). Default false.
    pub metrics_public: bool,
    /// Session cookies are marked `Secure` (the door speaks HTTPS). Default false.
    pub secure_cookies: bool,
}

impl HttpState {
    pub fn new(
        parser: Arc<Parser>,
        sink: Arc<dyn PointSink>,
        metrics: MetricsRegistry,
        gate: Arc<Gatekeeper>,
    ) -> Self {
        let counters = Arc::new(IngestCounters::default());
        metrics.register(counters.clone().metrics("http"));
        let sql_counters = Arc::new(sql::SqlCounters::default());
        metrics.register(Arc::new(sql_counters.clone().metrics()));
        let live_counters = Arc::new(live::LiveCounters::default());
        metrics.register(Arc::new(live_counters.clone().metrics()));
        HttpState {
            parser,
            sink,
            counters,
            metrics,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sql: None,
            sql_counters,
            live: None,
            live_counters,
            node: None,
            decommission: None,
            gate,
            metrics_public: false,
            secure_cookies: false,
        }
    }

    /// Streams `source`'s points on `/ws/live`.
    pub fn with_live(mut self, source: Arc<dyn LiveSource>) -> Self {
        self.live = Some(source);
        self
    }

    /// Names this node on `/api/v1/cluster`.
    pub fn with_node(mut self, node: NodeIdentity) -> Self {
        self.node = Some(node);
        self
    }

    /// Decommissions this node on `POST /api/v1/cluster/decommission`.
    pub fn with_decommission(mut self, decommission: Arc<dyn cluster::Decommissioning>) -> Self {
        self.decommission = Some(decommission);
        self
    }

    /// Serves queries (`/api/v1/sql`, `/query`) on `session`.
    pub fn with_sql(mut self, session: SessionContext) -> Self {
        self.sql = Some(session);
        self
    }
}

/// The routes, for serving or for tests that call them in process.
pub fn router(state: HttpState) -> Router {
    let limit = state.max_body_bytes;
    let state = Arc::new(state);
    Router::new()
        .route("/api/v1/write", post(write_json))
        .route("/api/v2/write", post(write_line_protocol))
        .route("/write", post(write_line_protocol))
        .route("/api/v1/sql", post(sql::sql))
        .route("/query", post(sql::series_query))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ping", get(ping).head(ping))
        .route("/ws/live", get(live::live))
        .route("/api/v1/cluster", get(cluster::cluster))
        .route(
            "/api/v1/cluster/decommission",
            get(cluster::decommission_progress).post(cluster::decommission),
        )
        .route("/api/v1/login", post(access::login))
        .route("/api/v1/logout", post(access::logout))
        .route("/api/v1/whoami", get(access::whoami))
        .route("/", get(ui::index))
        .route("/assets/*name", get(ui::asset))
        // Before every route, and before unknown paths are answered 404.
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::authenticate))
        // Compressed bodies are bounded again after inflating (see `body_bytes`).
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves HTTP on `listener` until `shutdown` resolves, then finishes requests in flight.
/// With `tls`, the door speaks HTTPS only (and its session cookies are `Secure`).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    mut state: HttpState,
    tls: Option<DoorTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        let service = router(state).into_make_service_with_connect_info::<SocketAddr>();
        return axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
    };
    state.secure_cookies = true;
    let config = tls.identity.server_config(&[b"http/1.1"]).map_err(std::io::Error::other)?;
    let incoming = tls_incoming(listener, TlsAcceptor::from(config), "http", &state.metrics);
    serve_https(incoming, router(state), shutdown).await;
    Ok(())
}

/// The HTTPS loop: HTTP/1.1 (with upgrades, for `/ws/live`) on every TLS connection, the
/// router seeing the peer address as `ConnectInfo` like over plain HTTP.
async fn serve_https(
    mut incoming: TlsIncoming,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    loop {
        let connection = tokio::select! {
            Some(Ok(connection)) = incoming.next() => connection,
            _ = &mut shutdown => return,
        };
        let Some(peer) = connection.peer() else { continue };
        let service = router.clone().layer(axum::Extension(ConnectInfo(peer)));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    hyper_util::rt::TokioIo::new(connection),
                    hyper_util::service::TowerToHyperService::new(service),
                )
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "https connection ended with an error");
            }
        });
    }
}

/// The largest request body taken by default (after gzip inflation).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// An error answer: InfluxDB 2's `{"code","message"}` body with the matching status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, code: "invalid", message: message.into() }
    }

    /// The one place storage error kinds become HTTP statuses.
    fn from_kind(kind: ErrorKind, message: String) -> ApiError {
        let (status, code) = match kind {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not found"),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::Unavailable | ErrorKind::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ErrorKind::Corrupt | ErrorKind::Io | ErrorKind::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        };
        ApiError { status, code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"code": self.code, "message": self.message}))).into_response()
    }
}

/// The request body, inflated when gzip-compressed, bounded by `max_body_bytes`.
fn body_bytes(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") => {
            let mut inflated = Vec::new();
            let read = flate2::read::GzDecoder::new(&body[..])
                .take(max as u64 + 1)
                .read_to_end(&mut inflated);
            match read {
                Ok(_) if inflated.len() > max => Err(ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "request too large",
                    message: format!("the inflated body is larger than {max} bytes"),
                }),
                Ok(_) => Ok(inflated.into()),
                Err(error) => {
                    Err(ApiError::invalid(format!("gzip body does not inflate: {error}")))
                }
            }
        }
        Some(other) => Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported media type",
            message: format!("Content-Encoding {other:?} is not supported (use gzip or identity)"),
        }),
    }
}

async fn write_json(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = body_bytes(&headers, body, state.max_body_bytes)?;
    let mut parsed = ParsedMessage::new();
    state.parser.parse_json_points(
        &body,
        minitrue_ingest::now_ns(),
        &mut Interner::new(),
        &mut parsed,
    );
    store(&state, parsed).await
}

#[derive(Debug, Deserialize)]
struct WriteParams {
    precision: Option<String>,
}

/// Both InfluxDB write routes: v2's `/api/v2/write` and v1's `/write` take the same body and
/// `precision` parameter (v2's `org`/`bucket` and v1's `db` are ignored).
async fn write_line_protocol(
    State(state): State<Arc<HttpState>>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let precision = match params.precision.as_deref() {
        None | Some("") => Precision::Nanoseconds,
        Some(text) => Precision::parse(text).ok_or_else(|| {
            ApiError::invalid(format!("precision {text:?} is not one of ns, us, ms, s"))
        })?,
    };
    let body = body_bytes(&headers, body, state.max_body_bytes)?;
    let mut parsed = ParsedMessage::new();
    state.parser.parse_line_protocol(
        &body,
        precision,
        minitrue_ingest::now_ns(),
        &mut Interner::new(),
        &mut parsed,
    );
    store(&state, parsed).await
}

/// Most rejections listed in a response body (all are counted).
const REJECTIONS_LISTED: usize = 20;

/// Writes the valid points durably, then answers: 204 when nothing was rejected, otherwise
/// 400 with the counts and the first rejections.
async fn store(state: &HttpState, mut parsed: ParsedMessage) -> Result<Response, ApiError> {
    let counters = &state.counters;
    counters.messages.fetch_add(1, Ordering::Relaxed);
    for rejection in &parsed.rejected {
        counters.count_rejection(&rejection.reason);
    }
    let accepted = parsed.points.len();
    if accepted > 0 {
        let mut batch = WriteBatch::default();
        batch.absorb(&mut parsed);
        state.sink.write(batch).await.map_err(|e| ApiError::from_kind(e.kind, e.message))?;
        counters.points_accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
    }
    if parsed.rejected.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let first = &parsed.rejected[0];
    let listed: Vec<_> = parsed
        .rejected
        .iter()
        .take(REJECTIONS_LISTED)
        .map(|r| {
            let (item, index) = match r.item {
                Item::Message => ("body", None),
                Item::Element(i) => ("element", Some(i)),
                Item::Line(n) => ("line", Some(n)),
            };
            json!({"reason": r.label(), "detail": r.detail, "item": item, "index": index})
        })
        .collect();
    let body = json!({
        "code": "invalid",
        "message": format!(
            "partial write: {} rejected, {accepted} points stored; first: {}: {}",
            parsed.rejected.len(), first.label(), first.detail
        ),
        "accepted": accepted,
        "rejected": parsed.rejected.len(),
        "rejections": listed,
    });
    Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render_prometheus(),
    )
        .into_response()
}

async fn health() -> Response {
    Json(json!({
        "name": "minitrue",
        "message": "ready for queries and writes",
        "status": "pass",
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

async fn ping() -> Response {
    (
        StatusCode::NO_CONTENT,
        [("X-Influxdb-Version", concat!("minitrue-", env!("CARGO_PKG_VERSION")))],
    )
        .into_response()
}
