//! `tessera agent …`: bootstrap tokens, the agents that registered with
//! them, and the kill switch. (`tessera agent run`, the agent itself, is
//! in `agent_run`.)

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use super::AdminClient;
use super::client::printable;
use super::keys::print_json;
use super::tokens::{shown, when};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Bootstrap tokens: what a workload registers itself with, once.
    Bootstrap {
        #[command(subcommand)]
        command: BootstrapCommand,
    },
    /// List agents, with their last token time, key expiry and the
    /// bootstrap token they registered with.
    List {
        /// Only this service user's agents.
        #[arg(long)]
        service_user: Option<String>,
        /// Agents whose key expired unrotated too.
        #[arg(long)]
        all: bool,
    },
    /// Show an agent.
    Show { client_id: String },
    /// Stop an agent: its next token request fails and its tokens
    /// introspect inactive, on every replica.
    Disable { client_id: String },
    /// Let a disabled agent take tokens again.
    Enable { client_id: String },
    /// Delete an agent and its client for good.
    Delete { client_id: String },
    /// Run the reference agent: register a key made in memory, keep a
    /// fresh access token in a file, rotate the key before it expires.
    Run(super::agent_run::AgentRunArgs),
}

#[derive(Debug, Subcommand)]
pub enum BootstrapCommand {
    /// Create a bootstrap token (`tsr_ab_…`); its value is printed once.
    Create {
        /// The service user the agents will act for.
        #[arg(long)]
        service_user: String,
        /// Lifetime, such as 30m or 2h (default 2h, at most 24h).
        #[arg(long)]
        expires: Option<String>,
        /// How many agents may register with it (default 1).
        #[arg(long)]
        uses: Option<u32>,
        /// Environment label, shown in the token (prod, staging, dev).
        #[arg(long)]
        env: Option<String>,
    },
    /// List bootstrap tokens (never their values).
    List {
        /// Only this service user's tokens.
        #[arg(long)]
        service_user: Option<String>,
        /// Revoked tokens too.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a bootstrap token: no agent registers with it again.
    Revoke { id: String },
}

const BOOTSTRAP_PATH: &str = "/admin/v1/agents/bootstrap-tokens";

/// An id as a path segment, checked here so that no argument can reach
/// another path: printable ASCII without `/`, `?`, `#` or `%`.
fn segment(id: &str, what: &str) -> anyhow::Result<String> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/?#%".contains(&b));
    if !valid {
        bail!("`{}` is not {what}", id.escape_default());
    }
    Ok(id.to_owned())
}

fn agent_path(client_id: &str) -> anyhow::Result<String> {
    Ok(format!(
        "/admin/v1/agents/{}",
        segment(client_id, "an agent's client id")?
    ))
}

fn print_agent(agent: &Value) {
    println!("client id:     {}", shown(&agent["client_id"]));
    println!("name:          {}", shown(&agent["name"]));
    println!("service user:  {}", shown(&agent["service_user"]));
    println!("status:        {}", shown(&agent["state"]));
    println!("scopes:        {}", shown(&agent["scope"]));
    println!("key expires:   {}", when(&agent["key_expires_at"]));
    if agent["previous_key_expires_at"].is_i64() {
        println!("old key until: {}", when(&agent["previous_key_expires_at"]));
    }
    println!("last token:    {}", when(&agent["last_token_at"]));
    println!("bootstrap:     {}", shown(&agent["bootstrap_id"]));
    println!(
        "registered:    {} from {}",
        when(&agent["created_at"]),
        shown(&agent["registered_ip"])
    );
}

pub async fn run(
    client: &AdminClient,
    command: AgentCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    let printed = |value: &Value, print: fn(&Value)| {
        if json_out {
            print_json(value)
        } else {
            print(value);
            Ok(())
        }
    };
    match command {
        AgentCommand::Bootstrap { command } => bootstrap(client, command, json_out).await,
        AgentCommand::List { service_user, all } => {
            let mut query: Vec<(&str, String)> = service_user
                .into_iter()
                .map(|s| ("service_user", s))
                .collect();
            if all {
                query.push(("include_expired", "true".to_owned()));
            }
            let list: Value = client.get("/admin/v1/agents", &query).await?;
            printed(&list, print_agents)
        }
        AgentCommand::Show { client_id } => {
            let agent: Value = client.get(&agent_path(&client_id)?, &[]).await?;
            printed(&agent, print_agent)
        }
        AgentCommand::Disable { client_id } => {
            let agent = set_enabled(client, &client_id, false).await?;
            printed(&agent, print_agent)
        }
        AgentCommand::Enable { client_id } => {
            let agent = set_enabled(client, &client_id, true).await?;
            printed(&agent, print_agent)
        }
        AgentCommand::Delete { client_id } => {
            client.delete(&agent_path(&client_id)?).await?;
            if json_out {
                return print_json(&json!({ "deleted": client_id }));
            }
            println!("deleted agent {}", printable(&client_id));
            Ok(())
        }
        AgentCommand::Run(_) => bail!("`tessera agent run` does not talk to the admin API"),
    }
}

async fn set_enabled(
    client: &AdminClient,
    client_id: &str,
    enabled: bool,
) -> anyhow::Result<Value> {
    let verb = if enabled { "enable" } else { "disable" };
    client
        .post(&format!("{}/{verb}", agent_path(client_id)?), &json!({}))
        .await
}

fn print_agents(list: &Value) {
    println!(
        "{:<30} {:<20} {:<24} {:<9} {:<20} {:<20} BOOTSTRAP",
        "CLIENT ID", "NAME", "SERVICE USER", "STATUS", "KEY EXPIRES", "LAST TOKEN"
    );
    for agent in list["agents"].as_array().into_iter().flatten() {
        println!(
            "{:<30} {:<20} {:<24} {:<9} {:<20} {:<20} {}",
            shown(&agent["client_id"]),
            shown(&agent["name"]),
            shown(&agent["service_user"]),
            shown(&agent["state"]),
            when(&agent["key_expires_at"]),
            when(&agent["last_token_at"]),
            shown(&agent["bootstrap_id"]),
        );
    }
}

async fn bootstrap(
    client: &AdminClient,
    command: BootstrapCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        BootstrapCommand::Create {
            service_user,
            expires,
            uses,
            env,
        } => {
            let body = json!({
                "service_user": service_user,
                "expires": expires,
                "uses": uses,
                "env": env,
            });
            let created: Value = client.post(BOOTSTRAP_PATH, &body).await?;
            if json_out {
                return print_json(&created);
            }
            println!(
                "created bootstrap token {} for service user {}: {} use(s), expires {}",
                shown(&created["id"]),
                shown(&created["service_user"]),
                created["uses"].as_i64().unwrap_or(1),
                when(&created["expires_at"]),
            );
            println!(
                "Hand it to the agent (tessera agent run --bootstrap-token-file F); \
                 it is not stored and cannot be shown again:"
            );
            println!();
            println!("{}", shown(&created["token"]));
            Ok(())
        }
        BootstrapCommand::List { service_user, all } => {
            let mut query: Vec<(&str, String)> = service_user
                .into_iter()
                .map(|s| ("service_user", s))
                .collect();
            if all {
                query.push(("include_revoked", "true".to_owned()));
            }
            let list: Value = client.get(BOOTSTRAP_PATH, &query).await?;
            if json_out {
                return print_json(&list);
            }
            println!(
                "{:<36} {:<24} {:<26} {:<8} {:<6} {:<20} CREATED",
                "ID", "SERVICE USER", "TOKEN", "STATE", "USED", "EXPIRES"
            );
            for token in list["bootstrap_tokens"].as_array().into_iter().flatten() {
                println!(
                    "{:<36} {:<24} {:<26} {:<8} {:<6} {:<20} {}",
                    shown(&token["id"]),
                    shown(&token["service_user"]),
                    format!("{}…", shown(&token["prefix"])),
                    shown(&token["state"]),
                    format!(
                        "{}/{}",
                        token["used"].as_i64().unwrap_or(0),
                        token["uses"].as_i64().unwrap_or(0)
                    ),
                    when(&token["expires_at"]),
                    when(&token["created_at"]),
                );
            }
            Ok(())
        }
        BootstrapCommand::Revoke { id } => {
            let path = format!("{BOOTSTRAP_PATH}/{}", segment(&id, "a bootstrap token id")?);
            client.delete(&path).await?;
            if json_out {
                return print_json(&json!({ "revoked": id }));
            }
            println!("revoked bootstrap token {}", printable(&id));
            Ok(())
        }
    }
}
