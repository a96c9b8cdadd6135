//! The bootstrap administrator token expires (`admin.token_lifetime`), and
//! `tessera init --rotate-admin-token` issues a new one while the old one
//! stops working at once.

use std::process::Command;

use crate::common::{Backend, TestApp, fail_with, read_token};
use crate::on_both_backends;

on_both_backends!(
    the_bootstrap_token_expires,
    rotating_the_admin_token_revokes_the_old_one,
);

async fn whoami(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.endpoint("/admin/v1/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn the_bootstrap_token_expires(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[admin]\ntoken_lifetime = \"3s\"")
        .start()
        .await;
    let token = app.admin_token();
    assert_eq!(whoami(&app, &token).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    fail_with(whoami(&app, &token).await, 401, "invalid_token").await;
}

async fn rotating_the_admin_token_revokes_the_old_one(backend: Backend) {
    let app = TestApp::start(backend).await;
    let old = app.admin_token();
    let new_file = app.db.path("ops/new-admin.token");
    let mut rotate = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TESSERA_")) {
        rotate.env_remove(key);
    }
    rotate
        .current_dir(app.db.dir.path())
        .env("TESSERA_DATABASE__URL", &app.db.url)
        // The test server's master key, [7; 32].
        .env(
            "TESSERA_MASTER_KEY",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        )
        .env("TESSERA_LOG", "warn")
        .args(["init", "--rotate-admin-token", "--admin-token-file"])
        .arg(&new_file);
    let output = tokio::task::block_in_place(|| rotate.output()).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let new = read_token(&new_file);
    assert_ne!(new, old);
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains(&new) && !stderr.contains(&new),
        "the token is never printed"
    );

    fail_with(whoami(&app, &old).await, 401, "invalid_token").await;
    let me = whoami(&app, &new).await;
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["name"], "admin");
}
