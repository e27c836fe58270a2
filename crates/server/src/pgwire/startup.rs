//! Connection startup: authentication, the connection's [`Login`], its registration for
//! CancelRequests, then the ParameterStatus messages of
//! [`settings::STARTUP_PARAMETERS`](super::settings::STARTUP_PARAMETERS).
//!
//! When the node has users (see [`Gatekeeper::required`]) the client proves its password with
//! SCRAM-SHA-256 (`AuthenticationSASL`, then `SASLContinue`/`SASLFinal`), as PostgreSQL asks
//! with `scram-sha-256` in pg_hba.conf; the exchange state lives in the connection's session
//! extensions. A wrong password and an unknown user both end in FATAL `28P01` "password
//! authentication failed for user …", so the answer does not tell which users exist. Without
//! users any user name is accepted and may do everything (an open node listens on loopback
//! only; `minitrue serve` refuses anything else).
//!
//! SSLRequest and GSSENCRequest are answered `N` by pgwire before this handler runs, and the
//! client goes on in plain text.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use datafusion_postgres::pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::{Sink, SinkExt};
use minitrue_auth::scram::MECHANISM;
use minitrue_auth::{AuthError, Door, Gatekeeper, Principal, Role, ScramExchange};

use super::access::Login;
use super::cancel::CancelRegistry;
use super::settings::STARTUP_PARAMETERS;

/// Client metadata key pgwire's text encoder reads the date style from.
const METADATA_DATESTYLE: &str = "datestyle";

/// Authenticates connections and announces the server's settings.
pub(crate) struct Startup {
    parameters: ServerParameters,
    pids: RandomPidSecretKeyGenerator,
    cancels: Arc<CancelRegistry>,
    gate: Arc<Gatekeeper>,
    /// Plaintext sessions are refused (`--tls-required`).
    tls_required: bool,
}

impl Startup {
    /// `time_zone` is the session time zone, reported as `TimeZone`.
    pub(crate) fn new(
        time_zone: &str,
        cancels: Arc<CancelRegistry>,
        gate: Arc<Gatekeeper>,
        tls_required: bool,
    ) -> Self {
        Startup {
            parameters: ServerParameters { time_zone: time_zone.to_string() },
            pids: RandomPidSecretKeyGenerator::default(),
            cancels,
            gate,
            tls_required,
        }
    }

    /// Ends a successful startup: the connection's login, its cancel registration and the
    /// server's parameters.
    async fn admit<C>(&self, client: &mut C, principal: Principal) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = self.pids.generate(client);
        // The registration lives as long as the connection (its session extensions).
        client.session_extensions().insert(self.cancels.register(pid, secret_key.clone()));
        client.set_pid_and_secret_key(pid, secret_key);
        tracing::debug!(
            user = %principal.name,
            role = %principal.role,
            database = client.metadata().get("database").map(String::as_str).unwrap_or(""),
            "postgres client connected"
        );
        client.session_extensions().insert(Login(principal));
        finish_authentication(client, &self.parameters).await
    }

    /// The next step of a SCRAM exchange: the client-first or the client-final message.
    async fn scram_step<C>(
        &self,
        client: &mut C,
        message: PasswordMessageFamily,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        let peer = Some(client.socket_addr());
        let Some(pending) = client.session_extensions().get::<PendingScram>() else {
            let initial = message.into_sasl_initial_response()?;
            if initial.auth_method != MECHANISM {
                return Err(fatal(
                    "28000",
                    format!("unsupported SASL mechanism {:?}", initial.auth_method),
                ));
            }
            let client_first = initial.data.unwrap_or_default();
            let (exchange, role, server_first) =
                self.gate.start_scram(&user, &client_first).map_err(|e| failed(&user, e))?;
            client.session_extensions().insert(PendingScram { exchange, role });
            let reply = Authentication::SASLContinue(server_first.into_bytes().into());
            return Ok(client.send(PgWireBackendMessage::Authentication(reply)).await?);
        };
        let response = message.into_sasl_response()?;
        let (server_final, principal) = self
            .gate
            .finish_scram(
                Door::Postgres,
                peer,
                &user,
                pending.role,
                &pending.exchange,
                &response.data,
            )
            .map_err(|e| failed(&user, e))?;
        let reply = Authentication::SASLFinal(server_final.into_bytes().into());
        client.send(PgWireBackendMessage::Authentication(reply)).await?;
        self.admit(client, principal).await
    }
}

/// A SCRAM exchange waiting for the client-final message (a session extension).
struct PendingScram {
    exchange: ScramExchange,
    role: Option<Role>,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".to_string(), code.to_string(), message)))
}

/// The error that ends a failed exchange: the same words for a wrong password and an unknown
/// user, as PostgreSQL's.
fn failed(user: &str, error: AuthError) -> PgWireError {
    match error {
        AuthError::Malformed(reason) => fatal("08P01", reason),
        _ => fatal("28P01", format!("password authentication failed for user \"{user}\"")),
    }
}

struct ServerParameters {
    time_zone: String,
}

impl ServerParameterProvider for ServerParameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut parameters: HashMap<String, String> = STARTUP_PARAMETERS
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        parameters.insert("TimeZone".to_string(), self.time_zone.clone());
        if let Some(application) = client.metadata().get("application_name") {
            parameters.insert("application_name".to_string(), application.clone());
        }
        if let Some(user) = client.metadata().get("user") {
            parameters.insert("session_authorization".to_string(), user.clone());
        }
        Some(parameters)
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let startup = match message {
            PgWireFrontendMessage::Startup(startup) => startup,
            PgWireFrontendMessage::PasswordMessageFamily(message)
                if matches!(client.state(), PgWireConnectionState::AuthenticationInProgress) =>
            {
                return self.scram_step(client, message).await;
            }
            _ => return Ok(()),
        };
        if self.tls_required && !client.is_secure() {
            return Err(fatal(
                "28000",
                "this server accepts only TLS connections: connect with sslmode=require"
                    .to_string(),
            ));
        }
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        // Text timestamps follow the announced DateStyle ("ISO, MDY": ISO 8601 with a space
        // between date and time), also for `SHOW DateStyle`.
        client.metadata_mut().insert(METADATA_DATESTYLE.to_string(), "ISO, MDY".to_string());
        if self.gate.required() {
            client.set_state(PgWireConnectionState::AuthenticationInProgress);
            let offer = Authentication::SASL(vec![MECHANISM.to_string()]);
            return Ok(client.send(PgWireBackendMessage::Authentication(offer)).await?);
        }
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        self.admit(client, Gatekeeper::open_access(&user)).await
    }
}
