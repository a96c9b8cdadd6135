//! `tessera keys …` and `tessera audit …`: admin API calls, printed as a
//! table or, with --json, as the API's JSON.

use clap::Subcommand;
use serde_json::{Value, json};

use super::AdminClient;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    #[command(flatten)]
    Remote(RemoteKeysCommand),
    #[command(flatten)]
    Local(super::rekey::MasterKeyCommand),
}

/// The key commands that go through a server's admin API.
#[derive(Debug, Subcommand)]
pub enum RemoteKeysCommand {
    /// List signing keys and their status.
    List,
    /// Store the next key of each algorithm (or of --alg only).
    Rotate {
        #[arg(long, value_parser = ["ES256", "RS256"])]
        alg: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first.
    List {
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        actor_id: Option<String>,
        /// human, service, workload, pat, machine, system or anonymous.
        #[arg(long)]
        actor_kind: Option<String>,
        /// A personal or machine token's id: its lifecycle, its uses and
        /// its refused uses.
        #[arg(long)]
        token: Option<String>,
        /// Events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_parser = ["success", "failure"])]
        outcome: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Write every event from --since (to --until) to stdout as JSON
    /// Lines, one event per line, newest first: for a SIEM, before the
    /// events age out of `audit.retention`.
    Export {
        /// Start, inclusive (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: String,
        /// End, exclusive (RFC 3339); now when absent.
        #[arg(long)]
        until: Option<String>,
    },
}

pub async fn run_keys(
    client: &AdminClient,
    command: RemoteKeysCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        RemoteKeysCommand::List => {
            let list: Value = client.get("/admin/v1/keys", &[]).await?;
            if json_out {
                return print_json(&list);
            }
            println!(
                "{:<45} {:<6} {:>4} {:<8} ACTIVATES",
                "KID", "ALG", "GEN", "STATUS"
            );
            for key in list["keys"].as_array().into_iter().flatten() {
                println!(
                    "{:<45} {:<6} {:>4} {:<8} {}",
                    text(&key["kid"]),
                    text(&key["alg"]),
                    key["generation"],
                    text(&key["status"]),
                    text(&key["activates_at"])
                );
            }
            Ok(())
        }
        RemoteKeysCommand::Rotate { alg } => {
            let body = match alg {
                Some(alg) => json!({ "alg": alg }),
                None => json!({}),
            };
            let result: Value = client.post("/admin/v1/keys/rotate", &body).await?;
            if json_out {
                return print_json(&result);
            }
            for rotated in result["rotated"].as_array().into_iter().flatten() {
                let activates = rotated["activates_at"].as_i64().map(crate::clock::rfc3339);
                println!(
                    "{} key {} is published and signs from {}{}",
                    text(&rotated["alg"]),
                    text(&rotated["kid"]),
                    activates.unwrap_or_default(),
                    if rotated["created"] == json!(false) {
                        " (rotated concurrently by another replica)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
    }
}

pub async fn run_audit(
    client: &AdminClient,
    command: AuditCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    let (filters, limit) = match command {
        AuditCommand::List {
            action,
            actor_id,
            actor_kind,
            token,
            since,
            outcome,
            limit,
            cursor,
        } => (
            [
                ("action", action),
                ("actor_id", actor_id),
                ("actor_kind", actor_kind),
                ("token", token),
                ("since", since),
                ("outcome", outcome),
                ("cursor", cursor),
            ],
            limit,
        ),
        AuditCommand::Export { since, until } => return export_audit(client, since, until).await,
    };
    if let Some((_, Some(token))) = filters.iter().find(|(name, _)| *name == "token")
        && (token.starts_with("tsr_") || token.matches('.').count() == 2)
    {
        anyhow::bail!(
            "audit list --token takes a token's id (from `tessera token list`), not the token \
             itself; give the credential with TESSERA_TOKEN or --token-file"
        );
    }
    let mut query = vec![("limit", limit.to_string())];
    for (name, value) in filters {
        if let Some(value) = value {
            query.push((name, value));
        }
    }
    let page: Value = client.get("/admin/v1/audit", &query).await?;
    if json_out {
        return print_json(&page);
    }
    for event in page["events"].as_array().into_iter().flatten() {
        println!(
            "{} {:<8} {:<22} {:<9} {:<36} {}",
            text(&event["time"]),
            text(&event["actor_kind"]),
            text(&event["action"]),
            text(&event["outcome"]),
            text(&event["actor_id"]),
            text(&event["target"])
        );
    }
    if let Some(next) = page["next_cursor"].as_str() {
        println!("more: --cursor {next}");
    }
    Ok(())
}

/// Pages through the admin API's audit listing, writing each event as one
/// line of JSON as soon as its page arrives.
async fn export_audit(
    client: &AdminClient,
    since: String,
    until: Option<String>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "500".to_owned()), ("since", since.clone())];
        query.extend(until.clone().map(|until| ("until", until)));
        query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
        let page: Value = client.get("/admin/v1/audit", &query).await?;
        for event in page["events"].as_array().into_iter().flatten() {
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}

pub fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
