//! `minitrue serve`: one node. Opens the storage engine, serves SQL over the Postgres wire
//! protocol, ingests MQTT, and shuts down cleanly on SIGINT/SIGTERM (everything acknowledged
//! is flushed to Parquet before exit; a crash instead is covered by the WAL).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use futures::future::BoxFuture;
use minitrue_common::Point;
use minitrue_ingest::mqtt::{
    run_subscriber, IngestCounters, PointSink, SinkError, SubscriberConfig,
};
use minitrue_ingest::{FormatConfig, Parser};
use minitrue_storage::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Mode, NodeConfig, ServeArgs};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve(&|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config))
}

/// Writes MQTT points into the local engine (durable when `write` returns).
struct EngineSink(Arc<Engine>);

impl PointSink for EngineSink {
    fn write(&self, points: Vec<Point>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.0
                .write(&points)
                .await
                .map(|_| ())
                .map_err(|e| SinkError { kind: e.kind(), message: e.to_string() })
        })
    }
}

async fn wait_for_shutdown(mut signal: watch::Receiver<bool>) {
    while !*signal.borrow() {
        if signal.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    let mut engine_config = EngineConfig::new(&config.data_dir);
    engine_config.object_store_url = config.store_url.clone();
    let (engine, report) =
        Engine::open(engine_config).await.context("opening the storage engine")?;
    tracing::info!(files = report.files, replayed = report.wal_records_replayed, "storage open");

    let (stop, stopping) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut ready = serde_json::Map::new();
    ready.insert("node_id".into(), config.node_id.clone().into());

    if config.mode != Mode::Ingest {
        let listener =
            TcpListener::bind((config.listen, config.pg_port)).await.with_context(|| {
                format!("binding the postgres port {}:{}", config.listen, config.pg_port)
            })?;
        let address: SocketAddr = listener.local_addr()?;
        let session = Arc::new(
            minitrue_query::session(engine.clone(), minitrue_query::QueryOptions::default())
                .await?,
        );
        tasks.push(tokio::spawn({
            let stopping = stopping.clone();
            async move {
                if let Err(error) =
                    minitrue_server::serve_pgwire(listener, session, wait_for_shutdown(stopping))
                        .await
                {
                    tracing::error!(%error, "postgres server stopped");
                }
            }
        }));
        ready.insert("postgres".into(), address.to_string().into());
        println!("postgres: psql -h {} -p {} -U minitrue minitrue", address.ip(), address.port());
    }

    if config.mode != Mode::Query {
        match &config.broker {
            Some(broker) => {
                let parser = Arc::new(Parser::new(FormatConfig::default())?);
                let counters = Arc::new(IngestCounters::default());
                let subscriber = SubscriberConfig::new(broker.clone(), format!("minitrue-{}", config.node_id));
                let sink: Arc<dyn PointSink> = Arc::new(EngineSink(engine.clone()));
                tasks.push(tokio::spawn({
                    let stopping = stopping.clone();
                    async move {
                        if let Err(error) = run_subscriber(subscriber, parser, sink, counters, wait_for_shutdown(stopping)).await {
                            tracing::error!(%error, "mqtt subscriber stopped");
                        }
                    }
                }));
                ready.insert("mqtt_broker".into(), broker.clone().into());
                println!("mqtt: subscribed at {broker}");
            }
            None => println!("mqtt: no --broker given, MQTT ingestion is off (the embedded broker is not built yet)"),
        }
    }

    if let Some(path) = &config.ready_file {
        std::fs::write(path, serde_json::Value::Object(ready).to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("minitrue node {} ready", config.node_id);

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    engine.close().await.context("flushing the storage engine")?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
