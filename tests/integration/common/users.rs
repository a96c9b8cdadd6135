//! Users for the page tests, made through the admin API, and session
//! rows for the store-level tests.

use serde_json::{Value, json};

use super::TestApp;

/// A session row of the user `u`, its secret digest its id's bytes (found
/// again with `session_by_digest(id.as_bytes())`).
pub fn session_row(id: &str, created_at: i64, last_seen_at: i64) -> tessera::store::SessionRecord {
    tessera::store::SessionRecord {
        id: id.into(),
        secret_digest: id.as_bytes().to_vec(),
        user_id: "u".into(),
        auth_time: created_at,
        amr: "pwd".into(),
        created_at,
        last_seen_at,
    }
}

/// Creates a user with a password; returns the user's id.
pub async fn create(app: &TestApp, username: &str, password: &str) -> String {
    let response = app
        .admin_post(
            "/admin/v1/users",
            &json!({ "username": username, "password": password }),
        )
        .await;
    assert_eq!(response.status(), 201, "creating user {username}");
    let body: Value = response.json().await.expect("a user");
    body["id"].as_str().expect("an id").to_owned()
}

/// Disables a user (their sessions end).
pub async fn disable(app: &TestApp, username: &str) {
    let response = app
        .admin_post(&format!("/admin/v1/users/{username}/disable"), &json!({}))
        .await;
    assert_eq!(response.status(), 200, "disabling user {username}");
}
