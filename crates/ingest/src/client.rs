//! How MiniTrue's MQTT clients reach a broker — the subscriber of an external broker and
//! `minitrue publish` alike: the URL, the client id, the login and TLS, decided in one place.
//!
//! `mqtts://` (or `ssl://`) brokers are reached over TLS configured here, never with
//! rumqttc's default configuration: that one picks rustls' process-wide provider, which is
//! ambiguous in this build and panics, and it cannot be given a CA or a client certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::mqtt::MqttLogin;

/// TLS towards an `mqtts://` broker: which CA its certificate must chain to (`None`: the
/// machine's trusted roots) and, for brokers that ask for one, the client's certificate.
#[derive(Debug, Clone, Default)]
pub struct BrokerTls {
    /// PEM CA certificates (`--broker-ca`).
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (`--broker-cert`), with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (`--broker-key`).
    pub key: Option<PathBuf>,
}

impl BrokerTls {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// A broker URL or TLS setting that cannot be used. The URL is shown without its password.
#[derive(Debug, thiserror::Error)]
#[error("broker {url}: {reason}")]
pub struct BrokerUrlError {
    pub url: String,
    pub reason: String,
}

/// The rumqttc options for connecting to `broker_url` (`mqtt://host[:1883]` or
/// `mqtts://host[:8883]`) as `client_id`, with `login` and, for `mqtts://`, `tls`.
pub fn client_options(
    broker_url: &str,
    client_id: &str,
    login: Option<&MqttLogin>,
    tls: &BrokerTls,
) -> Result<MqttOptions, BrokerUrlError> {
    let bad = |reason: String| BrokerUrlError { url: without_password(broker_url), reason };
    let mut url = url::Url::parse(broker_url).map_err(|error| bad(error.to_string()))?;
    let secure = match url.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(bad(format!("scheme {other}:// is not mqtt:// or mqtts://"))),
    };
    if !secure && !tls.is_empty() {
        return Err(bad(
            "--broker-ca, --broker-cert and --broker-key need an mqtts:// broker".into()
        ));
    }
    if url.port().is_none() {
        let _ = url.set_port(Some(if secure { 8883 } else { 1883 }));
    }
    // Parsed as plain MQTT so rumqttc never builds its own TLS configuration (see above);
    // the transport is set below.
    url.set_scheme("mqtt").map_err(|()| bad("cannot be used as an mqtt:// URL".into()))?;
    // rumqttc takes the client id from the query string.
    url.query_pairs_mut().append_pair("client_id", client_id);
    let mut options = MqttOptions::parse_url(url.as_str()).map_err(|e| bad(e.to_string()))?;
    if let Some(login) = login {
        options.set_credentials(login.username.clone(), login.password.clone());
    }
    if secure {
        let identity = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => return Err(bad("--broker-cert and --broker-key go together".into())),
        };
        let config = minitrue_auth::tls::client_config(tls.ca.as_deref(), identity)
            .map_err(|error| bad(error.to_string()))?;
        options
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
    }
    Ok(options)
}

/// `url` with any password replaced, for messages (a URL too broken to parse loses its
/// whole user part).
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}***{}", &url[..scheme_end + 3], &url[at..])
            }
            _ => url.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str, tls: &BrokerTls) -> Result<MqttOptions, BrokerUrlError> {
        client_options(url, "node-1", None, tls)
    }

    #[test]
    fn plain_urls_take_the_default_port_and_the_client_id() {
        let options = options("mqtt://broker.lan", &BrokerTls::default()).unwrap();
        assert_eq!(options.broker_address(), ("broker.lan".to_string(), 1883));
        assert_eq!(options.client_id(), "node-1");
        assert!(matches!(options.transport(), Transport::Tcp));
    }

    #[test]
    fn mqtts_gets_tls_with_the_machine_roots_or_a_ca_and_port_8883() {
        // Building the TLS configuration must not panic (rumqttc's default one does here).
        match options("mqtts://broker.lan", &BrokerTls::default()) {
            Ok(options) => {
                assert_eq!(options.broker_address(), ("broker.lan".to_string(), 8883));
                assert!(matches!(options.transport(), Transport::Tls(_)));
            }
            Err(error) => assert!(error.reason.contains("no trusted CA"), "{error}"),
        }
        let missing = BrokerTls { ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        let error = options("ssl://broker.lan:9999", &missing).unwrap_err();
        assert!(error.reason.contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn tls_files_with_a_plain_broker_and_other_schemes_are_refused() {
        let ca = BrokerTls { ca: Some("ca.pem".into()), ..Default::default() };
        assert!(options("mqtt://broker.lan", &ca).unwrap_err().reason.contains("mqtts://"));
        assert!(options("http://broker.lan", &BrokerTls::default()).is_err());
        let half = BrokerTls { cert: Some("c.pem".into()), ..Default::default() };
        assert!(options("mqtts://b", &half).unwrap_err().reason.contains("go together"));
    }

    #[test]
    fn errors_never_show_the_password() {
        let error = options("mqtt://user:secret@", &BrokerTls::default()).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        assert_eq!(without_password("mqtt://u:p@h:1"), "mqtt://u:***@h:1");
        assert_eq!(without_password("mqtt://u:p@:x"), "mqtt://***@:x");
    }
}
