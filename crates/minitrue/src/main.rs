//! `minitrue`: the single binary: `serve` (a node), `import` (CSV bulk load), `bench`; the
//! sensor publisher (`publish`) joins it with the MQTT issue.

mod bench;
mod config;
mod datasets;
mod import;
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
    /// Bulk-load CSV files into a data directory (durable when the command returns).
    Import(import::ImportArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { which } => bench::run(which),
        Command::Import(args) => import::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
