//! `tessera service-user …`: machine identities and their keys.

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use serde_json::{Value, json};

use super::AdminClient;
use super::keys::{print_json, text};
use crate::keys::master::write_secret_file;
use crate::keys::{Alg, KeyMaterial};

#[derive(Debug, Subcommand)]
pub enum ServiceUserCommand {
    /// Create a service user.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The responsible human.
        #[arg(long, default_value = "")]
        owner: String,
        /// Space-separated scopes it may ask for.
        #[arg(long, default_value = "")]
        scope: String,
        /// Audience it may ask for (repeatable).
        #[arg(long = "audience")]
        audiences: Vec<String>,
    },
    /// List service users.
    List,
    /// Show one service user.
    Show { id: String },
    /// Delete a service user with its keys and tokens.
    Delete { id: String },
    /// Keys the service user signs JWT-bearer assertions with.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a key pair here and write a key file, or register a public
    /// key made elsewhere (--public-key), so no private key leaves its owner.
    Add {
        id: String,
        /// A PEM public key or JWK to register instead of generating one.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Algorithm of a generated key.
        #[arg(long, default_value = "ES256", value_parser = ["ES256", "RS256"])]
        alg: String,
        /// The key stops working after this long (e.g. 90d).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Where to write the key file (default: <keyId>.json).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List a service user's keys.
    List { id: String },
    /// Remove a key.
    Remove { id: String, key_id: String },
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

pub async fn run(
    client: &AdminClient,
    command: ServiceUserCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        ServiceUserCommand::Create {
            name,
            description,
            owner,
            scope,
            audiences,
        } => {
            let body = json!({"name": name, "description": description, "owner": owner, "scope": scope, "audiences": audiences});
            let user: Value = client.post("/admin/v1/service-users", &body).await?;
            if json_out {
                return print_json(&user);
            }
            println!(
                "created service user {} ({})",
                text(&user["name"]),
                text(&user["id"])
            );
        }
        ServiceUserCommand::List => {
            let list: Value = client.get("/admin/v1/service-users", &[]).await?;
            if json_out {
                return print_json(&list);
            }
            println!("{:<26} {:<24} OWNER", "ID", "NAME");
            for user in list["service_users"].as_array().into_iter().flatten() {
                println!(
                    "{:<26} {:<24} {}",
                    text(&user["id"]),
                    text(&user["name"]),
                    text(&user["owner"])
                );
            }
        }
        ServiceUserCommand::Show { id } => {
            let user: Value = client
                .get(&format!("/admin/v1/service-users/{id}"), &[])
                .await?;
            print_json(&user)?;
        }
        ServiceUserCommand::Delete { id } => {
            client
                .delete(&format!("/admin/v1/service-users/{id}"))
                .await?;
            if json_out {
                return print_json(&json!({ "deleted": id }));
            }
            println!("deleted service user {id}");
        }
        ServiceUserCommand::Key(command) => return run_key(client, command, json_out).await,
    }
    Ok(())
}

async fn run_key(client: &AdminClient, command: KeyCommand, json_out: bool) -> anyhow::Result<()> {
    match command {
        KeyCommand::Add {
            id,
            public_key,
            alg,
            expires_in,
            output,
        } => {
            let expires_at = expires_in.map(|d| crate::clock::now() + d.as_secs() as i64);
            let (public, private) = match public_key {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    (Value::String(text), None)
                }
                None => {
                    let alg = Alg::parse(&alg).unwrap_or(Alg::ES256);
                    let material =
                        KeyMaterial::generate(alg).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let jwk = material.public_jwk("pending");
                    let der = material.to_pkcs8().map_err(|e| anyhow::anyhow!("{e}"))?;
                    (jwk, Some(pem(&der)))
                }
            };
            let body = json!({"public_key": public, "expires_at": expires_at});
            let key: Value = client
                .post(&format!("/admin/v1/service-users/{id}/keys"), &body)
                .await?;
            let key_id = text(&key["keyId"]).to_owned();
            let path = match private {
                Some(private) => {
                    let path = output.unwrap_or_else(|| PathBuf::from(format!("{key_id}.json")));
                    let file = json!({"type": "serviceaccount", "keyId": key_id, "key": private, "userId": id});
                    write_secret_file(&path, serde_json::to_string_pretty(&file)?.as_bytes())
                        .with_context(|| format!("cannot write the key file {}", path.display()))?;
                    Some(path)
                }
                None => None,
            };
            if json_out {
                return print_json(&json!({"keyId": key_id, "userId": id, "path": path}));
            }
            println!("added key {key_id} to {id}");
            if let Some(path) = path {
                println!(
                    "wrote the private key to {} (mode 0600); keep it secret",
                    path.display()
                );
            }
        }
        KeyCommand::List { id } => {
            let list: Value = client
                .get(&format!("/admin/v1/service-users/{id}/keys"), &[])
                .await?;
            if json_out {
                return print_json(&list);
            }
            for key in list["keys"].as_array().into_iter().flatten() {
                let expires = key["expires_at"]
                    .as_i64()
                    .map(crate::clock::rfc3339)
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{} {} expires {}",
                    text(&key["keyId"]),
                    text(&key["public_jwk"]["alg"]),
                    expires
                );
            }
        }
        KeyCommand::Remove { id, key_id } => {
            client
                .delete(&format!("/admin/v1/service-users/{id}/keys/{key_id}"))
                .await?;
            if json_out {
                return print_json(&json!({"removed": key_id}));
            }
            println!("removed key {key_id}");
        }
    }
    Ok(())
}
