use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use minitrue_storage::SyncPolicy;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    Serve(ServeArgs),
}

/// `minitrue serve ARGV` with `file` (TOML text) as its --config file, resolved without
/// environment (clap reads the process's: tests use variables of their own, see
/// `with_env`).
fn parse_with(argv: &[&str], file: Option<&str>) -> anyhow::Result<Settings> {
    parse_command(Cli::command(), argv, file)
}

fn parse_command(command: Command, argv: &[&str], file: Option<&str>) -> anyhow::Result<Settings> {
    unresolved(command, argv, file)?.resolve(&|_| None)
}

/// The settings as clap gives them, before [`Settings::resolve`].
fn unresolved(mut command: Command, argv: &[&str], file: Option<&str>) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir()?;
    if let Some(text) = file {
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text)?;
        let serve = with_file_defaults(command.find_subcommand("serve").unwrap().clone(), &path)?;
        command = command.mut_subcommand("serve", |_| serve);
    }
    let argv = ["minitrue", "serve"].iter().chain(argv).copied();
    let matches = command.try_get_matches_from(argv)?;
    let Sub::Serve(args) = Cli::from_arg_matches(&matches)?.command;
    Ok(args.settings)
}

fn parse(argv: &[&str]) -> Settings {
    parse_with(argv, None).unwrap()
}

/// The command with `id`'s environment variable renamed to `variable` (one no other test
/// reads, so setting it cannot disturb tests running beside this one).
fn with_env(id: &str, variable: &'static str) -> Command {
    let mut serve = Cli::command().find_subcommand("serve").unwrap().clone();
    serve = serve.mut_arg(id, |arg| arg.env(variable));
    Cli::command().mut_subcommand("serve", |_| serve)
}

#[test]
fn defaults_follow_the_design_and_the_components() {
    let settings = parse(&[]);
    let network = &settings.network;
    assert_eq!(
        (
            network.http_port,
            network.pg_port,
            network.flight_port,
            network.gossip_port,
            network.mqtt_port
        ),
        (8080, 5432, 50051, 9000, 1883)
    );
    assert_eq!(network.listen, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(settings.node.mode, Mode::All);
    // Component defaults are the components' own.
    let wal = settings.wal.options();
    assert_eq!(wal, minitrue_storage::WalOptions::default());
    let engine = settings.storage.engine_config(wal);
    let reference = minitrue_storage::EngineConfig::new("./data");
    assert_eq!(format!("{engine:?}"), format!("{reference:?}"));
    assert_eq!(
        format!("{:?}", settings.query.options()),
        format!("{:?}", minitrue_query::QueryOptions::default())
    );
    let replication = settings.cluster.replication();
    assert_eq!(
        replication.peer_timeout,
        minitrue_cluster::ReplicationConfig::default().peer_timeout
    );
}

#[test]
fn seed_spellings_are_accepted() {
    let settings = parse(&[
        "--port",
        "8081",
        "--tcp_port",
        "9001",
        "--node_id",
        "ing2",
        "--data_dir",
        "/tmp/d",
        "--mode",
        "ingestion",
        "--seeds",
        "localhost:9000, localhost:9001",
    ]);
    assert_eq!((settings.network.http_port, settings.network.gossip_port), (8081, 9001));
    assert_eq!(settings.node.node_id, "ing2");
    assert_eq!(settings.storage.data_dir, PathBuf::from("/tmp/d"));
    assert_eq!(settings.node.mode, Mode::Ingest);
    assert_eq!(settings.cluster.seeds(), vec!["localhost:9000", "localhost:9001"]);
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let file =
        "[network]\npg_port = 7000\nhttp_port = 7001\nmqtt_port = 7002\n[node]\nmode = \"query\"\n";
    std::env::set_var("MINITRUE_TEST_PRECEDENCE_HTTP_PORT", "6001");
    std::env::set_var("MINITRUE_TEST_PRECEDENCE_MQTT_PORT", "6002");
    let mut command = with_env("network.http_port", "MINITRUE_TEST_PRECEDENCE_HTTP_PORT");
    let serve = command.find_subcommand("serve").unwrap().clone();
    let serve =
        serve.mut_arg("network.mqtt_port", |arg| arg.env("MINITRUE_TEST_PRECEDENCE_MQTT_PORT"));
    command = command.mut_subcommand("serve", |_| serve);
    let settings = parse_command(command, &["--mqtt-port", "5002"], Some(file)).unwrap();
    assert_eq!(settings.network.pg_port, 7000, "file over default");
    assert_eq!(settings.network.http_port, 6001, "env over file");
    assert_eq!(settings.network.mqtt_port, 5002, "flag over env");
    assert_eq!(settings.node.mode, Mode::Query);
    assert_eq!(settings.network.gossip_port, 9000, "default");
}

#[test]
fn file_sections_reach_the_components_and_flat_keys_still_work() {
    let file = "pg_port = 7100\n\
                [wal]\nsync = \"100ms\"\nmax_record_bytes = 1048576\n\
                [storage]\nflush_bytes = 1048576\nflush_age = \"30s\"\npartition = \"24h\"\n\
                [cluster]\nseeds = [\"a:9000\", \"b:9000\"]\npeer_timeout = \"3s\"\n\
                [mqtt]\nmax_packet_bytes = 65536\n\
                [ingest]\ntopic_template = [\"site/{site}/{device_id}/{metric}\"]\n\
                line_protocol_precision = \"ms\"\nmax_future = \"1h\"\nseed_topic_prefix = \"\"\n\
                [query]\ntime_zone = \"Europe/Paris\"\n";
    let settings = parse_with(&[], Some(file)).unwrap();
    assert_eq!(settings.network.pg_port, 7100);
    let wal = settings.wal.options();
    assert_eq!(wal.sync, SyncPolicy::Interval(Duration::from_millis(100)));
    assert_eq!(wal.max_record_bytes, 1 << 20);
    let engine = settings.storage.engine_config(wal);
    assert_eq!(engine.flush_memtable_bytes, 1 << 20);
    assert_eq!(engine.flush_max_age, Duration::from_secs(30));
    assert_eq!(engine.partition, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(settings.cluster.seeds(), vec!["a:9000", "b:9000"]);
    assert_eq!(settings.cluster.replication().peer_timeout, Duration::from_secs(3));
    assert_eq!(settings.mqtt.subscriber("mqtt://b", "n").max_packet_bytes, 65536);
    assert_eq!(settings.ingest.topic_template, vec!["site/{site}/{device_id}/{metric}"]);
    let format = settings.ingest.format();
    assert_eq!(format.line_protocol.precision, minitrue_ingest::Precision::Milliseconds);
    assert_eq!(format.clock_window.max_future_secs, 3600);
    assert_eq!(format.seed_topic_prefix, None, "an empty prefix turns the seed topics off");
    assert_eq!(settings.query.options().time_zone, "Europe/Paris");
}

#[test]
fn each_door_may_listen_on_its_own_address() {
    let settings =
        parse(&["--listen", "10.0.0.5", "--mqtt-listen", "0.0.0.0", "--pg-listen", "127.0.0.1"]);
    let network = &settings.network;
    assert_eq!(network.mqtt_listen(), "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(network.pg_listen(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(network.http_listen(), "10.0.0.5".parse::<IpAddr>().unwrap(), "--listen");
    assert_eq!(network.flight_listen(), network.listen);
}

#[test]
fn broker_credentials_never_stay_in_the_printed_url() {
    let settings = parse(&["--broker", "mqtt://sensor:s%40cret@broker.lan:1883"]);
    assert_eq!(settings.mqtt.broker.as_deref(), Some("mqtt://broker.lan:1883"));
    let login = settings.mqtt.login.clone().unwrap();
    assert_eq!((login.username.as_str(), login.password.as_str()), ("sensor", "s@cret"));
    let printed = serde_json::to_string(&settings).unwrap();
    assert!(!printed.contains("s@cret") && !printed.contains("s%40cret"), "{printed}");
    assert!(printed.contains("sensor / ********"), "{printed}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker-password");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let settings = parse(&[
        "--broker",
        "mqtts://broker.lan:8883",
        "--broker-username",
        "node",
        "--broker-password-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(settings.mqtt.login.clone().unwrap().password, "from-a-file");
    assert!(!serde_json::to_string(&settings).unwrap().contains("from-a-file"));
    let argv = ["--broker", "mqtt://b:1883", "--broker-username", "node"];
    let given = unresolved(Cli::command(), &argv, None).unwrap();
    let env = |name: &str| (name == "MINITRUE_BROKER_PASSWORD").then(|| "from-env".to_string());
    assert_eq!(given.clone().resolve(&env).unwrap().mqtt.login.unwrap().password, "from-env");
    assert!(given.resolve(&|_| None).is_err());
}

#[test]
fn bad_values_are_clear_errors() {
    std::env::set_var("MINITRUE_TEST_BAD_PG_PORT", "lots");
    let error = parse_command(with_env("network.pg_port", "MINITRUE_TEST_BAD_PG_PORT"), &[], None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("lots") && error.contains("pg-port"), "{error}");
    let error = format!("{:#}", parse_with(&[], Some("pg_prot = 1\n")).unwrap_err());
    assert!(error.contains("pg_prot"), "unknown keys are refused: {error}");
    let error = format!("{:#}", parse_with(&[], Some("[wal]\nsnyc = \"100ms\"\n")).unwrap_err());
    assert!(error.contains("snyc") && error.contains("[wal]"), "{error}");
    let error =
        format!("{:#}", parse_with(&[], Some("[network]\npg_port = [1, 2]\n")).unwrap_err());
    assert!(error.contains("one value"), "{error}");
    for wrong in [
        &["--wal-sync", "sometimes"][..],
        &["--storage-zstd-level", "40"],
        &["--replication-factor", "0"],
    ] {
        assert!(parse_with(wrong, None).is_err(), "{wrong:?}");
    }
}

#[test]
fn every_setting_has_a_section_an_env_variable_and_help() {
    let serve = Cli::command().find_subcommand("serve").unwrap().clone();
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        if ["config", "print_config", "help"].contains(&id) {
            continue;
        }
        let (section, _) = id.split_once('.').unwrap_or_else(|| panic!("{id} has no section"));
        let sections =
            ["node", "network", "storage", "wal", "cluster", "mqtt", "ingest", "query", "security"];
        assert!(sections.contains(&section), "{id}");
        let env = arg.get_env().unwrap_or_else(|| panic!("{id} has no environment variable"));
        assert!(env.to_str().unwrap().starts_with("MINITRUE_"), "{id}");
        assert!(arg.get_help().is_some(), "{id} has no help");
    }
}

#[test]
fn printed_settings_read_back_as_the_same_settings() {
    let settings = parse(&[
        "--wal-sync",
        "250ms",
        "--storage-partition",
        "6h",
        "--seeds",
        "a:1,b:2",
        "--node-id",
        "n7",
    ]);
    let printed: serde_json::Value = serde_json::to_value(&settings).unwrap();
    // The printed JSON, as a TOML file, configures the same node.
    let mut toml_text = String::new();
    for (section, values) in printed.as_object().unwrap() {
        toml_text.push_str(&format!("[{section}]\n"));
        for (key, value) in values.as_object().unwrap() {
            if value.is_null() || key == "login" {
                continue;
            }
            toml_text.push_str(&format!("{key} = {value}\n"));
        }
    }
    let again = parse_with(&[], Some(&toml_text)).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), printed, "{toml_text}");
}
