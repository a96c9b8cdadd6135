//! Clients and the client_credentials grant (RFC 6749 §4.4) with
//! client_secret_basic and client_secret_post, seen by the `oauth2` crate
//! and by raw requests for every refusal.

use std::time::Duration;

use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    oauth2_crate_gets_an_rfc9068_token_with_basic_auth,
    client_secret_post_and_rs256_tokens,
    refusals_of_client_authentication,
    refusals_of_the_request,
    rotated_secret_works_only_during_its_grace,
    disabling_or_deleting_a_client_stops_new_tokens,
    client_registration_is_validated,
    redirect_uris_follow_rfc8252,
    issuance_and_failures_are_audited,
);

pub fn install_jwt_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Registers a client through the admin API; returns (client_id, secret).
pub async fn register(app: &TestApp, spec: Value) -> (String, Option<String>) {
    let response = app.admin_post("/admin/v1/clients", &spec).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"].as_str().map(str::to_owned),
    )
}

async fn deploy_client(app: &TestApp) -> (String, String) {
    let (id, secret) = register(
        app,
        json!({"name": "deployer", "scope": "deploy:read deploy:write", "audiences": ["https://api.example.com"]}),
    )
    .await;
    (id, secret.expect("a secret for client_secret_basic"))
}

/// Verifies an access token against the published JWKS.
pub async fn verify_access_token(app: &TestApp, token: &str, audience: &str) -> Value {
    install_jwt_provider();
    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 §2.1");
    let jwks: jsonwebtoken::jwk::JwkSet = app.get("/oauth/jwks").await.json().await.unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[&app.url]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies")
        .claims
}

fn token_request(app: &TestApp) -> reqwest::RequestBuilder {
    app.http.post(app.endpoint("/oauth/token"))
}

async fn oauth2_crate_gets_an_rfc9068_token_with_basic_auth(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = deploy_client(&app).await;
    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(app.endpoint("/oauth/token")).unwrap());
    let http = oauth2::reqwest::Client::new();
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("deploy:read".into()))
        .add_extra_param("audience", "https://api.example.com")
        .request_async(&http)
        .await
        .expect("client_credentials succeeds");
    assert_eq!(token.scopes().unwrap()[0].as_str(), "deploy:read");
    let lifetime = token.expires_in().unwrap();
    assert!(lifetime <= Duration::from_secs(900) && lifetime > Duration::from_secs(890));

    let claims = verify_access_token(
        &app,
        token.access_token().secret(),
        "https://api.example.com",
    )
    .await;
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["client_id"], id);
    assert_eq!(claims["scope"], "deploy:read");
    assert_eq!(claims["identity_kind"], "service");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    let header = decode_header(token.access_token().secret()).unwrap();
    assert_eq!(
        header.alg,
        jsonwebtoken::Algorithm::ES256,
        "ES256 by default"
    );

    // The metric counts it.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"tessera_tokens_issued_total{grant_type="client_credentials"} 1"#),
        "{metrics}"
    );
}

async fn client_secret_post_and_rs256_tokens(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = register(
        &app,
        json!({"name": "legacy", "token_endpoint_auth_method": "client_secret_post", "scope": "read",
               "access_token_alg": "RS256", "default_audience": "https://legacy.example.com",
               "access_token_lifetime": 60}),
    )
    .await;
    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret.unwrap()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(app.endpoint("/oauth/token")).unwrap());
    let token = client
        .exchange_client_credentials()
        .request_async(&oauth2::reqwest::Client::new())
        .await
        .expect("client_secret_post succeeds");
    assert_eq!(token.expires_in(), Some(Duration::from_secs(60)));
    let header = decode_header(token.access_token().secret()).unwrap();
    assert_eq!(
        header.alg,
        jsonwebtoken::Algorithm::RS256,
        "the client asked for RS256"
    );
    let claims = verify_access_token(
        &app,
        token.access_token().secret(),
        "https://legacy.example.com",
    )
    .await;
    assert_eq!(
        claims["scope"], "read",
        "no scope asked: all allowed scopes"
    );
}

async fn refusals_of_client_authentication(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = deploy_client(&app).await;
    let form = [("grant_type", "client_credentials")];

    let wrong = token_request(&app)
        .basic_auth(&id, Some("tsr_cs_wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.headers()["www-authenticate"],
        "Basic realm=\"tessera\""
    );
    fail_with(wrong, 401, "invalid_client").await;

    let unknown = token_request(&app)
        .basic_auth("nobody", Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    let body = fail_with(unknown, 401, "invalid_client").await;
    assert!(!body.to_string().contains(&secret), "never echo a secret");

    // Registered for basic: the same secret in the body is refused.
    let post = token_request(&app)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    let post = fail_with(post, 401, "invalid_client").await;
    assert!(post.get("error_description").is_some());

    // Two methods at once.
    let both = token_request(&app)
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    fail_with(both, 400, "invalid_request").await;

    // No authentication at all.
    let none = token_request(&app).form(&form).send().await.unwrap();
    fail_with(none, 401, "invalid_client").await;
    let malformed = token_request(&app)
        .header("authorization", "Basic !!!")
        .form(&form)
        .send()
        .await
        .unwrap();
    fail_with(malformed, 401, "invalid_client").await;

    // A secret client cannot switch to an (unsigned) assertion.
    let assertion = token_request(&app)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "eyJhbGciOiJub25lIn0.e30."),
        ])
        .send()
        .await
        .unwrap();
    fail_with(assertion, 401, "invalid_client").await;
}

async fn refusals_of_the_request(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nmax_body_bytes = 2048")
        .start()
        .await;
    let (id, secret) = deploy_client(&app).await;
    let send = |form: Vec<(&'static str, String)>| {
        token_request(&app)
            .basic_auth(&id, Some(&secret))
            .form(&form)
            .send()
    };
    let cc = || ("grant_type", "client_credentials".to_owned());

    fail_with(
        send(vec![cc(), ("scope", "deploy:read admin".into())])
            .await
            .unwrap(),
        400,
        "invalid_scope",
    )
    .await;
    fail_with(
        send(vec![cc(), ("audience", "https://evil.example.com".into())])
            .await
            .unwrap(),
        400,
        "invalid_target",
    )
    .await;
    fail_with(
        send(vec![cc(), ("resource", "https://evil.example.com".into())])
            .await
            .unwrap(),
        400,
        "invalid_target",
    )
    .await;
    fail_with(
        send(vec![("grant_type", "password".into())]).await.unwrap(),
        400,
        "unsupported_grant_type",
    )
    .await;
    fail_with(
        send(vec![("scope", "deploy:read".into())]).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        send(vec![
            cc(),
            ("scope", "deploy:read".into()),
            ("scope", "deploy:write".into()),
        ])
        .await
        .unwrap(),
        400,
        "invalid_request",
    )
    .await;

    let json_body = token_request(&app)
        .basic_auth(&id, Some(&secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    fail_with(json_body, 400, "invalid_request").await;
    let garbage = token_request(&app)
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'%', b'Z', b'&', b'=', b'='])
        .send()
        .await
        .unwrap();
    assert_eq!(
        garbage.status(),
        400,
        "a malformed body is a client error, never a 500"
    );
    let huge = token_request(&app)
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope={}",
            "a".repeat(4096)
        ))
        .send()
        .await
        .unwrap();
    fail_with(huge, 413, "invalid_request").await;
}

async fn rotated_secret_works_only_during_its_grace(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, old) = deploy_client(&app).await;
    let rotated: Value = app
        .admin_post(
            &format!("/admin/v1/clients/{id}/secret"),
            &json!({"grace_seconds": 2}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let form = [("grant_type", "client_credentials")];
    for secret in [&old, &new] {
        let ok = token_request(&app)
            .basic_auth(&id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            ok.status(),
            200,
            "both secrets work during the grace period"
        );
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let late = token_request(&app)
        .basic_auth(&id, Some(&old))
        .form(&form)
        .send()
        .await
        .unwrap();
    fail_with(late, 401, "invalid_client").await;
    let current = token_request(&app)
        .basic_auth(&id, Some(&new))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(current.status(), 200);
}

async fn disabling_or_deleting_a_client_stops_new_tokens(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = deploy_client(&app).await;
    let form = [("grant_type", "client_credentials")];
    let patch = app
        .http
        .patch(app.endpoint(&format!("/admin/v1/clients/{id}")))
        .bearer_auth(app.admin_token())
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let disabled = token_request(&app)
        .basic_auth(&id, Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    fail_with(disabled, 401, "invalid_client").await;

    let delete = app
        .http
        .delete(app.endpoint(&format!("/admin/v1/clients/{id}")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    let deleted = token_request(&app)
        .basic_auth(&id, Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    fail_with(deleted, 401, "invalid_client").await;
    fail_with(
        app.admin_get(&format!("/admin/v1/clients/{id}")).await,
        404,
        "not_found",
    )
    .await;
}

/// RFC 8252 §7 and §8.3: what a redirect URI may be at registration.
async fn redirect_uris_follow_rfc8252(backend: Backend) {
    let app = TestApp::start(backend).await;
    for uri in [
        "https://app.example.com/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:8400/cb",
        "http://[::1]:8400/cb",
        "com.example.app:/oauth2redirect",
    ] {
        let spec = json!({"name": "native", "redirect_uris": [uri]});
        let response = app.admin_post("/admin/v1/clients", &spec).await;
        assert_eq!(response.status(), 201, "{uri} is accepted");
    }
    for (uri, says) in [
        ("http://localhost:8400/cb", "127.0.0.1"),
        ("http://app.example.com/cb", "https"),
        ("http://10.0.0.1/cb", "https"),
        ("javascript:alert(1)", "javascript"),
        ("data:text/html,hi", "data"),
        ("file:///etc/passwd", "file"),
        ("https://app.example.com/cb#x", "fragment"),
        ("http://127.0.0.1/cb#x", "fragment"),
        ("myapp:/cb", "reverse-domain"),
        ("ftp://app.example.com/cb", "reverse-domain"),
        ("/relative/cb", "absolute"),
    ] {
        let spec = json!({"name": "native", "redirect_uris": [uri]});
        let body = fail_with(
            app.admin_post("/admin/v1/clients", &spec).await,
            400,
            "invalid_request",
        )
        .await;
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{uri}: {description}");
        assert!(
            description
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
            "RFC 6749 section 5.2 characters only: {description}"
        );
    }
}

async fn client_registration_is_validated(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (spec, why) in [
        (json!({}), "name is required"),
        (
            json!({"name": "x", "redirect_uris": ["http://evil.example.com/cb"]}),
            "http redirect off loopback",
        ),
        (
            json!({"name": "x", "redirect_uris": ["https://a.example.com/cb#frag"]}),
            "fragment",
        ),
        (
            json!({"name": "x", "public": true}),
            "public client with client_credentials",
        ),
        (
            json!({"name": "x", "token_endpoint_auth_method": "private_key_jwt"}),
            "no keys",
        ),
        (
            json!({"name": "x", "grant_types": ["password"]}),
            "unsupported grant",
        ),
        (json!({"name": "x", "scope": "a\"b"}), "bad scope token"),
        (
            json!({"name": "x", "access_token_lifetime": 999999}),
            "over the cap",
        ),
        (
            json!({"name": "x", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "symmetric key",
        ),
        (json!({"name": "x", "unknown_field": 1}), "unknown field"),
    ] {
        let response = app.admin_post("/admin/v1/clients", &spec).await;
        assert_eq!(response.status(), 400, "{why}: {spec}");
    }
    let list: Value = app
        .admin_get("/admin/v1/clients")
        .await
        .json()
        .await
        .unwrap();
    // Only `tessera login`'s client, which every instance has.
    let ids: Vec<&str> = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tessera-cli"], "nothing was stored");

    let (id, _) = deploy_client(&app).await;
    let shown: Value = app
        .admin_get(&format!("/admin/v1/clients/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["name"], "deployer");
    assert!(
        shown.get("client_secret").is_none(),
        "a secret is shown once only"
    );
}

async fn issuance_and_failures_are_audited(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = deploy_client(&app).await;
    let form = [("grant_type", "client_credentials")];
    token_request(&app)
        .basic_auth(&id, Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    token_request(&app)
        .basic_auth(&id, Some("tsr_cs_wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();

    let issued: Value = app
        .admin_get("/admin/v1/audit?action=token.issued")
        .await
        .json()
        .await
        .unwrap();
    let event = &issued["events"][0];
    assert_eq!(event["actor_id"], id);
    assert_eq!(event["actor_kind"], "service");
    assert_eq!(event["client_id"], id);
    assert_eq!(event["details"]["grant_type"], "client_credentials");

    let failed: Value = app
        .admin_get("/admin/v1/audit?action=client.auth_failed")
        .await
        .json()
        .await
        .unwrap();
    let event = &failed["events"][0];
    assert_eq!(event["outcome"], "failure");
    assert_eq!(event["actor_kind"], "service");
    assert_eq!(event["client_id"], id);
    let everything: Value = app
        .admin_get("/admin/v1/audit?limit=500")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !everything.to_string().contains(&secret),
        "no secret in the audit log"
    );
}
