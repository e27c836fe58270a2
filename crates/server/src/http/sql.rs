//! SQL over HTTP: `POST /api/v1/sql` (any statement, answered as JSON, CSV or Arrow IPC) and
//! the seed's `POST /query` (one aggregate of one series, in the MiniTrue document's JSON).
//!
//! Both run on the node's DataFusion session, the one the Postgres door serves, so results
//! are the same as over pgwire (including the aggregate fast path). HTTP is stateless: `SET`,
//! transactions and DDL are refused (`CREATE TABLE` would outlive the request in the shared
//! session). A result streams out as the query produces it; dropping the connection drops the
//! stream, which cancels the query.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder as JsonWriterBuilder};
use datafusion::arrow::json::StructMode;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use futures::{Stream, StreamExt};
use minitrue_auth::{Door, Principal};
use minitrue_common::Metric;
use minitrue_query::QueryError;
use serde::Deserialize;
use serde_json::json;

use crate::stateless::Caller;

use super::{body_bytes, ApiError, HttpState};

/// Counters of the SQL routes (`door="http"` in `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct SqlCounters {
    queries: AtomicU64,
    failed: AtomicU64,
}

impl SqlCounters {
    /// Counts one answered query, and a failure when `answer` is an error.
    fn count(&self, answer: Result<Response, ApiError>) -> Result<Response, ApiError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if answer.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    pub(crate) fn metrics(self: Arc<Self>) -> impl Fn(&mut Vec<Metric>) + Send + Sync {
        move |out: &mut Vec<Metric>| {
            let counters = [
                (
                    "minitrue_http_queries_total",
                    "SQL statements and /query requests received over HTTP",
                    &self.queries,
                ),
                (
                    "minitrue_http_query_errors_total",
                    "HTTP queries that failed (bad SQL, bad request, execution errors)",
                    &self.failed,
                ),
            ];
            for (name, help, counter) in counters {
                out.push(
                    Metric::counter(name, help, counter.load(Ordering::Relaxed))
                        .with_label("door", "http"),
                );
            }
        }
    }
}

/// How a result is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResultFormat {
    /// `{"columns":[{"name","type"}],"rows":[[…]],"row_count","duration_ns"}`
    Json,
    /// RFC 4180 with a header line.
    Csv,
    /// The Arrow IPC stream format (what `pyarrow.ipc.open_stream` reads).
    Arrow,
}

const ARROW_STREAM_MEDIA_TYPE: &str = "application/vnd.apache.arrow.stream";

impl ResultFormat {
    fn parse(name: &str) -> Option<ResultFormat> {
        match name.trim().to_ascii_lowercase().as_str() {
            "json" | "application/json" => Some(ResultFormat::Json),
            "csv" | "text/csv" => Some(ResultFormat::Csv),
            "arrow" | "ipc" | "arrow-ipc" | ARROW_STREAM_MEDIA_TYPE => Some(ResultFormat::Arrow),
            _ => None,
        }
    }

    /// `?format=` wins; otherwise the first media type of `Accept` that names a format;
    /// otherwise JSON.
    fn choose(parameter: Option<&str>, headers: &HeaderMap) -> Result<ResultFormat, ApiError> {
        if let Some(name) = parameter.filter(|p| !p.trim().is_empty()) {
            return ResultFormat::parse(name).ok_or_else(|| {
                ApiError::invalid(format!("format {name:?} is not one of json, csv, arrow"))
            });
        }
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let chosen = accept
            .split(',')
            .filter_map(|media| ResultFormat::parse(media.split(';').next().unwrap_or("")))
            .next();
        Ok(chosen.unwrap_or(ResultFormat::Json))
    }

    fn content_type(self) -> &'static str {
        match self {
            ResultFormat::Json => "application/json",
            ResultFormat::Csv => "text/csv; charset=utf-8",
            ResultFormat::Arrow => ARROW_STREAM_MEDIA_TYPE,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SqlParams {
    format: Option<String>,
}

/// `{"sql": "...", "format": "csv"}`, the JSON form of a `/api/v1/sql` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    format: Option<String>,
}

/// `POST /api/v1/sql`: the body is the statement (any content type but JSON), or a JSON
/// object `{"sql", "format"}`.
pub(crate) async fn sql(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    connect: Option<ConnectInfo<SocketAddr>>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &principal, connect);
    state.sql_counters.count(answer_sql(&state, &caller, params, &headers, body).await)
}

/// Who asks, for the SQL checks and the audit log.
fn caller<'a>(
    state: &'a HttpState,
    principal: &'a Principal,
    connect: Option<ConnectInfo<SocketAddr>>,
) -> Caller<'a> {
    Caller { gate: &state.gate, door: Door::Http, peer: connect.map(|c| c.0), principal }
}

async fn answer_sql(
    state: &HttpState,
    caller: &Caller<'_>,
    params: SqlParams,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let ctx = session(state)?;
    let body = body_bytes(headers, body, state.max_body_bytes)?;
    let (sql, body_format) = if is_json(headers) {
        let request: SqlRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("request body: {e}")))?;
        (request.sql, request.format)
    } else {
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::invalid("the SQL text is not UTF-8"))?;
        (text, None)
    };
    let format =
        ResultFormat::choose(params.format.as_deref().or(body_format.as_deref()), headers)?;
    if sql.trim().is_empty() {
        return Err(ApiError::invalid("no SQL statement in the request"));
    }
    let stream = execute(ctx, &sql, Vec::new(), caller).await?;
    respond(stream, format, started).await
}

/// `POST /query`, as the MiniTrue document specifies it: one aggregate of one series.
#[derive(Debug, Deserialize)]
struct SeriesQuery {
    device_id: String,
    metric_name: String,
    operation: String,
    /// Unix time (0 = the beginning of time); seconds, or ms/µs/ns by magnitude.
    #[serde(default)]
    start_time: i64,
    /// Unix time (0 = now).
    #[serde(default)]
    end_time: i64,
}

/// The operations `/query` offers, and their SQL aggregate.
const OPERATIONS: [(&str, &str); 5] =
    [("avg", "avg"), ("sum", "sum"), ("min", "min"), ("max", "max"), ("count", "count")];

pub(crate) async fn series_query(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    connect: Option<ConnectInfo<SocketAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &principal, connect);
    state.sql_counters.count(answer_series_query(&state, &caller, &headers, body).await)
}

async fn answer_series_query(
    state: &HttpState,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let ctx = session(state)?;
    let body = body_bytes(headers, body, state.max_body_bytes)?;
    let request: SeriesQuery = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("request body: {e}")))?;
    let operation = request.operation.trim().to_ascii_lowercase();
    let Some((_, function)) = OPERATIONS.iter().find(|(name, _)| *name == operation) else {
        return Err(ApiError::invalid(format!(
            "operation {:?} is not one of avg, sum, min, max, count",
            request.operation
        )));
    };
    let bound = |name: &str, t: i64| -> Result<Option<i64>, ApiError> {
        match t {
            0 => Ok(None),
            t => minitrue_ingest::timestamp_from_int(t).map(Some).map_err(|_| {
                ApiError::invalid(format!("{name} {t} is not a time MiniTrue can store"))
            }),
        }
    };
    let start = bound("start_time", request.start_time)?;
    let end = bound("end_time", request.end_time)?;
    // Values travel as parameters, never spliced into the SQL text.
    let mut sql = format!(
        "SELECT CAST({function}(value) AS DOUBLE) AS result, count(value) AS n FROM readings \
         WHERE device_id = $1 AND metric = $2"
    );
    let mut params = vec![
        ScalarValue::Utf8(Some(request.device_id.clone())),
        ScalarValue::Utf8(Some(request.metric_name.clone())),
    ];
    for (bound, operator) in [(start, ">="), (end, "<=")] {
        if let Some(ns) = bound {
            params.push(ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())));
            sql.push_str(&format!(" AND time {operator} ${}", params.len()));
        }
    }
    let stream = execute(ctx, &sql, params, caller).await?;
    let batches = datafusion::physical_plan::common::collect(stream).await.map_err(query_error)?;
    let (result, count) = single_aggregate_row(&batches)?;
    let result = if count == 0 { None } else { result };
    Ok(Json(json!({
        "device_id": request.device_id,
        "metric_name": request.metric_name,
        "operation": operation,
        "result": result.map(json_number),
        "count": count,
        "duration_ns": started.elapsed().as_nanos() as u64,
    }))
    .into_response())
}

/// JSON has no NaN or infinities: they are written as strings, as Postgres' `to_json` does.
fn json_number(value: f64) -> serde_json::Value {
    if value.is_finite() {
        json!(value)
    } else if value.is_nan() {
        json!("NaN")
    } else if value > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

/// The `(aggregate, count)` row of `/query`'s SQL.
fn single_aggregate_row(batches: &[RecordBatch]) -> Result<(Option<f64>, u64), ApiError> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    let internal = |what: &str| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal error",
        message: format!("/query: {what}"),
    };
    let batch =
        batches.iter().find(|b| b.num_rows() > 0).ok_or_else(|| internal("no result row"))?;
    let result = batch
        .column(0)
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| internal("aggregate is not a double"))?;
    let count =
        batch.column(1).as_primitive_opt::<Int64Type>().ok_or_else(|| internal("count type"))?;
    let value = (!result.is_null(0)).then(|| result.value(0));
    Ok((value, count.value(0).max(0) as u64))
}

fn session(state: &HttpState) -> Result<SessionContext, ApiError> {
    state.sql.clone().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: "this node does not serve queries (it runs in ingest mode)".to_string(),
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json")
    })
}

/// Plans and starts one statement; `params` fill `$1, $2, …`.
async fn execute(
    ctx: SessionContext,
    sql: &str,
    params: Vec<ScalarValue>,
    caller: &Caller<'_>,
) -> Result<SendableRecordBatchStream, ApiError> {
    let frame = crate::stateless::plan(&ctx, sql, params, caller).await.map_err(query_error)?;
    frame.execute_stream().await.map_err(query_error)
}

/// The one place query errors become HTTP answers.
fn query_error(error: datafusion::error::DataFusionError) -> ApiError {
    let error = QueryError::from(error);
    ApiError::from_kind(error.kind(), error.to_string())
}

/// Starts the response once the first batch (or the end) is there, so planning and early
/// execution errors get a proper status; later batches stream out as they come.
async fn respond(
    mut stream: SendableRecordBatchStream,
    format: ResultFormat,
    started: Instant,
) -> Result<Response, ApiError> {
    let first = match stream.next().await {
        None => None,
        Some(batch) => Some(batch.map_err(query_error)?),
    };
    let schema = stream.schema();
    let mut encoder = Encoder::new(format, schema.clone(), started)?;
    let head = encoder.head()?;
    let batches = futures::stream::iter(first.map(Ok)).chain(stream);
    let body = encoded_body(head, batches, encoder);
    Ok(([(header::CONTENT_TYPE, format.content_type())], Body::from_stream(body)).into_response())
}

/// The body chunks: the head, one chunk per batch, and the tail (which, for JSON, reports an
/// error that happened after the status was sent; CSV and Arrow bodies are cut short instead).
fn encoded_body(
    head: Bytes,
    batches: impl Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
    encoder: Encoder,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let state = Some((Box::pin(batches), encoder));
    futures::stream::once(async move { Ok(head) }).chain(futures::stream::unfold(
        state,
        |state| async move {
            let (mut batches, mut encoder) = state?;
            match batches.next().await {
                Some(Ok(batch)) => match encoder.batch(&batch) {
                    Ok(bytes) => Some((Ok(bytes), Some((batches, encoder)))),
                    Err(error) => Some((Err(std::io::Error::other(error.message)), None)),
                },
                Some(Err(error)) => {
                    let error = query_error(error);
                    tracing::debug!(message = %error.message, "query failed while streaming");
                    match encoder.tail(Some(&error)) {
                        Some(bytes) => Some((Ok(bytes), None)),
                        None => Some((Err(std::io::Error::other(error.message)), None)),
                    }
                }
                None => encoder.tail(None).map(|bytes| (Ok(bytes), None)),
            }
        },
    ))
}

/// Writes record batches in one [`ResultFormat`].
struct Encoder {
    format: ResultFormat,
    schema: SchemaRef,
    started: Instant,
    rows: u64,
    arrow: Option<StreamWriter<Vec<u8>>>,
}

impl Encoder {
    fn new(format: ResultFormat, schema: SchemaRef, started: Instant) -> Result<Self, ApiError> {
        let arrow = match format {
            ResultFormat::Arrow => {
                Some(StreamWriter::try_new(Vec::new(), &schema).map_err(encode_error)?)
            }
            _ => None,
        };
        Ok(Encoder { format, schema, started, rows: 0, arrow })
    }

    fn head(&mut self) -> Result<Bytes, ApiError> {
        match self.format {
            ResultFormat::Json => {
                let columns: Vec<_> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|field| {
                        let pg_type = into_pg_type(field.data_type())
                            .map(|t| t.name().to_string())
                            .unwrap_or_else(|_| field.data_type().to_string());
                        json!({"name": field.name(), "type": pg_type})
                    })
                    .collect();
                let columns = serde_json::to_string(&columns).map_err(encode_error)?;
                Ok(Bytes::from(format!("{{\"columns\":{columns},\"rows\":[")))
            }
            ResultFormat::Csv => {
                let mut out = Vec::new();
                let empty = RecordBatch::new_empty(self.schema.clone());
                CsvWriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_tz_format(RFC3339_NANOS.to_string())
                    .build(&mut out)
                    .write(&empty)
                    .map_err(encode_error)?;
                Ok(out.into())
            }
            ResultFormat::Arrow => Ok(self.take_arrow_bytes()),
        }
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ApiError> {
        let before = self.rows;
        self.rows += batch.num_rows() as u64;
        match self.format {
            ResultFormat::Json => {
                let mut out = Vec::new();
                let mut writer = JsonWriterBuilder::new()
                    .with_explicit_nulls(true)
                    .with_struct_mode(StructMode::ListOnly)
                    .with_timestamp_tz_format(RFC3339_NANOS.to_string())
                    .build::<_, LineDelimited>(&mut out);
                writer.write(batch).map_err(encode_error)?;
                writer.finish().map_err(encode_error)?;
                drop(writer);
                // Rows come one per line; raw newlines cannot occur inside JSON values, so
                // they become the separators of the `rows` array.
                if out.last() == Some(&b'\n') {
                    out.pop();
                }
                for byte in out.iter_mut() {
                    if *byte == b'\n' {
                        *byte = b',';
                    }
                }
                if before > 0 && !out.is_empty() {
                    out.insert(0, b',');
                }
                Ok(out.into())
            }
            ResultFormat::Csv => {
                let mut out = Vec::new();
                CsvWriterBuilder::new()
                    .with_header(false)
                    .with_timestamp_tz_format(RFC3339_NANOS.to_string())
                    .build(&mut out)
                    .write(batch)
                    .map_err(encode_error)?;
                Ok(out.into())
            }
            ResultFormat::Arrow => {
                self.arrow.as_mut().expect("arrow writer").write(batch).map_err(encode_error)?;
                Ok(self.take_arrow_bytes())
            }
        }
    }

    /// The end of the body; `None` when the format has no way to report `error` in-band.
    fn tail(&mut self, error: Option<&ApiError>) -> Option<Bytes> {
        match (self.format, error) {
            (ResultFormat::Json, error) => {
                let mut tail = json!({
                    "row_count": self.rows,
                    "duration_ns": self.started.elapsed().as_nanos() as u64,
                });
                if let Some(error) = error {
                    tail["error"] = json!({"code": error.code, "message": error.message});
                }
                // `tail` is an object: splice its members after `"rows":[…]`.
                let text = tail.to_string();
                Some(Bytes::from(format!("],{}", &text[1..])))
            }
            (_, Some(_)) => None,
            (ResultFormat::Csv, None) => Some(Bytes::new()),
            (ResultFormat::Arrow, None) => {
                let writer = self.arrow.as_mut().expect("arrow writer");
                writer.finish().ok()?;
                Some(self.take_arrow_bytes())
            }
        }
    }

    fn take_arrow_bytes(&mut self) -> Bytes {
        self.arrow.as_mut().map(|w| std::mem::take(w.get_mut())).unwrap_or_default().into()
    }
}

/// Timestamps with a zone are written as RFC 3339 (`2026-03-01T12:00:00.25+00:00`): as many
/// fraction digits as needed (0, 3, 6 or 9), and the column's offset.
const RFC3339_NANOS: &str = "%Y-%m-%dT%H:%M:%S%.f%:z";

fn encode_error(error: impl std::fmt::Display) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal error",
        message: format!("encoding the result: {error}"),
    }
}
