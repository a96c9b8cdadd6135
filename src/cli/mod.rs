//! The `tessera` command. `serve`, `migrate` and `init` work on the
//! database directly; every other command talks to a running server's
//! admin API over HTTP, as `hydra`'s CLI does.

mod agent_run;
mod agents;
mod client;
mod clients;
mod keys;
mod local;
mod login;
mod rekey;
mod service_users;
mod tokens;
mod trust;
mod trust_show;
mod trust_test;
mod users;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use url::Url;

use crate::secret::Secret;

pub use client::AdminClient;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "OpenID Connect / OAuth 2.0 provider for CLIs, CI and services"
)]
pub struct Cli {
    /// The admin options, also accepted before the command
    /// (`tessera --json client list`).
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How the admin commands reach a server. They are declared on each admin
/// command, so that `serve`, `migrate` and `init` list only what they use.
#[derive(Debug, Clone, Default, Args)]
pub struct AdminArgs {
    /// Base URL of the Tessera server [env: TESSERA_URL] [default: http://127.0.0.1:8080].
    #[arg(long, global = true)]
    pub url: Option<Url>,
    /// Admin bearer token. Other users can read it in `ps`: prefer
    /// TESSERA_TOKEN or --token-file.
    #[arg(long, global = true)]
    pub token: Option<Secret>,
    /// File holding the admin bearer token [env: TESSERA_TOKEN_FILE]
    /// (default: keys/admin.token when it exists).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Send the token over plain http to a host that is not loopback.
    #[arg(long, global = true)]
    pub insecure: bool,
}

/// The admin options of `audit`, without `--token`: there `audit list
/// --token ID` names a personal or machine token to filter by. The bearer
/// token comes from `--token` before the command, `--token-file`,
/// TESSERA_TOKEN, TESSERA_TOKEN_FILE or a login.
#[derive(Debug, Clone, Default, Args)]
pub struct AuditAdminArgs {
    /// Base URL of the Tessera server [env: TESSERA_URL] [default: http://127.0.0.1:8080].
    #[arg(long, global = true)]
    pub url: Option<Url>,
    /// File holding the admin bearer token [env: TESSERA_TOKEN_FILE].
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Send the token over plain http to a host that is not loopback.
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl From<AuditAdminArgs> for AdminArgs {
    fn from(args: AuditAdminArgs) -> Self {
        AdminArgs {
            url: args.url,
            token: None,
            token_file: args.token_file,
            json: args.json,
            insecure: args.insecure,
        }
    }
}

impl AdminArgs {
    /// The options given after the command win over those before it.
    fn or(self, before: &AdminArgs) -> AdminArgs {
        AdminArgs {
            url: self.url.or_else(|| before.url.clone()),
            token: self.token.or_else(|| before.token.clone()),
            token_file: self.token_file.or_else(|| before.token_file.clone()),
            json: self.json || before.json,
            insecure: self.insecure || before.insecure,
        }
    }
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
    /// Signing keys and the master key.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// OAuth clients.
    Client {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: clients::ClientCommand,
    },
    /// Service users and their keys.
    ServiceUser {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: service_users::ServiceUserCommand,
    },
    /// People: users who log in through the browser pages.
    User {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// CI federation: trusted issuers and trust policies.
    Trust {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: trust::TrustCommand,
    },
    /// Agents: bootstrap tokens, registered agents, the kill switch, and
    /// `agent run`, the agent itself.
    Agent {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: agents::AgentCommand,
    },
    /// Personal access tokens and machine tokens.
    Token {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: tokens::TokenCommand,
    },
    /// The audit log.
    Audit {
        #[command(flatten)]
        admin: AuditAdminArgs,
        #[command(subcommand)]
        command: keys::AuditCommand,
    },
    /// Sign in as yourself (device flow, or the browser on this machine):
    /// later commands then act with your identity.
    Login(login::LoginArgs),
    /// Revoke and forget the login made by `tessera login`.
    Logout(login::LogoutArgs),
    /// Show the identity behind the admin token, and for a login, when it
    /// ends.
    Whoami {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl Cli {
    /// Parses the process arguments. The admin options before the command
    /// are made local to the top level, so they do not reach `serve`.
    pub fn parse_args() -> Cli {
        let command = ["url", "token", "token_file", "json", "insecure"]
            .into_iter()
            .fold(Cli::command(), |command, id| {
                command.mut_arg(id, |arg| arg.global(false))
            });
        let mut matches = command.get_matches();
        Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
    }
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
    let before = cli.admin;
    match cli.command {
        Command::Serve(args) => local::serve(args).await,
        Command::Migrate(args) => local::migrate(args).await,
        Command::Init {
            config,
            admin_token_file,
            rotate_admin_token,
        } => local::init(config, admin_token_file, rotate_admin_token).await,
        Command::Keys {
            command: keys::KeysCommand::Local(command),
            ..
        } => rekey::run(command).await,
        Command::Keys {
            admin,
            command: keys::KeysCommand::Remote(command),
        } => {
            let admin = admin.or(&before);
            keys::run_keys(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::Client { admin, command } => {
            let admin = admin.or(&before);
            clients::run(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::ServiceUser { admin, command } => {
            let admin = admin.or(&before);
            service_users::run(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::User { admin, command } => {
            let admin = admin.or(&before);
            users::run(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::Trust {
            mut admin,
            command: trust::TrustCommand::Test(args),
        } => {
            // After `trust test`, `--token-file` names the CI job's token, and
            // clap hands that value to the admin option of the same name
            // wherever it was given: the admin's token comes from --token,
            // TESSERA_TOKEN, TESSERA_TOKEN_FILE or keys/admin.token here.
            let job = Some(args.token_file.as_path());
            let mut before = before;
            for options in [&mut admin, &mut before] {
                if options.token_file.as_deref() == job {
                    options.token_file = None;
                }
            }
            let admin_token_given = admin.token.is_some()
                || before.token.is_some()
                || std::env::var_os("TESSERA_TOKEN").is_some()
                || std::env::var_os("TESSERA_TOKEN_FILE").is_some()
                || std::path::Path::new("keys/admin.token").exists();
            if !admin_token_given {
                anyhow::bail!(
                    "trust test: --token-file names the job's token; give the admin token \
                     with TESSERA_TOKEN_FILE or TESSERA_TOKEN"
                );
            }
            let admin = admin.or(&before);
            trust_test::run(&AdminClient::connect(&admin).await?, args, admin.json).await
        }
        Command::Trust { admin, command } => {
            let admin = admin.or(&before);
            trust::run(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::Agent {
            admin,
            command: agents::AgentCommand::Run(args),
        } => {
            let admin = admin.or(&before);
            let url = client::base_url(admin.url.as_ref())?;
            agent_run::run(url, admin.insecure, args).await
        }
        Command::Agent { admin, command } => {
            let admin = admin.or(&before);
            agents::run(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::Token { admin, command } => {
            let admin = admin.or(&before);
            tokens::run(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::Audit { admin, command } => {
            let admin = AdminArgs::from(admin).or(&before);
            keys::run_audit(&AdminClient::connect(&admin).await?, command, admin.json).await
        }
        Command::Login(args) => {
            let args = login::LoginArgs {
                url: args.url.or(before.url),
                insecure: args.insecure || before.insecure,
                ..args
            };
            login::login(args).await
        }
        Command::Logout(args) => {
            let args = login::LogoutArgs {
                url: args.url.or(before.url),
            };
            login::logout(args).await
        }
        Command::Whoami { admin } => {
            let admin = admin.or(&before);
            let client = AdminClient::connect(&admin).await?;
            let mut me: serde_json::Value = client.get("/admin/v1/whoami", &[]).await?;
            let login = client
                .login
                .as_ref()
                .map(|(login, place)| login::describe(login, place));
            if admin.json {
                if let Some(login) = login {
                    me["login"] = login;
                }
                println!("{}", serde_json::to_string_pretty(&me)?);
                return Ok(());
            }
            println!(
                "{} ({}, {})",
                me["name"].as_str().unwrap_or("?"),
                me["kind"].as_str().unwrap_or("?"),
                me["id"].as_str().unwrap_or("?")
            );
            if let Some(login) = login {
                let text = |key: &str| login[key].as_str().unwrap_or("?").to_owned();
                println!("Logged in to {} with {}", text("url"), text("client_id"));
                println!("Scopes: {}", text("scope"));
                match login["session_ends_at"].as_str() {
                    Some(end) => {
                        println!("Session ends {end} unless a command renews it before then")
                    }
                    None => println!("Session end: not told by the server"),
                }
                println!("Stored in {}", text("stored_in"));
            }
            Ok(())
        }
    }
}
