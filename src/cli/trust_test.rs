//! `tessera trust test --token-file F [--policy NAME]`: the dry run of an
//! exchange (issue 9 item 5). The server checks the token exactly as the
//! exchange would (signature with the pinned algorithms, issuer, times,
//! lifetime, each policy's audience and conditions) and reports every
//! check; nothing is issued and the token's `jti` is not consumed. Exits
//! non-zero when the token would be refused, for scripts.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::keys::{print_json, text};

#[derive(Debug, Args)]
pub struct TrustTestArgs {
    /// A file holding the CI job's OIDC token (`-`: standard input).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Evaluate this policy only.
    #[arg(long)]
    pub policy: Option<String>,
}

pub async fn run(client: &AdminClient, args: TrustTestArgs, json_out: bool) -> anyhow::Result<()> {
    let mut token = String::new();
    if args.token_file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut token)?;
    } else {
        token = std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("cannot read {}", args.token_file.display()))?;
    }
    let body = json!({"token": token.trim(), "policy": args.policy});
    let report: Value = client.post("/admin/v1/trust/test", &body).await?;
    if json_out {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    if report["accepted"] != true {
        anyhow::bail!("the token would be refused");
    }
    Ok(())
}

fn mark(check: &Value) -> &'static str {
    if check["passed"] == true {
        "ok  "
    } else {
        "FAIL"
    }
}

fn print_report(report: &Value) {
    let assessment = &report["assessment"];
    println!("token");
    for check in assessment["checks"].as_array().into_iter().flatten() {
        println!(
            "  {} {:<12} {}",
            mark(check),
            text(&check["check"]),
            text(&check["detail"])
        );
    }
    for policy in assessment["policies"].as_array().into_iter().flatten() {
        let checks = policy["checks"].as_array().map_or(&[][..], Vec::as_slice);
        let matched = checks.iter().all(|c| c["passed"] == true);
        println!(
            "policy {} ({})",
            text(&policy["policy"]),
            if matched { "matches" } else { "does not match" }
        );
        for check in checks {
            println!(
                "  {} {}: {}",
                mark(check),
                text(&check["condition"]),
                text(&check["detail"])
            );
        }
    }
    let verdict = if report["accepted"] == true {
        "accepted"
    } else {
        "refused"
    };
    println!("{verdict}: {}", text(&report["verdict"]));
}
