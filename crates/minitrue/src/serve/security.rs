//! The node's locks, checked before anything listens: who may use it (an open node stays on
//! loopback), TLS for its doors, for calls to its peers and towards an external broker.

use minitrue_ingest::client::BrokerTls;

use crate::settings::Settings;

/// The node's TLS identity, when --tls-cert and --tls-key are given, reloaded on SIGHUP.
pub(super) fn door_tls(config: &Settings) -> anyhow::Result<Option<minitrue_server::DoorTls>> {
    let (cert, key) = match (&config.security.tls_cert, &config.security.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if config.security.tls_required => {
            anyhow::bail!("--tls-required needs --tls-cert and --tls-key")
        }
        (None, None) => return Ok(None),
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let identity = minitrue_auth::TlsIdentity::load(cert, key)?;
    println!(
        "tls: postgres, http, flight and mqtts doors use {}{}",
        cert.display(),
        match config.security.tls_required {
            true => " (plaintext refused)",
            false => "",
        }
    );
    #[cfg(unix)]
    {
        let identity = identity.clone();
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match identity.reload() {
                    Ok(()) => tracing::warn!("tls certificate reloaded"),
                    Err(error) => {
                        tracing::error!(%error, "tls certificate not reloaded; the old one stays")
                    }
                }
            }
        });
    }
    Ok(Some(minitrue_server::DoorTls { identity, required: config.security.tls_required }))
}

/// TLS towards the external broker (`--broker-ca`, `--broker-cert`, `--broker-key`),
/// checked with the other locks, before anything starts, so that a wrong file stops the start
/// rather than the subscriber.
pub(super) fn broker_tls(config: &Settings) -> anyhow::Result<BrokerTls> {
    let tls = config.mqtt.broker_tls();
    match &config.mqtt.broker {
        Some(broker) => {
            minitrue_ingest::client::client_options(broker, &config.node.node_id, None, &tls)?;
        }
        None if tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() => {
            anyhow::bail!("--broker-ca, --broker-cert and --broker-key need --broker")
        }
        None => {}
    }
    Ok(tls)
}

/// TLS for calls to other nodes: with TLS on the doors, the peers' Flight doors speak it too.
pub(super) fn peer_tls(
    config: &Settings,
    tls: Option<&minitrue_server::DoorTls>,
) -> anyhow::Result<Option<minitrue_cluster::PeerTls>> {
    let Some(tls) = tls else {
        if config.security.tls_ca.is_some() {
            anyhow::bail!("--tls-ca needs --tls-cert and --tls-key");
        }
        return Ok(None);
    };
    let client = tls.identity.peer_client_config(config.security.tls_ca.as_deref())?;
    Ok(Some(minitrue_cluster::PeerTls::new(client)))
}

/// Refuses to start a node that would be open beyond this machine: with no users, anyone who
/// reaches it may read, write and delete. On loopback an open node is the one-command start,
/// said in one line.
pub(super) fn check_exposure(
    config: &Settings,
    gate: &minitrue_auth::Gatekeeper,
) -> anyhow::Result<()> {
    let add_user = format!(
        "minitrue user add admin --role admin --data-dir {}",
        config.storage.data_dir.display()
    );
    if gate.required() {
        println!(
            "auth: clients authenticate (users and tokens in {})",
            config.storage.data_dir.display()
        );
        return Ok(());
    }
    let doors = [
        ("--listen", config.network.listen),
        ("--pg-listen", config.network.pg_listen()),
        ("--http-listen", config.network.http_listen()),
        ("--flight-listen", config.network.flight_listen()),
        ("--mqtt-listen", config.network.mqtt_listen()),
    ];
    let exposed: Vec<String> = doors
        .iter()
        .filter(|(_, ip)| !ip.is_loopback())
        .map(|(flag, ip)| format!("{flag} {ip}"))
        .collect();
    match (exposed.is_empty(), config.security.insecure_no_auth) {
        (true, _) => println!(
            "auth: no users yet, so every client on this machine may do everything (listening on \
             loopback only); `{add_user}` turns authentication on"
        ),
        (false, false) => anyhow::bail!(
            "{} exposes this node beyond this machine, and it has no users: anyone who reaches \
             it could read, write and delete its data. Create an admin first:\n  {add_user}\n(or \
             pass --insecure-no-auth to run without authentication)",
            exposed.join(", ")
        ),
        (false, true) => tracing::warn!(
            exposed = %exposed.join(", "),
            "--insecure-no-auth: no users, so anyone who reaches this node may read, write and \
             delete its data"
        ),
    }
    Ok(())
}
