//! The Postgres wire protocol front door (pgwire through datafusion-postgres).

use std::future::Future;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::PgWireServerHandlers;
use datafusion_postgres::DfSessionService;
use tokio::net::TcpListener;

/// Accepts any user and database name (the documented one is `minitrue`) until auth is
/// configured; announces the server parameters clients read at startup.
struct Startup;

impl NoopStartupHandler for Startup {}

/// The handlers of one node: queries go to the node's DataFusion session.
struct Handlers {
    session: Arc<DfSessionService>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }
}

/// Serves the Postgres wire protocol on `listener` until `shutdown` resolves; connections
/// in progress finish on their own. `pg_catalog` and `information_schema` are installed on
/// `session` (catalog `minitrue`) so psql's `\d` and clients' introspection work.
pub async fn serve_pgwire(
    listener: TcpListener,
    session: Arc<SessionContext>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    setup_pg_catalog(&session, "minitrue", Arc::new(AuthManager::default()))
        .map_err(std::io::Error::other)?;
    let factory = Arc::new(Handlers {
        session: Arc::new(DfSessionService::new(session)),
        startup: Arc::new(Startup),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let factory = factory.clone();
                    tokio::spawn(async move {
                        if let Err(error) = datafusion_postgres::pgwire::tokio::process_socket(socket, None, factory).await {
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
