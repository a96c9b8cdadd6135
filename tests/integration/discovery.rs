//! Discovery, JWKS, health and metrics, seen by real relying-party code.

use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use openidconnect::{IssuerUrl, JsonWebKey};
use serde_json::Value;

use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    openidconnect_discovers_the_provider_and_its_keys,
    oauth_metadata_lists_only_what_is_implemented,
    jwks_publishes_public_members_only,
    health_readiness_and_metrics,
    authorization_endpoint_never_redirects_to_an_unknown_client,
    metadata_documents_agree,
);

/// The OpenID Connect and the RFC 8414 documents.
async fn documents(app: &TestApp) -> (Value, Value) {
    let get = |path| async move { app.get(path).await.json::<Value>().await.unwrap() };
    (
        get("/.well-known/openid-configuration").await,
        get("/.well-known/oauth-authorization-server").await,
    )
}

async fn openidconnect_discovers_the_provider_and_its_keys(backend: Backend) {
    let app = TestApp::start(backend).await;
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let issuer = IssuerUrl::new(app.url.clone()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &http)
        .await
        .expect("openidconnect accepts the discovery document");
    assert_eq!(metadata.issuer(), &issuer);
    assert_eq!(
        metadata.jwks_uri().url().as_str(),
        app.endpoint("/oauth/jwks")
    );
    let algs: Vec<String> = metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .map(|a| {
            serde_json::to_value(a)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        algs.contains(&"RS256".to_owned()),
        "OIDC Discovery §3 requires RS256"
    );
    assert!(algs.contains(&"ES256".to_owned()));

    let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &http)
        .await
        .unwrap();
    assert_eq!(jwks.keys().len(), 2, "one ES256 and one RS256 key");
    assert!(jwks.keys().iter().all(|k| k.key_id().is_some()));
}

async fn oauth_metadata_lists_only_what_is_implemented(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (_, oauth) = documents(&app).await;
    assert_eq!(oauth["issuer"], app.url);
    assert_eq!(oauth["jwks_uri"], app.endpoint("/oauth/jwks"));
    // RFC 8414 §2: an absent grant_types_supported would claim
    // authorization_code and implicit, so it lists exactly what works.
    assert_eq!(
        oauth["grant_types_supported"],
        serde_json::json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"
        ])
    );
    assert_eq!(
        oauth["token_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none"
        ])
    );
    assert_eq!(
        oauth["token_endpoint_auth_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256", "EdDSA"])
    );
    assert_eq!(
        oauth["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        oauth["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(oauth["userinfo_endpoint"], app.endpoint("/oauth/userinfo"));
    assert_eq!(
        oauth["end_session_endpoint"],
        app.endpoint("/oauth/end_session")
    );
    // RFC 8628 §4.
    assert_eq!(
        oauth["device_authorization_endpoint"],
        app.endpoint("/oauth/device_authorization")
    );
    for scope in ["openid", "profile", "email", "offline_access", "admin"] {
        assert!(
            oauth["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(scope)),
            "{scope}"
        );
    }
    assert_eq!(oauth["token_endpoint"], app.endpoint("/oauth/token"));
    assert_eq!(
        oauth["introspection_endpoint"],
        app.endpoint("/oauth/introspect")
    );
    assert_eq!(oauth["revocation_endpoint"], app.endpoint("/oauth/revoke"));
    assert_eq!(
        oauth["introspection_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "bearer"
        ])
    );
    assert_eq!(
        oauth["authorization_endpoint"],
        app.endpoint("/oauth/authorize")
    );
}

async fn jwks_publishes_public_members_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    let response = app.get("/oauth/jwks").await;
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age="),
    );
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert!(
        algs.contains(&"ES256") && algs.contains(&"RS256"),
        "{algs:?}"
    );
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} in {key}"
            );
        }
        assert_eq!(key["use"], "sig");
    }
    let ec = keys.iter().find(|k| k["kty"] == "EC").unwrap();
    assert_eq!(ec["crv"], "P-256");
}

async fn health_readiness_and_metrics(backend: Backend) {
    let app = TestApp::start(backend).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["keys"], "loaded");

    fail_with(app.get("/no/such/thing").await, 404, "not_found").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"tessera_http_requests_total{route="/healthz",method="GET",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("tessera_http_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE tessera_tokens_issued counter"),
        "{metrics}"
    );
}

async fn authorization_endpoint_never_redirects_to_an_unknown_client(backend: Backend) {
    let app = TestApp::start(backend).await;
    let response = app
        .get("/oauth/authorize?response_type=code&client_id=x&redirect_uri=https%3A%2F%2Fevil.example")
        .await;
    // No redirect to an unregistered URI (RFC 6749 §4.1.2.1): Tessera's
    // own error page.
    assert!(response.headers().get("location").is_none());
    assert_eq!(response.status(), 400);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

/// Every endpoint member (`*_endpoint`, `jwks_uri`) of either document.
fn endpoints(document: &Value) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = document
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.ends_with("_endpoint") || name.as_str() == "jwks_uri")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

async fn metadata_documents_agree(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (openid, oauth) = documents(&app).await;
    assert_eq!(endpoints(&openid), endpoints(&oauth));
    assert_eq!(
        oauth["authorization_endpoint"],
        app.endpoint("/oauth/authorize")
    );
    for member in [
        "issuer",
        "grant_types_supported",
        "response_types_supported",
        "token_endpoint_auth_methods_supported",
    ] {
        assert_eq!(openid[member], oauth[member], "{member}");
    }
    // OIDC Discovery 1.0 §3: the REQUIRED members.
    for member in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "userinfo_endpoint",
        "end_session_endpoint",
        "scopes_supported",
        "claims_supported",
        "code_challenge_methods_supported",
    ] {
        assert!(openid.get(member).is_some(), "{member} is missing");
    }
}
