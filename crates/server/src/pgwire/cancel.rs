//! CancelRequest: psql's Ctrl-C, `psycopg`'s `conn.cancel()`, JDBC's `Statement.cancel()`,
//! asyncpg's timeouts.
//!
//! A client cancels by opening a second connection and sending the process id and secret
//! key it was given at startup. Each connection registers a [`CancelSignal`] under its
//! process id; a matching CancelRequest bumps the signal's generation. A statement remembers
//! the generation it started under and fails with SQLSTATE `57014` (`query_canceled`) as soon
//! as the generation moves: while it is planned and while its rows stream out. DataFusion
//! computes results as the row stream is polled, so dropping that stream is what stops the
//! work. (pgwire's own cancel support only covers the planning call, not the row stream.)
//!
//! A cancel that arrives while no statement runs changes nothing; the next statement starts
//! under the new generation, as in Postgres.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::cancel::CancelHandler;
use datafusion_postgres::pgwire::api::results::{Response, SendableRowStream};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::cancel::CancelRequest;
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::messages::startup::SecretKey;
use futures::future::{select, BoxFuture, Either, Shared};
use futures::{Future, FutureExt, Stream, StreamExt};
use tokio::sync::watch;

/// The connections that can be cancelled, by process id.
#[derive(Default)]
pub(crate) struct CancelRegistry {
    connections: Mutex<HashMap<i32, (SecretKey, Arc<CancelSignal>)>>,
}

/// One connection's cancel generation.
pub(crate) struct CancelSignal {
    generation: watch::Sender<u64>,
}

/// Keeps a connection registered; unregisters it when the connection ends (it lives in the
/// connection's session extensions, which are dropped with the connection).
pub(crate) struct Registration {
    registry: Arc<CancelRegistry>,
    pid: i32,
    pub(crate) signal: Arc<CancelSignal>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut connections = self.registry.connections.lock().unwrap_or_else(|p| p.into_inner());
        if connections.get(&self.pid).is_some_and(|(_, signal)| Arc::ptr_eq(signal, &self.signal)) {
            connections.remove(&self.pid);
        }
    }
}

impl CancelRegistry {
    pub(crate) fn register(self: &Arc<Self>, pid: i32, secret: SecretKey) -> Registration {
        let signal = Arc::new(CancelSignal { generation: watch::Sender::new(0) });
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, (secret, signal.clone()));
        Registration { registry: self.clone(), pid, signal }
    }

    /// Cancels the statement running on the connection with `pid`, if `secret` is its key.
    /// Returns whether a connection matched.
    fn cancel(&self, pid: i32, secret: &SecretKey) -> bool {
        let connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        match connections.get(&pid) {
            Some((key, signal)) if key.eq_value(secret) => {
                signal.generation.send_modify(|g| *g += 1);
                true
            }
            _ => false,
        }
    }
}

/// pgwire's cancel hook.
pub(crate) struct CancelRequests(pub(crate) Arc<CancelRegistry>);

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let matched = self.0.cancel(request.pid, &request.secret_key);
        tracing::debug!(pid = request.pid, matched, "postgres cancel request");
    }
}

impl CancelSignal {
    /// Resolves when the connection is cancelled after this call.
    pub(crate) fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        // A new receiver has seen the current generation: only later cancels wake it.
        let mut receiver = self.generation.subscribe();
        async move {
            // An error means the connection is gone: then nothing can cancel any more.
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

pub(crate) fn query_canceled() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "57014".to_string(),
        "canceling statement due to user request".to_string(),
    )))
}

/// Resolves once the connection's statement is cancelled (shared by its row streams).
pub(crate) type Cancelled = Shared<BoxFuture<'static, ()>>;

/// Starts watching for a cancel of the statement about to run; `None` without a signal.
pub(crate) fn watch(signal: Option<&Arc<CancelSignal>>) -> Option<Cancelled> {
    signal.map(|signal| signal.cancelled().boxed().shared())
}

/// Runs `statement` (its planning, for DataFusion) unless the statement is cancelled first.
pub(crate) async fn plan_or_cancel<T, F>(
    cancelled: Option<&Cancelled>,
    statement: F,
) -> PgWireResult<T>
where
    F: Future<Output = PgWireResult<T>> + Send,
{
    match cancelled {
        None => statement.await,
        Some(cancelled) => match select(Box::pin(statement), cancelled.clone()).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(query_canceled()),
        },
    }
}

/// Makes a query response's rows stop with a `57014` error once the statement is cancelled.
pub(crate) fn rows_until_cancelled(response: Response, cancelled: Option<&Cancelled>) -> Response {
    let Some(cancelled) = cancelled else {
        return response;
    };
    match response {
        Response::Query(mut query) => {
            let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
            query.data_rows = Box::pin(RowsUntilCancelled {
                rows: Some(rows),
                cancelled: cancelled.clone(),
                rows_since_check: ROWS_BETWEEN_CANCEL_CHECKS,
            });
            Response::Query(query)
        }
        other => other,
    }
}

/// Rows handed out between two looks at the cancel signal while rows are ready. Looking
/// takes a lock; once per row was a noticeable share of streaming a result.
const ROWS_BETWEEN_CANCEL_CHECKS: u32 = 64;

/// A row stream that ends with `57014` once its statement is cancelled. It looks at the
/// signal every [`ROWS_BETWEEN_CANCEL_CHECKS`] rows, and whenever the rows are not ready
/// (which also registers for the wake-up a cancel sends).
struct RowsUntilCancelled {
    rows: Option<SendableRowStream>,
    cancelled: Cancelled,
    rows_since_check: u32,
}

impl RowsUntilCancelled {
    fn cancel_arrived(&mut self, cx: &mut Context<'_>) -> bool {
        self.rows_since_check = 0;
        self.cancelled.poll_unpin(cx).is_ready()
    }
}

impl Stream for RowsUntilCancelled {
    type Item = PgWireResult<DataRow>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(rows) = this.rows.as_mut() else {
            return Poll::Ready(None);
        };
        let cancelled = match rows.poll_next_unpin(cx) {
            Poll::Ready(Some(row)) => {
                this.rows_since_check += 1;
                if this.rows_since_check < ROWS_BETWEEN_CANCEL_CHECKS {
                    return Poll::Ready(Some(row));
                }
                if !this.cancel_arrived(cx) {
                    return Poll::Ready(Some(row));
                }
                true
            }
            Poll::Ready(None) => {
                this.rows = None;
                return Poll::Ready(None);
            }
            Poll::Pending => this.cancel_arrived(cx),
        };
        if !cancelled {
            return Poll::Pending;
        }
        // Dropping the rows drops DataFusion's stream, which stops the work.
        this.rows = None;
        Poll::Ready(Some(Err(query_canceled())))
    }
}
