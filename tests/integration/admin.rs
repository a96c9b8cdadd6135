//! The admin API: bootstrap token, bearer authentication, malformed input,
//! the audit log and the generated OpenAPI document.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    first_start_writes_a_private_admin_token,
    whoami_names_the_administrator,
    bearer_token_failures_are_401_with_a_challenge,
    malformed_admin_requests_are_invalid_request,
    audit_lists_with_filters_and_paging,
    failed_authentication_is_audited,
    a_burst_of_audit_events_is_stored_whole_and_in_order,
    openapi_document_is_generated_from_the_handlers,
    second_replica_does_not_bootstrap_again,
);

async fn first_start_writes_a_private_admin_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let meta = std::fs::metadata(app.admin_token_file()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = app.admin_token();
    assert!(token.starts_with("tsr_bt_"), "DESIGN.md token format");
}

async fn whoami_names_the_administrator(backend: Backend) {
    let app = TestApp::start(backend).await;
    let response = app.admin_get("/admin/v1/whoami").await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["name"], "admin");
    assert_eq!(me["kind"], "service");
    assert_eq!(me["is_admin"], true);
    assert_eq!(me["scopes"], json!(["admin"]));
}

async fn bearer_token_failures_are_401_with_a_challenge(backend: Backend) {
    let app = TestApp::start(backend).await;
    let url = app.endpoint("/admin/v1/whoami");
    let token = app.admin_token();

    let missing = app.http.get(&url).send().await.unwrap();
    assert!(
        missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    fail_with(missing, 401, "invalid_token").await;

    let mut typo = token.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'A' { 'B' } else { 'A' });
    let body = fail_with(
        app.http.get(&url).bearer_auth(&typo).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );

    // Well-formed, right checksum, unknown to this server.
    let stranger = tessera::tokens::opaque::OpaqueToken::generate(
        tessera::tokens::opaque::TokenKind::Bootstrap,
    );
    let body = fail_with(
        app.http
            .get(&url)
            .bearer_auth(stranger.expose())
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    assert!(
        !body.to_string().contains(stranger.expose()),
        "the token is never echoed"
    );

    let basic = app
        .http
        .get(&url)
        .basic_auth("admin", Some(&token))
        .send()
        .await
        .unwrap();
    fail_with(basic, 401, "invalid_token").await;
}

async fn malformed_admin_requests_are_invalid_request(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nmax_body_bytes = 1024")
        .start()
        .await;
    let url = app.endpoint("/admin/v1/keys/rotate");
    let token = app.admin_token();
    let post = |body: &'static str| {
        app.http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    fail_with(post("{not json").await.unwrap(), 400, "invalid_request").await;
    fail_with(
        post(r#"{"alg":"HS256"}"#).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        post(r#"{"alg":"ES256","extra":1}"#).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let huge = app
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"alg":"{}"}}"#, "x".repeat(4096)))
        .send()
        .await
        .unwrap();
    fail_with(huge, 413, "invalid_request").await;
    // None of that created a key.
    let keys: Value = app.admin_get("/admin/v1/keys").await.json().await.unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);

    for query in [
        "limit=0",
        "limit=abc",
        "since=yesterday",
        "cursor=x",
        "outcome=maybe",
        "bogus=1",
    ] {
        let response = app.admin_get(&format!("/admin/v1/audit?{query}")).await;
        fail_with(response, 400, "invalid_request").await;
    }
}

async fn audit_lists_with_filters_and_paging(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rotate = app
        .admin_post("/admin/v1/keys/rotate", &json!({"alg": "ES256"}))
        .await;
    assert_eq!(rotate.status(), 200);
    let me: Value = app
        .admin_get("/admin/v1/whoami")
        .await
        .json()
        .await
        .unwrap();

    let page: Value = app
        .admin_get("/admin/v1/audit?action=key.rotated")
        .await
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["actor_id"], me["id"]);
    assert_eq!(events[0]["actor_kind"], "service");
    assert_eq!(events[0]["outcome"], "success");
    assert_eq!(events[0]["details"]["alg"], "ES256");

    let boot: Value = app
        .admin_get("/admin/v1/audit?action=instance.initialized")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(boot["events"][0]["actor_kind"], "system");
    assert_eq!(boot["events"][0]["target"], me["id"]);

    // Paging: newest first, one at a time, no event twice.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/audit?action=key.created&limit=1&cursor={c}"),
            None => "/admin/v1/audit?action=key.created&limit=1".to_owned(),
        };
        let page: Value = app.admin_get(&path).await.json().await.unwrap();
        for event in page["events"].as_array().unwrap() {
            seen.push(event["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2, "one key.created per algorithm: {seen:?}");
    assert!(seen[0] > seen[1]);

    let failures: Value = app
        .admin_get("/admin/v1/audit?outcome=failure")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failures["events"].as_array().unwrap().len(), 0);
    let future: Value = app
        .admin_get("/admin/v1/audit?since=2999-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert!(future["events"].as_array().unwrap().is_empty());
}

/// 75 events queued at once reach the writer as one batch, which stores
/// them as statements of 64, 8 and single rows: none may be lost, doubled
/// or reordered on the way.
async fn a_burst_of_audit_events_is_stored_whole_and_in_order(backend: Backend) {
    use tessera::audit::{Actor, Event, Outcome};
    let app = TestApp::start(backend).await;
    for i in 0..75 {
        Event::new(
            Actor::service(format!("bot-{i}")),
            "test.burst",
            Outcome::Success,
        )
        .target(i.to_string())
        .details(json!({ "n": i }))
        .record_via(&app.state.writer)
        .await;
    }
    let page: Value = app
        .admin_get("/admin/v1/audit?action=test.burst&limit=100")
        .await
        .json()
        .await
        .unwrap();
    let targets: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..75).rev().map(|i| i.to_string()).collect();
    assert_eq!(targets, expected, "newest first, every event once");
    assert_eq!(page["events"][0]["actor_id"], "bot-74");
    assert_eq!(page["events"][0]["details"]["n"], 74);
}

async fn failed_authentication_is_audited(backend: Backend) {
    let app = TestApp::start(backend).await;
    let stranger = tessera::tokens::opaque::OpaqueToken::generate(
        tessera::tokens::opaque::TokenKind::Bootstrap,
    );
    let response = app
        .http
        .get(app.endpoint("/admin/v1/whoami"))
        .bearer_auth(stranger.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let page: Value = app
        .admin_get("/admin/v1/audit?action=auth.failed")
        .await
        .json()
        .await
        .unwrap();
    let event = &page["events"][0];
    assert_eq!(event["outcome"], "failure");
    assert_eq!(event["remote_addr"], "127.0.0.1");
    assert!(
        !page.to_string().contains(stranger.expose()),
        "no secret in the audit log"
    );
}

async fn openapi_document_is_generated_from_the_handlers(backend: Backend) {
    let app = TestApp::start(backend).await;
    let spec: Value = app
        .get("/admin/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/admin/v1/whoami",
        "/admin/v1/keys",
        "/admin/v1/keys/rotate",
        "/admin/v1/audit",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

async fn second_replica_does_not_bootstrap_again(backend: Backend) {
    let first = TestApp::start(backend.clone()).await;
    let token = first.admin_token();
    let second = TestApp::builder(backend).replica_of(&first).start().await;
    assert_eq!(
        second.admin_token(),
        token,
        "the token file was not replaced"
    );
    let me = second
        .http
        .get(second.endpoint("/admin/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "replicas share credentials");
}
