//! Request syntax at the edge (RFC 6749 Appendix A): a value outside its
//! grammar is refused before any lookup, audit or write, and no error ever
//! echoes raw input (RFC 6749 §5.2).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::clients::register;
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    a_value_outside_its_grammar_is_refused_before_any_lookup,
    malformed_token_requests_get_clean_rfc6749_errors,
    the_form_media_type_is_case_insensitive,
);

const FORM: &str = "application/x-www-form-urlencoded";
const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

/// A JWT in compact form, naming `sub`; its signature is not checked
/// because the request is refused before.
fn assertion_naming(sub: &str) -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(json!({"alg": "ES256", "kid": "k"})),
        part(json!({"sub": sub, "iss": sub, "aud": "x", "exp": 4_000_000_000u64})),
        URL_SAFE_NO_PAD.encode("signature")
    )
}

async fn post_raw(app: &TestApp, path: &str, body: String) -> reqwest::Response {
    app.http
        .post(app.endpoint(path))
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .expect("request")
}

/// What RFC 6749 §5.2 allows in `error_description`.
fn description_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

async fn a_value_outside_its_grammar_is_refused_before_any_lookup(backend: Backend) {
    let app = TestApp::start(backend).await;
    let assertion = assertion_naming("x");
    // The reported request: a NUL client_id with a client assertion. On
    // PostgreSQL its audit row stopped the audit writer for good.
    let response = post_raw(
        &app,
        "/oauth/token",
        format!(
            "grant_type=client_credentials&client_id=%00&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}"
        ),
    )
    .await;
    let body = fail_with(response, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("client_id"),
        "{body}"
    );

    for path in ["/oauth/introspect", "/oauth/revoke"] {
        let response = post_raw(&app, path, "token=x&client_id=%00&client_secret=s".into()).await;
        fail_with(response, 400, "invalid_request").await;
        let response = post_raw(&app, path, "token=x%00&client_id=c&client_secret=s".into()).await;
        fail_with(response, 400, "invalid_request").await;
    }

    // The same client_id in Basic credentials is a failed authentication.
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode("%00:secret")),
        )
        .header("content-type", FORM)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"tessera\""
    );
    fail_with(response, 401, "invalid_client").await;

    // Nothing of it reached the audit log, which still answers.
    let audit = app
        .http
        .get(app.endpoint("/admin/v1/audit?limit=500"))
        .bearer_auth(app.admin_token())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("the audit log answers");
    assert_eq!(audit.status(), 200);
    let page: Value = audit.json().await.unwrap();
    let refused: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "client.auth_failed")
        .collect();
    assert!(
        refused.is_empty(),
        "audited before the syntax check: {refused:?}"
    );
}

/// Bad values as a client library's conformance suite sends them:
/// invalid UTF-8, bad percent-encodings, control characters, quotes and
/// backslashes, and long values.
const BAD_VALUES: [&str; 20] = [
    "%FF",
    "%C3%28",
    "a%E2%82",
    "%ED%A0%80",
    "%F8%88%80%80%80",
    "%ZZ",
    "%",
    "%4",
    "a%G1b",
    "%00",
    "read%0Awrite",
    "read%0D%0Aset-cookie:x",
    "%7F",
    "%1B%5B31m",
    "a%22b",
    "a%5Cb",
    "%22%5C%22",
    "caf%C3%A9",
    "%E2%80%AE",
    "%EF%BF%BD",
];

async fn malformed_token_requests_get_clean_rfc6749_errors(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = register(
        &app,
        json!({"name": "conformance", "scope": "read write", "audiences": ["https://api.example.com"]}),
    )
    .await;
    let secret = secret.unwrap();
    let long = "x".repeat(3000);
    let bodies = BAD_VALUES.iter().flat_map(|bad| {
        [
            format!("grant_type=client_credentials&scope={bad}"),
            format!("grant_type=client_credentials&scope=read%20{bad}"),
            format!("grant_type={bad}"),
            format!("grant_type=client_credentials{bad}"),
            format!("grant_type=urn:x:{bad}"),
            format!("grant_type=client_credentials&audience={bad}"),
            format!("grant_type=client_credentials&resource=https://a.example/{bad}"),
            format!("grant_type=client_credentials&{bad}=1"),
            format!("grant_type=client_credentials&scope={bad}{long}"),
            format!("grant_type={long}{bad}"),
        ]
    });
    let mut sent = 0;
    for body in bodies {
        let response = app
            .http
            .post(app.endpoint("/oauth/token"))
            .basic_auth(&id, Some(&secret))
            .header("content-type", FORM)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status) || status == 200,
            "{status} for {body}"
        );
        if status == 200 {
            // An unknown parameter is ignored (RFC 6749 §3.2).
            continue;
        }
        let answer: Value = response.json().await.expect("a JSON error");
        assert!(answer["error"].is_string(), "{answer} for {body}");
        let description = answer["error_description"].as_str().unwrap();
        assert!(
            description.chars().all(description_char),
            "error_description {description:?} for {body}"
        );
        assert!(
            description.len() < 300,
            "{description:?} echoes a long value"
        );
        sent += 1;
    }
    assert!(sent >= 180, "only {sent} of 200 requests were refused");
}

async fn the_form_media_type_is_case_insensitive(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = register(&app, json!({"name": "cased", "scope": "read"})).await;
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(&id, secret)
        .header(
            "content-type",
            "Application/X-WWW-Form-URLEncoded; Charset=UTF-8",
        )
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    fail_with(response, 400, "invalid_request").await;
}
