//! Key rotation: a new key is published before it signs, an old key stays
//! published until what it signed has expired, and replicas that rotate at
//! once store one key.

use std::time::Duration;

use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{ClientId, IssuerUrl, JsonWebKeySetUrl, Nonce};
use serde_json::{Value, json};
use tessera::clock;
use tessera::keys::Alg;

use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    rotation_publishes_before_signing_and_retires_after_expiry,
    concurrent_rotations_store_one_key
);

/// Signs an ID-token-shaped JWT with the server's current key for `alg`.
fn sign(app: &TestApp, alg: Alg, lifetime: i64) -> (String, String) {
    let now = clock::now();
    let set = app.state.keys.ring().get().expect("keys loaded");
    let key = set.signer(alg, now).expect("an active key");
    let claims = json!({
        "iss": app.url, "sub": "alice", "aud": "test-client",
        "iat": now, "exp": now + lifetime,
    });
    let token = tessera::tokens::jwt::sign(key, "JWT", &claims).unwrap();
    (token, key.kid.clone())
}

/// Verifies `token` the way a relying party would: fetch JWKS, pick the key
/// by `kid`, check signature, issuer, audience and expiry.
async fn verifies(app: &TestApp, token: &str) -> Result<(), String> {
    let http = openidconnect::reqwest::Client::new();
    let jwks_url = JsonWebKeySetUrl::new(app.endpoint("/oauth/jwks")).unwrap();
    let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &http)
        .await
        .map_err(|e| e.to_string())?;
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new("test-client".into()),
        openidconnect::ClientSecret::new("unused".into()),
        IssuerUrl::new(app.url.clone()).unwrap(),
        jwks,
    )
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ]);
    let token: CoreIdToken = token
        .parse()
        .map_err(|e: serde_json::Error| e.to_string())?;
    token
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn published_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app.get("/oauth/jwks").await.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn rotation_publishes_before_signing_and_retires_after_expiry(backend: Backend) {
    const LIFETIME: i64 = 3;
    let app = TestApp::builder(backend)
        .config("[tokens]\naccess_token_lifetime = \"1s\"\nmax_lifetime = \"3s\"")
        .start()
        .await;
    let (first_token, old_kid) = sign(&app, Alg::ES256, LIFETIME);
    verifies(&app, &first_token)
        .await
        .expect("a fresh token verifies");
    let (rsa_token, _) = sign(&app, Alg::RS256, LIFETIME);
    verifies(&app, &rsa_token)
        .await
        .expect("RS256 verifies too");

    let rotated: Value = app
        .admin_post("/admin/v1/keys/rotate", &json!({"alg": "ES256"}))
        .await
        .json()
        .await
        .unwrap();
    let new_kid = rotated["rotated"][0]["kid"].as_str().unwrap().to_owned();
    let activates_at = rotated["rotated"][0]["activates_at"].as_i64().unwrap();
    assert!(
        activates_at >= clock::now() + LIFETIME - 1,
        "activation waits one max lifetime"
    );
    assert_ne!(new_kid, old_kid);

    // Published at once, not signing yet.
    let kids = published_kids(&app).await;
    assert!(
        kids.contains(&new_kid) && kids.contains(&old_kid),
        "{kids:?}"
    );
    let (_, signing_kid) = sign(&app, Alg::ES256, LIFETIME);
    assert_eq!(
        signing_kid, old_kid,
        "the new key must not sign before its activation"
    );
    let keys: Value = app.admin_get("/admin/v1/keys").await.json().await.unwrap();
    let status = |kid: &str| {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&new_kid), "next");
    assert_eq!(status(&old_kid), "active");

    // The last token the old key signs, just before the switch.
    while clock::now() < activates_at - 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (last_old_token, kid) = sign(&app, Alg::ES256, LIFETIME);
    assert_eq!(kid, old_kid);

    while clock::now() < activates_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (new_token, kid) = sign(&app, Alg::ES256, LIFETIME);
    assert_eq!(kid, new_kid, "the new key signs once active");
    verifies(&app, &new_token).await.expect("new key verifies");
    verifies(&app, &last_old_token)
        .await
        .expect("old key still verifies what it signed");
    assert!(
        published_kids(&app).await.contains(&old_kid),
        "retired key stays published"
    );

    // Once everything it signed has expired, the old key is withdrawn.
    while clock::now() <= activates_at + LIFETIME {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kids = published_kids(&app).await;
    assert!(!kids.contains(&old_kid), "expired key withdrawn: {kids:?}");
    assert!(kids.contains(&new_kid));
    assert!(verifies(&app, &last_old_token).await.is_err());
}

async fn concurrent_rotations_store_one_key(backend: Backend) {
    // A one-second period: rotation is due as soon as the keys exist.
    let config = "[keys]\nrotation_period = \"1s\"\ncheck_interval = \"1h\"\n[tokens]\naccess_token_lifetime = \"1s\"\nmax_lifetime = \"1s\"";
    let a = TestApp::builder(backend.clone())
        .config(config)
        .start()
        .await;
    let b = TestApp::builder(backend)
        .config(config)
        .database(&a.db)
        .start()
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (from_a, from_b) = tokio::join!(a.state.keys.rotate_due(), b.state.keys.rotate_due());
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    let created = from_a.iter().chain(&from_b).filter(|r| r.created).count();
    assert_eq!(
        created, 2,
        "one new key per algorithm: {from_a:?} {from_b:?}"
    );

    a.state.keys.reload().await.unwrap();
    let keys: Value = a.admin_get("/admin/v1/keys").await.json().await.unwrap();
    for alg in ["ES256", "RS256"] {
        let generations: Vec<i64> = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["alg"] == alg)
            .map(|k| k["generation"].as_i64().unwrap())
            .collect();
        assert_eq!(generations, vec![1, 2], "{alg}");
    }
    let audit: Value = a
        .admin_get("/admin/v1/audit?action=key.rotated")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 2);
}
