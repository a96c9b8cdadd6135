//! `tessera service-user …`: machine identities and their keys.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use zeroize::Zeroizing;

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
        /// The responsible person: a user's username.
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
    /// Change a service user: the options given change.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// The responsible person: a user's username (this links an owner
        /// recorded as free text before users existed).
        #[arg(long)]
        owner: Option<String>,
        /// Space-separated scopes it may ask for (replaces them all).
        #[arg(long)]
        scope: Option<String>,
        /// It gets no token by any grant or trust policy.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// The longest a token issued to it may live (1m to 24h, e.g. 30m),
        /// or `none` for the server's limits only.
        #[arg(long, value_parser = parse_cap)]
        max_token_lifetime: Option<Cap>,
    },
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
        /// Algorithm of a generated key: RS256 (RSA-2048, what ZITADEL's
        /// SDKs sign with) or ES256 (P-256).
        #[arg(long, default_value = "RS256", value_parser = ["RS256", "ES256"])]
        alg: String,
        /// The key stops working after this long (e.g. 90d).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Where to write the key file (default: <keyId>.json in the current
        /// folder, with every character of the server-sent keyId other than
        /// letters, digits, `-` and `_` replaced by `_`).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List a service user's keys.
    List { id: String },
    /// Remove a key.
    Remove { id: String, key_id: String },
}

/// `--max-token-lifetime`: a duration, or `none`.
#[derive(Debug, Clone, Copy)]
pub enum Cap {
    None,
    Seconds(u64),
}

fn parse_cap(text: &str) -> Result<Cap, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Cap::None);
    }
    humantime::parse_duration(text)
        .map(|d| Cap::Seconds(d.as_secs()))
        .map_err(|e| format!("{e} (a duration such as 30m, or none)"))
}

/// The private key as ZITADEL writes it into a key file: RSA keys in
/// PKCS#1 (`RSA PRIVATE KEY`, the only form older ZITADEL Go SDKs read),
/// others in PKCS#8.
fn private_key_pem(material: &KeyMaterial) -> anyhow::Result<Zeroizing<String>> {
    let der = material.to_pkcs8().map_err(|e| anyhow::anyhow!("{e}"))?;
    let block = match material.alg() {
        Alg::RS256 => {
            let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice())
                .map_err(|_| anyhow::anyhow!("cannot serialise the RSA key"))?;
            pem::Pem::new("RSA PRIVATE KEY", info.private_key)
        }
        Alg::ES256 => pem::Pem::new("PRIVATE KEY", der.as_slice()),
    };
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    Ok(Zeroizing::new(pem::encode_config(&block, config)))
}

/// The default key-file name. The keyId comes from the server, so it must
/// not pick the path: `../x` or `/etc/x` would write outside the folder.
fn default_key_file(key_id: &str) -> PathBuf {
    let safe: String = key_id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = if safe.is_empty() { "key" } else { &safe };
    PathBuf::from(format!("{stem}.json"))
}

/// The owner as the list shows it: a user's name, or free text recorded
/// before users existed, marked "(unlinked)".
fn owner_label(user: &Value) -> String {
    let owner = text(&user["owner"]);
    if owner.is_empty() {
        "-".to_owned()
    } else if user["owner_linked"].as_bool() == Some(false) {
        format!("{owner} (unlinked)")
    } else {
        owner.to_owned()
    }
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
                    owner_label(user)
                );
            }
        }
        ServiceUserCommand::Show { id } => {
            let user: Value = client
                .get(&format!("/admin/v1/service-users/{id}"), &[])
                .await?;
            print_json(&user)?;
        }
        ServiceUserCommand::Update {
            id,
            name,
            description,
            owner,
            scope,
            disable,
            enable,
            max_token_lifetime,
        } => {
            let mut body = serde_json::Map::new();
            let fields = [
                ("name", name),
                ("description", description),
                ("owner", owner),
                ("scope", scope),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    body.insert(key.into(), json!(value));
                }
            }
            if disable || enable {
                body.insert("enabled".into(), json!(enable));
            }
            match max_token_lifetime {
                Some(Cap::None) => {
                    body.insert("max_token_lifetime".into(), Value::Null);
                }
                Some(Cap::Seconds(secs)) => {
                    body.insert("max_token_lifetime".into(), json!(secs));
                }
                None => {}
            }
            if body.is_empty() {
                anyhow::bail!("nothing to change: give the options to change");
            }
            let user: Value = client
                .patch(&format!("/admin/v1/service-users/{id}"), &body)
                .await?;
            if json_out {
                return print_json(&user);
            }
            let cap = user["max_token_lifetime"]
                .as_u64()
                .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
                .unwrap_or_else(|| "the server's limits".into());
            println!(
                "updated service user {} ({}): {}, tokens living at most {cap}",
                text(&user["name"]),
                text(&user["id"]),
                if user["enabled"].as_bool() == Some(false) {
                    "disabled"
                } else {
                    "enabled"
                },
            );
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
            // Checked before the key is registered: a key whose private half
            // could not be saved would be useless.
            if let Some(path) = output.as_ref().filter(|p| p.exists()) {
                anyhow::bail!("{} exists: choose another --output", path.display());
            }
            let (public, private) = match public_key {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    (Value::String(text), None)
                }
                None => {
                    let alg = Alg::parse(&alg).unwrap_or(Alg::RS256);
                    let material =
                        KeyMaterial::generate(alg).map_err(|e| anyhow::anyhow!("{e}"))?;
                    (
                        material.public_jwk("pending"),
                        Some(private_key_pem(&material)?),
                    )
                }
            };
            let body = json!({"public_key": public, "expires_in": expires_in.map(|d| d.as_secs())});
            let key: Value = client
                .post(&format!("/admin/v1/service-users/{id}/keys"), &body)
                .await?;
            let key_id = text(&key["keyId"]).to_owned();
            let path = match private {
                Some(private) => {
                    let path = output.unwrap_or_else(|| default_key_file(&key_id));
                    let file = json!({"type": "serviceaccount", "keyId": key_id, "key": *private, "userId": id});
                    let text = Zeroizing::new(serde_json::to_string_pretty(&file)?);
                    write_secret_file(&path, text.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_sent_key_id_cannot_choose_the_path() {
        assert_eq!(default_key_file("k_1-a"), PathBuf::from("k_1-a.json"));
        assert_eq!(
            default_key_file("../../etc/cron.d/x"),
            PathBuf::from("______etc_cron_d_x.json")
        );
        assert_eq!(default_key_file("/abs"), PathBuf::from("_abs.json"));
        assert_eq!(default_key_file(""), PathBuf::from("key.json"));
    }

    #[test]
    fn rsa_key_files_hold_pkcs1_like_zitadels() {
        let material = KeyMaterial::generate(Alg::RS256).unwrap();
        let pem = private_key_pem(&material).unwrap();
        assert!(
            pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "{}",
            &pem[..40]
        );
        jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let ec = private_key_pem(&KeyMaterial::generate(Alg::ES256).unwrap()).unwrap();
        assert!(ec.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        jsonwebtoken::EncodingKey::from_ec_pem(ec.as_bytes()).unwrap();
    }
}
