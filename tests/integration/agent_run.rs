//! `tessera agent run` against a real server (issue 13 item 8): a
//! bootstrap token from the CLI, the agent registering, tokens in the sink
//! that verify against JWKS, a key rotation (short key lifetime here), and
//! the agent exiting when disabled, having logged no secret.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::agents::service_user;
use crate::cli::tessera;
use crate::common::{Backend, TestApp, eventually};
use crate::on_both_backends;

on_both_backends!(the_reference_agent_lives_rotates_and_stops);

/// Tokens refresh every two seconds and keys rotate after twelve, so that
/// a test sees several of each.
const CONFIG: &str = r#"
[agents]
key_lifetime = "15s"
key_overlap = "3s"
access_token_lifetime = "4s"
"#;

fn sink_token(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path).ok().filter(|t| !t.is_empty())
}

async fn audit_has(app: &TestApp, action: &str) -> bool {
    let page: Value = app
        .admin_get(&format!("/admin/v1/audit?action={action}"))
        .await
        .json()
        .await
        .unwrap();
    !page["events"].as_array().unwrap().is_empty()
}

async fn active(app: &TestApp, token: &str) -> bool {
    crate::agents::introspect(app, token).await["active"] == true
}

async fn the_reference_agent_lives_rotates_and_stops(backend: Backend) {
    let app = TestApp::builder(backend).config(CONFIG).start().await;
    let user = service_user(&app, "sidecar", "jobs:read jobs:write").await;
    let dir = tempfile::tempdir().unwrap();

    // The bootstrap token, made with the CLI's `--json` contract.
    let mut create = tessera(dir.path());
    create.args(["--url", &app.url, "--token-file"]);
    create.arg(app.admin_token_file()).args([
        "agent",
        "bootstrap",
        "create",
        "--service-user",
        &user,
        "--expires",
        "1h",
        "--json",
    ]);
    let output = tokio::task::block_in_place(|| create.output().unwrap());
    assert!(output.status.success(), "{output:?}");
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    for field in ["id", "token", "expires_at", "uses"] {
        assert!(!created[field].is_null(), "{field}: {created}");
    }
    let bootstrap_token = created["token"].as_str().unwrap().to_owned();
    let token_file = dir.path().join("bootstrap.token");
    std::fs::write(&token_file, format!("{bootstrap_token}\n")).unwrap();
    let sink = dir.path().join("run").join("token");
    std::fs::create_dir(dir.path().join("run")).unwrap();

    let mut agent = tokio::process::Command::from(tessera(dir.path()));
    agent
        .args(["--url", &app.url, "agent", "run", "--bootstrap-token-file"])
        .arg(&token_file)
        .arg("--token-sink")
        .arg(&sink)
        .args(["--name", "test-pod", "--scope", "jobs:read"])
        .env("TESSERA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut agent = agent.spawn().unwrap();

    // A token arrives, owner-only, for the service user by way of the agent.
    assert!(eventually(20, || async { sink_token(&sink).is_some() }).await);
    let mode = std::fs::metadata(&sink).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = sink_token(&sink).unwrap();
    let claims = crate::agents::verified(&app, &first).await;
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["scope"], "jobs:read");
    let client_id = claims["client_id"].as_str().unwrap().to_owned();
    assert!(client_id.starts_with("ag_"));
    assert!(active(&app, &first).await);
    let listed: Value = app
        .admin_get(&format!("/admin/v1/agents/{client_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["name"], "test-pod");
    assert_eq!(listed["bootstrap_id"], created["id"]);

    // Tokens are replaced before they expire, and the key is rotated
    // before it does, without a second bootstrap token.
    assert!(
        eventually(10, || async {
            sink_token(&sink).is_some_and(|t| t != first)
        })
        .await
    );
    assert!(eventually(30, || async { audit_has(&app, "agent.key_rotated").await }).await);
    let after_rotation = sink_token(&sink).unwrap();
    assert!(
        eventually(10, || async {
            sink_token(&sink).is_some_and(|t| t != after_rotation)
        })
        .await
    );
    assert!(active(&app, &sink_token(&sink).unwrap()).await);

    // Nothing but the sink and the bootstrap file in the folders: no key,
    // no leftover temporary file.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["token"]);

    // The kill switch: the agent exits, non-zero, saying why.
    let disabled = app
        .admin_post(&format!("/admin/v1/agents/{client_id}/disable"), &json!({}))
        .await;
    assert_eq!(disabled.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(20), agent.wait())
        .await
        .expect("the agent exits when disabled")
        .unwrap();
    assert!(!status.success());
    let mut log = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    for event in ["registered", "token refreshed", "key rotated", "disabled"] {
        assert!(log.contains(event), "{event}: {log}");
    }
    assert!(log.contains("no longer accepts this agent"), "{log}");
    // Never a secret in its output.
    assert!(!log.contains(&bootstrap_token), "{log}");
    assert!(!log.contains(&first), "{log}");
    assert!(!log.contains("tsr_ra_"), "{log}");
}
