//! Gossip convergence: how long 3 and 10 nodes on loopback take until every one sees all of
//! them alive with their addresses, with gossip sealed by a cluster secret and with plain
//! chitchat UDP (`--insecure-cluster`), measured in the same run, alternating.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use minitrue_auth::cluster::ClusterSecret;
use minitrue_cluster::{Member, Membership, MembershipConfig, NodeAddresses, NodeId};

/// The gossip interval of the run (a node's default is 500 ms; convergence scales with it).
const INTERVAL: Duration = Duration::from_millis(100);
const SIZES: [usize; 2] = [3, 10];

pub fn run(rounds: usize) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut report = format!(
        "## Gossip convergence\n\n`minitrue bench gossip --rounds {rounds}`: nodes started on \
         loopback at once, every one seeded with the first, gossip every {} ms; the time until \
         every node sees all of them serving. Sealed (cluster secret) and plain rounds \
         alternate.\n\n| nodes | plain: min / median / max | sealed: min / median / max | \
         sealed ÷ plain (median) |\n|---|---|---|---|\n",
        INTERVAL.as_millis()
    );
    for nodes in SIZES {
        let (mut plain, mut sealed) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            plain.push(runtime.block_on(converge(nodes, None))?);
            let key = ClusterSecret::ephemeral()?.keys("bench").gossip;
            sealed.push(runtime.block_on(converge(nodes, Some(key)))?);
        }
        let (plain, sealed) = (summary(&mut plain), summary(&mut sealed));
        report.push_str(&format!(
            "| {nodes} | {:.0} / {:.0} / {:.0} ms | {:.0} / {:.0} / {:.0} ms | {:.2}× |\n",
            plain.0,
            plain.1,
            plain.2,
            sealed.0,
            sealed.1,
            sealed.2,
            sealed.1 / plain.1
        ));
    }
    Ok(report)
}

/// (min, median, max) in ms.
fn summary(times: &mut [f64]) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2], times[times.len() - 1])
}

/// Milliseconds until `nodes` fresh nodes all see each other serving.
async fn converge(nodes: usize, key: Option<[u8; 32]>) -> anyhow::Result<f64> {
    let loopback = std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST);
    let addresses: Vec<SocketAddr> = (0..nodes)
        .map(|_| crate::serve::free_udp_port(loopback).map(|port| SocketAddr::new(loopback, port)))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut members = Vec::new();
    for (index, address) in addresses.iter().enumerate() {
        let fake = |offset: u16| SocketAddr::new(address.ip(), address.port().wrapping_add(offset));
        let listeners =
            NodeAddresses { http: fake(1), postgres: Some(fake(2)), flight: Some(fake(3)) };
        let mut config = MembershipConfig::new(
            NodeId::new(format!("node{index}").as_str()),
            *address,
            listeners,
        );
        config.gossip_interval = INTERVAL;
        config.gossip_key = key;
        if index > 0 {
            config.seeds = vec![addresses[0].to_string()];
        }
        members.push(Membership::start(config).await.context("starting gossip")?);
    }
    let deadline = started + Duration::from_secs(60);
    loop {
        let mut converged = true;
        for membership in &members {
            let seen = membership.members().await;
            converged &= seen.len() == nodes && seen.iter().all(Member::is_serving);
        }
        if converged {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{nodes} nodes did not converge in 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    for membership in members {
        membership.stop().await;
    }
    Ok(elapsed)
}
