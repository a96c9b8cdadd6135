//! Users for the page tests, made through the admin API.

use serde_json::{Value, json};

use super::TestApp;

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
