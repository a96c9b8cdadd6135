//! Identifiers an attacker controls never reach a query unchecked: a NUL or
//! a huge id inside an assertion's `sub`, a huge id in Basic credentials,
//! and a NUL in an admin path or query. PostgreSQL refuses NUL in `text`,
//! so before the checks these were 500s there; huge unknown ids filled the
//! caches of misses.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    hostile_subjects_in_assertions_are_refused_cleanly,
    nul_in_admin_requests_is_refused_cleanly,
    failed_client_authentication_is_sampled_per_source,
);

const FORM: &str = "application/x-www-form-urlencoded";
const CLIENT_ASSERTION_TYPE: &str =
    "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
const JWT_BEARER: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

fn unsigned_assertion(sub: &str) -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(json!({"alg": "RS256", "kid": "k"})),
        part(json!({"sub": sub, "iss": sub, "aud": "x", "exp": 4_000_000_000u64})),
        URL_SAFE_NO_PAD.encode("sig")
    )
}

async fn refused_as_4xx(response: reqwest::Response, what: &str) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_client_error(),
        "{what}: expected a 4xx, got {status} {body}"
    );
    assert!(
        body["error"].is_string(),
        "{what}: no RFC 6749 error: {body}"
    );
}

async fn hostile_subjects_in_assertions_are_refused_cleanly(backend: Backend) {
    let app = TestApp::builder(backend).start().await;
    let huge = "h".repeat(100_000);
    // Far past any identifier's limit, yet a body under max_body_bytes
    // (64 KiB; the assertion carries it twice, as sub and iss): a larger
    // body is refused unread, and the connection may close while the client
    // still writes (a broken pipe, not an answer).
    let long = "h".repeat(20_000);
    for sub in ["a\u{0}b", "\u{1}", long.as_str()] {
        let assertion = unsigned_assertion(sub);
        let client_auth = format!(
            "grant_type=client_credentials&client_assertion_type={CLIENT_ASSERTION_TYPE}&client_assertion={assertion}"
        );
        let grant = format!("grant_type={JWT_BEARER}&assertion={assertion}");
        for body in [client_auth, grant] {
            let response = app
                .http
                .post(app.endpoint("/oauth/token"))
                .header("content-type", FORM)
                .body(body)
                .send()
                .await
                .expect("request");
            refused_as_4xx(response, "a hostile sub").await;
        }
    }
    let basic = STANDARD.encode(format!("{huge}:secret"));
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .header("content-type", FORM)
        .header("authorization", format!("Basic {basic}"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("request");
    refused_as_4xx(response, "a huge Basic id").await;
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .header("content-type", FORM)
        .body(format!("grant_type=client_credentials&client_id={huge}"))
        .send()
        .await
        .expect("request");
    refused_as_4xx(response, "a huge client_id").await;
    // The server still works afterwards.
    // A member given twice is refused, not resolved to one of them (two
    // parsers would otherwise read the same body differently).
    let response = app
        .http
        .post(app.endpoint("/admin/v1/service-users"))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/json")
        .body(r#"{"name":"x\u0000y","name":"third"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    assert_eq!(app.admin_get("/admin/v1/whoami").await.status(), 200);
}

async fn nul_in_admin_requests_is_refused_cleanly(backend: Backend) {
    let app = TestApp::builder(backend).start().await;
    for path in [
        "/admin/v1/clients/%00",
        "/admin/v1/service-users/%00",
        "/admin/v1/service-users/%00/keys",
        "/admin/v1/audit?actor_id=%00",
        "/admin/v1/audit?action=a%00b",
    ] {
        refused_as_4xx(app.admin_get(path).await, path).await;
    }
    let response = app
        .http
        .delete(app.endpoint("/admin/v1/clients/%00"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("request");
    refused_as_4xx(response, "DELETE a NUL id").await;
    // NUL in the text fields of a JSON body: PostgreSQL cannot store it,
    // so both backends refuse it at the edge (it was a 500 on PostgreSQL).
    for (path, body) in [
        (
            "/admin/v1/service-users",
            serde_json::json!({"name": "a\u{0}b"}),
        ),
        (
            "/admin/v1/service-users",
            serde_json::json!({"name": "ok", "description": "x\u{0}"}),
        ),
        (
            "/admin/v1/service-users",
            serde_json::json!({"name": "ok", "audiences": ["a\u{0}"]}),
        ),
        ("/admin/v1/clients", serde_json::json!({"name": "n\u{0}"})),
    ] {
        let response = app.admin_post(path, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("a JSON error");
        assert_eq!(error["error"], "invalid_request");
    }
    assert_eq!(app.admin_get("/admin/v1/whoami").await.status(), 200);
}

/// A flood of unknown client ids from one address costs the audit log a
/// burst of rows, then one row that counts the rest.
async fn failed_client_authentication_is_sampled_per_source(backend: Backend) {
    let app = TestApp::builder(backend).start().await;
    for i in 0..30 {
        let basic = STANDARD.encode(format!("unknown-{i}:secret"));
        let response = app
            .http
            .post(app.endpoint("/oauth/token"))
            .header("content-type", FORM)
            .header("authorization", format!("Basic {basic}"))
            .body("grant_type=client_credentials")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401);
    }
    let failed: Value = app
        .admin_get("/admin/v1/audit?action=client.auth_failed&limit=500")
        .await
        .json()
        .await
        .unwrap();
    let events = failed["events"].as_array().expect("events");
    assert_eq!(events.len(), 10, "{failed}");
}
