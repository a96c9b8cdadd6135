//! private_key_jwt client authentication (RFC 7523 §2.2, §3; OIDC Core §9)
//! and the attacks its security considerations name.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tessera::clock;

use crate::clients::{register, verify_access_token};
use crate::common::signing::{TestKey, unsigned};
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    es256_rs256_and_eddsa_assertions_authenticate,
    refused_assertions,
    an_audience_naming_another_server_is_refused,
    a_replay_race_is_won_once,
    a_jti_race_with_different_exps_is_won_once,
    used_jtis_survive_migrations_down_and_up,
    jwks_uri_is_cached_and_refetched_on_unknown_kid,
    a_small_order_ed25519_key_verifies_nothing,
    expired_ids_are_purged_in_batches,
);

pub fn claims(app: &TestApp, client_id: &str) -> Value {
    let now = clock::now();
    json!({
        "iss": client_id, "sub": client_id, "aud": app.endpoint("/oauth/token"),
        "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
    })
}

pub async fn present(app: &TestApp, assertion: &str) -> reqwest::Response {
    app.http
        .post(app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap()
}

/// Migration 5 moved used `jti`s to a table keyed by expiry first,
/// migration 20 back to one keyed by the replay key alone, and (SQLite
/// only) migration 140 to a rowid table with that key unique. Both
/// directions of each carry the rows in use: an assertion accepted before
/// the table was rebuilt is still refused after it, on both backends.
async fn used_jtis_survive_migrations_down_and_up(backend: Backend) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection, SqliteConnection};
    use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

    let app = TestApp::start(backend.clone()).await;
    let key = TestKey::es256("k1");
    let id = pkjwt_client(&app, &[&key]).await;
    let first_claims = claims(&app, &id);
    let used = key.sign(&first_claims);
    assert_eq!(present(&app, &used).await.status(), 200);
    // The same database and issuer, so the audience still fits.
    let restart = TestApp::builder(backend.clone()).replica_of(&app);
    let db = app.db.clone();
    app.stop().await.unwrap();

    // Every migration down to and including 5; the restart applies them
    // all again.
    let mut reverted = Vec::new();
    while reverted.last().map(String::as_str) != Some("20261122000005") {
        let version = match &backend {
            Backend::Sqlite => {
                let path = db.url.strip_prefix("sqlite://").unwrap();
                let mut conn = SqliteConnection::establish(path).unwrap();
                conn.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
                conn.revert_last_migration(SQLITE).unwrap().to_string()
            }
            Backend::Postgres(_) => PgConnection::establish(&db.url)
                .unwrap()
                .revert_last_migration(POSTGRES)
                .unwrap()
                .to_string(),
        };
        reverted.push(version);
    }
    assert!(
        reverted.iter().any(|v| v == "20261201000020"),
        "{reverted:?}"
    );
    if matches!(backend, Backend::Sqlite) {
        assert!(
            reverted.iter().any(|v| v == "20261208000140"),
            "{reverted:?}"
        );
    }

    let app = restart.start().await;
    refused_as_replay(present(&app, &used).await).await;
    let mut fresh = claims(&app, &id);
    fresh["aud"] = first_claims["aud"].clone();
    assert_eq!(present(&app, &key.sign(&fresh)).await.status(), 200);
}

/// A 401 `invalid_client` that names the replay.
async fn refused_as_replay(response: reqwest::Response) {
    let body = fail_with(response, 401, "invalid_client").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("already used"), "{body}");
}

async fn pkjwt_client(app: &TestApp, keys: &[&TestKey]) -> String {
    let (id, secret) = register(
        app,
        json!({"name": "signer", "token_endpoint_auth_method": "private_key_jwt", "jwks": TestKey::jwks(keys),
               "scope": "deploy", "default_audience": "https://api.example.com"}),
    )
    .await;
    assert!(secret.is_none(), "private_key_jwt clients get no secret");
    id
}

async fn es256_rs256_and_eddsa_assertions_authenticate(backend: Backend) {
    let app = TestApp::start(backend).await;
    for key in [
        TestKey::es256("k-es"),
        TestKey::rs256("k-rs"),
        TestKey::eddsa("k-ed"),
    ] {
        let id = pkjwt_client(&app, &[&key]).await;
        let response = present(&app, &key.sign(&claims(&app, &id))).await;
        assert_eq!(
            response.status(),
            200,
            "{:?}: {}",
            key.alg,
            response.text().await.unwrap()
        );
        let body: Value = present(&app, &key.sign(&claims(&app, &id)))
            .await
            .json()
            .await
            .unwrap();
        let token_claims = verify_access_token(
            &app,
            body["access_token"].as_str().unwrap(),
            "https://api.example.com",
        )
        .await;
        assert_eq!(token_claims["sub"], id);
    }
    // The issuer is an accepted audience too (RFC 7523 §3 item 3), also as
    // an array of one, as ZITADEL's Go library sends it.
    let key = TestKey::es256("k2");
    let id = pkjwt_client(&app, &[&key]).await;
    for aud in [
        json!(app.url),
        json!([app.url]),
        json!([app.endpoint("/oauth/token")]),
    ] {
        let mut by_issuer = claims(&app, &id);
        by_issuer["aud"] = aud.clone();
        assert_eq!(
            present(&app, &key.sign(&by_issuer)).await.status(),
            200,
            "{aud}"
        );
    }
}

/// The OpenID Foundation's January 2025 advisory (CVE-2025-27370/27371),
/// draft-ietf-oauth-rfc7523bis: `aud` is one value, ours. An array that
/// also names another server is refused, even when one value is ours.
async fn an_audience_naming_another_server_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let key = TestKey::es256("k1");
    let id = pkjwt_client(&app, &[&key]).await;
    let token_endpoint = app.endpoint("/oauth/token");
    for aud in [
        json!([token_endpoint, "https://other.example.com/token"]),
        json!(["https://other.example.com", app.url]),
        json!([app.url, token_endpoint]),
        json!([]),
    ] {
        let mut c = claims(&app, &id);
        c["aud"] = aud.clone();
        let refused = fail_with(present(&app, &key.sign(&c)).await, 401, "invalid_client").await;
        let description = refused["error_description"].as_str().unwrap();
        assert!(description.contains("aud"), "{aud}: {refused}");
    }
}

async fn refused_assertions(backend: Backend) {
    let app = TestApp::start(backend).await;
    let key = TestKey::es256("k1");
    let id = pkjwt_client(&app, &[&key]).await;
    let now = clock::now();
    let refuse = |response| fail_with(response, 401, "invalid_client");

    // Replay: the same assertion twice.
    let first = claims(&app, &id);
    let once = key.sign(&first);
    assert_eq!(present(&app, &once).await.status(), 200);
    refused_as_replay(present(&app, &once).await).await;
    // The same jti with another exp is a replay too (RFC 7523 §3 item 7).
    let mut later = first.clone();
    later["exp"] = json!(now + 90);
    refused_as_replay(present(&app, &key.sign(&later)).await).await;

    let with = |patch: Value| {
        let mut c = claims(&app, &id);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let cases = [
        ("expired", key.sign(&with(json!({"exp": now - 120})))),
        ("too far ahead", key.sign(&with(json!({"exp": now + 3600})))),
        (
            "wrong aud",
            key.sign(&with(json!({"aud": "https://other.example.com/token"}))),
        ),
        (
            "exp at the end of time",
            key.sign(&with(json!({"exp": i64::MAX}))),
        ),
        ("no exp", key.sign(&with(json!({"exp": null})))),
        ("no jti", key.sign(&with(json!({"jti": null})))),
        (
            "iss is not sub",
            key.sign(&with(json!({"iss": "someone-else"}))),
        ),
        ("alg none", unsigned("k1", &claims(&app, &id))),
        (
            "HS256 keyed with the public key",
            key.sign_hs256_with_public_key(&claims(&app, &id)),
        ),
        (
            "unknown kid",
            TestKey::es256("k-unknown").sign(&claims(&app, &id)),
        ),
        (
            "right kid, other key",
            TestKey::es256("k1").sign(&claims(&app, &id)),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (why, assertion) in cases {
        let response = present(&app, &assertion).await;
        assert_eq!(response.status(), 401, "{why}");
        refuse(response).await;
    }

    // Another client's assertion type mismatch: a secret client cannot
    // switch to an assertion.
    let (secret_client, _) = register(&app, json!({"name": "secret-user"})).await;
    let other = key.sign(&json!({"iss": secret_client, "sub": secret_client, "aud": app.endpoint("/oauth/token"), "exp": now + 60, "jti": "x"}));
    refuse(present(&app, &other).await).await;

    // A disabled client.
    app.http
        .patch(app.endpoint(&format!("/admin/v1/clients/{id}")))
        .bearer_auth(app.admin_token())
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    refuse(present(&app, &key.sign(&claims(&app, &id))).await).await;
}

/// RFC 8032 does not exclude small-order public keys, and the verifier
/// accepts the signature R = identity, S = 0 under the identity key for
/// any message: a client registered with that key must not let anyone
/// sign in as it.
async fn a_small_order_ed25519_key_verifies_nothing(backend: Backend) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let app = TestApp::start(backend).await;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let x = URL_SAFE_NO_PAD.encode(identity);
    let (id, _) = register(
        &app,
        json!({"name": "weak", "token_endpoint_auth_method": "private_key_jwt", "scope": "deploy",
               "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": x}]}}),
    )
    .await;
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "weak"});
    let mut signature = identity.to_vec();
    signature.extend([0u8; 32]);
    let forged = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(&app, &id).to_string()),
        URL_SAFE_NO_PAD.encode(&signature),
    );
    fail_with(present(&app, &forged).await, 401, "invalid_client").await;
}

/// RFC 7523 §3 item 7 under concurrency: one assertion sent many times at
/// once lands in the same batch of the writer, and still only one request
/// gets a token.
async fn a_replay_race_is_won_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let key = TestKey::es256("k1");
    let id = pkjwt_client(&app, &[&key]).await;
    let once = key.sign(&claims(&app, &id));
    race_is_won_once(&app, vec![once; 16]).await;
}

/// The replay key is (issuer, jti) alone: sixteen assertions with one jti
/// and sixteen different exps, sent at once, get one token.
async fn a_jti_race_with_different_exps_is_won_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let key = TestKey::es256("k1");
    let id = pkjwt_client(&app, &[&key]).await;
    let first = claims(&app, &id);
    let copies = (0..16)
        .map(|i| {
            let mut c = first.clone();
            c["exp"] = json!(first["exp"].as_i64().unwrap() + i);
            key.sign(&c)
        })
        .collect();
    race_is_won_once(&app, copies).await;
}

async fn race_is_won_once(app: &TestApp, assertions: Vec<String>) {
    let attempts = assertions.iter().map(|a| present(app, a));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let refused = assertions.len() - 1;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        refused,
        "{statuses:?}"
    );
}

/// A tiny JWKS host of the test's own, counting how often it is asked.
async fn serve_jwks(keys: Arc<std::sync::Mutex<Value>>, hits: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let keys = keys.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(keys.lock().unwrap().clone())
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/jwks.json")
}

async fn jwks_uri_is_cached_and_refetched_on_unknown_kid(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[clients]\njwks_refetch_cooldown = \"1s\"")
        .start()
        .await;
    let first = TestKey::es256("first");
    let keys = Arc::new(std::sync::Mutex::new(TestKey::jwks(&[&first])));
    let hits = Arc::new(AtomicUsize::new(0));
    let uri = serve_jwks(keys.clone(), hits.clone()).await;
    let (id, _) = register(
        &app,
        json!({"name": "remote-keys", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri}),
    )
    .await;

    for _ in 0..3 {
        assert_eq!(
            present(&app, &first.sign(&claims(&app, &id)))
                .await
                .status(),
            200
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once, then cached");

    // The client rotates its key; within the cooldown an unknown kid does
    // not refetch.
    let second = TestKey::rs256("second");
    *keys.lock().unwrap() = TestKey::jwks(&[&first, &second]);
    fail_with(
        present(&app, &second.sign(&claims(&app, &id))).await,
        401,
        "invalid_client",
    )
    .await;
    fail_with(
        present(&app, &second.sign(&claims(&app, &id))).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no refetch inside the cooldown"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        present(&app, &second.sign(&claims(&app, &id)))
            .await
            .status(),
        200,
        "refetched for the new kid"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// Used ids are forgotten once their assertions have expired, however
/// many: the purge goes in batches of its own calls (one statement for
/// them all held SQLite's one thread), and keeps ids still live.
async fn expired_ids_are_purged_in_batches(backend: Backend) {
    use tessera::store::ReplayStore;
    let app = TestApp::start(backend).await;
    let now = clock::now();
    let writer = &app.state.writer;
    let expired = (0..2_500).map(|n| writer.consume(format!("expired-{n}"), now - 10 - n % 7));
    for fresh in futures::future::join_all(expired).await {
        assert!(fresh.unwrap());
    }
    for n in 0..3 {
        assert!(
            writer
                .consume(format!("live-{n}"), now + 600)
                .await
                .unwrap()
        );
    }
    let store = &app.state.store;
    assert_eq!(store.purge_used_assertions(now).await.unwrap(), 2_500);
    assert!(!store.is_used("expired-0".into()).await.unwrap());
    assert!(!store.is_used("expired-2499".into()).await.unwrap());
    for n in 0..3 {
        assert!(store.is_used(format!("live-{n}")).await.unwrap());
    }
    assert_eq!(store.purge_used_assertions(now).await.unwrap(), 0);
}
