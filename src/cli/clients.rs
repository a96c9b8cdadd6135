//! `tessera client …`: OAuth clients over the admin API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::AdminClient;
use super::keys::{print_json, text};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; a generated secret is printed once.
    Create(ClientArgs),
    /// List clients.
    List,
    /// Show one client.
    Show { client_id: String },
    /// Change the given fields of a client.
    Update {
        client_id: String,
        #[command(flatten)]
        fields: ClientArgs,
        /// Let the client get tokens again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop the client from getting tokens, at once.
        #[arg(long)]
        disable: bool,
    },
    /// Delete a client.
    Delete { client_id: String },
    /// Issue a new secret; the old one keeps working for --grace.
    RotateSecret {
        client_id: String,
        /// How long the previous secret stays valid (e.g. 10m, 1h).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
}

/// The name `client create` gives without --name.
const UNNAMED: &str = "Unnamed client";

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The name people see on consent and device pages (create: default
    /// "Unnamed client").
    #[arg(long)]
    pub name: Option<String>,
    /// Allowed grant type (repeatable): client_credentials,
    /// authorization_code, refresh_token,
    /// urn:ietf:params:oauth:grant-type:jwt-bearer,
    /// urn:ietf:params:oauth:grant-type:token-exchange,
    /// urn:ietf:params:oauth:grant-type:device_code.
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    #[arg(long, value_parser = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])]
    pub auth_method: Option<String>,
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Space-separated scopes the client may ask for.
    #[arg(long)]
    pub scope: Option<String>,
    /// Audience the client may ask for (repeatable).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    #[arg(long)]
    pub default_audience: Option<String>,
    /// A JWK Set file with the client's public keys (private_key_jwt).
    #[arg(long, conflicts_with = "jwks_uri")]
    pub jwks_file: Option<PathBuf>,
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// A public client (no secret, auth method none).
    #[arg(long)]
    pub public: bool,
    #[arg(long, value_parser = ["ES256", "RS256"])]
    pub access_token_alg: Option<String>,
    /// Access-token lifetime (e.g. 5m), capped by the server.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub access_token_lifetime: Option<std::time::Duration>,
    /// A first-party client: its users are not asked for consent.
    #[arg(long)]
    pub first_party: bool,
    /// How ID tokens for this client are signed (RS256 by default).
    #[arg(long, value_parser = ["RS256", "ES256"])]
    pub id_token_alg: Option<String>,
    /// Let a legacy confidential client leave out PKCE (public clients
    /// always need it).
    #[arg(long)]
    pub pkce_optional: bool,
}

impl ClientArgs {
    /// The admin API's ClientSpec, with only the fields given.
    fn to_spec(&self) -> anyhow::Result<Map<String, Value>> {
        let mut spec = Map::new();
        let mut put = |key: &str, value: Value| {
            spec.insert(key.to_owned(), value);
        };
        if let Some(name) = &self.name {
            put("name", json!(name));
        }
        if !self.grant_types.is_empty() {
            put("grant_types", json!(self.grant_types));
        }
        if let Some(method) = &self.auth_method {
            put("token_endpoint_auth_method", json!(method));
        }
        if !self.redirect_uris.is_empty() {
            put("redirect_uris", json!(self.redirect_uris));
        }
        if !self.post_logout_redirect_uris.is_empty() {
            put(
                "post_logout_redirect_uris",
                json!(self.post_logout_redirect_uris),
            );
        }
        if let Some(scope) = &self.scope {
            put("scope", json!(scope));
        }
        if !self.audiences.is_empty() {
            put("audiences", json!(self.audiences));
        }
        if let Some(audience) = &self.default_audience {
            put("default_audience", json!(audience));
        }
        if let Some(file) = &self.jwks_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let jwks: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            put("jwks", jwks);
        }
        if let Some(uri) = &self.jwks_uri {
            put("jwks_uri", json!(uri));
        }
        if self.public {
            put("public", json!(true));
        }
        if let Some(alg) = &self.access_token_alg {
            put("access_token_alg", json!(alg));
        }
        if let Some(lifetime) = self.access_token_lifetime {
            put("access_token_lifetime", json!(lifetime.as_secs()));
        }
        if self.first_party {
            put("first_party", json!(true));
        }
        if let Some(alg) = &self.id_token_alg {
            put("id_token_signed_response_alg", json!(alg));
        }
        if self.pkce_optional {
            put("require_pkce", json!(false));
        }
        Ok(spec)
    }
}

fn print_client(client: &Value) {
    println!("client_id:   {}", text(&client["client_id"]));
    println!("name:        {}", text(&client["name"]));
    println!(
        "auth method: {}",
        text(&client["token_endpoint_auth_method"])
    );
    println!("grant types: {}", join(&client["grant_types"]));
    let redirects = join(&client["redirect_uris"]);
    if !redirects.is_empty() {
        println!("redirects:   {redirects}");
    }
    println!("scopes:      {}", join(&client["scopes"]));
    println!("audiences:   {}", join(&client["audiences"]));
    println!("enabled:     {}", client["enabled"]);
}

fn join(list: &Value) -> String {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub async fn run(
    client: &AdminClient,
    command: ClientCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create(mut args) => {
            // The API wants a name; one typed as in the example
            // (no --name) gets a plain one, to rename with `client update`.
            args.name.get_or_insert_with(|| UNNAMED.to_owned());
            let created: Value = client.post("/admin/v1/clients", &args.to_spec()?).await?;
            if json_out {
                return print_json(&created);
            }
            print_client(&created);
            if let Some(secret) = created["client_secret"].as_str() {
                println!("client_secret: {secret}");
                println!("(the secret is shown once; store it now)");
            }
        }
        ClientCommand::List => {
            let list: Value = client.get("/admin/v1/clients", &[]).await?;
            if json_out {
                return print_json(&list);
            }
            println!(
                "{:<26} {:<24} {:<20} ENABLED",
                "CLIENT_ID", "NAME", "AUTH METHOD"
            );
            for c in list["clients"].as_array().into_iter().flatten() {
                println!(
                    "{:<26} {:<24} {:<20} {}",
                    text(&c["client_id"]),
                    text(&c["name"]),
                    text(&c["token_endpoint_auth_method"]),
                    c["enabled"]
                );
            }
        }
        ClientCommand::Show { client_id } => {
            let shown: Value = client
                .get(&format!("/admin/v1/clients/{client_id}"), &[])
                .await?;
            if json_out {
                return print_json(&shown);
            }
            print_client(&shown);
        }
        ClientCommand::Update {
            client_id,
            fields,
            enable,
            disable,
        } => {
            let mut spec = fields.to_spec()?;
            if enable || disable {
                spec.insert("enabled".into(), json!(enable));
            }
            let updated: Value = client
                .patch(&format!("/admin/v1/clients/{client_id}"), &spec)
                .await?;
            if json_out {
                return print_json(&updated);
            }
            print_client(&updated);
        }
        ClientCommand::Delete { client_id } => {
            client
                .delete(&format!("/admin/v1/clients/{client_id}"))
                .await?;
            if json_out {
                return print_json(&json!({ "deleted": client_id }));
            }
            println!("deleted client {client_id}");
        }
        ClientCommand::RotateSecret { client_id, grace } => {
            let body = json!({ "grace_seconds": grace.as_secs() });
            let rotated: Value = client
                .post(&format!("/admin/v1/clients/{client_id}/secret"), &body)
                .await?;
            if json_out {
                return print_json(&rotated);
            }
            println!("client_secret: {}", text(&rotated["client_secret"]));
            println!(
                "(the previous secret stays valid for {})",
                humantime::format_duration(grace)
            );
        }
    }
    Ok(())
}
