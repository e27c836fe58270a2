//! `minitrue`: the single binary: `serve` (a node), `publish` (the sensor side: simulator,
//! serial port, CSV replay), `import` (CSV bulk load), `user` and `token` (credentials),
//! `cluster secret`, `bench`.

mod bench;
mod datasets;
mod import;
mod publish;
mod serve;
mod settings;
mod users;

use clap::Subcommand;

#[derive(clap::Parser)]
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
    Serve(Box<settings::ServeArgs>),
    /// Publish sensor readings over MQTT: simulated, from a serial port, or replayed from CSV.
    Publish(Box<publish::PublishArgs>),
    /// Bulk-load CSV files into a data directory (durable when the command returns).
    Import(import::ImportArgs),
    /// Manage the users of a node (passwords for psql, Basic auth, MQTT, the web UI).
    User {
        #[command(subcommand)]
        which: users::UserCommand,
    },
    /// Manage the bearer tokens of a node (HTTP, Flight, InfluxDB clients).
    Token {
        #[command(subcommand)]
        which: users::TokenCommand,
    },
    /// The cluster's shared secret, which every node must hold to gossip and call the others.
    Cluster {
        #[command(subcommand)]
        which: users::ClusterCommand,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rumqttd=error,audit=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs in files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `serve --config FILE` supplies defaults to the command line (see settings.rs).
    let cli: Cli = settings::parse_cli()?;
    match cli.command {
        Command::Bench { which } => bench::run(which),
        Command::Import(args) => import::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Publish(args) => publish::run(*args),
        Command::User { which } => users::run_user(which),
        Command::Token { which } => users::run_token(which),
        Command::Cluster { which } => users::run_cluster(which),
    }
}
