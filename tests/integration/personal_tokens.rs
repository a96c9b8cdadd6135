//! Personal access tokens and machine tokens (issue 12): the lifecycle
//! through the admin API, the brownout, the expiry policy and the limit,
//! scopes, introspection, ownership and orphans, the audit as the token's
//! own identity, and revocation and rolls across two replicas.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tessera::store::PersonalTokenStore;

use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;
use crate::users::{People, call};

on_both_backends!(
    a_person_manages_a_token_through_its_lifecycle,
    expiry_choices_caps_and_the_limit,
    scopes_stay_within_owner_and_caller,
    introspection_describes_the_token,
    machine_tokens_survive_their_owner_as_orphans,
    tokens_of_disabled_or_deleted_owners_stop,
    a_tampered_token_is_refused_offline,
    others_tokens_are_invisible,
    revocation_and_brownout_reach_every_replica_at_once,
    a_roll_never_leaves_both_tokens_refused,
    a_token_is_exchanged_for_a_short_lived_jwt,
    a_roll_takes_the_rights_creating_would,
    no_token_makes_a_stronger_or_longer_one,
    the_limit_holds_under_concurrent_creation,
    rfc7009_revokes_a_disabled_token,
);

/// Uses are flushed quickly here, so that tests see them.
/// A generous bound for the other replica: notifications take
/// milliseconds (the load benchmark measures them), the cache a second.
const PROMPTLY_SECS: u64 = 10;

const CONFIG: &str = r#"
[personal_tokens]
usage_flush_interval = "200ms"
env_max_lifetime = { prod = "7d" }
"#;

async fn start(backend: Backend) -> TestApp {
    TestApp::builder(backend).config(CONFIG).start().await
}

/// A person and a JWT access token for Tessera's API with `scope`.
async fn person(app: &TestApp, people: &People, name: &str, admin: bool, scope: &str) -> String {
    let id = people.user(app, name, admin).await;
    people.token(app, &id, scope, app.state.config.issuer(), "human")
}

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let code = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn create(app: &TestApp, bearer: &str, body: Value) -> Value {
    json_of(
        call(app, Method::POST, "/admin/v1/tokens", bearer, Some(body)).await,
        201,
    )
    .await
}

async fn whoami(app: &TestApp, token: &str) -> reqwest::Response {
    call(app, Method::GET, "/admin/v1/whoami", token, None).await
}

async fn status_of(app: &TestApp, token: &str) -> u16 {
    whoami(app, token).await.status().as_u16()
}

async fn act(
    app: &TestApp,
    bearer: &str,
    id: &str,
    what: &str,
    body: Option<Value>,
) -> reqwest::Response {
    call(
        app,
        Method::POST,
        &format!("/admin/v1/tokens/{id}/{what}"),
        bearer,
        Some(body.unwrap_or_else(|| json!({}))),
    )
    .await
}

/// The admin API's audit events for `query`, oldest first.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let page = json_of(
        app.admin_get(&format!("/admin/v1/audit?{query}")).await,
        200,
    )
    .await;
    let mut events = page["events"].as_array().cloned().unwrap_or_default();
    events.reverse();
    events
}

async fn introspect(app: &TestApp, token: &str) -> Value {
    let response = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .bearer_auth(app.admin_token())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    json_of(response, 200).await
}

async fn a_person_manages_a_token_through_its_lifecycle(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let alice = person(&app, &people, "alice", false, "openid tokens:self").await;

    let created = create(
        &app,
        &alice,
        json!({"name": "laptop scripts", "env": "prod", "expires": "7d"}),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tsr_pat_prod_"), "{token}");
    assert_eq!(created["kind"], "pat");
    assert_eq!(created["scope"], "");
    assert_eq!(created["status"], "active");
    let week = created["expires_at"].as_i64().unwrap() - created["created_at"].as_i64().unwrap();
    assert_eq!(week, 7 * 86400);
    assert_eq!(
        created["hint"].as_str().unwrap(),
        format!("tsr_pat_prod_…{}", &token[token.len() - 4..])
    );
    assert!(
        regex::Regex::new(tessera::tokens::opaque::SCANNER_PATTERN)
            .unwrap()
            .is_match(&token)
    );

    // It identifies its holder, and reaches nothing else.
    let me = json_of(whoami(&app, &token).await, 200).await;
    assert_eq!(
        (me["name"].as_str(), me["kind"].as_str()),
        (Some("alice"), Some("human"))
    );
    assert_eq!(me["token_kind"], "pat");
    fail_with(
        call(&app, Method::GET, "/admin/v1/tokens", &token, None).await,
        403,
        "insufficient_scope",
    )
    .await;

    // Lists show the hint, never the value.
    let listed = json_of(
        call(&app, Method::GET, "/admin/v1/tokens", &alice, None).await,
        200,
    )
    .await;
    let text = listed.to_string();
    assert!(!text.contains(&token));
    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert_eq!(listed["tokens"][0]["hint"], created["hint"]);

    // The brownout: 403 with the bearer challenge and the same in JSON.
    let disabled = json_of(act(&app, &alice, &id, "disable", None).await, 200).await;
    assert_eq!(disabled["status"], "disabled");
    let refused = whoami(&app, &token).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["www-authenticate"].to_str().unwrap(),
        r#"Bearer realm="tessera", error="invalid_token", error_description="token disabled""#
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        (body["error"].as_str(), body["error_description"].as_str()),
        (Some("invalid_token"), Some("token disabled"))
    );
    assert_eq!(introspect(&app, &token).await, json!({"active": false}));
    // Enabled again, it works again.
    json_of(act(&app, &alice, &id, "enable", None).await, 200).await;
    assert_eq!(status_of(&app, &token).await, 200);

    // Uses are written once per flush, as the token itself.
    assert!(
        crate::common::eventually(10, || async {
            let shown = json_of(
                call(
                    &app,
                    Method::GET,
                    &format!("/admin/v1/tokens/{id}"),
                    &alice,
                    None,
                )
                .await,
                200,
            )
            .await;
            shown["use_count"].as_i64() >= Some(2) && shown["last_used_ip"] == "127.0.0.1"
        })
        .await
    );
    let used = audit(&app, "action=token.used&actor_kind=pat").await;
    let event = used.last().expect("a token.used event");
    assert_eq!(event["actor_id"], id.as_str());
    assert_eq!(event["actor_owner"], me["id"]);
    assert_eq!(event["details"]["env"], "prod");

    // A roll: a new value, same name, environment and duration; the old
    // one is refused the moment the roll returns.
    let rolled = json_of(act(&app, &alice, &id, "roll", None).await, 201).await;
    let new_token = rolled["token"].as_str().unwrap().to_owned();
    let new_id = rolled["id"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert_eq!(
        (rolled["name"].as_str(), rolled["env"].as_str()),
        (Some("laptop scripts"), Some("prod"))
    );
    assert_eq!(
        rolled["expires_at"].as_i64().unwrap() - rolled["created_at"].as_i64().unwrap(),
        7 * 86400
    );
    fail_with(whoami(&app, &token).await, 401, "invalid_token").await;
    assert_eq!(status_of(&app, &new_token).await, 200);
    let old = json_of(
        call(
            &app,
            Method::GET,
            &format!("/admin/v1/tokens/{id}"),
            &alice,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (old["status"].as_str(), old["replaced_by"].as_str()),
        (Some("revoked"), Some(new_id.as_str()))
    );

    // Revocation is permanent: no enabling, no roll.
    json_of(act(&app, &alice, &new_id, "revoke", None).await, 200).await;
    fail_with(whoami(&app, &new_token).await, 401, "invalid_token").await;
    fail_with(
        act(&app, &alice, &new_id, "enable", None).await,
        409,
        "conflict",
    )
    .await;
    fail_with(
        act(&app, &alice, &new_id, "roll", None).await,
        409,
        "conflict",
    )
    .await;
    // Revoked tokens leave the default list.
    let listed = json_of(
        call(&app, Method::GET, "/admin/v1/tokens", &alice, None).await,
        200,
    )
    .await;
    assert_eq!(listed["tokens"], json!([]));

    // The audit tells the story by token.
    let story: Vec<String> = audit(&app, &format!("token={id}"))
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        "token.created",
        "token.disabled",
        "auth.failed",
        "token.enabled",
        "token.used",
        "token.rolled",
    ] {
        assert!(
            story.iter().any(|a| a == action),
            "{action} missing from {story:?}"
        );
    }
    let lifecycle: Vec<String> = audit(&app, &format!("token={new_id}"))
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        lifecycle.contains(&"token.revoked".to_owned()),
        "{lifecycle:?}"
    );
}

async fn expiry_choices_caps_and_the_limit(backend: Backend) {
    let app = start(backend.clone()).await;
    let people = People::new(&app).await;
    let alice = person(&app, &people, "alice", false, "tokens:self").await;
    let refused = |body: Value| {
        let app = &app;
        let alice = alice.clone();
        async move { call(app, Method::POST, "/admin/v1/tokens", &alice, Some(body)).await }
    };
    // Only the configured choices; never `never` for a person; prod at
    // most 7 days; a known environment; a name.
    for (body, needle) in [
        (
            json!({"name": "x", "env": "dev", "expires": "2d"}),
            "expires must be one of",
        ),
        (
            json!({"name": "x", "env": "dev", "expires": "never"}),
            "must expire",
        ),
        (
            json!({"name": "x", "env": "prod", "expires": "14d"}),
            "longer than",
        ),
        (
            json!({"name": "x", "env": "qa", "expires": "1d"}),
            "env must be one of",
        ),
        (json!({"name": "", "env": "dev", "expires": "1d"}), "name"),
        (json!({"name": "x", "env": "dev"}), "malformed"),
    ] {
        let error = fail_with(refused(body.clone()).await, 400, "invalid_request").await;
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{body}: {error}"
        );
    }
    for expires in ["1h", "8h", "1d", "7d", "14d", "30d"] {
        create(
            &app,
            &alice,
            json!({"name": expires, "env": "dev", "expires": expires}),
        )
        .await;
    }
    for n in 0..4 {
        create(
            &app,
            &alice,
            json!({"name": format!("more {n}"), "env": "dev", "expires": "1h"}),
        )
        .await;
    }
    // The eleventh: refused, naming the limit and how to free a slot.
    let error = fail_with(
        refused(json!({"name": "eleventh", "env": "dev", "expires": "1h"})).await,
        409,
        "conflict",
    )
    .await;
    let description = error["error_description"].as_str().unwrap();
    assert!(
        description.contains("10") && description.contains("revoke"),
        "{description}"
    );
    // Revoking one frees a slot.
    let listed = json_of(
        call(&app, Method::GET, "/admin/v1/tokens", &alice, None).await,
        200,
    )
    .await;
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 10);
    let id = listed["tokens"][0]["id"].as_str().unwrap();
    json_of(act(&app, &alice, id, "revoke", None).await, 200).await;
    create(
        &app,
        &alice,
        json!({"name": "eleventh", "env": "dev", "expires": "1h"}),
    )
    .await;

    // Machine tokens that never expire need the administrator's policy,
    // and the bootstrap administrator obeys the caps like everyone.
    let admin = app.admin_token();
    let error = fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            &admin,
            Some(json!({"name": "forever", "env": "dev", "expires": "never"})),
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
            .contains("policy")
    );
    fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            &admin,
            Some(json!({"name": "long", "env": "prod", "expires": "30d"})),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    let relaxed = TestApp::builder(backend)
        .replica_of(&app)
        .config("[personal_tokens]\nallow_non_expiring_machine_tokens = true\n")
        .start()
        .await;
    let forever = create(
        &relaxed,
        &relaxed.admin_token(),
        json!({"name": "forever", "env": "dev", "expires": "never"}),
    )
    .await;
    assert_eq!(forever["expires_at"], Value::Null);
    assert_eq!(forever["kind"], "machine");
    // Still never for a person.
    let alice_id = user_id(&relaxed, "alice").await;
    let alice_again = people.token(
        &relaxed,
        &alice_id,
        "tokens:self",
        relaxed.state.config.issuer(),
        "human",
    );
    fail_with(
        call(
            &relaxed,
            Method::POST,
            "/admin/v1/tokens",
            &alice_again,
            Some(json!({"name": "forever", "env": "dev", "expires": "never"})),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
}

async fn user_id(app: &TestApp, name: &str) -> String {
    let user = json_of(app.admin_get(&format!("/admin/v1/users/{name}")).await, 200).await;
    user["id"].as_str().unwrap().to_owned()
}

async fn scopes_stay_within_owner_and_caller(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let alice = person(&app, &people, "alice", false, "tokens:self").await;
    let carol_id = people.user(&app, "carol", true).await;
    let issuer = app.state.config.issuer().to_owned();
    let carol_self = people.token(&app, &carol_id, "tokens:self", &issuer, "human");
    let carol_admin = people.token(&app, &carol_id, "tokens:self admin", &issuer, "human");

    // A person who is no administrator cannot hold the admin scopes.
    let body = json!({"name": "x", "env": "dev", "expires": "1d", "scope": "admin:read"});
    fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            &alice,
            Some(body.clone()),
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    // Nor scopes that are not Tessera's, nor malformed ones.
    for scope in ["deploy", "a\"b"] {
        let bad = json!({"name": "x", "env": "dev", "expires": "1d", "scope": scope});
        let response = call(&app, Method::POST, "/admin/v1/tokens", &alice, Some(bad)).await;
        assert_eq!(response.status(), 400, "{scope}");
    }
    // An administrator's token without admin cannot mint a stronger one.
    let error = fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            &carol_self,
            Some(body.clone()),
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("stronger")
    );
    // With admin it can, and the token reaches what its scope allows.
    let reader = create(&app, &carol_admin, body).await;
    let reader = reader["token"].as_str().unwrap();
    assert_eq!(
        call(&app, Method::GET, "/admin/v1/clients", reader, None)
            .await
            .status(),
        200
    );
    fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/users",
            reader,
            Some(json!({"username": "eve"})),
        )
        .await,
        403,
        "insufficient_scope",
    )
    .await;
    // A PAT with tokens:self manages its owner's tokens; it cannot reach
    // past its own scopes either.
    let manager = create(
        &app,
        &alice,
        json!({"name": "manager", "env": "dev", "expires": "1d", "scope": "tokens:self"}),
    )
    .await;
    let manager = manager["token"].as_str().unwrap();
    create(
        &app,
        manager,
        json!({"name": "child", "env": "dev", "expires": "1h"}),
    )
    .await;
    let listed = json_of(
        call(&app, Method::GET, "/admin/v1/tokens", manager, None).await,
        200,
    )
    .await;
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2);
    // A token created by a token is audited as that token.
    let created = audit(&app, "action=token.created").await;
    let last = created.last().unwrap();
    assert_eq!(last["actor_kind"], "pat");
    assert!(last["actor_owner"].is_string());
}

async fn introspection_describes_the_token(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let alice = person(&app, &people, "alice", false, "tokens:self").await;
    let created = create(
        &app,
        &alice,
        json!({"name": "ci reader", "env": "staging", "expires": "1d", "scope": "tokens:self"}),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    let alice_id = created["owner"]["id"].as_str().unwrap();
    // A resource server with client credentials introspects it.
    let (client_id, secret) =
        crate::clients::register(&app, json!({"name": "resource server"})).await;
    let response = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .basic_auth(&client_id, secret)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let answer = json_of(response, 200).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], alice_id);
    assert_eq!(answer["scope"], "tokens:self");
    assert_eq!(answer["exp"], created["expires_at"]);
    assert_eq!(answer["identity_kind"], "human");
    assert_eq!(answer["token_kind"], "pat");
    assert_eq!(answer["owner"], "alice");
    assert_eq!(answer["env"], "staging");
    assert_eq!(answer["token_name"], "ci reader");

    // A machine token says so.
    let machine = create(
        &app,
        &app.admin_token(),
        json!({"name": "deploy bot", "env": "prod", "expires": "1d"}),
    )
    .await;
    let answer = introspect(&app, machine["token"].as_str().unwrap()).await;
    assert_eq!(
        (
            answer["identity_kind"].as_str(),
            answer["token_kind"].as_str(),
            answer["env"].as_str()
        ),
        (Some("service"), Some("machine"), Some("prod"))
    );
    // The bootstrap administrator has no responsible person: no owner.
    assert_eq!(answer.get("owner"), None);
    assert_eq!(machine["orphaned"], true);
}

async fn machine_tokens_survive_their_owner_as_orphans(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let bob = person(&app, &people, "bob", false, "tokens:self").await;
    people.user(&app, "carol", false).await;
    let deployer = json_of(
        app.admin_post(
            "/admin/v1/service-users",
            &json!({"name": "deployer", "owner": "bob", "scope": "deploy read"}),
        )
        .await,
        201,
    )
    .await;
    let deployer_id = deployer["id"].as_str().unwrap();
    // The service user's owner makes its machine tokens, within its scopes.
    let machine = create(
        &app,
        &bob,
        json!({"name": "deploy", "env": "prod", "expires": "7d", "service_user": deployer_id, "scope": "deploy"}),
    )
    .await;
    let token = machine["token"].as_str().unwrap().to_owned();
    let id = machine["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tsr_mt_prod_"));
    assert_eq!(
        (
            machine["responsible"].as_str(),
            machine["orphaned"].as_bool()
        ),
        (Some("bob"), Some(false))
    );
    let bad_scope = json!({"name": "d", "env": "dev", "expires": "1d", "service_user": deployer_id, "scope": "admin"});
    fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            &bob,
            Some(bad_scope),
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    let personal = create(
        &app,
        &bob,
        json!({"name": "mine", "env": "dev", "expires": "1d"}),
    )
    .await;
    let personal = personal["token"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&app, &token).await, 200);

    // Bob leaves: his personal token stops, the machine token keeps
    // working and is listed as orphaned, and the audit says so.
    let deleted = app
        .http
        .delete(app.endpoint("/admin/v1/users/bob"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    fail_with(whoami(&app, &personal).await, 401, "invalid_token").await;
    assert_eq!(status_of(&app, &token).await, 200);
    let orphans = json_of(app.admin_get("/admin/v1/tokens?orphaned=true").await, 200).await;
    let ids: Vec<&str> = orphans["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()), "{orphans}");
    let event = audit(&app, "action=user.deleted").await.pop().unwrap();
    assert_eq!(event["details"]["orphaned_machine_tokens"], json!([id]));
    assert_eq!(event["details"]["stopped_personal_tokens"], 1);

    // Someone takes it over.
    let moved = json_of(
        act(
            &app,
            &app.admin_token(),
            &id,
            "transfer",
            Some(json!({"owner": "carol"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (moved["responsible"].as_str(), moved["orphaned"].as_bool()),
        (Some("carol"), Some(false))
    );
    let transferred = audit(&app, &format!("token={id}&action=token.transferred")).await;
    assert_eq!(transferred.len(), 1);
    assert_eq!(transferred[0]["details"]["to_username"], "carol");
    // A personal token cannot change hands.
    let alice = person(&app, &people, "alice", false, "tokens:self").await;
    let hers = create(
        &app,
        &alice,
        json!({"name": "h", "env": "dev", "expires": "1d"}),
    )
    .await;
    fail_with(
        act(
            &app,
            &app.admin_token(),
            hers["id"].as_str().unwrap(),
            "transfer",
            Some(json!({"owner": "carol"})),
        )
        .await,
        409,
        "conflict",
    )
    .await;
}

async fn tokens_of_disabled_or_deleted_owners_stop(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let alice = person(&app, &people, "alice", false, "tokens:self").await;
    let hers = create(
        &app,
        &alice,
        json!({"name": "h", "env": "dev", "expires": "1d"}),
    )
    .await;
    let hers = hers["token"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&app, &hers).await, 200);
    json_of(
        app.admin_post("/admin/v1/users/alice/disable", &json!({}))
            .await,
        200,
    )
    .await;
    // The user cache holds a record for at most a second.
    assert!(crate::common::eventually(3, || async { status_of(&app, &hers).await == 401 }).await);
    let event = audit(&app, "action=user.disabled").await.pop().unwrap();
    assert_eq!(event["details"]["stopped_personal_tokens"], 1);

    // A deleted service user's machine tokens stop at once.
    let svc = json_of(
        app.admin_post("/admin/v1/service-users", &json!({"name": "bot"}))
            .await,
        201,
    )
    .await;
    let svc_id = svc["id"].as_str().unwrap();
    let machine = create(
        &app,
        &app.admin_token(),
        json!({"name": "bot", "env": "dev", "expires": "1d", "service_user": svc_id}),
    )
    .await;
    let machine = machine["token"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&app, &machine).await, 200);
    let deleted = app
        .http
        .delete(app.endpoint(&format!("/admin/v1/service-users/{svc_id}")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    fail_with(whoami(&app, &machine).await, 401, "invalid_token").await;
}

async fn a_tampered_token_is_refused_offline(backend: Backend) {
    let app = start(backend).await;
    let created = create(
        &app,
        &app.admin_token(),
        json!({"name": "t", "env": "dev", "expires": "1h"}),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    let mut tampered = token.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let error = fail_with(whoami(&app, &tampered).await, 401, "invalid_token").await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );
    // Another environment in the prefix is a tampered token too.
    let relabelled = token.replacen("_dev_", "_prod_", 1);
    fail_with(whoami(&app, &relabelled).await, 401, "invalid_token").await;
    assert_eq!(introspect(&app, &tampered).await, json!({"active": false}));
    assert_eq!(status_of(&app, token).await, 200);
}

async fn others_tokens_are_invisible(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let alice = person(&app, &people, "alice", false, "tokens:self").await;
    let bob = person(&app, &people, "bob", false, "tokens:self").await;
    let hers = create(
        &app,
        &alice,
        json!({"name": "h", "env": "dev", "expires": "1d"}),
    )
    .await;
    let id = hers["id"].as_str().unwrap();
    for what in ["disable", "enable", "revoke", "roll"] {
        fail_with(act(&app, &bob, id, what, None).await, 404, "not_found").await;
    }
    fail_with(
        call(
            &app,
            Method::GET,
            &format!("/admin/v1/tokens/{id}"),
            &bob,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let listed = json_of(
        call(&app, Method::GET, "/admin/v1/tokens", &bob, None).await,
        200,
    )
    .await;
    assert_eq!(listed["tokens"], json!([]));
    // An administrator sees and manages every token.
    let all = json_of(app.admin_get("/admin/v1/tokens").await, 200).await;
    assert_eq!(all["tokens"][0]["id"], id);
    json_of(
        act(&app, &app.admin_token(), id, "disable", None).await,
        200,
    )
    .await;
    // A token without tokens:self manages nothing.
    let bare = people.token(
        &app,
        hers["owner"]["id"].as_str().unwrap(),
        "openid",
        app.state.config.issuer(),
        "human",
    );
    fail_with(
        call(&app, Method::GET, "/admin/v1/tokens", &bare, None).await,
        403,
        "insufficient_scope",
    )
    .await;
}

/// Two replicas on one database, and a machine token made on the first.
/// On PostgreSQL their caches keep entries for an hour, so that only the
/// change notifications can make the second one see a change; on SQLite
/// (one process per file in production) the second sees it within the
/// one-second cache.
async fn two_replicas_and_a_token(backend: Backend, name: &str) -> (TestApp, TestApp, Value) {
    let config = match backend {
        Backend::Postgres(_) => format!("{CONFIG}[clients]\ncache_ttl = \"1h\"\n"),
        Backend::Sqlite => CONFIG.to_owned(),
    };
    let first = TestApp::builder(backend.clone())
        .config(&config)
        .start()
        .await;
    let second = TestApp::builder(backend)
        .replica_of(&first)
        .config(&config)
        .start()
        .await;
    let body = json!({"name": name, "env": "dev", "expires": "1h"});
    let created = create(&first, &first.admin_token(), body).await;
    (first, second, created)
}

async fn revocation_and_brownout_reach_every_replica_at_once(backend: Backend) {
    let (first, second, created) = two_replicas_and_a_token(backend, "r").await;
    let admin = first.admin_token();
    let token = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(status_of(&second, token).await, 200);
    // Once the call returns, the replica that answered refuses it at once;
    // the other as soon as the notification (or, on SQLite, the
    // one-second cache) lets it.
    let soon = |status: u16| {
        let second = &second;
        async move {
            crate::common::eventually(PROMPTLY_SECS, || async {
                status_of(second, token).await == status
            })
            .await
        }
    };
    json_of(act(&first, &admin, id, "disable", None).await, 200).await;
    assert_eq!(status_of(&first, token).await, 403);
    assert!(soon(403).await, "the other replica browns the token out");
    json_of(act(&first, &admin, id, "enable", None).await, 200).await;
    assert_eq!(status_of(&first, token).await, 200);
    assert!(soon(200).await, "the other replica takes it again");
    json_of(act(&first, &admin, id, "revoke", None).await, 200).await;
    assert_eq!(status_of(&first, token).await, 401);
    assert!(soon(401).await, "the other replica refuses it");
    assert_eq!(introspect(&second, token).await, json!({"active": false}));
}

/// Pollers on both replicas use the old token, then the new one, while
/// the token is rolled. At no instant are both refused: whenever the old
/// one is refused, the row says the roll that replaced it committed, with
/// the new token live. Without a grace, once the roll returns the old one
/// is refused everywhere; with a grace, both work until it ends.
async fn a_roll_never_leaves_both_tokens_refused(backend: Backend) {
    let (first, second, created) = two_replicas_and_a_token(backend, "roller").await;
    let admin = first.admin_token();
    let old = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pollers = Vec::new();
    for app in [&first, &second] {
        let http = app.http.clone();
        let url = app.endpoint("/admin/v1/whoami");
        let old = old.clone();
        let stop = stop.clone();
        let store = first.state.store.clone();
        let id = id.clone();
        pollers.push(tokio::spawn(async move {
            let mut refusals_checked = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = http
                    .get(&url)
                    .bearer_auth(&old)
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status != 200 {
                    assert_eq!(status, 401);
                    let row = store.personal_token(id.clone()).await.unwrap().unwrap();
                    let next = row
                        .token
                        .replaced_by
                        .clone()
                        .expect("refused only once replaced");
                    let new = store.personal_token(next).await.unwrap().unwrap();
                    assert!(
                        new.token.is_live(tessera::clock::now()) && new.token.disabled_at.is_none()
                    );
                    refusals_checked += 1;
                }
            }
            refusals_checked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rolled = json_of(act(&first, &admin, &id, "roll", None).await, 201).await;
    let new = rolled["token"].as_str().unwrap().to_owned();
    // The roll has returned: the replica that answered refuses the old
    // token at once, the other once it hears of the change; the new one
    // works on both.
    assert_eq!(status_of(&first, &old).await, 401);
    assert!(
        crate::common::eventually(PROMPTLY_SECS, || async {
            status_of(&second, &old).await == 401
        })
        .await
    );
    for app in [&first, &second] {
        assert_eq!(status_of(app, &new).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for poller in pollers {
        assert!(poller.await.unwrap() > 0, "the pollers saw the roll");
    }

    // With a grace, both work until it ends, then only the new one.
    let new_id = rolled["id"].as_str().unwrap().to_owned();
    let graced = json_of(
        act(
            &first,
            &admin,
            &new_id,
            "roll",
            Some(json!({"grace_seconds": 2})),
        )
        .await,
        201,
    )
    .await;
    let newest = graced["token"].as_str().unwrap().to_owned();
    for app in [&first, &second] {
        assert_eq!(status_of(app, &new).await, 200);
        assert_eq!(status_of(app, &newest).await, 200);
    }
    assert!(crate::common::eventually(5, || async { status_of(&second, &new).await == 401 }).await);
    assert_eq!(status_of(&first, &newest).await, 200);
    let rolled_event = audit(&first, &format!("token={new_id}&action=token.rolled")).await;
    assert_eq!(rolled_event[0]["details"]["grace_secs"], 2);
}

async fn exchange(app: &TestApp, subject: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", subject),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
    ];
    form.extend_from_slice(extra);
    app.http
        .post(app.endpoint("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn a_token_is_exchanged_for_a_short_lived_jwt(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let alice = person(&app, &people, "alice", false, "tokens:self").await;
    let created = create(
        &app,
        &alice,
        json!({"name": "gateway", "env": "dev", "expires": "1d", "scope": "tokens:self"}),
    )
    .await;
    let pat = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let answer = json_of(exchange(&app, &pat, &[]).await, 200).await;
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(answer["expires_in"].as_u64().unwrap() <= 900);
    let jwt = answer["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt.split('.').count(), 3);
    let seen = introspect(&app, &jwt).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["sub"], created["owner"]["id"]);
    assert_eq!(seen["identity_kind"], "human");
    assert_eq!(seen["scope"], "tokens:self");
    // It reaches Tessera's API as its owner, within the token's scopes.
    assert_eq!(
        json_of(whoami(&app, &jwt).await, 200).await["name"],
        "alice"
    );
    // Not beyond them.
    fail_with(
        exchange(&app, &pat, &[("scope", "tokens:self admin")]).await,
        400,
        "invalid_scope",
    )
    .await;
    // The issuance is audited as the token.
    let issued = audit(&app, "action=token.issued").await;
    let event = issued.last().unwrap();
    assert_eq!(
        (event["actor_kind"].as_str(), event["actor_id"].as_str()),
        (Some("pat"), Some(id.as_str()))
    );

    // Disabled: no exchange (RFC 8693 section 2.2.2: invalid_request), and the
    // JWT it gave is inactive until the token is enabled again.
    json_of(act(&app, &alice, &id, "disable", None).await, 200).await;
    let error = fail_with(exchange(&app, &pat, &[]).await, 400, "invalid_request").await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    assert_eq!(introspect(&app, &jwt).await, json!({"active": false}));
    fail_with(whoami(&app, &jwt).await, 401, "invalid_token").await;
    json_of(act(&app, &alice, &id, "enable", None).await, 200).await;
    assert_eq!(introspect(&app, &jwt).await["active"], true);
    // Revoked: the JWT dies with it.
    json_of(act(&app, &alice, &id, "revoke", None).await, 200).await;
    assert_eq!(introspect(&app, &jwt).await, json!({"active": false}));
    fail_with(exchange(&app, &pat, &[]).await, 400, "invalid_request").await;

    // Only personal and machine tokens are exchanged as access tokens.
    fail_with(
        exchange(&app, &app.admin_token(), &[]).await,
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        exchange(&app, "tsr_pat_dev_nonsense", &[]).await,
        400,
        "invalid_request",
    )
    .await;
    // A machine token exchanges as its service user.
    let machine = create(
        &app,
        &app.admin_token(),
        json!({"name": "m", "env": "dev", "expires": "1h", "scope": "admin:read"}),
    )
    .await;
    let answer = json_of(
        exchange(&app, machine["token"].as_str().unwrap(), &[]).await,
        200,
    )
    .await;
    let seen = introspect(&app, answer["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (seen["identity_kind"].as_str(), seen["scope"].as_str()),
        (Some("service"), Some("admin:read"))
    );
}

async fn a_roll_takes_the_rights_creating_would(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    let issuer = app.state.config.issuer().to_owned();
    let carol_id = people.user(&app, "carol", true).await;
    let carol_admin = people.token(&app, &carol_id, "tokens:self admin", &issuer, "human");
    let carol_self = people.token(&app, &carol_id, "tokens:self", &issuer, "human");
    let strong = create(
        &app,
        &carol_admin,
        json!({"name": "admin pat", "env": "dev", "expires": "1h", "scope": "admin"}),
    )
    .await;
    // An hour, so that its roll never outlives the day-long sibling below
    // (that would be refused for its lifetime before its scope is judged).
    let strong_id = strong["id"].as_str().unwrap().to_owned();
    // Her everyday token (no admin) cannot roll it into a fresh admin value.
    fail_with(
        act(&app, &carol_self, &strong_id, "roll", None).await,
        400,
        "invalid_scope",
    )
    .await;
    // Nor can a sibling token with tokens:self.
    let sibling = create(
        &app,
        &carol_admin,
        json!({"name": "sibling", "env": "dev", "expires": "1d", "scope": "tokens:self"}),
    )
    .await;
    let sibling = sibling["token"].as_str().unwrap();
    fail_with(
        act(&app, sibling, &strong_id, "roll", None).await,
        400,
        "invalid_scope",
    )
    .await;
    // An administrator may brown out or revoke a person's token, never
    // roll it (that would hand them a value acting as the person).
    fail_with(
        act(&app, &app.admin_token(), &strong_id, "roll", None).await,
        403,
        "access_denied",
    )
    .await;
    // A rolled token in its grace cannot be rolled again.
    let graced = json_of(
        act(
            &app,
            &carol_admin,
            &strong_id,
            "roll",
            Some(json!({"grace_seconds": 3600})),
        )
        .await,
        201,
    )
    .await;
    fail_with(
        act(&app, &carol_admin, &strong_id, "roll", None).await,
        409,
        "conflict",
    )
    .await;
    // The new token's story starts with a creation naming the old one.
    let new_id = graced["id"].as_str().unwrap();
    let created = audit(&app, &format!("token={new_id}&action=token.created")).await;
    assert_eq!(created[0]["details"]["rolled_from"], strong_id.as_str());

    // Carol is no administrator any more: her token loses the admin
    // scopes everywhere, and rolling it cannot bring them back.
    let demoted = app
        .http
        .patch(app.endpoint("/admin/v1/users/carol"))
        .bearer_auth(app.admin_token())
        .json(&json!({"admin": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), 200);
    let newest = graced["token"].as_str().unwrap();
    assert!(
        crate::common::eventually(3, || async {
            introspect(&app, newest).await.get("scope").is_none()
        })
        .await,
        "a former administrator's token no longer carries admin"
    );
    let carol_plain = people.token(&app, &carol_id, "tokens:self", &issuer, "human");
    fail_with(
        act(&app, &carol_plain, new_id, "roll", None).await,
        400,
        "invalid_scope",
    )
    .await;
}

async fn no_token_makes_a_stronger_or_longer_one(backend: Backend) {
    let app = start(backend).await;
    let people = People::new(&app).await;
    people.user(&app, "bob", false).await;
    let bot = json_of(
        app.admin_post(
            "/admin/v1/service-users",
            &json!({"name": "bot", "owner": "bob", "scope": "deploy read"}),
        )
        .await,
        201,
    )
    .await;
    let bot_id = bot["id"].as_str().unwrap();
    // A machine token with tokens:self only, for eight hours: the hour-long
    // tokens it makes below end before it, in whichever second they start.
    let manager = create(
        &app,
        &app.admin_token(),
        json!({"name": "m", "env": "dev", "expires": "8h", "service_user": bot_id, "scope": "tokens:self read"}),
    )
    .await;
    let manager = manager["token"].as_str().unwrap();
    // It passes on only its own scopes ...
    fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            manager,
            Some(json!({"name": "d", "env": "dev", "expires": "1h", "scope": "deploy"})),
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    create(
        &app,
        manager,
        json!({"name": "r", "env": "dev", "expires": "1h", "scope": "read"}),
    )
    .await;
    // ... and cannot outlive itself.
    let error = fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            manager,
            Some(json!({"name": "long", "env": "dev", "expires": "1d"})),
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
            .contains("outlives")
    );
    // A service user's max_token_lifetime caps its machine tokens.
    let capped = app
        .http
        .patch(app.endpoint(&format!("/admin/v1/service-users/{bot_id}")))
        .bearer_auth(app.admin_token())
        .json(&json!({"max_token_lifetime": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(capped.status(), 200);
    let error = fail_with(
        call(
            &app,
            Method::POST,
            "/admin/v1/tokens",
            &app.admin_token(),
            Some(json!({"name": "x", "env": "dev", "expires": "1d", "service_user": bot_id})),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("max_token_lifetime")
    );
}

/// Twelve creations at once for one owner, half on each replica: exactly
/// as many succeed as there are free slots.
async fn the_limit_holds_under_concurrent_creation(backend: Backend) {
    let (first, second, _) = two_replicas_and_a_token(backend, "taken").await;
    let admin = first.admin_token();
    let attempts = (0..12).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let admin = admin.clone();
        async move {
            call(
                app,
                Method::POST,
                "/admin/v1/tokens",
                &admin,
                Some(json!({"name": format!("c{n}"), "env": "dev", "expires": "1h"})),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let made = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((made, refused), (9, 3), "{statuses:?}");
}

async fn rfc7009_revokes_a_disabled_token(backend: Backend) {
    let app = start(backend).await;
    let created = create(
        &app,
        &app.admin_token(),
        json!({"name": "leaked", "env": "prod", "expires": "1h"}),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    json_of(
        act(&app, &app.admin_token(), id, "disable", None).await,
        200,
    )
    .await;
    let revoked = app
        .http
        .post(app.endpoint("/oauth/revoke"))
        .bearer_auth(app.admin_token())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // Revoked for good: enabling it again is refused.
    fail_with(
        act(&app, &app.admin_token(), id, "enable", None).await,
        409,
        "conflict",
    )
    .await;
    fail_with(whoami(&app, token).await, 401, "invalid_token").await;
    let events = audit(&app, &format!("token={id}&action=token.revoked")).await;
    assert_eq!(events.len(), 1);
}
