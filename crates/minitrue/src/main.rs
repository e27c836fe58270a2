//! `minitrue`: the single binary: `serve` (a node), `publish` (the sensor side: simulator,
//! serial port, CSV replay), `import` (CSV bulk load), `bench`.

mod bench;
mod config;
mod datasets;
mod import;
mod publish;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "minitrue",
    version,
    about = "MiniTrue: a distributed time-series database for IoT sensor networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks that print ratios against a reference measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Run a node: storage, SQL over the Postgres wire protocol, MQTT ingestion.
    Serve(config::ServeArgs),
    /// Publish sensor readings over MQTT: simulated, from a serial port, or replayed from CSV.
    Publish(publish::PublishArgs),
    /// Bulk-load CSV files into a data directory (durable when the command returns).
    Import(import::ImportArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rumqttd=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { which } => bench::run(which),
        Command::Import(args) => import::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Publish(args) => publish::run(args),
    }
}
