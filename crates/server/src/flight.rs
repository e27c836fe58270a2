//! The Arrow Flight door: Flight SQL for `pyarrow.flight` and ADBC clients, plus plain Flight
//! for three-line scripts.
//!
//! | call | what |
//! |---|---|
//! | Flight SQL `CommandStatementQuery` → `DoGet` | any query; the result streams as record batches |
//! | Flight SQL prepared statements | `CreatePreparedStatement`, parameters bound by `DoPut`, `DoGet`; updates with parameter rows |
//! | Flight SQL `CommandStatementUpdate` / `CommandStatementIngest` | `INSERT`/`DELETE`; bulk ingest into `readings` (ADBC's `adbc_ingest`) |
//! | Flight SQL `GetCatalogs`, `GetDbSchemas`, `GetTables` (with Arrow schemas), `GetTableTypes`, `GetSqlInfo` | metadata ([`catalog`]) |
//! | plain `DoGet` | the ticket is the SQL text itself (UTF-8) |
//! | plain `GetFlightInfo` | a command descriptor whose command is the SQL text; its ticket is the SQL |
//! | plain `DoPut` | path descriptor `readings`: record batches `(time, device_id, metric, value)` written durably ([`write`]) |
//!
//! Statements run on the node's DataFusion session (the one pgwire and HTTP use), so results
//! are the same as over every other door. Results stream: a batch is encoded when gRPC has room
//! to send it, so a result of any size is served in bounded memory, and dropping the call
//! drops the query. Like HTTP, the door is stateless ([`handle`]): DDL, `SET` and transactions
//! are refused, and statement handles carry their SQL and parameters.
//!
//! Errors are gRPC statuses mapped once, in [`query_status`]: bad SQL or parameters →
//! `INVALID_ARGUMENT`, a missing table → `NOT_FOUND`, an engine that is shutting down →
//! `UNAVAILABLE`, storage failures → `INTERNAL`. Every call is authenticated first ([`auth`]);
//! client calls need a principal, and writes a writer.

mod auth;
mod catalog;
mod handle;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, IpcMessage, PollInfo, PutResult, SchemaAsIpc,
    SchemaResult, Ticket,
};
use bytes::Bytes;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use minitrue_auth::{Door, Gatekeeper, Role};
use minitrue_common::{ErrorKind, Metric, MetricsRegistry};
use minitrue_query::{execute_fragment, QueryError, FRAGMENT_TICKET_PREFIX};
use prost::Message;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::stateless::Caller;
use crate::tls_incoming::tls_incoming;
use crate::DoorTls;

pub use auth::PeerCalls;
use auth::{principal_of, require_peer, Who};
use handle::{parameter_row, single_parameter_row, StatementHandle};

/// Largest message a client may send (a DoPut batch, say): 64 MiB. Results are sent in
/// messages of about 2 MiB whatever their batches' sizes.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long in-flight calls may run on after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the Flight door needs from the node.
#[derive(Clone)]
pub struct FlightState {
    pub session: SessionContext,
    /// Who may call (see [`auth`]).
    pub gate: Arc<Gatekeeper>,
    pub metrics: MetricsRegistry,
    /// In a cluster: takes the other nodes' replica writes.
    pub replicas: Option<Arc<dyn ReplicaDoor>>,
    /// Who may make the calls reserved for the cluster's nodes (replica writes and deletes,
    /// repair, plan fragments).
    pub peers: PeerCalls,
}

/// Replica writes from other nodes of the cluster arrive as a plain `DoPut` whose path
/// descriptor the cluster recognises; this door only hands them over.
#[tonic::async_trait]
pub trait ReplicaDoor: Send + Sync {
    /// Whether a `DoPut` with this path descriptor is a replica write.
    fn handles(&self, path: &[String]) -> bool;
    /// Stores one uploaded batch of a replica write durably, the series' tags in `path` with
    /// the `first`; returns the rows stored. Batches are stored as they arrive, so a replica
    /// write is held one message at a time. The error is given to the sending node as
    /// `INVALID_ARGUMENT` when `invalid`, otherwise `UNAVAILABLE`.
    async fn put(
        &self,
        path: &[String],
        batch: RecordBatch,
        first: bool,
    ) -> Result<u64, ReplicaError>;
    /// Whether a `DoAction` of this type is the cluster's (a delete sent to every node).
    fn handles_action(&self, kind: &str) -> bool;
    /// Carries out the action; its answer is the one result body.
    async fn action(&self, kind: &str, body: &[u8]) -> Result<Vec<u8>, ReplicaError>;
}

/// Why a replica write was refused.
#[derive(Debug)]
pub struct ReplicaError {
    pub invalid: bool,
    pub message: String,
}

/// Serves Flight and Flight SQL on `listener` until `shutdown` resolves; calls still running
/// then get [`SHUTDOWN_GRACE`] to finish. With `tls`, the door speaks `grpc+tls` only (other
/// nodes of the cluster call it over TLS too).
pub async fn serve_flight(
    listener: tokio::net::TcpListener,
    state: FlightState,
    tls: Option<DoorTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let counters = Arc::new(FlightCounters::default());
    state.metrics.register(Arc::new(counters.clone().metrics()));
    let door = FlightDoor {
        sql: Arc::new(FlightSql {
            ctx: state.session,
            counters,
            replicas: state.replicas,
            gate: state.gate.clone(),
            peers: state.peers.clone(),
        }),
    };
    let service = FlightServiceServer::new(door)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let service = InterceptedService::new(service, auth::interceptor(state.gate, state.peers));
    let router = tonic::transport::Server::builder().add_service(service);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let mut stopping = stopping;
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match tls {
            Some(tls) => {
                let config = tls.identity.server_config(&[b"h2"]).map_err(std::io::Error::other)?;
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let incoming = tls_incoming(listener, acceptor, "flight", &state.metrics);
                Box::pin(router.serve_with_incoming_shutdown(incoming, stopped))
            }
            // Without TCP_NODELAY, a response's small frames wait for the client's delayed
            // ACK: every peer call of a distributed query took 40 ms more.
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stopped,
            )),
        };
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(std::io::Error::other),
        _ = shutdown => { let _ = stop.send(true); }
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.map_err(std::io::Error::other),
        Err(_) => {
            tracing::warn!("flight calls still running at shutdown were cut off");
            Ok(())
        }
    }
}

/// What the sending node is told of a refused replica write or cluster action.
fn replica_status(error: ReplicaError) -> Status {
    match error.invalid {
        true => Status::invalid_argument(error.message),
        false => Status::unavailable(error.message),
    }
}

/// The one place query errors become gRPC statuses.
pub(crate) fn query_status(error: DataFusionError) -> Status {
    error_status(QueryError::from(error))
}

fn error_status(error: QueryError) -> Status {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::InvalidInput => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::PermissionDenied => Status::permission_denied(message),
        ErrorKind::Unavailable | ErrorKind::ShuttingDown => Status::unavailable(message),
        ErrorKind::Corrupt | ErrorKind::Io | ErrorKind::Internal => Status::internal(message),
    }
}

/// Counters of the Flight door (`door="flight"` in `/metrics`).
#[derive(Debug, Default)]
struct FlightCounters {
    calls: AtomicU64,
    failed: AtomicU64,
    rows_sent: AtomicU64,
    rows_written: AtomicU64,
}

impl FlightCounters {
    fn count<T>(&self, answer: Result<T, Status>) -> Result<T, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(status) = &answer {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(code = ?status.code(), message = status.message(), "flight call failed");
        }
        answer
    }

    fn metrics(self: Arc<Self>) -> impl Fn(&mut Vec<Metric>) + Send + Sync {
        move |out: &mut Vec<Metric>| {
            let counters = [
                (
                    "minitrue_flight_calls_total",
                    "Flight calls received (queries, writes, metadata)",
                    &self.calls,
                ),
                (
                    "minitrue_flight_call_errors_total",
                    "Flight calls that failed, before or while streaming",
                    &self.failed,
                ),
                (
                    "minitrue_flight_rows_sent_total",
                    "Result rows streamed to Flight clients",
                    &self.rows_sent,
                ),
                (
                    "minitrue_flight_rows_written_total",
                    "Rows written through Flight (DoPut, bulk ingest, updates)",
                    &self.rows_written,
                ),
            ];
            for (name, help, counter) in counters {
                out.push(
                    Metric::counter(name, help, counter.load(Ordering::Relaxed))
                        .with_label("door", "flight"),
                );
            }
        }
    }
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;
type DoPutStream = Pin<Box<dyn Stream<Item = Result<PutResult, Status>> + Send + 'static>>;

/// The Flight SQL service proper (arrow-flight dispatches the commands to it).
struct FlightSql {
    ctx: SessionContext,
    counters: Arc<FlightCounters>,
    replicas: Option<Arc<dyn ReplicaDoor>>,
    gate: Arc<Gatekeeper>,
    peers: PeerCalls,
}

impl FlightSql {
    /// Plans one statement for `who`; `params` fill `$1, $2, …`.
    async fn plan(
        &self,
        who: &Who,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<DataFrame, Status> {
        if sql.trim().is_empty() {
            return Err(Status::invalid_argument("no SQL statement"));
        }
        let caller = Caller {
            gate: &self.gate,
            door: Door::Flight,
            peer: who.peer,
            principal: &who.principal,
        };
        crate::stateless::plan(&self.ctx, sql, params, &caller).await.map_err(query_status)
    }

    /// Runs `frame` and streams its result; an error part-way ends the stream with its status.
    async fn stream(&self, frame: DataFrame) -> Result<Response<DoGetStream>, Status> {
        let batches = frame.execute_stream().await.map_err(query_status)?;
        Ok(self.send(batches))
    }

    /// Streams `batches` as Flight data, counting rows and a failure part-way.
    fn send(&self, batches: SendableRecordBatchStream) -> Response<DoGetStream> {
        let schema = batches.schema();
        let counters = self.counters.clone();
        let batches = batches.map(move |batch| match batch {
            Ok(batch) => {
                counters.rows_sent.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Ok(batch)
            }
            Err(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(FlightError::Tonic(Box::new(query_status(error))))
            }
        });
        Response::new(encode(schema, batches))
    }

    /// Runs a statement that changes data; the number of rows it wrote or deleted.
    async fn update(&self, frame: DataFrame) -> Result<u64, Status> {
        let batches = frame.collect().await.map_err(query_status)?;
        let rows = affected_rows(&batches);
        self.counters.rows_written.fetch_add(rows, Ordering::Relaxed);
        Ok(rows)
    }

    async fn metadata_info(
        &self,
        descriptor: FlightDescriptor,
        schema: SchemaRef,
        command: impl ProstMessageExt,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(Response::new(flight_info(
            &schema,
            command.as_any().encode_to_vec().into(),
            descriptor,
        )?))
    }
}

/// DML answers one `count` row; anything else counts its rows.
fn affected_rows(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .map(|batch| match batch.column(0).as_primitive_opt::<UInt64Type>() {
            Some(counts)
                if batch.num_columns() == 1 && batch.schema().field(0).name() == "count" =>
            {
                counts.iter().flatten().sum()
            }
            _ => batch.num_rows() as u64,
        })
        .sum()
}

fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> DoGetStream {
    Box::pin(
        FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from),
    )
}

fn encode_batch(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    Response::new(encode(schema, futures::stream::once(async move { Ok(batch) })))
}

fn flight_info(
    schema: &Schema,
    ticket: Bytes,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1))
}

fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| {
            Status::internal(format!("encoding the schema: {e}"))
        })?;
    Ok(bytes)
}

/// `$1, $2, …` with the types DataFusion inferred (`Null` where it could not tell).
fn parameter_schema(frame: &DataFrame) -> Result<Schema, Status> {
    let types = frame.logical_plan().get_parameter_types().map_err(query_status)?;
    let mut placeholders: Vec<(usize, String, DataType)> = types
        .into_iter()
        .map(|(name, data_type)| {
            let position = name.trim_start_matches('$').parse().unwrap_or(usize::MAX);
            (position, name, data_type.unwrap_or(DataType::Null))
        })
        .collect();
    placeholders.sort();
    Ok(Schema::new(
        placeholders.into_iter().map(|(_, name, t)| Field::new(name, t, true)).collect::<Vec<_>>(),
    ))
}

/// The record batches a client sends with a DoPut, decoded as they arrive.
fn uploaded_batches(stream: PeekableFlightDataStream) -> FlightRecordBatchStream {
    FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
}

/// Why an upload could not be read: the call's own status when it broke, otherwise
/// `INVALID_ARGUMENT` saying what was being decoded.
fn upload_status(error: FlightError, what: &str) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("decoding {what}: {other}")),
    }
}

/// The parameter rows a client sent with a DoPut.
async fn parameter_batches(stream: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, Status> {
    uploaded_batches(stream).try_collect().await.map_err(|e| upload_status(e, "the parameters"))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // The interceptor checked the credentials; a password login is answered with a
        // session token for the calls that follow.
        let who = principal_of(&request)?;
        let session = match request.extensions().get::<auth::PasswordLogin>() {
            Some(_) => Some(
                self.gate
                    .open_session(&who.principal)
                    .map_err(|error| Status::internal(error.to_string()))?,
            ),
            None => None,
        };
        let response = HandshakeResponse { protocol_version: 0, payload: Bytes::new() };
        let mut response =
            Response::new(Box::pin(futures::stream::once(async move { Ok(response) }))
                as Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>);
        if let Some(session) = session {
            let value = format!("Bearer {session}")
                .parse()
                .map_err(|_| Status::internal("a session token is not a header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let frame = self.plan(&principal_of(&request)?, &query.query, Vec::new()).await?;
        let handle = StatementHandle::new(query.query).encode()?;
        let ticket = TicketStatementQuery { statement_handle: handle }.as_any().encode_to_vec();
        let info = flight_info(frame.schema().as_arrow(), ticket.into(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = StatementHandle::decode(&ticket.statement_handle)?;
        let who = principal_of(&request)?;
        let frame = self.plan(&who, &handle.sql, handle.parameter_values()?).await?;
        self.stream(frame).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        let who = principal_of(&request)?;
        let frame = self.plan(&who, &handle.sql, handle.parameter_values()?).await?;
        let ticket = command.as_any().encode_to_vec();
        let info = flight_info(frame.schema().as_arrow(), ticket.into(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        let who = principal_of(&request)?;
        let frame = self.plan(&who, &handle.sql, handle.parameter_values()?).await?;
        self.stream(frame).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        request: ActionCreatePreparedStatementRequest,
        action: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let frame = self.plan(&principal_of(&action)?, &request.query, Vec::new()).await?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: StatementHandle::new(request.query).encode()?,
            dataset_schema: ipc_schema(frame.schema().as_arrow())?,
            parameter_schema: ipc_schema(&parameter_schema(&frame)?)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let mut handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        let who = principal_of(&request)?;
        let batches = parameter_batches(request.into_inner()).await?;
        handle.params = Some(single_parameter_row(batches)?);
        // Check the values against the statement now, not at the first fetch.
        self.plan(&who, &handle.sql, handle.parameter_values()?).await?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.encode()?) })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _request: ActionClosePreparedStatementRequest,
        action: Request<Action>,
    ) -> Result<(), Status> {
        principal_of(&action)?;
        Ok(()) // handles hold no server state
    }

    async fn do_put_prepared_statement_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        let who = principal_of(&request)?;
        let batches = parameter_batches(request.into_inner()).await?;
        let mut rows = 0;
        if batches.iter().all(|b| b.num_rows() == 0) {
            let frame = self.plan(&who, &handle.sql, handle.parameter_values()?).await?;
            rows += self.update(frame).await?;
        }
        // One execution per parameter row, as JDBC's addBatch/executeBatch does.
        for batch in &batches {
            for row in 0..batch.num_rows() {
                let frame = self.plan(&who, &handle.sql, parameter_row(batch, row)?).await?;
                rows += self.update(frame).await?;
            }
        }
        Ok(rows as i64)
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let frame = self.plan(&principal_of(&request)?, &command.query, Vec::new()).await?;
        Ok(self.update(frame).await? as i64)
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        use arrow_flight::sql::TableExistsOption;
        principal_of(&request)?.require(&self.gate, Role::Writer, "bulk ingest")?;
        let catalog = self.ctx.state().config().options().catalog.default_catalog.clone();
        let is_readings = command.table == "readings"
            && command.schema.as_deref().is_none_or(|s| s.is_empty() || s == "public")
            && command.catalog.as_deref().is_none_or(|c| c.is_empty() || *c == catalog);
        if !is_readings || command.temporary {
            return Err(Status::invalid_argument(format!(
                "bulk ingest writes only into {catalog}.public.readings, not {:?}",
                command.table
            )));
        }
        let exists = command.table_definition_options.map(|o| o.if_exists).unwrap_or_default();
        if exists == TableExistsOption::Fail as i32 {
            return Err(Status::already_exists("readings exists (ingest with mode append)"));
        }
        if exists == TableExistsOption::Replace as i32 {
            return Err(Status::invalid_argument(
                "readings cannot be replaced (ingest with mode append)",
            ));
        }
        let rows = write::write_readings(&self.ctx, request.into_inner()).await?;
        self.counters.rows_written.fetch_add(rows, Ordering::Relaxed);
        Ok(rows as i64)
    }

    /// A plain Flight DoPut: `FlightDescriptor.for_path("readings")`.
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.get_ref();
        let Some(replicas) = self.replicas.as_ref().filter(|r| r.handles_action(&action.r#type))
        else {
            principal_of(&request)?;
            return Err(Status::invalid_argument(format!("unknown action {:?}", action.r#type)));
        };
        require_peer(&self.peers, &request)?;
        let answer = replicas.action(&action.r#type, &action.body).await.map_err(replica_status)?;
        let result = arrow_flight::Result { body: answer.into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<DoPutStream>, Status> {
        let path = match request.get_mut().peek().await {
            Some(Ok(data)) => data.flight_descriptor.as_ref().map(|d| d.path.clone()),
            _ => None,
        };
        if let (Some(replicas), Some(path)) = (&self.replicas, &path) {
            if replicas.handles(path) {
                require_peer(&self.peers, &request)?;
                let mut batches = uploaded_batches(request.into_inner());
                let (mut rows, mut first) = (0, true);
                while let Some(batch) = batches.next().await {
                    let batch = batch.map_err(|e| upload_status(e, "the replica batches"))?;
                    rows += replicas.put(path, batch, first).await.map_err(replica_status)?;
                    first = false;
                }
                let result =
                    PutResult { app_metadata: format!("{{\"rows_written\":{rows}}}").into() };
                return Ok(Response::new(Box::pin(futures::stream::once(
                    async move { Ok(result) },
                ))));
            }
        }
        principal_of(&request)?.require(&self.gate, Role::Writer, "DoPut")?;
        if path.as_deref() != Some(&["readings".to_string()][..]) {
            return Err(Status::invalid_argument(format!(
                "DoPut takes Flight SQL commands or a path descriptor [\"readings\"] (got {})",
                if message.type_url.is_empty() {
                    format!("path {path:?}")
                } else {
                    message.type_url
                }
            )));
        }
        let rows = write::write_readings(&self.ctx, request.into_inner()).await?;
        self.counters.rows_written.fetch_add(rows, Ordering::Relaxed);
        let result = PutResult { app_metadata: format!("{{\"rows_written\":{rows}}}").into() };
        Ok(Response::new(Box::pin(futures::stream::once(async move { Ok(result) }))))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request.into_inner(), catalog::catalogs_schema(), query).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(encode_batch(catalog::catalogs(&self.ctx, query)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request.into_inner(), catalog::db_schemas_schema(), query).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(encode_batch(catalog::db_schemas(&self.ctx, query)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = catalog::tables_schema(&query);
        self.metadata_info(request.into_inner(), schema, query).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(encode_batch(catalog::tables(&self.ctx, query).await?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request.into_inner(), catalog::table_types_schema(), query).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(encode_batch(catalog::table_types(query)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&catalog::SQL_INFO).schema();
        self.metadata_info(request.into_inner(), schema, query).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&catalog::SQL_INFO)
            .build()
            .map_err(|e| Status::internal(format!("building GetSqlInfo: {e}")))?;
        Ok(encode_batch(batch))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A ticket or command that is plain SQL text rather than a Flight SQL message.
fn plain_sql(bytes: &[u8]) -> Option<&str> {
    const FLIGHT_SQL_TYPES: &str = "type.googleapis.com/arrow.flight.protocol.sql.";
    if Any::decode(bytes).is_ok_and(|any| any.type_url.starts_with(FLIGHT_SQL_TYPES)) {
        return None;
    }
    std::str::from_utf8(bytes).ok().filter(|sql| !sql.trim().is_empty())
}

/// What the gRPC server serves: Flight SQL, plus plain SQL tickets and commands, with every
/// call counted.
#[derive(Clone)]
struct FlightDoor {
    sql: Arc<FlightSql>,
}

#[tonic::async_trait]
impl FlightService for FlightDoor {
    type HandshakeStream = <FlightSql as FlightService>::HandshakeStream;
    type ListFlightsStream = <FlightSql as FlightService>::ListFlightsStream;
    type DoGetStream = DoGetStream;
    type DoPutStream = DoPutStream;
    type DoActionStream = <FlightSql as FlightService>::DoActionStream;
    type ListActionsStream = <FlightSql as FlightService>::ListActionsStream;
    type DoExchangeStream = <FlightSql as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.sql.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        principal_of(&request)?;
        self.sql.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = self.sql.counters.count(principal_of(&request))?;
        let answer = match plain_sql(&request.get_ref().cmd) {
            Some(sql) => {
                let frame = self.sql.plan(&who, sql, Vec::new()).await;
                let ticket = Bytes::copy_from_slice(sql.as_bytes());
                frame.and_then(|frame| {
                    flight_info(frame.schema().as_arrow(), ticket, request.into_inner())
                        .map(Response::new)
                })
            }
            None => self.sql.get_flight_info(request).await,
        };
        self.sql.counters.count(answer)
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        principal_of(&request)?;
        self.sql.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        principal_of(&request)?;
        self.sql.get_schema(request).await
    }

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let ticket = &request.get_ref().ticket;
        if let Some(payload) = ticket.strip_prefix(FRAGMENT_TICKET_PREFIX) {
            // Another node's query asks for this node's share.
            self.sql.counters.count(require_peer(&self.sql.peers, &request))?;
            let answer = execute_fragment(&self.sql.ctx, payload)
                .map_err(error_status)
                .map(|batches| self.sql.send(batches));
            return self.sql.counters.count(answer);
        }
        let who = self.sql.counters.count(principal_of(&request))?;
        let answer = match plain_sql(ticket) {
            Some(sql) => match self.sql.plan(&who, sql, Vec::new()).await {
                Ok(frame) => self.sql.stream(frame).await,
                Err(status) => Err(status),
            },
            None => self.sql.do_get(request).await,
        };
        self.sql.counters.count(answer)
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<DoPutStream>, Status> {
        self.sql.counters.count(self.sql.do_put(request).await)
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        principal_of(&request)?;
        self.sql.do_exchange(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.sql.counters.count(self.sql.do_action(request).await)
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        principal_of(&request)?;
        self.sql.list_actions(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sql_tickets_are_told_from_flight_sql_ones() {
        assert_eq!(plain_sql(b"SELECT 1"), Some("SELECT 1"));
        assert_eq!(plain_sql("SELECT 'ü'".as_bytes()), Some("SELECT 'ü'"));
        let flight_sql = TicketStatementQuery { statement_handle: Bytes::from_static(b"x") };
        assert_eq!(plain_sql(&flight_sql.as_any().encode_to_vec()), None);
        assert_eq!(plain_sql(b"  "), None);
        assert_eq!(plain_sql(b"\xff\xfe"), None);
    }

    #[test]
    fn dml_counts_come_from_the_count_column() {
        use datafusion::arrow::array::{Int64Array, UInt64Array};
        let count =
            RecordBatch::try_from_iter([("count", Arc::new(UInt64Array::from(vec![7u64])) as _)])
                .unwrap();
        assert_eq!(affected_rows(&[count.clone(), count]), 14);
        let rows =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])
                .unwrap();
        assert_eq!(affected_rows(&[rows]), 3);
    }

    #[test]
    fn every_error_kind_has_a_grpc_code() {
        let status = query_status(DataFusionError::Plan("no such column".into()));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("no such column"));
    }
}
