//! `minitrue user …` and `minitrue token …`: the users and tokens of a node, kept in its data
//! directory's credentials file (see `minitrue_auth::store`). A running node follows the file,
//! so changes take effect without a restart. Every change is written to the audit log.
//! `minitrue cluster secret` makes the secret the nodes of a cluster share.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use minitrue_auth::{CredentialsEditor, Role};

/// The data directory, as `minitrue serve` takes it.
#[derive(Args, Debug)]
pub struct DataDirArg {
    /// The node's data directory (where `users.json` lives).
    #[arg(
        long = "data-dir",
        alias = "data_dir",
        env = "MINITRUE_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user, or change an existing user's password and role. The password is read from
    /// standard input (asked for twice on a terminal) or from --password-file.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A file whose first line is the password (e.g. a mounted secret).
        #[arg(long = "password-file")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List the users and their roles.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove a user (its open connections stay until they close).
    Remove {
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token and print it: the only time it is shown.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List the tokens (names and roles; never their text).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke a token: requests carrying it are refused at once.
    Revoke {
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

pub fn run_user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, role, password_file, data } => {
            let editor = editor(&data)?;
            let password = match password_file {
                Some(path) => crate::settings::first_line(&path)?,
                None => password_from_stdin()?,
            };
            editor.set_user(&name, role, &password)?;
            tracing::warn!(target: "audit", user = %name, role = %role, "user added or changed");
            println!("user {name} ({role}) saved in {}", editor.path().display());
        }
        UserCommand::List { data } => {
            let users = editor(&data)?.users()?;
            if users.is_empty() {
                println!("no users: the node is open to every client on loopback");
            }
            for user in users {
                println!("{}\t{}", user.name, user.role);
            }
        }
        UserCommand::Remove { name, data } => {
            editor(&data)?.remove_user(&name)?;
            tracing::warn!(target: "audit", user = %name, "user removed");
            println!("user {name} removed");
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Print a fresh random cluster secret: write it to a file only its node can read
    /// (`chmod 600`) and give every node of the cluster that file (--cluster-secret-file) or
    /// the value (MINITRUE_CLUSTER_SECRET).
    Secret,
}

pub fn run_cluster(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Secret => {
            println!("{}", minitrue_auth::cluster::ClusterSecret::generate()?)
        }
    }
    Ok(())
}

pub fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, role, data } => {
            let token = editor(&data)?.create_token(&name, role)?;
            tracing::warn!(target: "audit", token = %name, role = %role, "token created");
            eprintln!("token {name} ({role}) created; it is shown once, store it now:");
            println!("{token}");
        }
        TokenCommand::List { data } => {
            for token in editor(&data)?.tokens()? {
                println!("{}\t{}", token.name, token.role);
            }
        }
        TokenCommand::Revoke { name, data } => {
            editor(&data)?.revoke_token(&name)?;
            tracing::warn!(target: "audit", token = %name, "token revoked");
            println!("token {name} revoked");
        }
    }
    Ok(())
}

fn editor(data: &DataDirArg) -> anyhow::Result<CredentialsEditor> {
    CredentialsEditor::open(&data.data_dir)
        .with_context(|| format!("the credentials of {}", data.data_dir.display()))
}

fn password_from_stdin() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("password: ")?;
        if rpassword::prompt_password("again: ")? != password {
            bail!("the passwords differ");
        }
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Creates the users listed in `path` (`name role password` per line; `#` comments) in a data
/// directory that has none: how a container's first start gets its admin. The file is a
/// secret the operator mounts; the node keeps only verifiers.
pub fn bootstrap(data_dir: &std::path::Path, path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the bootstrap users {}", path.display()))?;
    let editor = CredentialsEditor::open(data_dir)?;
    let mut names = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.splitn(3, char::is_whitespace);
        let (Some(name), Some(role), Some(password)) = (words.next(), words.next(), words.next())
        else {
            bail!("{} line {}: expected `name role password`", path.display(), number + 1);
        };
        let role: Role = role.parse().map_err(|e: String| anyhow::anyhow!("{e}"))?;
        editor.set_user(name, role, password.trim())?;
        tracing::warn!(target: "audit", user = name, %role, "user created from the bootstrap file");
        names.push(format!("{name} ({role})"));
    }
    println!("auth: created {} from {}", names.join(", "), path.display());
    Ok(())
}
