//! ZITADEL SDK compatibility: a key file made by `tessera service-user key
//! add` with default options, used exactly as ZITADEL's SDKs use a key file
//! (zitadel/oidc's `NewJWTProfileAssertion` in Go, `WebTokenAuthenticator`
//! in zitadel/client-python): RS256, `kid` = keyId, `iss` = `sub` = userId,
//! `aud` = the issuer, `iat`, `exp` one hour ahead, no `jti`, and the scopes
//! `openid urn:zitadel:iam:org:project:id:zitadel:aud`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera::clock;

use crate::clients::verify_access_token;
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;
use crate::service_users::{key_add, refused_as_replay};

on_both_backends!(
    a_default_key_file_signs_like_zitadels_sdks,
    zitadel_audience_scopes,
);

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const SDK_SCOPES: &str = "openid urn:zitadel:iam:org:project:id:zitadel:aud";
/// A ZITADEL project id the service user may ask for as an audience.
const PROJECT: &str = "170079991923474689";

/// A service user and a key file from the CLI with default options.
struct KeyFile {
    user: String,
    key_id: String,
    key: EncodingKey,
}

async fn key_file(app: &TestApp) -> KeyFile {
    crate::service_users::ensure_owner(app, "alice@example.com").await;
    let created = app
        .admin_post(
            "/admin/v1/service-users",
            &json!({"name": "sdk-bot", "owner": "alice@example.com", "scope": "deploy:read",
                    "audiences": ["https://api.example.com", PROJECT]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let user = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let added = key_add(dir.path(), &app.url, &app.admin_token_file(), &[&user]);
    let path = dir.path().join(added["path"].as_str().unwrap());
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(file["type"], "serviceaccount");
    assert_eq!(file["userId"], user);
    let pem = file["key"].as_str().unwrap();
    // ZITADEL's own key files hold PKCS#1, the form every SDK reads.
    assert!(
        pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{pem:.40}"
    );
    KeyFile {
        user,
        key_id: file["keyId"].as_str().unwrap().to_owned(),
        key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA key, as the SDKs need"),
    }
}

impl KeyFile {
    /// An assertion as the SDKs sign it at `iat`: the Python SDK sends `aud`
    /// as a string, the Go library as an array of one.
    fn sign(&self, iat: i64, aud: Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.key_id.clone());
        let claims = json!({"iss": self.user, "sub": self.user, "aud": aud,
                            "iat": iat, "exp": iat + 3600});
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

async fn exchange(app: &TestApp, assertion: &str, scope: &str) -> reqwest::Response {
    app.http
        .post(app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", GRANT),
            ("assertion", assertion),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap()
}

async fn a_default_key_file_signs_like_zitadels_sdks(backend: Backend) {
    let app = TestApp::start(backend).await;
    let file = key_file(&app).await;
    let now = clock::now();

    let assertion = file.sign(now, json!(app.url));
    let response = exchange(&app, &assertion, SDK_SCOPES).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("id_token").is_none(),
        "this grant issues no ID token"
    );
    // Tessera's own API is in the audience, as ZITADEL's would be.
    let claims = verify_access_token(&app, body["access_token"].as_str().unwrap(), &app.url).await;
    assert_eq!(claims["sub"], file.user);
    assert_eq!(claims["scope"], "openid");

    // RS256 is deterministic: a second process sharing the key file and
    // signing in the same second sends the very same assertion, which is a
    // replay; the SDK's next attempt, a second later, is a new assertion.
    let same_second = file.sign(now, json!(app.url));
    assert_eq!(same_second, assertion);
    refused_as_replay(exchange(&app, &same_second, SDK_SCOPES).await).await;
    let next_second = file.sign(now + 1, json!([app.url]));
    assert_eq!(exchange(&app, &next_second, SDK_SCOPES).await.status(), 200);
}

async fn zitadel_audience_scopes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let file = key_file(&app).await;
    let now = clock::now();
    let mut iat = now;
    let mut fresh = || {
        iat -= 1;
        file.sign(iat, json!([app.url]))
    };

    let project_scope = format!("openid deploy:read urn:zitadel:iam:org:project:id:{PROJECT}:aud");
    let response = exchange(&app, &fresh(), &project_scope).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = verify_access_token(&app, body["access_token"].as_str().unwrap(), PROJECT).await;
    assert_eq!(claims["scope"], "openid deploy:read");

    // A project the service user may not use, and reserved ZITADEL scopes
    // Tessera does not implement: invalid_scope, naming them.
    let other_project = fail_with(
        exchange(
            &app,
            &fresh(),
            "openid urn:zitadel:iam:org:project:id:42:aud",
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    assert!(
        other_project["error_description"]
            .as_str()
            .unwrap()
            .contains(":42:aud"),
        "{other_project}"
    );
    let reserved = fail_with(
        exchange(&app, &fresh(), "openid urn:zitadel:iam:user:metadata").await,
        400,
        "invalid_scope",
    )
    .await;
    assert!(
        reserved["error_description"]
            .as_str()
            .unwrap()
            .contains("urn:zitadel:iam:user:metadata"),
        "{reserved}"
    );
}
