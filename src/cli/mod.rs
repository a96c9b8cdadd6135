//! The `tessera` command. `serve`, `migrate` and `init` work on the
//! database directly; every other command talks to a running server's
//! admin API over HTTP, as `hydra`'s CLI does.

mod client;
mod clients;
mod keys;
mod local;
mod service_users;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use url::Url;

pub use client::AdminClient;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "OpenID Connect / OAuth 2.0 provider for CLIs, CI and services"
)]
pub struct Cli {
    /// Base URL of the Tessera server the admin commands talk to.
    #[arg(
        long,
        env = "TESSERA_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: Url,
    /// Admin bearer token.
    #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the admin bearer token (default: keys/admin.token when it exists).
    #[arg(long, env = "TESSERA_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply the embedded database migrations and exit.
    Migrate(ConfigArgs),
    /// Initialise an empty database: signing keys and an administrator
    /// whose token is written to --admin-token-file.
    Init {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        admin_token_file: PathBuf,
        /// On an initialised database: issue a new administrator token
        /// (for admin.token_lifetime) and revoke the previous ones.
        #[arg(long)]
        rotate_admin_token: bool,
    },
    /// Signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// OAuth clients.
    #[command(subcommand)]
    Client(clients::ClientCommand),
    /// Service users and their keys.
    #[command(subcommand)]
    ServiceUser(service_users::ServiceUserCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(keys::AuditCommand),
    /// Show the identity behind the admin token.
    Whoami,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// A TOML file applied over the embedded default.
    #[arg(long, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Overrides database.url.
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Overrides server.listen.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Overrides server.issuer.
    #[arg(long)]
    pub issuer: Option<Url>,
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => local::serve(args).await,
        Command::Migrate(args) => local::migrate(args).await,
        Command::Init {
            config,
            admin_token_file,
            rotate_admin_token,
        } => local::init(config, admin_token_file, rotate_admin_token).await,
        Command::Keys(command) => {
            let client = AdminClient::new(&cli.url, cli.token, cli.token_file)?;
            keys::run_keys(&client, command, cli.json).await
        }
        Command::Client(command) => {
            let client = AdminClient::new(&cli.url, cli.token, cli.token_file)?;
            clients::run(&client, command, cli.json).await
        }
        Command::ServiceUser(command) => {
            let client = AdminClient::new(&cli.url, cli.token, cli.token_file)?;
            service_users::run(&client, command, cli.json).await
        }
        Command::Audit(command) => {
            let client = AdminClient::new(&cli.url, cli.token, cli.token_file)?;
            keys::run_audit(&client, command, cli.json).await
        }
        Command::Whoami => {
            let client = AdminClient::new(&cli.url, cli.token, cli.token_file)?;
            let me: serde_json::Value = client.get("/admin/v1/whoami", &[]).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&me)?);
            } else {
                println!(
                    "{} ({}, {})",
                    me["name"].as_str().unwrap_or("?"),
                    me["kind"].as_str().unwrap_or("?"),
                    me["id"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
    }
}
