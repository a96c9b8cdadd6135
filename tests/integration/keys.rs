//! Key rotation: a new key is published before it signs, an old key stays
//! published until what it signed has expired, and replicas that rotate at
//! once store one key. Re-keying: every key sealed anew under a new master
//! key while replicas keep serving.

use std::time::Duration;

use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{ClientId, IssuerUrl, JsonWebKeySetUrl, Nonce};
use serde_json::{Value, json};
use tessera::clock;
use tessera::keys::{Alg, MasterKey};
use tessera::server::StartError;
use tessera::store::KeyStore;

use crate::cli::{MASTER_KEY_B64, database_env, run, stderr, tessera};
use crate::clients::register;
use crate::common::pages::Visitor;
use crate::common::{Backend, DEFAULT_MASTER_KEY, TestApp};
use crate::on_both_backends;
use crate::replicas::token_status;

on_both_backends!(
    rotation_publishes_before_signing_and_retires_after_expiry,
    concurrent_rotations_store_one_key,
    rekey_seals_every_key_anew_while_secrets_keep_working,
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

/// `tessera keys new-master-key` then `tessera keys rekey`: during the
/// switch a replica holding both master keys serves; afterwards the new key
/// alone opens every signing key, and the secrets issued before (a client
/// secret, the administrator token) still work, because their digests are
/// keyed by the part of the master key a re-key keeps.
async fn rekey_seals_every_key_anew_while_secrets_keep_working(backend: Backend) {
    let a = TestApp::start(backend.clone()).await;
    let (id, secret) = register(
        &a,
        json!({"name": "deployer", "scope": "deploy:read", "audiences": ["https://api.example.com"]}),
    )
    .await;
    let secret = secret.unwrap();
    let kids_before = published_kids(&a).await;
    let dir = tempfile::tempdir().unwrap();
    // A user with TOTP: the secret is sealed under the old master key.
    crate::login::add_user(&a, "alice").await;
    let browser = Visitor::new(&a);
    browser.login("alice", crate::login::PASSWORD).await;
    let (totp, _, _) = crate::login::enrol(&browser).await;

    let mut make = tessera(dir.path());
    make.env("TESSERA_MASTER_KEY", MASTER_KEY_B64)
        .args(["keys", "new-master-key"]);
    let made = tokio::task::block_in_place(|| run(&mut make));
    assert!(made.status.success(), "{}", stderr(&made));
    let new_b64 = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let new = MasterKey::from_base64(&new_b64, "new-master-key output").unwrap();
    let old = MasterKey::from_bytes(DEFAULT_MASTER_KEY);
    assert_ne!(new.id(), old.id());

    // The new key alone cannot open keys sealed under the old one yet.
    let early = TestApp::builder(backend.clone())
        .replica_of(&a)
        .master(new.clone())
        .try_start()
        .await;
    assert!(
        matches!(&early, Err(StartError::Fatal(m)) if m.contains("TESSERA_PREVIOUS_MASTER_KEY")),
        "{:?}",
        early.err()
    );

    // The switch: a replica with both serves, then the re-key runs.
    let both = new.clone().with_previous(old).unwrap();
    let b = TestApp::builder(backend.clone())
        .replica_of(&a)
        .master(both)
        .start()
        .await;
    assert_eq!(token_status(&b, &id, &secret).await, 200);
    let mut rekey = tessera(dir.path());
    database_env(&mut rekey, &a.db);
    rekey
        .env("TESSERA_MASTER_KEY", &new_b64)
        .env("TESSERA_PREVIOUS_MASTER_KEY", MASTER_KEY_B64)
        .args(["keys", "rekey"]);
    let rekeyed = tokio::task::block_in_place(|| run(&mut rekey));
    assert!(rekeyed.status.success(), "{}", stderr(&rekeyed));
    let stored = b.state.store.list_signing_keys().await.unwrap();
    assert!(stored.iter().all(|k| k.master_key_id == new.id()));
    assert!(
        String::from_utf8_lossy(&rekeyed.stdout).contains("1 TOTP secret(s)"),
        "{}",
        String::from_utf8_lossy(&rekeyed.stdout)
    );
    let audit: Value = b
        .admin_get("/admin/v1/audit?action=keys.rekeyed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");
    drop(a);

    // After the switch: the new key alone, the same signing keys, and the
    // secrets issued under the old master key.
    let c = TestApp::builder(backend)
        .replica_of(&b)
        .master(new)
        .start()
        .await;
    assert_eq!(published_kids(&c).await, kids_before);
    assert_eq!(token_status(&c, &id, &secret).await, 200);
    assert_eq!(c.admin_get("/admin/v1/whoami").await.status(), 200);
    // Alice's second factor opens with the new key alone.
    let browser = Visitor::new(&c);
    let step = browser.login("alice", crate::login::PASSWORD).await;
    let step = step.text().await.unwrap();
    let code = tessera::accounts::totp::code_at(&totp, tessera::clock::now() + 30);
    assert_eq!(browser.code(&step, &code).await.status(), 303);
}
