//! Service users, their keys, and the JWT-bearer grant (RFC 7523 §2.1)
//! used the way a ZITADEL user uses a service-account key file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera::clock;
use tessera::keys::{Alg, KeyMaterial};

use crate::clients::verify_access_token;
use crate::common::signing::{TestKey, unsigned};
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    key_file_from_the_cli_signs_a_jwt_bearer_grant,
    pem_public_key_registration,
    refused_jwt_bearer_assertions,
    jwt_bearer_audience_and_lifetime,
    an_assertion_without_jti_is_single_use,
    service_user_admin_rules,
);

/// A 400 `invalid_grant` that names the replay.
pub async fn refused_as_replay(response: reqwest::Response) {
    let body = fail_with(response, 400, "invalid_grant").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("already used"), "{body}");
}

/// `tessera --json service-user key add ARGS` against `url`, run in `cwd`;
/// its JSON output.
pub fn key_add(cwd: &Path, url: &str, token_file: &Path, args: &[&str]) -> Value {
    let output = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .current_dir(cwd)
            .env_remove("TESSERA_TOKEN")
            .args(["--url", url, "--token-file"])
            .arg(token_file)
            .args(["--json", "service-user", "key", "add"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Item 13 of issue 8: the CLI never writes to a path the server chose.
/// A server that answers `key add` with a keyId like `../escaped` gets the
/// key file written in the current folder under a sanitised name. No
/// database is involved: the server is a fake of the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sent_key_id_does_not_choose_the_key_file_path() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let fake = axum::Router::new().route(
        "/admin/v1/service-users/{id}/keys",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::CREATED,
                axum::Json(json!({"keyId": "../escaped"})),
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, fake).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tsr_bt_fake").unwrap();
    key_add(&cwd, &url, &token_file, &["su_x"]);
    assert!(!dir.path().join("escaped.json").exists(), "written outside");
    let written: Vec<_> = std::fs::read_dir(&cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written, ["___escaped.json"]);
}

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The user that owns the service users of these tests.
pub async fn ensure_owner(app: &TestApp, username: &str) {
    let response = app
        .admin_post("/admin/v1/users", &json!({ "username": username }))
        .await;
    assert!(
        [201, 409].contains(&response.status().as_u16()),
        "{}",
        response.status()
    );
}

async fn create_user(app: &TestApp, scope: &str) -> String {
    ensure_owner(app, "alice@example.com").await;
    let response = app
        .admin_post(
            "/admin/v1/service-users",
            &json!({"name": format!("bot-{}", uuid::Uuid::new_v4()), "owner": "alice@example.com",
                    "scope": scope, "audiences": ["https://api.example.com"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn assertion_claims(app: &TestApp, user: &str) -> Value {
    let now = clock::now();
    json!({"iss": user, "sub": user, "aud": app.url, "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string()})
}

async fn exchange(app: &TestApp, assertion: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", GRANT.to_owned()),
        ("assertion", assertion.to_owned()),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope.to_owned()));
    }
    app.http
        .post(app.endpoint("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn key_file_from_the_cli_signs_a_jwt_bearer_grant(backend: Backend) {
    let app = TestApp::start(backend).await;
    let user = create_user(&app, "deploy:read deploy:write").await;
    let dir = tempfile::tempdir().unwrap();
    let added = key_add(
        dir.path(),
        &app.url,
        &app.admin_token_file(),
        &[&user, "--alg", "ES256"],
    );
    let path = dir.path().join(added["path"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // What a ZITADEL user does with the key file.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file["type"], "serviceaccount");
    assert_eq!(file["userId"], user);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(file["keyId"].as_str().unwrap().to_owned());
    let key = EncodingKey::from_ec_pem(file["key"].as_str().unwrap().as_bytes()).unwrap();
    let assertion = jsonwebtoken::encode(&header, &assertion_claims(&app, &user), &key).unwrap();

    let response = exchange(&app, &assertion, Some("deploy:read")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims = verify_access_token(
        &app,
        body["access_token"].as_str().unwrap(),
        "https://api.example.com",
    )
    .await;
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["scope"], "deploy:read");
    assert_eq!(claims["identity_kind"], "service");

    let audit: Value = app
        .admin_get("/admin/v1/audit?action=token.issued")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"][0]["actor_id"], user);
    assert_eq!(audit["events"][0]["actor_kind"], "service");
    assert_eq!(audit["events"][0]["details"]["grant_type"], GRANT);
}

async fn pem_public_key_registration(backend: Backend) {
    let app = TestApp::start(backend).await;
    let user = create_user(&app, "read").await;
    let material = KeyMaterial::generate(Alg::RS256).unwrap();
    let der = material.to_pkcs8().unwrap();
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
    let spki = aws_lc_rs::signature::KeyPair::public_key(&pair)
        .as_der()
        .unwrap();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(spki.as_ref())
    );
    let response = app
        .admin_post(
            &format!("/admin/v1/service-users/{user}/keys"),
            &json!({"public_key": pem}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let key: Value = response.json().await.unwrap();
    assert_eq!(key["public_jwk"]["alg"], "RS256");
    assert!(key["public_jwk"].get("d").is_none());

    let private_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(&*der)
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key["keyId"].as_str().unwrap().to_owned());
    let assertion = jsonwebtoken::encode(
        &header,
        &assertion_claims(&app, &user),
        &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(exchange(&app, &assertion, None).await.status(), 200);

    // A private key is refused outright.
    let refused = app
        .admin_post(
            &format!("/admin/v1/service-users/{user}/keys"),
            &json!({"public_key": private_pem}),
        )
        .await;
    fail_with(refused, 400, "invalid_request").await;
}

async fn register_key(
    app: &TestApp,
    user: &str,
    key: &TestKey,
    expires_in: Option<i64>,
) -> TestKey {
    let response = app
        .admin_post(
            &format!("/admin/v1/service-users/{user}/keys"),
            &json!({"public_key": key.jwk, "expires_in": expires_in}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    key.with_kid(body["keyId"].as_str().unwrap())
}

async fn refused_jwt_bearer_assertions(backend: Backend) {
    let app = TestApp::start(backend).await;
    let user = create_user(&app, "read").await;
    let key = register_key(&app, &user, &TestKey::es256("x"), None).await;
    let now = clock::now();
    let with = |patch: Value| {
        let mut c = assertion_claims(&app, &user);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };

    let first = assertion_claims(&app, &user);
    let once = key.sign(&first);
    assert_eq!(exchange(&app, &once, None).await.status(), 200);
    fail_with(exchange(&app, &once, None).await, 400, "invalid_grant").await;
    // The replay key is (issuer, jti) alone: another exp does not make
    // the jti new (RFC 7523 §3 item 7).
    let mut later = first.clone();
    later["exp"] = json!(now + 600);
    refused_as_replay(exchange(&app, &key.sign(&later), None).await).await;

    let cases = [
        ("expired", key.sign(&with(json!({"exp": now - 120})))),
        (
            "iat over an hour old",
            key.sign(&with(json!({"iat": now - 7200}))),
        ),
        ("no iat", key.sign(&with(json!({"iat": null})))),
        ("no exp", key.sign(&with(json!({"exp": null})))),
        (
            "aud is not the issuer",
            key.sign(&with(json!({"aud": "https://other.example.com"}))),
        ),
        ("iss is not sub", key.sign(&with(json!({"iss": "someone"})))),
        (
            "unknown user",
            key.sign(&with(json!({"iss": "su_nobody", "sub": "su_nobody"}))),
        ),
        (
            "alg none",
            unsigned(&key.kid, &assertion_claims(&app, &user)),
        ),
        (
            "HS256 with the public key",
            key.sign_hs256_with_public_key(&assertion_claims(&app, &user)),
        ),
        (
            "unknown kid",
            TestKey::es256("unknown").sign(&assertion_claims(&app, &user)),
        ),
    ];
    for (why, assertion) in cases {
        let response = exchange(&app, &assertion, None).await;
        assert_eq!(response.status(), 400, "{why}");
        fail_with(response, 400, "invalid_grant").await;
    }
    fail_with(
        exchange(
            &app,
            &key.sign(&assertion_claims(&app, &user)),
            Some("admin"),
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    fail_with(exchange(&app, "", None).await, 400, "invalid_request").await;

    // A key past its expiry.
    let short = register_key(&app, &user, &TestKey::rs256("y"), Some(1)).await;
    assert_eq!(
        exchange(&app, &short.sign(&assertion_claims(&app, &user)), None)
            .await
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    fail_with(
        exchange(&app, &short.sign(&assertion_claims(&app, &user)), None).await,
        400,
        "invalid_grant",
    )
    .await;

    // A removed key, then a deleted user.
    let removed = app
        .http
        .delete(app.endpoint(&format!("/admin/v1/service-users/{user}/keys/{}", key.kid)))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    fail_with(
        exchange(&app, &key.sign(&assertion_claims(&app, &user)), None).await,
        400,
        "invalid_grant",
    )
    .await;
    let other = register_key(&app, &user, &TestKey::eddsa("z"), None).await;
    assert_eq!(
        exchange(&app, &other.sign(&assertion_claims(&app, &user)), None)
            .await
            .status(),
        200
    );
    let deleted = app
        .http
        .delete(app.endpoint(&format!("/admin/v1/service-users/{user}")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    fail_with(
        exchange(&app, &other.sign(&assertion_claims(&app, &user)), None).await,
        400,
        "invalid_grant",
    )
    .await;
}

/// `aud` is the issuer alone (CVE-2025-27370/27371), and `exp` at most an
/// hour ahead, as ZITADEL allows, so a replay row never outlives that; the
/// end of time must neither wrap nor crash.
async fn jwt_bearer_audience_and_lifetime(backend: Backend) {
    let app = TestApp::start(backend).await;
    let user = create_user(&app, "read").await;
    let key = register_key(&app, &user, &TestKey::es256("x"), None).await;
    let now = clock::now();
    let cases = [
        (
            "aud with a second value",
            json!({"aud": [app.url, "https://other.example.com"]}),
        ),
        ("exp two hours ahead", json!({"exp": now + 7200})),
        ("exp at the end of time", json!({"exp": i64::MAX})),
    ];
    let mut answers = Vec::new();
    for (why, patch) in cases {
        let mut claims = assertion_claims(&app, &user);
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let response = exchange(&app, &key.sign(&claims), None).await;
        answers.push((why, response.status().as_u16()));
        if response.status() == 400 {
            fail_with(response, 400, "invalid_grant").await;
        }
    }
    assert!(answers.iter().all(|(_, s)| *s == 400), "{answers:?}");
    let mut an_hour = assertion_claims(&app, &user);
    an_hour["exp"] = json!(now + 3600);
    an_hour["aud"] = json!([app.url]);
    assert_eq!(
        exchange(&app, &key.sign(&an_hour), None).await.status(),
        200
    );
}

/// ZITADEL's SDKs send no `jti`: such an assertion is accepted once, keyed
/// by the assertion itself.
async fn an_assertion_without_jti_is_single_use(backend: Backend) {
    let app = TestApp::start(backend).await;
    let user = create_user(&app, "read").await;
    let key = register_key(&app, &user, &TestKey::rs256("x"), None).await;
    let mut claims = assertion_claims(&app, &user);
    claims.as_object_mut().unwrap().remove("jti");
    let once = key.sign(&claims);
    assert_eq!(exchange(&app, &once, Some("read")).await.status(), 200);
    refused_as_replay(exchange(&app, &once, Some("read")).await).await;
}

async fn service_user_admin_rules(backend: Backend) {
    let app = TestApp::start(backend).await;
    let user = create_user(&app, "read").await;
    let list: Value = app
        .admin_get("/admin/v1/service-users")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["service_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"admin"));
    let shown: Value = app
        .admin_get(&format!("/admin/v1/service-users/{user}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["owner"], "alice@example.com");
    assert_eq!(shown["owner_linked"], true);

    let me: Value = app
        .admin_get("/admin/v1/whoami")
        .await
        .json()
        .await
        .unwrap();
    let admin_delete = app
        .http
        .delete(app.endpoint(&format!(
            "/admin/v1/service-users/{}",
            me["id"].as_str().unwrap()
        )))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    fail_with(admin_delete, 409, "conflict").await;
    let duplicate = app
        .admin_post("/admin/v1/service-users", &json!({"name": "admin"}))
        .await;
    fail_with(duplicate, 409, "conflict").await;
    fail_with(
        app.admin_post("/admin/v1/service-users", &json!({"name": ""}))
            .await,
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        app.admin_get("/admin/v1/service-users/su_nobody").await,
        404,
        "not_found",
    )
    .await;
    let bad_key = app
        .admin_post(
            &format!("/admin/v1/service-users/{user}/keys"),
            &json!({"public_key": {"kty": "oct", "k": "c2VjcmV0"}}),
        )
        .await;
    fail_with(bad_key, 400, "invalid_request").await;
}
