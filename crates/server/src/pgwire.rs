//! The Postgres wire protocol front door: pgwire and datafusion-postgres, with what real
//! clients (psql, Grafana through pgx and lib/pq, psycopg, asyncpg, pgjdbc) need on top:
//!
//! - [`startup`]: SCRAM-SHA-256 authentication (when the node has users), and the
//!   ParameterStatus values clients read;
//! - [`access`]: every statement is checked (nothing reaches the server's files or other
//!   clients' settings; the connection's role allows it) before anything runs it;
//! - [`sqlstate`]: errors carry a Postgres SQLSTATE instead of `XX000`;
//! - [`rewrite`]: Postgres SQL DataFusion does not accept, rewritten before planning;
//! - [`compat`]: `version()`, `current_setting()`, `DEALLOCATE`;
//! - [`settings`]: the one table of server settings behind all of these;
//! - [`cancel`]: CancelRequest stops a running statement, also while its rows stream out;
//! - [`results`]: `SELECT` rows encoded with timestamps written by hand (as Postgres prints
//!   them, in the `SET TIME ZONE` zone), several times faster than per-value strftime.
//!
//! With TLS configured, SSLRequest is answered `S` and the session runs over TLS (with
//! `--tls-required`, a plaintext session is refused at startup); without, `N`.
//!
//! What pgwire already does right is left to it: `N` to GSSENCRequest,
//! EmptyQueryResponse for empty and comment-only queries, `SELECT n` command tags, Flush.

mod access;
mod cancel;
mod compat;
mod float_text;
mod results;
mod rewrite;
mod settings;
mod sqlstate;
mod startup;
mod timestamp_text;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::cancel::CancelHandler;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers, Type,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::{DfSessionService, Parser};
use futures::Sink;
use minitrue_auth::Gatekeeper;

use crate::DoorTls;
use tokio::net::TcpListener;

use cancel::{CancelRegistry, CancelRequests, Registration};
use rewrite::Rewriter;
use sqlstate::SqlStateErrors;
use startup::Startup;

/// datafusion-postgres' statement: the SQL and, unless empty, its parsed form and plan.
type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;

/// The query handlers of one node: client SQL is rewritten ([`rewrite`]) and handed to
/// datafusion-postgres over the node's DataFusion session.
struct Service {
    inner: DfSessionService,
    parser: Arc<RewritingParser>,
}

/// datafusion-postgres' parser behind the [`Rewriter`], for the extended protocol.
struct RewritingParser {
    inner: Arc<Parser>,
    rewriter: Arc<Rewriter>,
}

#[async_trait]
impl QueryParser for RewritingParser {
    type Statement = Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        match self.rewriter.rewrite(sql) {
            Some(rewritten) => self.inner.parse_sql(client, &rewritten, types).await,
            None => self.inner.parse_sql(client, sql, types).await,
        }
    }

    fn get_parameter_types(&self, statement: &Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // arrow-pg indexes a per-column format list by column and would panic on a short one.
        if let (Some(format), (_, Some((_, plan)))) = (format, statement) {
            results::check_result_formats(
                &results::PortalResultFormats::of(format).0,
                plan.schema().fields().len(),
            )?;
        }
        self.inner.get_result_schema(statement, format)
    }
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let rewritten = self.parser.rewriter.rewrite(query);
        let query = rewritten.as_deref().unwrap_or(query);
        let cancelled = cancel::watch(cancel_signal(client).as_ref());
        let statement = SimpleQueryHandler::do_query(&self.inner, client, query);
        let responses = cancel::plan_or_cancel(cancelled.as_ref(), statement).await?;
        Ok(responses
            .into_iter()
            .map(|response| cancel::rows_until_cancelled(response, cancelled.as_ref()))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = Statement;
    type QueryParser = RewritingParser;

    fn query_parser(&self) -> Arc<RewritingParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let cancelled = cancel::watch(cancel_signal(client).as_ref());
        // For ResultsHook, which is not given the portal.
        client
            .session_extensions()
            .insert(results::PortalResultFormats::of(&portal.result_column_format));
        let statement = ExtendedQueryHandler::do_query(&self.inner, client, portal, max_rows);
        let response = cancel::plan_or_cancel(cancelled.as_ref(), statement).await?;
        Ok(cancel::rows_until_cancelled(response, cancelled.as_ref()))
    }
}

/// The connection's cancel signal (registered at startup).
fn cancel_signal<C: ClientInfo>(client: &C) -> Option<Arc<cancel::CancelSignal>> {
    client
        .session_extensions()
        .get::<Registration>()
        .map(|registration| registration.signal.clone())
}

/// The handlers pgwire asks for per connection.
struct Handlers {
    service: Arc<Service>,
    startup: Arc<Startup>,
    errors: Arc<SqlStateErrors>,
    cancels: Arc<CancelRequests>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.errors.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }
}

/// Serves the Postgres wire protocol on `listener` until `shutdown` resolves; connections
/// in progress finish on their own. `pg_catalog` is installed in `session`'s catalog
/// `minitrue` and Postgres compatibility functions (`version()`, `current_setting()`, …) in
/// `session`, so psql's `\d` commands and clients' introspection work. Clients authenticate
/// with SCRAM-SHA-256 against `gate` when it has users; any database name is accepted.
pub async fn serve_pgwire(
    listener: TcpListener,
    session: Arc<SessionContext>,
    gate: Arc<Gatekeeper>,
    tls: Option<DoorTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = match &tls {
        Some(tls) => Some(tokio_rustls::TlsAcceptor::from(
            tls.identity.server_config(&[]).map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    let tls_required = tls.as_ref().is_some_and(|tls| tls.required);
    setup_pg_catalog(&session, "minitrue", Arc::new(AuthManager::default()))
        .map_err(std::io::Error::other)?;
    let time_zone = session
        .state()
        .config()
        .options()
        .execution
        .time_zone
        .clone()
        .unwrap_or_else(|| "UTC".to_string());
    compat::register_functions(&session, &time_zone);
    let table_functions: Vec<String> = session.state().table_functions().keys().cloned().collect();
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        // First: every statement is checked before anything runs it; answers SET and SHOW.
        Arc::new(access::AccessHook::new(gate.clone())),
        Arc::new(compat::DeallocateHook),
        Arc::new(CursorStatementHook),
        Arc::new(TransactionStatementHook),
        // Last: takes every SELECT the hooks above leave.
        Arc::new(results::ResultsHook),
    ];
    let inner = DfSessionService::new_with_hooks(session, hooks);
    let parser = Arc::new(RewritingParser {
        inner: ExtendedQueryHandler::query_parser(&inner),
        rewriter: Arc::new(Rewriter::new(table_functions)),
    });
    let cancels = Arc::new(CancelRegistry::default());
    let factory = Arc::new(Handlers {
        service: Arc::new(Service { inner, parser }),
        startup: Arc::new(Startup::new(&time_zone, cancels.clone(), gate, tls_required)),
        errors: Arc::new(SqlStateErrors),
        cancels: Arc::new(CancelRequests(cancels)),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let (factory, acceptor) = (factory.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        if let Err(error) = datafusion_postgres::pgwire::tokio::process_socket(socket, acceptor, factory).await {
                            tracing::debug!(%peer, %error, "postgres connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a postgres connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => return Ok(()),
        }
    }
}
