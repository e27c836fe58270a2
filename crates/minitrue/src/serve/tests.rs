//! A node started in-process, as `minitrue serve` starts one, on free ports.

use clap::{CommandFactory, FromArgMatches, Parser};

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn settings(data_dir: &std::path::Path, extra: &[&str]) -> Settings {
    let ports = ["--http-port", "0", "--pg-port", "0", "--flight-port", "0", "--mqtt-port", "0"];
    let argv = ["serve", "--data-dir", data_dir.to_str().unwrap(), "--gossip-port", "0"]
        .into_iter()
        .chain(ports)
        .chain(extra.iter().copied());
    let matches = Cli::command().try_get_matches_from(argv).unwrap();
    Cli::from_arg_matches(&matches).unwrap().serve.settings.resolve(&|_| None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_in_process_takes_writes_answers_sql_and_stops_durably() {
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(settings(dir.path(), &[])).await.unwrap();
    for door in ["http", "postgres", "flight", "mqtt", "gossip"] {
        assert!(node.address(door).is_some(), "{door}");
    }
    let session =
        minitrue_query::session(node.node.engine.clone(), Default::default()).await.unwrap();
    // A write through the node's cluster sink, the way every door writes.
    let write =
        "INSERT INTO readings VALUES (to_timestamp(1700000000), 'in_process', 'temperature', 21.5)";
    session.sql(write).await.unwrap().collect().await.unwrap();
    let count = session.sql("SELECT count(*) FROM readings").await.unwrap();
    let batches = count.collect().await.unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    node.stop(false).await.unwrap();

    // Started again on the same directory, it still has the point.
    let node = RunningNode::start(settings(dir.path(), &[])).await.unwrap();
    let session =
        minitrue_query::session(node.node.engine.clone(), Default::default()).await.unwrap();
    let rows =
        session.sql("SELECT value FROM readings WHERE device_id = 'in_process'").await.unwrap();
    let batches = rows.collect().await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    node.stop(false).await.unwrap();
    assert!(!dir.path().join(DECOMMISSIONED_MARKER).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_open_beyond_loopback_without_users_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = settings(dir.path(), &["--listen", "0.0.0.0", "--advertise-address", "127.0.0.1"]);
    let error = RunningNode::start(config).await.err().expect("refused");
    assert!(format!("{error:#}").contains("minitrue user add"), "{error:#}");
}
