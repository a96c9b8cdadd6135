//! Trusted issuers and trust policies (issue 9 items 1, 2): the store's
//! rules and the admin API, on both backends (the CLI: `trust_cli`).

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::audit::{Actor, Event, Outcome};
use tessera::federation::admin;
use tessera::federation::model::{Condition, MatchKind};
use tessera::store::{
    NewAuditRecord, ServiceUserRecord, ServiceUserStore, StoreError, TrustPolicyChange,
    TrustPolicyRecord, TrustStore, TrustedIssuerRecord,
};

use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    store_keeps_trusts_and_their_references,
    trust_changes_are_announced,
    issuers_through_the_api,
    policies_through_the_api,
);

pub const GITHUB: &str = "https://token.actions.githubusercontent.com";
pub const LOCAL: &str = "http://127.0.0.1:9/issuer";

fn event(action: &'static str) -> NewAuditRecord {
    Event::new(Actor::system(), action, Outcome::Success).into_record(0)
}

fn service_user(id: &str) -> ServiceUserRecord {
    ServiceUserRecord {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        owner: String::new(),
        is_admin: false,
        created_at: 1,
        scopes: "deploy read".into(),
        audiences: String::new(),
        enabled: true,
        max_token_lifetime: None,
        owner_id: None,
    }
}

fn policy(name: &str, issuer: &str, user: &str) -> TrustPolicyRecord {
    TrustPolicyRecord {
        name: name.into(),
        issuer: issuer.into(),
        audience: "https://tessera.example".into(),
        allow_multiple_audiences: false,
        service_user: user.into(),
        scopes: "deploy".into(),
        lifetime: 900,
        conditions: json!([{"claim": "repository_id", "match": "exact", "value": "42"}])
            .to_string(),
        refused_events: "pull_request_target".into(),
        name_only: false,
        created_at: 1,
        updated_at: 1,
    }
}

async fn store_keeps_trusts_and_their_references(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let issuer = "https://token.actions.githubusercontent.com";
    store
        .create_service_user(service_user("su_ci"), event("service_user.created"))
        .await
        .unwrap();
    store
        .create_trusted_issuer(
            TrustedIssuerRecord {
                issuer: issuer.into(),
                algorithms: "RS256".into(),
                max_token_age: 3600,
                jwks: None,
                created_at: 1,
            },
            event("trust.issuer_added"),
        )
        .await
        .unwrap();
    assert!(
        admin::load(store, "https://other.example")
            .await
            .unwrap()
            .is_none()
    );

    // A policy needs an existing issuer and service user.
    let missing = store
        .create_trust_policy(policy("p", "https://nope.example", "su_ci"), event("x"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let missing = store
        .create_trust_policy(policy("p", issuer, "su_nobody"), event("x"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    store
        .create_trust_policy(policy("deploy", issuer, "su_ci"), event("trust.created"))
        .await
        .unwrap();
    let duplicate = store
        .create_trust_policy(policy("deploy", issuer, "su_ci"), event("x"))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "{duplicate:?}"
    );

    let (loaded, policies) = admin::load(store, issuer).await.unwrap().unwrap();
    assert_eq!(loaded.algorithms, ["RS256"]);
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].scopes, ["deploy"]);
    assert_eq!(policies[0].refused_events, ["pull_request_target"]);
    assert_eq!(
        policies[0].conditions,
        [Condition {
            claim: "repository_id".into(),
            kind: MatchKind::Exact,
            value: "42".into(),
            ignore_case: false,
        }]
    );

    // Referenced issuer and service user cannot go.
    let in_use = store
        .delete_trusted_issuer(issuer.into(), event("x"), |_| Ok::<_, ()>(()))
        .await;
    assert!(
        matches!(&in_use, Err(StoreError::InUse(by)) if by.contains("deploy")),
        "{in_use:?}"
    );
    let in_use = store.delete_service_user("su_ci".into(), event("x")).await;
    assert!(
        matches!(&in_use, Err(StoreError::InUse(by)) if by.contains("deploy")),
        "{in_use:?}"
    );

    // A change is read-modify-write; a refusal writes nothing.
    let refused = store
        .change_trust_policy("deploy".into(), |_| Err::<(TrustPolicyChange, ()), _>("no"))
        .await
        .unwrap();
    assert_eq!(refused, Err("no"));
    store
        .change_trust_policy("deploy".into(), |mut current| {
            current.lifetime = 600;
            current.updated_at = 2;
            Ok::<_, ()>((
                TrustPolicyChange {
                    policy: current,
                    event: event("trust.updated"),
                },
                (),
            ))
        })
        .await
        .unwrap()
        .unwrap();
    let changed = store.trust_policy("deploy".into()).await.unwrap().unwrap();
    assert_eq!((changed.lifetime, changed.updated_at), (600, 2));
    let missing = store
        .change_trust_policy("nope".into(), |_| Err::<(TrustPolicyChange, ()), ()>(()))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));

    // Precondition refused: still there.
    let kept = store
        .delete_trust_policy("deploy".into(), event("x"), |_| Err::<(), _>("412"))
        .await
        .unwrap();
    assert_eq!(kept, Err("412"));
    store
        .delete_trust_policy("deploy".into(), event("trust.deleted"), |_| Ok::<_, ()>(()))
        .await
        .unwrap()
        .unwrap();
    store
        .delete_trusted_issuer(issuer.into(), event("trust.issuer_removed"), |_| {
            Ok::<_, ()>(())
        })
        .await
        .unwrap()
        .unwrap();
    assert!(store.list_trusted_issuers().await.unwrap().is_empty());
    store
        .delete_service_user("su_ci".into(), event("service_user.deleted"))
        .await
        .unwrap();
}

/// PostgreSQL announces every change of either table as `trust`, on commit,
/// so other replicas drop their cached trusts (SQLite serves one process).
async fn trust_changes_are_announced(backend: Backend) {
    let app = TestApp::start(backend).await;
    let Some(mut changes) = app
        .state
        .store
        .listen_for_changes(std::time::Duration::from_secs(1))
    else {
        return;
    };
    assert_eq!(
        next_change(&mut changes).await,
        Some(tessera::store::Change::Missed)
    );
    add_issuer(&app, LOCAL).await;
    assert_eq!(
        next_change(&mut changes).await,
        Some(tessera::store::Change::Trust)
    );
    let user = new_service_user(&app, "ci", "deploy").await;
    let _ = next_change(&mut changes).await; // the service user's own
    let created = app
        .admin_post("/admin/v1/trust/policies", &policy_body("p", &user))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        next_change(&mut changes).await,
        Some(tessera::store::Change::Trust)
    );
}

/// The next change other than a token's: the administrator's own token
/// records its use (`last_used_at`), which is announced too.
async fn next_change(
    changes: &mut tokio::sync::mpsc::Receiver<tessera::store::Change>,
) -> Option<tessera::store::Change> {
    loop {
        let change = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
            .await
            .expect("a change within 10 s");
        if !matches!(change, Some(tessera::store::Change::Token(_))) {
            return change;
        }
    }
}

/// The percent-encoded path of an issuer.
fn issuer_path(issuer: &str) -> String {
    let segment: String = url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect();
    format!("/admin/v1/trust/issuers/{segment}")
}

pub async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    if_match: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(method, app.endpoint(path))
        .bearer_auth(app.admin_token());
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("request")
}

pub fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

pub async fn new_service_user(app: &TestApp, name: &str, scope: &str) -> String {
    let response = app
        .admin_post(
            "/admin/v1/service-users",
            &json!({"name": name, "scope": scope}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    user["id"].as_str().unwrap().to_owned()
}

pub async fn add_issuer(app: &TestApp, issuer: &str) {
    let response = app
        .admin_post("/admin/v1/trust/issuers", &json!({"issuer": issuer}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "{issuer}");
}

/// A policy body pinning repository 42.
pub fn policy_body(name: &str, user: &str) -> Value {
    json!({
        "name": name,
        "issuer": LOCAL,
        "service_user": user,
        "scope": "deploy",
        "conditions": [
            {"claim": "repository", "match": "exact", "value": "octo-org/octo-repo"},
            {"claim": "repository_id", "match": "exact", "value": "42"}
        ]
    })
}

async fn issuers_through_the_api(backend: Backend) {
    let app = TestApp::start(backend).await;
    let created = app
        .admin_post(
            "/admin/v1/trust/issuers",
            &json!({"issuer": GITHUB, "algorithms": ["RS256"], "max_token_age": 600}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/admin/v1/trust/issuers/https%3A%2F%2Ftoken"),
        "one segment: {location}"
    );
    let tag = etag(&created);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["algorithms"], json!(["RS256"]));
    assert_eq!(body["max_token_age"], 600);

    let read = app.admin_get(&issuer_path(GITHUB)).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(etag(&read), tag);
    let read = app.admin_get(&location).await;
    assert_eq!(read.status(), StatusCode::OK);

    let duplicate = app
        .admin_post("/admin/v1/trust/issuers", &json!({"issuer": GITHUB}))
        .await;
    fail_with(duplicate, 409, "conflict").await;

    // Defaults: RS256 and ES256, an hour.
    add_issuer(&app, LOCAL).await;
    let list: Value = app
        .admin_get("/admin/v1/trust/issuers")
        .await
        .json()
        .await
        .unwrap();
    let local = &list["issuers"][0];
    assert_eq!(local["issuer"], LOCAL);
    assert_eq!(local["algorithms"], json!(["RS256", "ES256"]));
    assert_eq!(local["max_token_age"], 3600);

    let ec = json!({"kty": "EC", "crv": "P-256", "kid": "1",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    let mut private = ec.clone();
    private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    for (body, says) in [
        (json!({"issuer": "not a url"}), "https"),
        (json!({"issuer": "http://ci.example.com"}), "loopback"),
        (json!({"issuer": "https://ci.example.com/?x=1"}), "query"),
        (
            json!({"issuer": "https://ci.example.com", "algorithms": ["none"]}),
            "never none",
        ),
        (
            json!({"issuer": "https://ci.example.com", "algorithms": ["HS256"]}),
            "HMAC",
        ),
        (
            json!({"issuer": "https://ci.example.com", "algorithms": []}),
            "empty",
        ),
        (
            json!({"issuer": "https://ci.example.com", "max_token_age": 0}),
            "86400",
        ),
        (
            json!({"issuer": "https://ci.example.com", "max_token_age": 86401}),
            "86400",
        ),
        (
            json!({"issuer": "https://ci.example.com", "jwks": {"keys": [private]}}),
            "public key only",
        ),
        (
            json!({"issuer": "https://ci.example.com", "algorithms": ["RS256"], "jwks": {"keys": [ec]}}),
            "no key",
        ),
        (
            json!({"issuer": "https://ci.example.com", "surprise": 1}),
            "unknown field",
        ),
    ] {
        let response = app.admin_post("/admin/v1/trust/issuers", &body).await;
        let error = fail_with(response, 400, "invalid_request").await;
        let description = error["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{body}: {description}");
    }
    let with_keys = app
        .admin_post(
            "/admin/v1/trust/issuers",
            &json!({"issuer": "https://ghe.example.com/_services/token", "algorithms": ["ES256"], "jwks": {"keys": [ec]}}),
        )
        .await;
    assert_eq!(with_keys.status(), StatusCode::CREATED);
    let with_keys: Value = with_keys.json().await.unwrap();
    assert_eq!(with_keys["jwks"]["keys"][0]["kid"], "1");

    // Removal honours If-Match.
    let stale = send(
        &app,
        reqwest::Method::DELETE,
        &issuer_path(GITHUB),
        Some("\"x\""),
        None,
    )
    .await;
    fail_with(stale, 412, "precondition_failed").await;
    let removed = send(
        &app,
        reqwest::Method::DELETE,
        &issuer_path(GITHUB),
        Some(&tag),
        None,
    )
    .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    fail_with(app.admin_get(&issuer_path(GITHUB)).await, 404, "not_found").await;
    let again = send(
        &app,
        reqwest::Method::DELETE,
        &issuer_path(GITHUB),
        None,
        None,
    )
    .await;
    fail_with(again, 404, "not_found").await;

    let audit: Value = app
        .admin_get("/admin/v1/audit?action=trust.issuer_removed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"][0]["target"], GITHUB, "{audit}");
    assert_eq!(audit["events"][0]["actor_kind"], "service");
}

async fn policies_through_the_api(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_issuer(&app, LOCAL).await;
    let user = new_service_user(&app, "deployer", "deploy read").await;

    let created = app
        .admin_post("/admin/v1/trust/policies", &policy_body("deploy", &user))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.headers()["location"],
        "/admin/v1/trust/policies/deploy"
    );
    let tag = etag(&created);
    let policy: Value = created.json().await.unwrap();
    assert_eq!(policy["audience"], app.state.config.issuer());
    assert_eq!(policy["lifetime"], 900);
    assert_eq!(policy["scopes"], json!(["deploy"]));
    assert_eq!(policy["allow_multiple_audiences"], false);
    assert_eq!(policy["name_only"], false);
    // The pwn-request guard is on unless a policy opts out.
    assert_eq!(policy["refused_events"], json!(["pull_request_target"]));
    let read = app.admin_get("/admin/v1/trust/policies/deploy").await;
    assert_eq!(etag(&read), tag);

    let duplicate = app
        .admin_post("/admin/v1/trust/policies", &policy_body("deploy", &user))
        .await;
    fail_with(duplicate, 409, "conflict").await;

    // Refusals, each saying why.
    let name_only = {
        let mut body = policy_body("names", &user);
        body["conditions"] = json!([{"claim": "repository", "match": "exact", "value": "o/r"}]);
        body
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (name_only.clone(), "invalid_request", "re-registered"),
        (
            {
                let mut b = policy_body("x", "su_nobody");
                b["name"] = json!("x");
                b
            },
            "invalid_request",
            "su_nobody",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["issuer"] = json!("https://nope.example");
                b
            },
            "invalid_request",
            "no trusted issuer",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["conditions"][0] = json!({"claim": "ref", "match": "regex", "value": "("});
                b
            },
            "invalid_request",
            "condition 1",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["lifetime"] = json!(3601);
                b
            },
            "invalid_request",
            "3600",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["lifetime"] = json!(59);
                b
            },
            "invalid_request",
            "60",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["scope"] = json!("deploy admin");
                b
            },
            "invalid_scope",
            "admin",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["name"] = json!("trust:x");
                b
            },
            "invalid_request",
            "name",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["audience"] = json!("a b");
                b
            },
            "invalid_request",
            "audience",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["conditions"] = json!([]);
                b
            },
            "invalid_request",
            "conditions",
        ),
        (
            {
                let mut b = policy_body("x", &user);
                b["extra"] = json!(true);
                b
            },
            "invalid_request",
            "unknown field",
        ),
    ];
    for (body, error, says) in cases {
        let response = app.admin_post("/admin/v1/trust/policies", &body).await;
        let refused = fail_with(response, 400, error).await;
        let description = refused["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{body}: {description}");
    }
    // Forced, a name-only policy is saved and says so.
    let mut forced = name_only;
    forced["name_only"] = json!(true);
    let forced = app.admin_post("/admin/v1/trust/policies", &forced).await;
    assert_eq!(forced.status(), StatusCode::CREATED);
    let forced: Value = forced.json().await.unwrap();
    assert_eq!(forced["name_only"], true);

    // PATCH: If-Match, partial, conditions replaced whole, re-validated.
    let path = "/admin/v1/trust/policies/deploy";
    let patch = json!({"lifetime": 600, "allow_multiple_audiences": true});
    let stale = send(
        &app,
        reqwest::Method::PATCH,
        path,
        Some("\"stale\""),
        Some(&patch),
    )
    .await;
    fail_with(stale, 412, "precondition_failed").await;
    let patched = send(&app, reqwest::Method::PATCH, path, Some(&tag), Some(&patch)).await;
    assert_eq!(patched.status(), StatusCode::OK);
    let new_tag = etag(&patched);
    assert_ne!(new_tag, tag);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["lifetime"], 600);
    assert_eq!(patched["allow_multiple_audiences"], true);
    assert_eq!(patched["conditions"].as_array().unwrap().len(), 2);
    let unpinned =
        json!({"conditions": [{"claim": "repository", "match": "exact", "value": "o/r"}]});
    let refused = send(&app, reqwest::Method::PATCH, path, None, Some(&unpinned)).await;
    fail_with(refused, 400, "invalid_request").await;
    let replaced = json!({"conditions": [{"claim": "project_id", "match": "exact", "value": "7"}]});
    let replaced = send(&app, reqwest::Method::PATCH, path, None, Some(&replaced)).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(
        replaced["conditions"],
        json!([{"claim": "project_id", "match": "exact", "value": "7", "ignore_case": false}])
    );
    let renamed = send(
        &app,
        reqwest::Method::PATCH,
        path,
        None,
        Some(&json!({"name": "other"})),
    )
    .await;
    fail_with(renamed, 400, "invalid_request").await;
    let missing = send(
        &app,
        reqwest::Method::PATCH,
        "/admin/v1/trust/policies/nope",
        None,
        Some(&json!({"lifetime": 600})),
    )
    .await;
    fail_with(missing, 404, "not_found").await;

    // What a policy names cannot go first.
    let in_use = send(
        &app,
        reqwest::Method::DELETE,
        &issuer_path(LOCAL),
        None,
        None,
    )
    .await;
    let body = fail_with(in_use, 409, "conflict").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("deploy"),
        "{body}"
    );
    let in_use = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/v1/service-users/{user}"),
        None,
        None,
    )
    .await;
    let body = fail_with(in_use, 409, "conflict").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("deploy"),
        "{body}"
    );

    // Delete honours If-Match.
    let stale = send(&app, reqwest::Method::DELETE, path, Some(&tag), None).await;
    fail_with(stale, 412, "precondition_failed").await;
    let current = etag(&app.admin_get(path).await);
    let deleted = send(&app, reqwest::Method::DELETE, path, Some(&current), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    fail_with(app.admin_get(path).await, 404, "not_found").await;
    let deleted = send(
        &app,
        reqwest::Method::DELETE,
        "/admin/v1/trust/policies/names",
        None,
        None,
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let removed = send(
        &app,
        reqwest::Method::DELETE,
        &issuer_path(LOCAL),
        None,
        None,
    )
    .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let gone = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/v1/service-users/{user}"),
        None,
        None,
    )
    .await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);

    let audit: Value = app
        .admin_get("/admin/v1/audit?action=trust.policy_updated")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
}
