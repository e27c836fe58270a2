//! `minitrue serve`'s settings, each declared once: a clap argument with its flag, its
//! `MINITRUE_*` environment variable and its default, in the section of the component it
//! configures. Sections map onto TOML tables of `--config FILE` (`[wal] sync = "100ms"`; a key
//! is the part of the argument's id after the dot) and onto their component's own
//! configuration struct (`WalSettings::options()` → `WalOptions`), whose defaults are the
//! defaults here.
//!
//! Precedence: flag > environment > file > default. The file's values enter the command as
//! clap defaults ([`parse_cli`]), so clap itself applies the order, and `--help` shows them.
//! Top-level keys of the file (`pg_port = 5433`, the older flat form) are accepted when the
//! key names exactly one setting.
//!
//! `--print-config` prints the resolved settings by section as JSON; secrets never appear
//! (the broker password and the cluster secret are read from their file or the environment;
//! the printout says only where from).

mod cluster;
mod ingest;
mod mqtt;
mod network;
mod node;
mod query;
mod security;
pub mod span;
mod storage;
mod wal;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Command, CommandFactory, FromArgMatches};
use minitrue_ingest::mqtt::MqttLogin;
use serde::Serialize;

pub use cluster::ClusterSettings;
pub use ingest::IngestSettings;
pub use mqtt::{MqttSettings, MqttSubscription};
pub use network::NetworkSettings;
pub use node::{Mode, NodeSettings};
pub use query::QuerySettings;
pub use security::SecuritySettings;
pub use storage::StorageSettings;
pub use wal::WalSettings;

/// `minitrue serve`'s command line.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML file with any of these settings, by section (`[network]`, `[storage]`, …);
    /// flags and environment variables override it.
    #[arg(long, env = "MINITRUE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the resolved settings as JSON and exit (checks a deployment's settings).
    #[arg(long = "print-config")]
    pub print_config: bool,
    #[command(flatten)]
    pub settings: Settings,
}

/// Everything a node is configured with, by section.
#[derive(Args, Debug, Clone, Serialize)]
pub struct Settings {
    #[command(flatten, next_help_heading = "Node")]
    pub node: NodeSettings,
    #[command(flatten, next_help_heading = "Network")]
    pub network: NetworkSettings,
    #[command(flatten, next_help_heading = "Storage")]
    pub storage: StorageSettings,
    #[command(flatten, next_help_heading = "Write-ahead log")]
    pub wal: WalSettings,
    #[command(flatten, next_help_heading = "Cluster")]
    pub cluster: ClusterSettings,
    #[command(flatten, next_help_heading = "MQTT")]
    pub mqtt: MqttSettings,
    #[command(flatten, next_help_heading = "Ingest")]
    pub ingest: IngestSettings,
    #[command(flatten, next_help_heading = "Query")]
    pub query: QuerySettings,
    #[command(flatten, next_help_heading = "Security")]
    pub security: SecuritySettings,
}

impl Settings {
    /// Finishes what clap cannot: the cluster secret (see [`ClusterSettings::load_secret`]);
    /// the broker login, from --broker-username with the password
    /// file or `MINITRUE_BROKER_PASSWORD` (looked up in `env`), or taken out of the broker
    /// URL, which is then printed without it.
    pub fn resolve(mut self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        self.cluster.load_secret(env)?;
        let mqtt = &mut self.mqtt;
        let mut url_login = None;
        if let Some(url) = &mqtt.broker {
            let (url, login) = split_credentials(url)?;
            mqtt.broker = Some(url);
            url_login = login;
        }
        let password = match &mqtt.broker_password_file {
            Some(path) => Some(first_line(path)?),
            None => env("MINITRUE_BROKER_PASSWORD"),
        };
        mqtt.login = match (mqtt.broker_username.clone(), password, url_login) {
            (Some(username), Some(password), _) => Some(MqttLogin { username, password }),
            (Some(username), None, _) => anyhow::bail!(
                "--broker-username {username} needs --broker-password-file or \
                 MINITRUE_BROKER_PASSWORD"
            ),
            (None, _, login) => login,
        };
        Ok(self)
    }
}

/// Parses the process's command line as `C`, with the values of `minitrue serve --config
/// FILE` (or `MINITRUE_CONFIG`) as the `serve` subcommand's defaults.
pub fn parse_cli<C: CommandFactory + FromArgMatches>() -> anyhow::Result<C> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = C::command();
    let mut serve = command.find_subcommand("serve").cloned().context("no serve command")?;
    if let Some(file) = config_file(&args) {
        serve = with_file_defaults(serve, &file)?;
    }
    // `--pg-port <PG_PORT>` in the help, not the id `<network.pg_port>`.
    let ids: Vec<String> = serve.get_arguments().map(|arg| arg.get_id().to_string()).collect();
    for id in ids {
        if let Some((_, key)) = id.split_once('.') {
            let name = key.to_uppercase();
            serve = serve.mut_arg(&id, |arg| arg.value_name(name));
        }
    }
    command = command.mut_subcommand("serve", |_| serve);
    let matches = command.get_matches_from(args);
    C::from_arg_matches(&matches).map_err(|error| error.exit())
}

/// The `--config` file of a `serve` command line, or `MINITRUE_CONFIG`'s.
fn config_file(args: &[OsString]) -> Option<PathBuf> {
    let args: Vec<&str> = args.iter().filter_map(|arg| arg.to_str()).collect();
    let serve = args.iter().position(|arg| *arg == "serve")?;
    let rest = &args[serve + 1..];
    for (i, arg) in rest.iter().enumerate() {
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if *arg == "--config" {
            return rest.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::var_os("MINITRUE_CONFIG").map(PathBuf::from)
}

/// `serve` with the settings of the TOML file at `path` as defaults.
pub fn with_file_defaults(serve: Command, path: &Path) -> anyhow::Result<Command> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
    let mut defaults: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(section) => {
                for (leaf, value) in section {
                    let id = format!("{key}.{leaf}");
                    defaults.push((id, values_of(&value, &key, &leaf)?));
                }
            }
            value => {
                let suffix = format!(".{key}");
                let matching: Vec<String> = serve
                    .get_arguments()
                    .map(|arg| arg.get_id().to_string())
                    .filter(|id| id.ends_with(&suffix))
                    .collect();
                let [id] = matching.as_slice() else {
                    anyhow::bail!("{}: unknown setting {key:?}", path.display());
                };
                defaults.push((id.clone(), values_of(&value, "", &key)?));
            }
        }
    }
    let mut serve = serve;
    for (id, values) in defaults {
        let Some(arg) = serve.get_arguments().find(|arg| arg.get_id() == id.as_str()) else {
            let (section, key) = id.split_once('.').unwrap_or(("", &id));
            anyhow::bail!("{}: unknown setting {key:?} in [{section}]", path.display());
        };
        if values.len() != 1 && arg.get_value_delimiter().is_none() {
            anyhow::bail!("{}: {id} takes one value, not a list", path.display());
        }
        serve = serve.mut_arg(id, |arg| arg.default_values(values));
    }
    Ok(serve)
}

/// A TOML value as the text clap parses (a list: one text per item).
fn values_of(value: &toml::Value, section: &str, key: &str) -> anyhow::Result<Vec<String>> {
    let scalar = |value: &toml::Value| match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => {
            Err(anyhow::anyhow!("[{section}] {key}: {} is not a setting's value", other.type_str()))
        }
    };
    match value {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        value => Ok(vec![scalar(value)?]),
    }
}

/// `mqtt://user:password@host:port` → the URL without them, and them. A URL with a password
/// works, with a warning: the password belongs in a file or the environment.
fn split_credentials(url: &str) -> anyhow::Result<(String, Option<MqttLogin>)> {
    let mut parsed = url::Url::parse(url).with_context(|| {
        format!("--broker {:?} is not a URL", minitrue_ingest::client::without_password(url))
    })?;
    if parsed.username().is_empty() && parsed.password().is_none() {
        return Ok((url.to_string(), None));
    }
    let decode = |text: &str| {
        url::form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    let login = MqttLogin {
        username: decode(parsed.username()),
        password: decode(parsed.password().unwrap_or("")),
    };
    tracing::warn!(
        "the --broker URL carries credentials: use --broker-username with \
         --broker-password-file or MINITRUE_BROKER_PASSWORD instead"
    );
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed.to_string(), Some(login)))
}

/// The first line of a secret file (a password given as `--…-password-file`, e.g. a mounted
/// secret), without its line end.
pub(crate) fn first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests;
