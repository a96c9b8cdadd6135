//! `tessera token …`: personal access tokens and machine tokens. `create`
//! makes one for the identity the CLI runs as: a personal token after
//! `tessera login`, a machine token with a service user's token (the
//! bootstrap administrator's, say); `--service-user` makes a machine token
//! for another service user.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use super::AdminClient;
use super::client::printable;
use super::keys::{print_json, text};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token. Its value is printed once and cannot be shown again.
    Create {
        /// What the token is for.
        name: String,
        /// Lifetime: one of the server's choices (1h, 8h, 1d, 7d, 14d, 30d
        /// by default), or `never` for a machine token where policy allows.
        #[arg(long)]
        expires: String,
        /// Environment label, shown in the token (prod, staging, dev).
        #[arg(long)]
        env: String,
        /// Space-separated scopes. Without it the token only identifies
        /// its holder (`tessera whoami` works, nothing else does).
        #[arg(long)]
        scope: Option<String>,
        /// Make a machine token for this service user (its owner or an
        /// administrator may).
        #[arg(long)]
        service_user: Option<String>,
    },
    /// List the tokens you may manage (all of them, for an administrator).
    List {
        /// Only machine tokens whose responsible person is gone.
        #[arg(long)]
        orphaned: bool,
        /// Revoked tokens too.
        #[arg(long)]
        all: bool,
        /// Only tokens for this environment (prod, staging, dev).
        #[arg(long)]
        env: Option<String>,
    },
    /// Show a token.
    Show { id: String },
    /// Brown a token out: it stays, and every use gets 403 until enabled.
    Disable { id: String },
    /// Enable a disabled token.
    Enable { id: String },
    /// Replace a token with a new one (same name, owner, environment,
    /// scopes and lifetime); the old one is revoked at once, or after
    /// --grace. The new value is printed once.
    Roll {
        id: String,
        /// Let the old token live this much longer (such as 15m).
        #[arg(long)]
        grace: Option<String>,
    },
    /// Revoke a token, for good.
    Revoke { id: String },
    /// Give a machine token another responsible person.
    Transfer {
        id: String,
        /// The new owner's username.
        #[arg(long)]
        owner: String,
    },
}

/// The API path of a token. Checked here, so that no argument can reach
/// another path: a token id is letters, digits and `-`.
fn token_path(id: &str) -> anyhow::Result<String> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        bail!("`{}` is not a token id", id.escape_default());
    }
    Ok(format!("/admin/v1/tokens/{id}"))
}

/// A value from the server, with control characters replaced: a name
/// someone else chose must not steer the terminal.
pub(super) fn shown(value: &Value) -> String {
    printable(text(value))
}

pub(super) fn when(value: &Value) -> String {
    value
        .as_i64()
        .map_or_else(|| "-".to_owned(), crate::clock::rfc3339)
}

fn print_token(token: &Value) {
    println!("id:           {}", shown(&token["id"]));
    println!("name:         {}", shown(&token["name"]));
    println!("kind:         {}", shown(&token["kind"]));
    println!("env:          {}", shown(&token["env"]));
    println!("token:        {}", shown(&token["hint"]));
    let scope = printable(token["scope"].as_str().unwrap_or_default());
    println!(
        "scopes:       {}",
        if scope.is_empty() {
            "(none: identifies its holder only)"
        } else {
            &scope
        }
    );
    println!(
        "owner:        {} ({})",
        printable(token["owner"]["name"].as_str().unwrap_or("(deleted)")),
        shown(&token["owner"]["kind"])
    );
    if token["kind"] == "machine" {
        println!(
            "responsible:  {}{}",
            printable(token["responsible"].as_str().unwrap_or("(none)")),
            if token["orphaned"] == true {
                " [orphaned]"
            } else {
                ""
            }
        );
    }
    println!("status:       {}", shown(&token["status"]));
    println!("created:      {}", when(&token["created_at"]));
    println!(
        "expires:      {}",
        token["expires_at"]
            .as_i64()
            .map_or_else(|| "never".to_owned(), crate::clock::rfc3339)
    );
    println!(
        "last used:    {}{}",
        when(&token["last_used_at"]),
        token["last_used_ip"]
            .as_str()
            .map(|ip| format!(" from {}", printable(ip)))
            .unwrap_or_default()
    );
    println!("uses:         {}", token["use_count"].as_i64().unwrap_or(0));
    if let Some(next) = token["replaced_by"].as_str() {
        println!("replaced by:  {}", printable(next));
    }
}

/// The value, once, with what to do with it.
fn print_created(created: &Value, verb: &str) {
    println!(
        "{verb} token {} ({}, {}), expires {}",
        shown(&created["name"]),
        shown(&created["env"]),
        shown(&created["id"]),
        created["expires_at"]
            .as_i64()
            .map_or_else(|| "never".to_owned(), crate::clock::rfc3339)
    );
    if created["scope"].as_str().unwrap_or_default().is_empty() {
        println!(
            "It has no scopes: it identifies its holder (tessera whoami) and reaches nothing else."
        );
    }
    println!("Copy it now; it is not stored and cannot be shown again:");
    println!();
    println!("{}", shown(&created["token"]));
}

pub async fn run(
    client: &AdminClient,
    command: TokenCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            expires,
            env,
            scope,
            service_user,
        } => {
            let body = json!({
                "name": name,
                "expires": expires,
                "env": env,
                "scope": scope,
                "service_user": service_user,
            });
            let created: Value = client.post("/admin/v1/tokens", &body).await?;
            if json_out {
                return print_json(&created);
            }
            print_created(&created, "created");
        }
        TokenCommand::List { orphaned, all, env } => {
            let mut query = Vec::new();
            if let Some(env) = env {
                query.push(("env", env));
            }
            if orphaned {
                query.push(("orphaned", "true".to_owned()));
            }
            if all {
                query.push(("include_revoked", "true".to_owned()));
            }
            let list: Value = client.get("/admin/v1/tokens", &query).await?;
            if json_out {
                return print_json(&list);
            }
            println!(
                "{:<36} {:<20} {:<26} {:<9} {:<20} {:<20} OWNER",
                "ID", "NAME", "TOKEN", "STATUS", "EXPIRES", "LAST USED"
            );
            for token in list["tokens"].as_array().into_iter().flatten() {
                let owner = match token["kind"].as_str() {
                    Some("machine") => format!(
                        "{} (responsible: {}){}",
                        token["owner"]["name"].as_str().unwrap_or("?"),
                        token["responsible"].as_str().unwrap_or("none"),
                        if token["orphaned"] == true {
                            " [orphaned]"
                        } else {
                            ""
                        }
                    ),
                    _ => token["owner"]["name"].as_str().unwrap_or("?").to_owned(),
                };
                println!(
                    "{:<36} {:<20} {:<26} {:<9} {:<20} {:<20} {}",
                    shown(&token["id"]),
                    shown(&token["name"]),
                    shown(&token["hint"]),
                    shown(&token["status"]),
                    token["expires_at"]
                        .as_i64()
                        .map_or_else(|| "never".to_owned(), crate::clock::rfc3339),
                    when(&token["last_used_at"]),
                    printable(&owner),
                );
            }
        }
        TokenCommand::Show { id } => {
            let token: Value = client.get(&token_path(&id)?, &[]).await?;
            if json_out {
                return print_json(&token);
            }
            print_token(&token);
        }
        TokenCommand::Disable { id } => {
            let token: Value = client
                .post(&format!("{}/disable", token_path(&id)?), &json!({}))
                .await?;
            if json_out {
                return print_json(&token);
            }
            println!(
                "disabled token {} ({}): every use now gets 403 until `tessera token enable {}`",
                shown(&token["name"]),
                shown(&token["id"]),
                shown(&token["id"])
            );
        }
        TokenCommand::Enable { id } => {
            let token: Value = client
                .post(&format!("{}/enable", token_path(&id)?), &json!({}))
                .await?;
            if json_out {
                return print_json(&token);
            }
            println!(
                "enabled token {} ({})",
                shown(&token["name"]),
                shown(&token["id"])
            );
        }
        TokenCommand::Roll { id, grace } => {
            let grace_seconds = grace
                .as_deref()
                .map(|g| {
                    humantime::parse_duration(g)
                        .map(|d| d.as_secs())
                        .map_err(|_| anyhow::anyhow!("--grace takes a duration such as 15m"))
                })
                .transpose()?;
            let created: Value = client
                .post(
                    &format!("{}/roll", token_path(&id)?),
                    &json!({ "grace_seconds": grace_seconds }),
                )
                .await?;
            if json_out {
                return print_json(&created);
            }
            match &grace {
                Some(grace) => println!("The old token {id} keeps working for {grace}."),
                None => println!("The old token {id} is revoked."),
            }
            print_created(&created, "rolled into");
        }
        TokenCommand::Revoke { id } => {
            let token: Value = client
                .post(&format!("{}/revoke", token_path(&id)?), &json!({}))
                .await?;
            if json_out {
                return print_json(&token);
            }
            println!(
                "revoked token {} ({})",
                shown(&token["name"]),
                shown(&token["id"])
            );
        }
        TokenCommand::Transfer { id, owner } => {
            let token: Value = client
                .post(
                    &format!("{}/transfer", token_path(&id)?),
                    &json!({ "owner": owner }),
                )
                .await?;
            if json_out {
                return print_json(&token);
            }
            println!(
                "token {} ({}) now answers to {}",
                shown(&token["name"]),
                shown(&token["id"]),
                shown(&token["responsible"])
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_ids_reach_the_path() {
        assert_eq!(token_path("0b6f-12").unwrap(), "/admin/v1/tokens/0b6f-12");
        for bad in ["../users", "a/b", "", "a?b", "a%2e", "a.b"] {
            assert!(token_path(bad).is_err(), "{bad}");
        }
    }
}
