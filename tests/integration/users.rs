//! Users (issue 10 item 1): the store's rules on both backends, and the
//! admin API.

use std::time::Duration;

use serde_json::{Value, json};
use tessera::audit::{Actor, Event, Outcome};
use tessera::keys::Alg;
use tessera::store::{
    MfaStore, NewAuditRecord, ServiceUserRecord, ServiceUserStore, StoreError, TotpRecord,
    UserRecord, UserStore, username_key,
};
use tessera::tokens::access::{AccessTokenRequest, mint};

use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    store_keeps_users,
    a_logins_read_says_whether_totp_is_confirmed,
    users_through_the_api,
    refused_user_input,
    person_tokens_reach_the_admin_api_within_their_scopes,
    disabling_a_user_ends_their_tokens,
    service_user_owners_are_users,
    users_migration_keeps_service_users_and_their_owners,
    api_scopes_are_documented,
);

fn event(action: &'static str) -> NewAuditRecord {
    Event::new(Actor::system(), action, Outcome::Success).into_record(0)
}

fn user(id: &str, username: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        username: username.into(),
        username_key: username_key(username),
        email: Some(format!("{}@example.com", username_key(username))),
        email_verified: false,
        display_name: None,
        password_hash: None,
        disabled: false,
        admin: false,
        created_at: 1,
        updated_at: 1,
    }
}

async fn store_keeps_users(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    store
        .create_user(user("u1", "Alice"), event("user.created"))
        .await
        .unwrap();
    // Case-insensitive uniqueness: `alice` is `Alice`.
    assert!(matches!(
        store
            .create_user(user("u2", "alice"), event("user.created"))
            .await,
        Err(StoreError::Conflict)
    ));
    store
        .create_user(user("u3", "bob"), event("user.created"))
        .await
        .unwrap();

    let found = store
        .user_by_username("ALICE".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.username.as_str()),
        ("u1", "Alice")
    );
    assert_eq!(
        store
            .user_by_id("u3".into())
            .await
            .unwrap()
            .unwrap()
            .username,
        "bob"
    );
    assert!(store.user_by_id("nobody".into()).await.unwrap().is_none());
    assert!(
        store
            .user_by_username("carol".into())
            .await
            .unwrap()
            .is_none()
    );

    // Paging by username_key.
    let first = store.list_users(None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].username, "Alice");
    let next = store
        .list_users(Some(first[0].username_key.clone()), 10)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );

    store
        .set_password_hash("u1".into(), "$argon2id$v=19$stand-in".into())
        .await
        .unwrap();
    assert!(matches!(
        store.set_password_hash("nobody".into(), "x".into()).await,
        Err(StoreError::NotFound)
    ));

    // change_user writes what the closure returns, or nothing on refusal.
    let refused = store
        .change_user("u1".into(), |_| {
            Err::<(UserRecord, NewAuditRecord, ()), _>("no")
        })
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err(), "no");
    store
        .change_user("u1".into(), |mut u| {
            u.disabled = true;
            u.admin = true;
            u.username = "ignored".into();
            u.updated_at = 2;
            Ok::<_, ()>((u, event("user.disabled"), ()))
        })
        .await
        .unwrap()
        .unwrap();
    let changed = store.user_by_id("u1".into()).await.unwrap().unwrap();
    assert!(changed.disabled && changed.admin);
    assert_eq!(changed.username, "Alice", "the username does not change");
    assert_eq!(changed.updated_at, 2);
    assert_eq!(
        changed.password_hash.as_deref(),
        Some("$argon2id$v=19$stand-in")
    );
    assert!(
        !format!("{changed:?}").contains("stand-in"),
        "Debug hides the hash"
    );
    assert!(matches!(
        store
            .change_user("nobody".into(), |u| Ok::<_, ()>((u, event("x"), ())))
            .await,
        Err(StoreError::NotFound)
    ));

    store
        .delete_user("u1".into(), event("user.deleted"))
        .await
        .unwrap();
    assert!(store.user_by_id("u1".into()).await.unwrap().is_none());
    assert!(matches!(
        store.delete_user("u1".into(), event("user.deleted")).await,
        Err(StoreError::NotFound)
    ));
    // The username is free again.
    store
        .create_user(user("u4", "ALICE"), event("user.created"))
        .await
        .unwrap();
}

const PASSWORD: &str = "correct horse battery staple";

/// An administrator's request to the admin API.
pub async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(method, app.endpoint(path))
        .bearer_auth(app.admin_token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// The body of a successful response, checked never to carry the password
/// or a password hash.
async fn ok_json(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let text = response.text().await.unwrap();
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("argon2"), "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Audit events with this action, oldest first.
pub async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let page: Value = app
        .admin_get(&format!("/admin/v1/audit?action={action}"))
        .await
        .json()
        .await
        .unwrap();
    let mut events = page["events"].as_array().cloned().unwrap_or_default();
    events.reverse();
    events
}

/// The password step's one read: the user, found case-insensitively, and
/// whether their TOTP enrolment is confirmed (a pending one asks for no
/// code at login; another user's enrolment is not theirs).
async fn a_logins_read_says_whether_totp_is_confirmed(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    for (id, username) in [("u1", "Alice"), ("u2", "bob")] {
        store
            .create_user(user(id, username), event("user.created"))
            .await
            .unwrap();
    }
    let read = |username: &'static str| async move {
        let found = store.user_for_login(username.into()).await.unwrap();
        found.map(|(user, confirmed)| (user.id, confirmed))
    };
    assert_eq!(read("ALICE").await, Some(("u1".into(), false)));
    assert_eq!(read("carol").await, None);
    store
        .begin_totp(TotpRecord {
            user_id: "u1".into(),
            sealed_secret: vec![1, 2, 3],
            master_key_id: "k1".into(),
            confirmed_at: None,
            last_step: 0,
            created_at: 1,
        })
        .await
        .unwrap();
    assert_eq!(read("alice").await, Some(("u1".into(), false)), "pending");
    assert!(
        store
            .confirm_totp("u1".into(), 7, 2, Vec::new())
            .await
            .unwrap()
    );
    assert_eq!(read("alice").await, Some(("u1".into(), true)), "confirmed");
    assert_eq!(read("BOB").await, Some(("u2".into(), false)));
}

async fn users_through_the_api(backend: Backend) {
    let app = TestApp::start(backend).await;
    let created = ok_json(
        app.admin_post(
            "/admin/v1/users",
            &json!({"username": "Alice", "email": "alice@example.com", "display_name": "Alice Liddell", "password": PASSWORD}),
        )
        .await,
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "the id is a UUID: {id}");
    assert_eq!(created["username"], "Alice");
    assert_eq!(created["has_password"], true);
    assert_eq!(created["email_verified"], false);
    assert_eq!(
        (created["admin"].clone(), created["disabled"].clone()),
        (json!(false), json!(false))
    );
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());

    // Usernames are unique regardless of case.
    let body = fail_with(
        app.admin_post("/admin/v1/users", &json!({"username": "alice"}))
            .await,
        409,
        "conflict",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("username")
    );
    ok_json(
        app.admin_post("/admin/v1/users", &json!({"username": "bob"}))
            .await,
        201,
    )
    .await;

    // Shown by username in any case, or by id.
    for reference in ["alice", "ALICE", id.as_str()] {
        let shown = ok_json(
            app.admin_get(&format!("/admin/v1/users/{reference}")).await,
            200,
        )
        .await;
        assert_eq!(shown["id"], id.as_str());
    }
    fail_with(
        app.admin_get("/admin/v1/users/carol").await,
        404,
        "not_found",
    )
    .await;

    // Paging.
    let first = ok_json(app.admin_get("/admin/v1/users?limit=1").await, 200).await;
    assert_eq!(first["users"][0]["username"], "Alice");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = ok_json(
        app.admin_get(&format!("/admin/v1/users?limit=1&cursor={cursor}"))
            .await,
        200,
    )
    .await;
    assert_eq!(second["users"][0]["username"], "bob");
    assert!(second["next_cursor"].is_null());
    fail_with(
        app.admin_get("/admin/v1/users?limit=0").await,
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        app.admin_get("/admin/v1/users?cursor=UPPER").await,
        400,
        "invalid_request",
    )
    .await;

    // Update: a new email is unverified; granting the administrator role is
    // audited by name.
    let verified = ok_json(
        send(
            &app,
            reqwest::Method::PATCH,
            "/admin/v1/users/alice",
            Some(json!({"email_verified": true})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(verified["email_verified"], true);
    let updated = ok_json(
        send(
            &app,
            reqwest::Method::PATCH,
            "/admin/v1/users/alice",
            Some(json!({"email": "a@example.org", "admin": true, "display_name": null})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(updated["email"], "a@example.org");
    assert_eq!(updated["email_verified"], false);
    assert_eq!(updated["admin"], true);
    assert!(updated["display_name"].is_null());
    let revoked = ok_json(
        send(
            &app,
            reqwest::Method::PATCH,
            "/admin/v1/users/alice",
            Some(json!({"admin": false})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(revoked["admin"], false);
    let events = audit(&app, "user.updated").await;
    let admin_changes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["details"]["admin"].as_str())
        .collect();
    assert_eq!(admin_changes, ["granted", "revoked"]);
    assert_eq!(events[0]["target"], id.as_str());
    // If-Match: a stale tag is refused.
    fail_with(
        app.http
            .patch(app.endpoint("/admin/v1/users/alice"))
            .bearer_auth(app.admin_token())
            .header("if-match", "\"stale\"")
            .json(&json!({"email_verified": true}))
            .send()
            .await
            .unwrap(),
        412,
        "precondition_failed",
    )
    .await;

    // Disable and enable.
    let disabled = ok_json(
        send(
            &app,
            reqwest::Method::POST,
            "/admin/v1/users/alice/disable",
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(disabled["disabled"], true);
    let enabled = ok_json(
        send(
            &app,
            reqwest::Method::POST,
            "/admin/v1/users/alice/enable",
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(enabled["disabled"], false);

    // A new password: hashed at the configured parameters, never echoed.
    let response = send(
        &app,
        reqwest::Method::PUT,
        "/admin/v1/users/bob/password",
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(response.status(), 204);
    let bob = app
        .state
        .store
        .user_by_username("bob".into())
        .await
        .unwrap()
        .unwrap();
    assert!(
        bob.password_hash
            .unwrap()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    fail_with(
        send(
            &app,
            reqwest::Method::PUT,
            "/admin/v1/users/bob/password",
            Some(json!({"password": "short"})),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        send(
            &app,
            reqwest::Method::PUT,
            "/admin/v1/users/nobody/password",
            Some(json!({"password": PASSWORD})),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    // Delete.
    assert_eq!(
        send(&app, reqwest::Method::DELETE, "/admin/v1/users/Alice", None)
            .await
            .status(),
        204
    );
    fail_with(
        app.admin_get(&format!("/admin/v1/users/{id}")).await,
        404,
        "not_found",
    )
    .await;

    // Every lifecycle step is audited, and no event carries the password.
    for action in [
        "user.created",
        "user.updated",
        "user.disabled",
        "user.enabled",
        "user.password_set",
        "user.deleted",
    ] {
        let events = audit(&app, action).await;
        assert!(!events.is_empty(), "{action} is audited");
        for event in &events {
            let text = event.to_string();
            assert!(
                !text.contains(PASSWORD) && !text.contains("argon2"),
                "{text}"
            );
        }
    }
    assert_eq!(
        audit(&app, "user.created").await[0]["details"]["username"],
        "Alice"
    );
}

async fn refused_user_input(backend: Backend) {
    let app = TestApp::start(backend).await;
    let refused = [
        (json!({"username": "al ice"}), "username"),
        (json!({"username": ""}), "username"),
        (json!({"username": "a/b"}), "username"),
        (json!({"username": "x".repeat(65)}), "username"),
        (json!({"username": "al\u{0}ice"}), "NUL"),
        (
            json!({"username": "alice", "email": "not-an-address"}),
            "email",
        ),
        (
            json!({"username": "alice", "email": "a@b@example.com"}),
            "email",
        ),
        (
            json!({"username": "alice", "email": format!("{}@example.com", "a".repeat(250))}),
            "254",
        ),
        (
            json!({"username": "alice", "display_name": "   "}),
            "display_name",
        ),
        (
            json!({"username": "alice", "display_name": "x".repeat(201)}),
            "display_name",
        ),
        (
            json!({"username": "alice", "display_name": "x".repeat(100_000)}),
            "",
        ),
        (
            json!({"username": "alice", "password": "short"}),
            "at least 8",
        ),
        (
            json!({"username": "alice", "password": "x".repeat(1025)}),
            "at most 1024",
        ),
        (json!({"username": "alice", "admin": "yes"}), "malformed"),
        (json!({"username": "alice", "unknown": 1}), "unknown"),
    ];
    for (body, says) in refused {
        let response = app.admin_post("/admin/v1/users", &body).await;
        let status = response.status().as_u16();
        // 413 for a body past the server's cap; 400 with a reason otherwise.
        if status == 413 {
            continue;
        }
        let error = fail_with(response, 400, "invalid_request").await;
        let description = error["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{body}: {description}");
        assert!(
            !description.contains("short"),
            "a password is never echoed: {description}"
        );
    }
    // Nothing was created.
    let page: Value = app.admin_get("/admin/v1/users").await.json().await.unwrap();
    assert_eq!(page["users"], json!([]));
    // A path that is no username names no user.
    fail_with(
        app.admin_get("/admin/v1/users/a%20b").await,
        404,
        "not_found",
    )
    .await;
    fail_with(
        app.admin_get("/admin/v1/users/a%00b").await,
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        send(
            &app,
            reqwest::Method::PATCH,
            "/admin/v1/users/nobody",
            Some(json!({"email": "x@example.com"})),
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

/// A registered client and a person, and a way to sign their access
/// tokens with the server's own key ring, as the authorization code grant
/// will.
pub(crate) struct People {
    client_id: String,
}

impl People {
    pub(crate) async fn new(app: &TestApp) -> People {
        let (client_id, _) =
            crate::clients::register(app, json!({"name": "console", "scope": "admin"})).await;
        People { client_id }
    }

    pub(crate) async fn user(&self, app: &TestApp, username: &str, admin: bool) -> String {
        let user = ok_json(
            app.admin_post(
                "/admin/v1/users",
                &json!({"username": username, "admin": admin}),
            )
            .await,
            201,
        )
        .await;
        user["id"].as_str().unwrap().to_owned()
    }

    pub(crate) fn token(
        &self,
        app: &TestApp,
        sub: &str,
        scope: &str,
        aud: &str,
        kind: &str,
    ) -> String {
        let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
        let audience = vec![aud.to_owned(), "https://api.example.com".to_owned()];
        mint(
            app.state.keys.ring(),
            &AccessTokenRequest {
                issuer: app.state.config.issuer(),
                subject: sub,
                client_id: &self.client_id,
                audience: &audience,
                scopes: &scopes,
                identity_kind: kind,
                lifetime: Duration::from_secs(300),
                alg: Alg::ES256,
                delegation: None,
                source_token: None,
                named: None,
            },
        )
        .unwrap()
        .token
        .expose()
        .to_owned()
    }
}

pub(crate) async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(method, app.endpoint(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn person_tokens_reach_the_admin_api_within_their_scopes(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::start(backend).await;
    let people = People::new(&app).await;
    let issuer = app.state.config.issuer().to_owned();
    let carol = people.user(&app, "carol", true).await;
    let bob = people.user(&app, "bob", false).await;
    let token = |sub: &str, scope: &str| people.token(&app, sub, scope, &issuer, "human");

    // admin: everything.
    let admin = token(&carol, "openid admin");
    assert_eq!(
        call(&app, Method::GET, "/admin/v1/clients", &admin, None)
            .await
            .status(),
        200
    );
    let created = call(
        &app,
        Method::POST,
        "/admin/v1/users",
        &admin,
        Some(json!({"username": "dave"})),
    )
    .await;
    assert_eq!(created.status(), 201);
    let me: Value = call(&app, Method::GET, "/admin/v1/whoami", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["id"].as_str(), me["name"].as_str(), me["kind"].as_str()),
        (Some(carol.as_str()), Some("carol"), Some("human"))
    );
    assert_eq!(me["is_admin"], true);
    // The action is audited as the person's.
    let event = &audit(&app, "user.created").await[2];
    assert_eq!(
        (event["actor_id"].as_str(), event["actor_kind"].as_str()),
        (Some(carol.as_str()), Some("human"))
    );
    // An administrator cannot lock themselves out.
    fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/users/carol/disable",
            &admin,
            None,
        )
        .await,
        409,
        "conflict",
    )
    .await;
    fail_with(
        call(&app, Method::DELETE, "/admin/v1/users/carol", &admin, None).await,
        409,
        "conflict",
    )
    .await;

    // admin:read: every GET, no change.
    let read = token(&carol, "admin:read");
    for path in [
        "/admin/v1/clients",
        "/admin/v1/users",
        "/admin/v1/audit",
        "/admin/v1/keys",
        "/admin/v1/users/carol",
    ] {
        assert_eq!(
            call(&app, Method::GET, path, &read, None).await.status(),
            200,
            "{path}"
        );
    }
    fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/users",
            &read,
            Some(json!({"username": "eve"})),
        )
        .await,
        403,
        "insufficient_scope",
    )
    .await;
    fail_with(
        call(&app, Method::POST, "/admin/v1/keys/rotate", &read, None).await,
        403,
        "insufficient_scope",
    )
    .await;

    // audit:read: the audit log only.
    let audit_only = token(&carol, "audit:read");
    assert_eq!(
        call(&app, Method::GET, "/admin/v1/audit", &audit_only, None)
            .await
            .status(),
        200
    );
    fail_with(
        call(&app, Method::GET, "/admin/v1/clients", &audit_only, None).await,
        403,
        "insufficient_scope",
    )
    .await;

    // No API scope, or tokens:self: whoami only.
    for scope in ["openid", "tokens:self"] {
        let plain = token(&bob, scope);
        let me = call(&app, Method::GET, "/admin/v1/whoami", &plain, None).await;
        assert_eq!(me.status(), 200);
        let me: Value = me.json().await.unwrap();
        assert_eq!(
            (me["name"].as_str(), me["is_admin"].as_bool()),
            (Some("bob"), Some(false))
        );
        let refused = call(&app, Method::GET, "/admin/v1/users", &plain, None).await;
        assert!(
            refused.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        fail_with(refused, 403, "insufficient_scope").await;
    }
    // The admin scopes do nothing for someone who is not an administrator.
    let pretender = token(&bob, "admin admin:read audit:read");
    for path in ["/admin/v1/users", "/admin/v1/audit"] {
        fail_with(
            call(&app, Method::GET, path, &pretender, None).await,
            403,
            "insufficient_scope",
        )
        .await;
    }

    // Not meant for Tessera, not a person's, or signed by someone else: 401.
    let elsewhere = people.token(&app, &carol, "admin", "https://other.example.com", "human");
    let service = people.token(&app, &carol, "admin", &issuer, "service");
    let nobody = token(&uuid::Uuid::new_v4().to_string(), "admin");
    let mut forged = admin.clone();
    forged.pop();
    forged.push(if admin.ends_with('A') { 'B' } else { 'A' });
    for bad in [&elsewhere, &service, &nobody, &forged] {
        fail_with(
            call(&app, Method::GET, "/admin/v1/whoami", bad, None).await,
            401,
            "invalid_token",
        )
        .await;
    }
    // A revoked token is refused at once.
    let response = app
        .http
        .post(app.endpoint("/oauth/revoke"))
        .bearer_auth(app.admin_token())
        .form(&[("token", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    fail_with(
        call(&app, Method::GET, "/admin/v1/clients", &admin, None).await,
        401,
        "invalid_token",
    )
    .await;
}

async fn introspect_active(app: &TestApp, token: &str) -> Value {
    let response = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .bearer_auth(app.admin_token())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn disabling_a_user_ends_their_tokens(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::start(backend).await;
    let people = People::new(&app).await;
    let issuer = app.state.config.issuer().to_owned();
    let carol = people.user(&app, "carol", true).await;
    let token = people.token(&app, &carol, "admin", &issuer, "human");
    let info = introspect_active(&app, &token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["identity_kind"], "human");
    assert_eq!(info["sub"], carol.as_str());

    assert_eq!(
        send(&app, Method::POST, "/admin/v1/users/carol/disable", None)
            .await
            .status(),
        200
    );
    // RFC 7662 §2.2: inactive, at once on this replica.
    assert_eq!(
        introspect_active(&app, &token).await,
        json!({"active": false})
    );
    fail_with(
        call(&app, Method::GET, "/admin/v1/whoami", &token, None).await,
        401,
        "invalid_token",
    )
    .await;
    // Enabled again: the token (not expired, not revoked) works again.
    assert_eq!(
        send(&app, Method::POST, "/admin/v1/users/carol/enable", None)
            .await
            .status(),
        200
    );
    assert_eq!(introspect_active(&app, &token).await["active"], true);
    // Deleted: inactive for good.
    assert_eq!(
        send(&app, Method::DELETE, "/admin/v1/users/carol", None)
            .await
            .status(),
        204
    );
    assert_eq!(introspect_active(&app, &token).await["active"], false);

    // On another replica, within the user cache's second.
    let dave = people.user(&app, "dave", false).await;
    let second = TestApp::builder(app_backend(&app))
        .replica_of(&app)
        .start()
        .await;
    let token = people.token(&app, &dave, "", &issuer, "human");
    assert_eq!(introspect_active(&second, &token).await["active"], true);
    assert_eq!(
        send(&app, Method::POST, "/admin/v1/users/dave/disable", None)
            .await
            .status(),
        200
    );
    assert!(
        crate::common::eventually(3, || async {
            introspect_active(&second, &token).await["active"] == false
        })
        .await,
        "the other replica sees the user disabled within a second"
    );
}

/// The backend `app` runs on (a replica shares its database).
fn app_backend(app: &TestApp) -> Backend {
    if app.db.url.starts_with("sqlite") {
        Backend::Sqlite
    } else {
        Backend::postgres().expect("PostgreSQL")
    }
}

async fn service_user_owners_are_users(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::start(backend).await;
    let alice = ok_json(
        app.admin_post("/admin/v1/users", &json!({"username": "Alice"}))
            .await,
        201,
    )
    .await;
    // An owner is resolved to the user (any case); an unknown one is refused.
    let bot = ok_json(
        app.admin_post(
            "/admin/v1/service-users",
            &json!({"name": "bot", "owner": "alice"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(bot["owner"], "Alice");
    assert_eq!(bot["owner_linked"], true);
    assert_eq!(bot["owner_id"], alice["id"]);
    let error = fail_with(
        app.admin_post(
            "/admin/v1/service-users",
            &json!({"name": "bot2", "owner": "mallory"}),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("mallory")
    );

    // An owner recorded as free text before users existed stays, unlinked.
    app.state
        .store
        .create_service_user(
            ServiceUserRecord {
                id: "su_legacy".into(),
                name: "legacy".into(),
                description: String::new(),
                owner: "Alice from accounting".into(),
                is_admin: false,
                created_at: 1,
                scopes: String::new(),
                audiences: String::new(),
                enabled: true,
                max_token_lifetime: None,
                owner_id: None,
            },
            event("service_user.created"),
        )
        .await
        .unwrap();
    let legacy = ok_json(
        app.admin_get("/admin/v1/service-users/su_legacy").await,
        200,
    )
    .await;
    assert_eq!(legacy["owner"], "Alice from accounting");
    assert_eq!(legacy["owner_linked"], false);
    // The CLI marks it.
    let dir = tempfile::tempdir().unwrap();
    let list = tokio::task::block_in_place(|| {
        crate::cli::run(
            crate::cli::tessera(dir.path())
                .args([
                    "--url",
                    &app.url,
                    "--token-file",
                    app.admin_token_file().to_str().unwrap(),
                ])
                .args(["service-user", "list"]),
        )
    });
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("Alice from accounting (unlinked)"), "{text}");
    // Linked by naming a user.
    let linked = tokio::task::block_in_place(|| {
        crate::cli::run(
            crate::cli::tessera(dir.path())
                .args([
                    "--url",
                    &app.url,
                    "--token-file",
                    app.admin_token_file().to_str().unwrap(),
                ])
                .args(["service-user", "update", "su_legacy", "--owner", "ALICE"]),
        )
    });
    assert!(linked.status.success(), "{}", crate::cli::stderr(&linked));
    let legacy = ok_json(
        app.admin_get("/admin/v1/service-users/su_legacy").await,
        200,
    )
    .await;
    assert_eq!(
        (legacy["owner"].as_str(), legacy["owner_linked"].as_bool()),
        (Some("Alice"), Some(true))
    );

    // Deleting the user unlinks what they owned; the name stays.
    assert_eq!(
        send(&app, Method::DELETE, "/admin/v1/users/alice", None)
            .await
            .status(),
        204
    );
    for id in ["su_legacy", bot["id"].as_str().unwrap()] {
        let owned = ok_json(
            app.admin_get(&format!("/admin/v1/service-users/{id}"))
                .await,
            200,
        )
        .await;
        assert_eq!(
            (owned["owner"].as_str(), owned["owner_linked"].as_bool()),
            (Some("Alice"), Some(false)),
            "{id}"
        );
    }
}

/// Migration 60 (users) adds `owner_id` to service users: a service user
/// stored before it keeps its row and its free-text owner, shown unlinked.
async fn users_migration_keeps_service_users_and_their_owners(backend: Backend) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection, SqliteConnection};
    use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
    const ROW: &str = "INSERT INTO service_users (id, name, description, owner, is_admin, created_at, \
        scopes, audiences, enabled) VALUES ('su_old', 'old-bot', '', 'ops team', FALSE, 1, 'read', '', TRUE)";

    let app = TestApp::start(backend.clone()).await;
    let restart = TestApp::builder(backend.clone()).replica_of(&app);
    let db = app.db.clone();
    app.stop().await.unwrap();
    // Down to before migration 60 (later lanes' migrations first), then a
    // row as the old schema stores it.
    let mut reverted = Vec::new();
    while reverted.last().map(String::as_str) != Some("20261203000060") {
        let version = match &backend {
            Backend::Sqlite => {
                let path = db.url.strip_prefix("sqlite://").unwrap();
                let mut conn = SqliteConnection::establish(path).unwrap();
                conn.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
                let version = conn.revert_last_migration(SQLITE).unwrap().to_string();
                if version == "20261203000060" {
                    conn.batch_execute(ROW).unwrap();
                }
                version
            }
            Backend::Postgres(_) => {
                let mut conn = PgConnection::establish(&db.url).unwrap();
                let version = conn.revert_last_migration(POSTGRES).unwrap().to_string();
                if version == "20261203000060" {
                    conn.batch_execute(ROW).unwrap();
                }
                version
            }
        };
        reverted.push(version);
    }

    let app = restart.start().await;
    let old = ok_json(app.admin_get("/admin/v1/service-users/su_old").await, 200).await;
    assert_eq!(old["name"], "old-bot");
    assert_eq!(old["owner"], "ops team");
    assert_eq!(old["owner_linked"], false);
    assert!(old["owner_id"].is_null());
    ok_json(
        app.admin_post("/admin/v1/users", &json!({"username": "ops"}))
            .await,
        201,
    )
    .await;
    let linked = ok_json(
        send(
            &app,
            reqwest::Method::PATCH,
            "/admin/v1/service-users/su_old",
            Some(json!({"owner": "ops"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (linked["owner"].as_str(), linked["owner_linked"].as_bool()),
        (Some("ops"), Some(true))
    );
}

async fn api_scopes_are_documented(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let metadata: Value = app.get(path).await.json().await.unwrap();
        let scopes = metadata["scopes_supported"].as_array().unwrap();
        for scope in ["admin", "admin:read", "audit:read", "tokens:self"] {
            assert!(scopes.contains(&json!(scope)), "{path} lists {scope}");
        }
    }
    let spec: Value = app
        .get("/admin/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let scheme = spec["components"]["securitySchemes"]["bearer"]["description"]
        .as_str()
        .unwrap();
    for scope in ["`admin`", "`admin:read`", "`audit:read`", "`tokens:self`"] {
        assert!(scheme.contains(scope), "{scheme}");
    }
    let security = |path: &str, method: &str| spec["paths"][path][method]["security"].clone();
    assert_eq!(security("/admin/v1/whoami", "get"), json!([{"bearer": []}]));
    assert_eq!(
        security("/admin/v1/audit", "get"),
        json!([{"bearer": ["admin"]}, {"bearer": ["admin:read"]}, {"bearer": ["audit:read"]}])
    );
    assert_eq!(
        security("/admin/v1/users", "get"),
        json!([{"bearer": ["admin"]}, {"bearer": ["admin:read"]}])
    );
    assert_eq!(
        security("/admin/v1/users", "post"),
        json!([{"bearer": ["admin"]}])
    );
    // The users' operations, their statuses and the server's limits.
    let ops = [
        ("/admin/v1/users", "post", vec!["201", "400", "409", "413"]),
        ("/admin/v1/users", "get", vec!["200", "400"]),
        ("/admin/v1/users/{user}", "get", vec!["200", "404"]),
        (
            "/admin/v1/users/{user}",
            "patch",
            vec!["200", "400", "404", "409", "412", "413"],
        ),
        (
            "/admin/v1/users/{user}",
            "delete",
            vec!["204", "404", "409"],
        ),
        (
            "/admin/v1/users/{user}/disable",
            "post",
            vec!["200", "404", "409"],
        ),
        ("/admin/v1/users/{user}/enable", "post", vec!["200", "404"]),
        (
            "/admin/v1/users/{user}/password",
            "put",
            vec!["204", "400", "404", "413"],
        ),
    ];
    for (path, method, statuses) in ops {
        for status in statuses.into_iter().chain(["401", "403", "503"]) {
            assert!(
                spec["paths"][path][method]["responses"]
                    .get(status)
                    .is_some(),
                "{method} {path} {status}"
            );
        }
    }
    let user_spec = &spec["components"]["schemas"]["UserSpec"]["properties"];
    assert_eq!(user_spec["username"]["maxLength"], 64);
    assert_eq!(user_spec["username"]["pattern"], "^[A-Za-z0-9._@-]{1,64}$");
    assert_eq!(user_spec["email"]["maxLength"], 254);
    assert_eq!(user_spec["password"]["minLength"], 8);
    assert_eq!(user_spec["password"]["maxLength"], 1024);
    let user = &spec["components"]["schemas"]["User"]["properties"];
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
}
