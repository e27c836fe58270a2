//! Connection startup: the connection is registered for CancelRequests; no authentication (any user and database name is accepted until auth
//! is configured; the documented name is `minitrue`), then the ParameterStatus messages of
//! [`settings::STARTUP_PARAMETERS`](super::settings::STARTUP_PARAMETERS).
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
    ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;

use super::cancel::CancelRegistry;
use super::settings::STARTUP_PARAMETERS;

/// Client metadata key pgwire's text encoder reads the date style from.
const METADATA_DATESTYLE: &str = "datestyle";

/// Accepts every startup message and announces the server's settings.
pub(crate) struct Startup {
    parameters: ServerParameters,
    pids: RandomPidSecretKeyGenerator,
    cancels: Arc<CancelRegistry>,
}

impl Startup {
    /// `time_zone` is the session time zone, reported as `TimeZone`.
    pub(crate) fn new(time_zone: &str, cancels: Arc<CancelRegistry>) -> Self {
        Startup {
            parameters: ServerParameters { time_zone: time_zone.to_string() },
            pids: RandomPidSecretKeyGenerator::default(),
            cancels,
        }
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
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        // Text timestamps follow the announced DateStyle ("ISO, MDY": ISO 8601 with a space
        // between date and time), also for `SHOW DateStyle`.
        client.metadata_mut().insert(METADATA_DATESTYLE.to_string(), "ISO, MDY".to_string());
        let (pid, secret_key) = self.pids.generate(client);
        // The registration lives as long as the connection (its session extensions).
        client.session_extensions().insert(self.cancels.register(pid, secret_key.clone()));
        client.set_pid_and_secret_key(pid, secret_key);
        tracing::debug!(
            user = client.metadata().get("user").map(String::as_str).unwrap_or(""),
            database = client.metadata().get("database").map(String::as_str).unwrap_or(""),
            "postgres client connected"
        );
        finish_authentication(client, &self.parameters).await
    }
}
