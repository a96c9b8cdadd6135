//! Introspection (RFC 7662) and revocation (RFC 7009).

use serde_json::{Value, json};
use tessera::clock;

use crate::clients::register;
use crate::common::signing::TestKey;
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    introspection_reports_active_tokens_to_authenticated_callers,
    inactive_for_expired_tampered_foreign_and_unknown_tokens,
    revocation_by_the_owning_client_is_immediate_on_every_replica,
    disabled_or_deleted_clients_and_users_make_tokens_inactive,
    opaque_tokens_introspect_and_revoke,
);

async fn client(app: &TestApp, extra: Value) -> (String, String) {
    let mut spec = json!({"name": "svc", "scope": "read write", "default_audience": "https://api.example.com"});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let (id, secret) = register(app, spec).await;
    (id, secret.unwrap())
}

async fn token_for(app: &TestApp, id: &str, secret: &str) -> String {
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn introspect(app: &TestApp, caller: (&str, &str), token: &str) -> Value {
    let response = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .basic_auth(caller.0, Some(caller.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn revoke(app: &TestApp, caller: (&str, &str), token: &str) -> reqwest::Response {
    app.http
        .post(app.endpoint("/oauth/revoke"))
        .basic_auth(caller.0, Some(caller.1))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap()
}

async fn introspection_reports_active_tokens_to_authenticated_callers(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = client(&app, json!({})).await;
    let token = token_for(&app, &id, &secret).await;

    let info = introspect(&app, (&id, &secret), &token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], id);
    assert_eq!(info["client_id"], id);
    assert_eq!(info["scope"], "read");
    assert_eq!(info["token_type"], "Bearer");
    assert_eq!(info["aud"], "https://api.example.com");
    assert_eq!(info["identity_kind"], "service");
    assert!(info["exp"].as_i64().unwrap() > clock::now());
    assert!(info["iat"].as_i64().is_some());

    // An administrator's bearer token may introspect too.
    let by_admin: Value = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .bearer_auth(app.admin_token())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_admin["active"], true);

    // Nobody else.
    let anonymous = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    fail_with(anonymous, 401, "invalid_client").await;
    let wrong = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .basic_auth(&id, Some("tsr_cs_wrong"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.headers()["www-authenticate"],
        "Basic realm=\"tessera\""
    );
    fail_with(wrong, 401, "invalid_client").await;
    let missing = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    fail_with(missing, 400, "invalid_request").await;
}

async fn inactive_for_expired_tampered_foreign_and_unknown_tokens(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = client(&app, json!({"access_token_lifetime": 1})).await;
    let token = token_for(&app, &id, &secret).await;
    assert_eq!(
        introspect(&app, (&id, &secret), &token).await["active"],
        true
    );

    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let header = token.split('.').next().unwrap();
    let foreign =
        TestKey::es256("k").sign(&json!({"iss": app.url, "sub": id, "exp": clock::now() + 60}));
    let foreign_with_our_kid = format!("{header}.{}", foreign.split_once('.').unwrap().1);
    for (why, candidate) in [
        ("tampered", tampered.as_str()),
        ("signed by someone else", foreign.as_str()),
        (
            "our kid, someone else's signature",
            foreign_with_our_kid.as_str(),
        ),
        ("garbage", "not-a-token"),
        (
            "unknown opaque",
            "tsr_bt_0000000000000000000000000000000000000000000000000",
        ),
    ] {
        let info = introspect(&app, (&id, &secret), candidate).await;
        assert_eq!(info, json!({"active": false}), "{why}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        introspect(&app, (&id, &secret), &token).await,
        json!({"active": false}),
        "expired"
    );
}

async fn revocation_by_the_owning_client_is_immediate_on_every_replica(backend: Backend) {
    let a = TestApp::start(backend.clone()).await;
    let b = TestApp::builder(backend).replica_of(&a).start().await;
    let (id, secret) = client(&a, json!({})).await;
    let (other, other_secret) = client(&a, json!({})).await;
    let token = token_for(&a, &id, &secret).await;
    assert_eq!(introspect(&b, (&id, &secret), &token).await["active"], true);

    // Another client may not revoke it.
    fail_with(
        revoke(&a, (&other, &other_secret), &token).await,
        400,
        "unauthorized_client",
    )
    .await;
    assert_eq!(introspect(&b, (&id, &secret), &token).await["active"], true);

    assert_eq!(revoke(&a, (&id, &secret), &token).await.status(), 200);
    assert_eq!(
        introspect(&b, (&id, &secret), &token).await["active"],
        false,
        "inactive on the other replica at once"
    );
    assert_eq!(
        revoke(&a, (&id, &secret), &token).await.status(),
        200,
        "revoking twice is fine"
    );
    assert_eq!(
        revoke(&a, (&id, &secret), "garbage").await.status(),
        200,
        "RFC 7009 §2.2: invalid tokens are ignored"
    );
    fail_with(
        a.http
            .post(a.endpoint("/oauth/revoke"))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;

    let audit: Value = a
        .admin_get("/admin/v1/audit?action=token.revoked")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 2);
    assert_eq!(audit["events"][0]["actor_id"], id);
}

async fn disabled_or_deleted_clients_and_users_make_tokens_inactive(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = client(&app, json!({})).await;
    let (auditor, auditor_secret) = client(&app, json!({})).await;
    let token = token_for(&app, &id, &secret).await;
    let patch = |enabled: bool| {
        app.http
            .patch(app.endpoint(&format!("/admin/v1/clients/{id}")))
            .bearer_auth(app.admin_token())
            .json(&json!({ "enabled": enabled }))
            .send()
    };
    patch(false).await.unwrap();
    assert_eq!(
        introspect(&app, (&auditor, &auditor_secret), &token).await["active"],
        false
    );
    patch(true).await.unwrap();
    assert_eq!(
        introspect(&app, (&auditor, &auditor_secret), &token).await["active"],
        true
    );
    app.http
        .delete(app.endpoint(&format!("/admin/v1/clients/{id}")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(
        introspect(&app, (&auditor, &auditor_secret), &token).await["active"],
        false
    );

    // A service user's token, then the user deleted.
    let user: Value = app
        .admin_post(
            "/admin/v1/service-users",
            &json!({"name": "bot", "scope": "read"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let user_id = user["id"].as_str().unwrap();
    let key = TestKey::es256("x");
    let added: Value = app
        .admin_post(
            &format!("/admin/v1/service-users/{user_id}/keys"),
            &json!({"public_key": key.jwk}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = key.with_kid(added["keyId"].as_str().unwrap());
    let now = clock::now();
    let assertion = key.sign(&json!({"iss": user_id, "sub": user_id, "aud": app.url, "iat": now, "exp": now + 60, "jti": "j1"}));
    let response: Value = app
        .http
        .post(app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_token = response["access_token"].as_str().unwrap();
    let info = introspect(&app, (&auditor, &auditor_secret), user_token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], user_id);
    assert_eq!(info["identity_kind"], "service");
    app.http
        .delete(app.endpoint(&format!("/admin/v1/service-users/{user_id}")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(
        introspect(&app, (&auditor, &auditor_secret), user_token).await["active"],
        false
    );
}

async fn opaque_tokens_introspect_and_revoke(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = client(&app, json!({})).await;
    let admin = app.admin_token();
    let info = introspect(&app, (&id, &secret), &admin).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "admin");
    assert_eq!(info["identity_kind"], "service");

    // A client cannot revoke an administrator's token; an administrator can.
    assert_eq!(revoke(&app, (&id, &secret), &admin).await.status(), 200);
    assert_eq!(app.admin_get("/admin/v1/whoami").await.status(), 200);
    let by_admin = app
        .http
        .post(app.endpoint("/oauth/revoke"))
        .bearer_auth(&admin)
        .form(&[("token", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(by_admin.status(), 200);
    fail_with(
        app.admin_get("/admin/v1/whoami").await,
        401,
        "invalid_token",
    )
    .await;
    assert_eq!(
        introspect(&app, (&id, &secret), &admin).await,
        json!({"active": false})
    );
}
