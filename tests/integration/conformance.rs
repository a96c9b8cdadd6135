//! HTTP conformance details: authentication challenges (RFC 6750 §3.1,
//! RFC 9110 §15.5.2) and JSON for every admin API rejection.

use serde_json::json;

use crate::clients::register;
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    a_request_without_credentials_gets_a_challenge_without_error,
    every_invalid_client_401_carries_a_challenge,
    admin_rejections_are_json,
);

const FORM: &str = "application/x-www-form-urlencoded";

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no WWW-Authenticate on a {}", response.status()))
}

async fn a_request_without_credentials_gets_a_challenge_without_error(backend: Backend) {
    let app = TestApp::start(backend).await;
    let response = app.get("/admin/v1/keys").await;
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"tessera\"",
        "RFC 6750 §3.1"
    );
    fail_with(response, 401, "invalid_token").await;

    // Another scheme is no bearer credential either (RFC 6750 §3.1).
    let response = app
        .http
        .get(app.endpoint("/admin/v1/keys"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge(&response), "Bearer realm=\"tessera\"");
    fail_with(response, 401, "invalid_token").await;

    // With a token that does not work, the challenge says why.
    let response = app
        .http
        .get(app.endpoint("/admin/v1/keys"))
        .bearer_auth("tsr_bt_nonsense")
        .send()
        .await
        .unwrap();
    assert!(
        challenge(&response).contains("error=\"invalid_token\""),
        "{}",
        challenge(&response)
    );
    fail_with(response, 401, "invalid_token").await;
}

async fn every_invalid_client_401_carries_a_challenge(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, _) = register(
        &app,
        json!({"name": "post", "token_endpoint_auth_method": "client_secret_post", "scope": "read"}),
    )
    .await;
    let form = |body: String, path: &str| {
        app.http
            .post(app.endpoint(path))
            .header("content-type", FORM)
            .body(body)
    };
    let attempts = [
        // client_secret_post with a wrong secret
        form(
            format!("grant_type=client_credentials&client_id={id}&client_secret=wrong"),
            "/oauth/token",
        ),
        // an unknown client
        form(
            "grant_type=client_credentials&client_id=nobody&client_secret=x".into(),
            "/oauth/token",
        ),
        // no credentials at all
        form("token=abc".into(), "/oauth/introspect"),
        form("token=abc".into(), "/oauth/revoke"),
        // Basic with a wrong secret
        app.http
            .post(app.endpoint("/oauth/token"))
            .basic_auth(&id, Some("wrong"))
            .header("content-type", FORM)
            .body("grant_type=client_credentials"),
    ];
    for attempt in attempts {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(challenge(&response), "Basic realm=\"tessera\"");
        fail_with(response, 401, "invalid_client").await;
    }
}

async fn admin_rejections_are_json(backend: Backend) {
    let app = TestApp::start(backend).await;
    // A path parameter that is not UTF-8 once decoded.
    for path in ["/admin/v1/clients/%FF", "/admin/v1/service-users/%C3%28"] {
        let body = fail_with(app.admin_get(path).await, 400, "invalid_request").await;
        assert!(
            !body.to_string().contains("%FF"),
            "echoes the input: {body}"
        );
    }
    // A method the path does not serve.
    let response = app
        .http
        .delete(app.endpoint("/admin/v1/keys"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("allow"), "RFC 9110 §15.5.6");
    fail_with(response, 405, "invalid_request").await;
    let response = app
        .http
        .put(app.endpoint("/oauth/token"))
        .send()
        .await
        .unwrap();
    fail_with(response, 405, "invalid_request").await;
}
