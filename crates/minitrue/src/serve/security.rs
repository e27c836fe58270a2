//! The node's locks, checked before anything listens: who may use it (an open node stays on
//! loopback), which nodes it trusts (the cluster secret), TLS for its doors, for calls to its
//! peers and towards an external broker.

use minitrue_auth::cluster::{ClusterKeys, ClusterSecret};
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

/// The keys this node proves its membership with: from the cluster secret; from a secret of
/// its own when it is alone on loopback (so that nothing can join it); none with
/// --insecure-cluster. A node that joins others (--seeds) or listens beyond loopback without
/// a secret is refused.
pub(super) fn cluster_keys(config: &Settings) -> anyhow::Result<Option<ClusterKeys>> {
    let cluster = &config.cluster;
    if let Some(loaded) = &cluster.secret {
        println!(
            "cluster: gossip sealed and calls between nodes signed with the cluster secret from {}",
            loaded.from
        );
        return Ok(Some(loaded.secret.keys(&cluster.cluster_id)));
    }
    let mut reasons: Vec<String> = Vec::new();
    if !cluster.seeds().is_empty() {
        reasons.push(format!("--seeds {}", cluster.seeds().join(",")));
    }
    reasons.extend(beyond_loopback(&[
        ("--listen", Some(config.network.listen)),
        ("--flight-listen", Some(config.network.flight_listen())),
        ("--advertise-address", config.network.advertise_address),
    ]));
    match (reasons.is_empty(), cluster.insecure_cluster) {
        (_, true) => {
            tracing::warn!(
                "--insecure-cluster: gossip and calls between nodes are not authenticated; anyone \
                 who reaches this node's gossip or Flight port can join the cluster, read and \
                 change its data"
            );
            Ok(None)
        }
        (true, false) => Ok(Some(ClusterSecret::ephemeral()?.keys(&cluster.cluster_id))),
        (false, false) => anyhow::bail!(
            "{} lets other nodes reach this one, and it has no cluster secret: anything that \
             reaches its gossip port could join the cluster and be sent its data. Make one \
             secret for the cluster and give it to every node:\n  minitrue cluster secret > \
             cluster.secret && chmod 600 cluster.secret\n  minitrue serve \
             --cluster-secret-file cluster.secret …\n(or MINITRUE_CLUSTER_SECRET; \
             --insecure-cluster runs without one)",
            reasons.join(", ")
        ),
    }
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
    let exposed = beyond_loopback(&[
        ("--listen", Some(config.network.listen)),
        ("--pg-listen", Some(config.network.pg_listen())),
        ("--http-listen", Some(config.network.http_listen())),
        ("--flight-listen", Some(config.network.flight_listen())),
        ("--mqtt-listen", Some(config.network.mqtt_listen())),
    ]);
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

/// `--flag ip` for each address given that is not loopback: what exposes the node.
fn beyond_loopback(addresses: &[(&str, Option<std::net::IpAddr>)]) -> Vec<String> {
    addresses
        .iter()
        .filter_map(|(flag, ip)| ip.filter(|ip| !ip.is_loopback()).map(|ip| format!("{flag} {ip}")))
        .collect()
}
