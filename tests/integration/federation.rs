//! CI federation (issue 9): a CI job's OIDC token, signed by a local test
//! issuer shaped like GitHub Actions or GitLab CI, exchanged under trust
//! policies (RFC 8693 token exchange, or the RFC 7523 JWT-bearer grant),
//! and every refusal the issue names.

use serde_json::{Value, json};

use crate::clients::verify_access_token;
use crate::common::test_issuer::{
    Claims, GITHUB_OWNER_ID, GITHUB_REPOSITORY, GITHUB_REPOSITORY_ID, GITLAB_PROJECT,
    GITLAB_PROJECT_ID, Signing, TestIssuer, github_pull_request_target, now,
};
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    a_github_job_gets_a_token_for_its_service_user,
    a_gitlab_job_gets_a_token_by_jwt_bearer,
    refused_tokens_are_refused_with_a_generic_error_and_audited,
    times_audiences_and_lifetimes_are_checked,
    a_jti_is_single_use,
    forged_algorithms_are_refused,
    an_unknown_issuer_is_never_fetched_from,
    issuer_key_rotation_is_fetched_once_and_kid_floods_are_bounded,
    each_condition_fails_on_its_own,
    globs_stay_within_a_segment,
    pull_request_target_is_refused_unless_allowed,
    a_resurrected_repository_is_not_trusted,
    a_disabled_service_user_gets_nothing,
    the_dry_run_explains_and_consumes_nothing,
    the_dry_run_agrees_with_the_exchange,
    a_mistaken_parameter_does_not_burn_the_token,
    pull_request_target_is_refused_by_default_through_the_api,
    issuer_outages_keep_the_last_good_keys,
    refusals_of_signed_tokens_name_the_job,
    two_cli_commands_then_a_job_gets_its_token,
);

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A Tessera (with `federation.debug` on, so refusals say why), a test
/// issuer it trusts, and a service user `deployer` allowed `deploy read`.
struct Setup {
    app: TestApp,
    issuer: TestIssuer,
    user: String,
}

async fn setup(backend: Backend) -> Setup {
    setup_with(backend, "[federation]\ndebug = true").await
}

async fn setup_with(backend: Backend, config: &str) -> Setup {
    let app = TestApp::builder(backend).config(config).start().await;
    let issuer = TestIssuer::start().await;
    let user = created(
        app.admin_post(
            "/admin/v1/service-users",
            &json!({"name": "deployer", "scope": "deploy read"}),
        )
        .await,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    created(
        app.admin_post(
            "/admin/v1/trust/issuers",
            &json!({"issuer": issuer.url, "max_token_age": 7200}),
        )
        .await,
    )
    .await;
    Setup { app, issuer, user }
}

async fn created(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

fn exact(claim: &str, value: &str) -> Value {
    json!({"claim": claim, "match": "exact", "value": value})
}

/// The conditions `--github-repo … --ref refs/heads/main` expands into.
fn github_conditions() -> Vec<Value> {
    vec![
        exact("repository", GITHUB_REPOSITORY),
        exact("repository_id", GITHUB_REPOSITORY_ID),
        exact("repository_owner_id", GITHUB_OWNER_ID),
        exact("ref", "refs/heads/main"),
    ]
}

impl Setup {
    async fn policy(&self, name: &str, conditions: Vec<Value>, extra: Value) {
        let mut body = json!({
            "name": name,
            "issuer": self.issuer.url,
            "service_user": self.user,
            "scope": "deploy",
            "conditions": conditions,
            "refused_events": ["pull_request_target"],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        created(self.app.admin_post("/admin/v1/trust/policies", &body).await).await;
    }

    async fn github_policy(&self) {
        self.policy("gh-deploy", github_conditions(), json!({}))
            .await;
    }

    fn github_claims(&self) -> Claims {
        self.issuer.github_claims(&self.app.url)
    }

    async fn exchange(&self, token: &str) -> reqwest::Response {
        self.app
            .http
            .post(self.app.endpoint("/oauth/token"))
            .form(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", token),
                ("subject_token_type", ID_TOKEN),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Exchanges `claims` signed by the issuer's current RSA key.
    async fn exchange_claims(&self, claims: &Claims) -> reqwest::Response {
        self.exchange(&self.issuer.sign(claims)).await
    }

    /// RFC 7662 introspection, as the administrator.
    async fn introspect(&self, token: &str) -> Value {
        self.app
            .http
            .post(self.app.endpoint("/oauth/introspect"))
            .bearer_auth(self.app.admin_token())
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A refusal whose description (debug on) mentions `why`.
    async fn refused(&self, response: reqwest::Response, why: &str) {
        let body = fail_with(response, 400, "invalid_request").await;
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(why), "expected {why:?} in {body}");
    }
}

async fn a_github_job_gets_a_token_for_its_service_user(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let claims = s.github_claims();
    let response = s.exchange_claims(&claims).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // RFC 8693 §2.2.1.
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900, "the policy's default lifetime");
    assert_eq!(body["scope"], "deploy");
    let token =
        verify_access_token(&s.app, body["access_token"].as_str().unwrap(), &s.app.url).await;
    assert_eq!(token["sub"], s.user);
    assert_eq!(token["client_id"], "trust:gh-deploy");
    assert_eq!(
        token["act"],
        json!({"iss": s.issuer.url, "sub": claims["sub"]})
    );
    let workload = &token["workload"];
    assert_eq!(workload["issuer"], s.issuer.url);
    assert_eq!(workload["repository"], GITHUB_REPOSITORY);
    assert_eq!(workload["ref"], "refs/heads/main");
    assert_eq!(workload["run_id"], claims["run_id"]);
    assert_eq!(workload["event"], "push");
    assert_eq!(workload["policy"], "gh-deploy");

    // The audit log says which job it was.
    let audit: Value = s
        .app
        .admin_get("/admin/v1/audit?action=token.issued")
        .await
        .json()
        .await
        .unwrap();
    let event = &audit["events"][0];
    assert_eq!(event["actor_id"], s.user);
    assert_eq!(
        event["details"]["workload"]["repository"],
        GITHUB_REPOSITORY
    );
}

async fn a_gitlab_job_gets_a_token_by_jwt_bearer(backend: Backend) {
    let s = setup(backend).await;
    s.policy(
        "gl-deploy",
        vec![
            exact("project_path", GITLAB_PROJECT),
            exact("project_id", GITLAB_PROJECT_ID),
            exact("ref_protected", "true"),
        ],
        json!({"lifetime": 300}),
    )
    .await;
    let claims = s.issuer.gitlab_claims(&s.app.url);
    // ES256 this time, and through the JWT-bearer grant.
    let token = s.issuer.sign_with(&claims, Signing::Es256);
    let response = s
        .app
        .http
        .post(s.app.endpoint("/oauth/token"))
        .form(&[("grant_type", JWT_BEARER), ("assertion", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 300);
    assert!(
        body.get("issued_token_type").is_none(),
        "RFC 7523 answers as RFC 6749"
    );
    let token =
        verify_access_token(&s.app, body["access_token"].as_str().unwrap(), &s.app.url).await;
    assert_eq!(token["workload"]["project"], GITLAB_PROJECT);
    assert_eq!(token["workload"]["run_id"], claims["pipeline_id"]);

    // Refusals through this grant are invalid_grant (RFC 7523 §3.1).
    let response = s
        .app
        .http
        .post(s.app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", &token_replayed(&s, &claims)),
        ])
        .send()
        .await
        .unwrap();
    fail_with(response, 400, "invalid_grant").await;
}

fn token_replayed(s: &Setup, claims: &Claims) -> String {
    s.issuer.sign_with(claims, Signing::Es256)
}

async fn refused_tokens_are_refused_with_a_generic_error_and_audited(backend: Backend) {
    let s = setup_with(backend, "").await;
    s.github_policy().await;
    let mut claims = s.github_claims();
    claims.insert("repository_id".into(), json!("1"));
    let body = fail_with(s.exchange_claims(&claims).await, 400, "invalid_request").await;
    assert_eq!(
        body["error_description"], "the subject token was not accepted",
        "no reason without federation.debug"
    );
    let audit: Value = s
        .app
        .admin_get("/admin/v1/audit?action=trust.exchange_refused")
        .await
        .json()
        .await
        .unwrap();
    let details = &audit["events"][0]["details"];
    assert_eq!(details["closest_policy"], "gh-deploy", "{details}");
    assert!(
        details["reason"]
            .as_str()
            .unwrap()
            .contains("repository_id"),
        "{details}"
    );
    assert_eq!(details["repository"], GITHUB_REPOSITORY);
    assert_eq!(details["run_id"], claims["run_id"]);
}

/// A change made to a token's claims, and the refusal it should cause.
type ClaimChange = Box<dyn Fn(&mut Claims)>;

async fn times_audiences_and_lifetimes_are_checked(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let t = now();
    let cases: Vec<(&str, ClaimChange)> = vec![
        (
            "aud contains",
            Box::new(|c| {
                c.insert("aud".into(), json!("https://elsewhere.example"));
            }),
        ),
        (
            "one value",
            Box::new(|c| {
                let aud = c["aud"].clone();
                c.insert("aud".into(), json!([aud, "https://other.example"]));
            }),
        ),
        (
            "expired",
            Box::new(move |c| {
                c.insert("iat".into(), json!(t - 900));
                c.insert("exp".into(), json!(t - 61));
            }),
        ),
        (
            "valid only in",
            Box::new(move |c| {
                c.insert("nbf".into(), json!(t + 120));
            }),
        ),
        (
            "issued in the future",
            Box::new(move |c| {
                c.insert("iat".into(), json!(t + 120));
                c.insert("exp".into(), json!(t + 400));
            }),
        ),
        (
            "cap",
            Box::new(move |c| {
                c.insert("iat".into(), json!(t));
                c.insert("exp".into(), json!(t + 7201));
            }),
        ),
        (
            "jti",
            Box::new(|c| {
                c.remove("jti");
            }),
        ),
    ];
    for (why, change) in cases {
        let mut claims = s.github_claims();
        change(&mut claims);
        s.refused(s.exchange_claims(&claims).await, why).await;
    }
    // Several audiences are accepted when the policy allows them.
    s.policy(
        "gh-multi",
        github_conditions(),
        json!({"audience": "https://multi.example", "allow_multiple_audiences": true}),
    )
    .await;
    let mut claims = s.github_claims();
    claims.insert(
        "aud".into(),
        json!(["https://multi.example", "https://other.example"]),
    );
    assert_eq!(s.exchange_claims(&claims).await.status(), 200);
}

async fn a_jti_is_single_use(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let token = s.issuer.sign(&s.github_claims());
    assert_eq!(s.exchange(&token).await.status(), 200);
    s.refused(s.exchange(&token).await, "already used").await;
    // The same jti in a token signed anew is the same token.
    let mut claims = s.github_claims();
    let first: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    claims.insert("jti".into(), first["jti"].clone());
    s.refused(s.exchange_claims(&claims).await, "already used")
        .await;
}

async fn forged_algorithms_are_refused(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let claims = s.github_claims();
    s.refused(
        s.exchange(&s.issuer.sign_with(&claims, Signing::AlgNone))
            .await,
        "not a signed JWT",
    )
    .await;
    s.refused(
        s.exchange(&s.issuer.sign_with(&claims, Signing::Hs256WithPublicKey))
            .await,
        "HS256",
    )
    .await;
    // An algorithm the issuer is not pinned to, even with a real key.
    let pinned = json!({"issuer": "http://127.0.0.1:9/unused"});
    let _ = pinned;
    let body = json!({"alg": "RS256", "kid": s.issuer.ec_kid(), "typ": "JWT"});
    s.refused(
        s.exchange(&s.issuer.sign_with(&claims, Signing::Raw { header: body }))
            .await,
        "key",
    )
    .await;
}

async fn an_unknown_issuer_is_never_fetched_from(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let stranger = TestIssuer::start().await;
    let claims = stranger.github_claims(&s.app.url);
    s.refused(
        s.exchange(&stranger.sign(&claims)).await,
        "not a trusted issuer",
    )
    .await;
    // A token signed by the stranger that names the trusted issuer fails
    // its signature; the stranger is never asked for anything.
    let mut claims = stranger.github_claims(&s.app.url);
    claims.insert("iss".into(), json!(s.issuer.url));
    s.refused(s.exchange(&stranger.sign(&claims)).await, "signature")
        .await;
    assert_eq!(
        stranger.requests(),
        0,
        "the untrusted issuer saw no request"
    );
}

async fn issuer_key_rotation_is_fetched_once_and_kid_floods_are_bounded(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    assert_eq!(s.exchange_claims(&s.github_claims()).await.status(), 200);
    let fetched = s.issuer.jwks_requests();
    assert_eq!(fetched, 1);
    // The issuer rotates: the new kid is fetched once, then served cached.
    s.issuer.rotate_rsa();
    assert_eq!(s.exchange_claims(&s.github_claims()).await.status(), 200);
    assert_eq!(s.exchange_claims(&s.github_claims()).await.status(), 200);
    assert_eq!(s.issuer.jwks_requests(), 2, "one refetch for the new kid");
    // A flood of unknown kids refetches nothing within the cooldown.
    for i in 0..30 {
        let token = s.issuer.sign_with(
            &s.github_claims(),
            Signing::UnknownKid(format!("bogus-{i}")),
        );
        s.refused(s.exchange(&token).await, "no key").await;
    }
    assert_eq!(s.issuer.jwks_requests(), 2, "no refetch storm");
}

async fn each_condition_fails_on_its_own(backend: Backend) {
    let s = setup(backend).await;
    s.policy(
        "gh-strict",
        vec![
            exact("repository", GITHUB_REPOSITORY),
            exact("repository_id", GITHUB_REPOSITORY_ID),
            exact("repository_owner_id", GITHUB_OWNER_ID),
            exact("ref", "refs/heads/main"),
            exact("workflow_ref", &format!("{GITHUB_REPOSITORY}/.github/workflows/deploy.yml@refs/heads/main")),
            json!({"claim": "runner_environment", "match": "regex", "value": "github-hosted|self-hosted"}),
            json!({"claim": "repository_owner", "match": "exact", "value": "OCTO-ORG", "ignore_case": true}),
        ],
        json!({}),
    )
    .await;
    assert_eq!(s.exchange_claims(&s.github_claims()).await.status(), 200);
    for claim in [
        "repository",
        "repository_id",
        "repository_owner_id",
        "ref",
        "workflow_ref",
        "runner_environment",
        "repository_owner",
    ] {
        let mut claims = s.github_claims();
        claims.insert(claim.into(), json!("something-else"));
        s.refused(s.exchange_claims(&claims).await, claim).await;
        // A missing claim fails too.
        let mut claims = s.github_claims();
        claims.remove(claim);
        s.refused(s.exchange_claims(&claims).await, "missing").await;
    }
}

async fn globs_stay_within_a_segment(backend: Backend) {
    let s = setup(backend).await;
    s.policy(
        "org-glob",
        vec![
            exact("repository_owner_id", GITHUB_OWNER_ID),
            json!({"claim": "repository", "match": "glob", "value": "org-*"}),
            json!({"claim": "ref", "match": "glob", "value": "refs/heads/*"}),
        ],
        json!({}),
    )
    .await;
    let with = |repository: &str, git_ref: &str| {
        let mut claims = s.github_claims();
        claims.insert("repository".into(), json!(repository));
        claims.insert("ref".into(), json!(git_ref));
        claims
    };
    assert_eq!(
        s.exchange_claims(&with("org-app", "refs/heads/main"))
            .await
            .status(),
        200
    );
    s.refused(
        s.exchange_claims(&with("org-evil/x", "refs/heads/main"))
            .await,
        "repository",
    )
    .await;
    s.refused(
        s.exchange_claims(&with("org-app", "refs/heads/a/b")).await,
        "ref",
    )
    .await;
}

async fn pull_request_target_is_refused_unless_allowed(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let mut claims = s.github_claims();
    github_pull_request_target(&mut claims, "fork-branch");
    s.refused(s.exchange_claims(&claims).await, "pull_request_target")
        .await;
    let issued: Value = s
        .exchange_claims(&s.github_claims())
        .await
        .json()
        .await
        .unwrap();
    let issued = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.introspect(&issued).await["active"], true);
    // A policy that allows it (no refused events) accepts it; the tokens
    // the deleted policy issued end with it.
    let response = s
        .app
        .http
        .delete(s.app.endpoint("/admin/v1/trust/policies/gh-deploy"))
        .bearer_auth(s.app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(s.introspect(&issued).await["active"], false);
    s.policy("gh-prt", github_conditions(), json!({"refused_events": []}))
        .await;
    let mut claims = s.github_claims();
    github_pull_request_target(&mut claims, "fork-branch");
    assert_eq!(s.exchange_claims(&claims).await.status(), 200);
}

async fn a_resurrected_repository_is_not_trusted(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    // Same owner and repository names, re-registered: new ids.
    let mut claims = s.github_claims();
    claims.insert("repository_id".into(), json!("555000111"));
    claims.insert("repository_owner_id".into(), json!("555000222"));
    s.refused(s.exchange_claims(&claims).await, "repository_id")
        .await;
}

async fn a_disabled_service_user_gets_nothing(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let body: Value = s
        .exchange_claims(&s.github_claims())
        .await
        .json()
        .await
        .unwrap();
    let issued = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.introspect(&issued).await["active"], true);
    let response = s
        .app
        .http
        .patch(
            s.app
                .endpoint(&format!("/admin/v1/service-users/{}", s.user)),
        )
        .bearer_auth(s.app.admin_token())
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    s.refused(s.exchange_claims(&s.github_claims()).await, "disabled")
        .await;
    // Tokens it already holds stop working too.
    assert_eq!(s.introspect(&issued).await["active"], false);
}

async fn the_dry_run_explains_and_consumes_nothing(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let token = s.issuer.sign(&s.github_claims());
    let report: Value = s
        .app
        .admin_post("/admin/v1/trust/test", &json!({"token": token}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["accepted"], true, "{report}");
    assert_eq!(report["policy"], "gh-deploy");
    let checks = report["assessment"]["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["passed"] == true), "{report}");
    // The jti was not consumed.
    assert_eq!(s.exchange(&token).await.status(), 200);

    let mut claims = s.github_claims();
    claims.insert("ref".into(), json!("refs/heads/dev"));
    let report: Value = s
        .app
        .admin_post(
            "/admin/v1/trust/test",
            &json!({"token": s.issuer.sign(&claims), "policy": "gh-deploy"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["accepted"], false);
    let policy = &report["assessment"]["policies"][0];
    let failed: Vec<&Value> = policy["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{policy}");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("refs/heads/dev")
    );
}

/// Two replicas on one PostgreSQL: a policy created through one is used by
/// the other at once (its cached trust is dropped on notification, not a
/// TTL later), and a job token exchanged on one is a replay on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_policies_and_single_use() {
    let Some(backend) = Backend::postgres() else {
        eprintln!("skipped: {} is not set", crate::common::PG_ENV);
        return;
    };
    let config = "[federation]\ndebug = true\n[clients]\ncache_ttl = \"1h\"";
    let s = setup_with(backend.clone(), config).await;
    let b = TestApp::builder(backend)
        .config(config)
        .replica_of(&s.app)
        .start()
        .await;
    let on_b = |token: String| {
        let b = &b;
        async move {
            b.http
                .post(b.endpoint("/oauth/token"))
                .form(&[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token", &token),
                    ("subject_token_type", ID_TOKEN),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // B caches the issuer's trust with no policy yet.
    s.refused(on_b(s.issuer.sign(&s.github_claims())).await, "no policy")
        .await;
    s.github_policy().await;
    let promptly = crate::common::eventually(10, || async {
        on_b(s.issuer.sign(&s.github_claims())).await.status() == 200
    })
    .await;
    assert!(promptly, "replica B uses the policy created through A");

    let token = s.issuer.sign(&s.github_claims());
    assert_eq!(s.exchange(&token).await.status(), 200);
    s.refused(on_b(token).await, "already used").await;
}

async fn the_dry_run_agrees_with_the_exchange(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let test = |body: Value| {
        let app = &s.app;
        async move { app.admin_post("/admin/v1/trust/test", &body).await }
    };
    // A policy that does not exist is named as such.
    let token = s.issuer.sign(&s.github_claims());
    fail_with(
        test(json!({"token": token, "policy": "nope"})).await,
        404,
        "not_found",
    )
    .await;
    // A used jti is reported, as the exchange would refuse it.
    assert_eq!(s.exchange(&token).await.status(), 200);
    let report: Value = test(json!({"token": token})).await.json().await.unwrap();
    assert_eq!(report["accepted"], false, "{report}");
    assert!(report["verdict"].as_str().unwrap().contains("already used"));
    // Showing one policy does not hide that another matches too.
    s.policy("gh-twin", github_conditions(), json!({})).await;
    let token = s.issuer.sign(&s.github_claims());
    let report: Value = test(json!({"token": token, "policy": "gh-deploy"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["accepted"], false, "{report}");
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .contains("several policies")
    );
    assert_eq!(
        report["assessment"]["policies"].as_array().unwrap().len(),
        1
    );
}

async fn a_mistaken_parameter_does_not_burn_the_token(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let token = s.issuer.sign(&s.github_claims());
    for (name, value, error) in [
        ("requested_token_type", "urn:bogus", "invalid_request"),
        ("scope", "admin", "invalid_scope"),
        ("audience", "https://nope.example", "invalid_target"),
    ] {
        let response = s
            .app
            .http
            .post(s.app.endpoint("/oauth/token"))
            .form(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", &token),
                ("subject_token_type", ID_TOKEN),
                (name, value),
            ])
            .send()
            .await
            .unwrap();
        fail_with(response, 400, error).await;
    }
    assert_eq!(
        s.exchange(&token).await.status(),
        200,
        "the token still works"
    );
    let audit: Value = s
        .app
        .admin_get("/admin/v1/audit?action=trust.exchange_refused")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit["events"].as_array().unwrap().len(),
        3,
        "each refusal audited"
    );
}

async fn pull_request_target_is_refused_by_default_through_the_api(backend: Backend) {
    let s = setup(backend).await;
    // No refused_events given: the guard is on anyway.
    let body = json!({
        "name": "gh-api", "issuer": s.issuer.url, "service_user": s.user,
        "scope": "deploy", "conditions": github_conditions(),
    });
    let policy = created(s.app.admin_post("/admin/v1/trust/policies", &body).await).await;
    assert_eq!(policy["refused_events"], json!(["pull_request_target"]));
    let mut claims = s.github_claims();
    github_pull_request_target(&mut claims, "fork-branch");
    s.refused(s.exchange_claims(&claims).await, "pull_request_target")
        .await;
}

async fn issuer_outages_keep_the_last_good_keys(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    assert_eq!(s.exchange_claims(&s.github_claims()).await.status(), 200);
    // The issuer rotates while it is down: the new kid cannot be had, the
    // old keys stay in use.
    s.issuer.set_down(true);
    let old_kid_token = s.issuer.sign(&s.github_claims());
    s.issuer.rotate_rsa();
    s.refused(s.exchange_claims(&s.github_claims()).await, "no key")
        .await;
    assert_eq!(
        s.exchange(&old_kid_token).await.status(),
        200,
        "last good keys kept"
    );

    // An empty key set is never taken for the keys.
    let t = setup(Backend::Sqlite).await;
    t.issuer.set_jwks_override(Some(json!({"keys": []})));
    t.github_policy().await;
    t.refused(t.exchange_claims(&t.github_claims()).await, "empty")
        .await;
    t.issuer.set_jwks_override(None);
    // Past the failure backoff, the real keys are fetched.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(t.exchange_claims(&t.github_claims()).await.status(), 200);

    // A discovery document naming another issuer is refused.
    let u = setup(Backend::Sqlite).await;
    let mut discovery = u.issuer.discovery();
    discovery["issuer"] = json!("https://elsewhere.example");
    u.issuer.set_discovery_override(Some(discovery));
    u.github_policy().await;
    u.refused(
        u.exchange_claims(&u.github_claims()).await,
        "another issuer",
    )
    .await;
}

async fn refusals_of_signed_tokens_name_the_job(backend: Backend) {
    let s = setup(backend).await;
    s.github_policy().await;
    let mut claims = s.github_claims();
    let t = now();
    claims.insert("iat".into(), json!(t - 900));
    claims.insert("exp".into(), json!(t - 300));
    s.refused(s.exchange_claims(&claims).await, "expired").await;
    let audit: Value = s
        .app
        .admin_get("/admin/v1/audit?action=trust.exchange_refused")
        .await
        .json()
        .await
        .unwrap();
    let details = &audit["events"][0]["details"];
    assert_eq!(details["repository"], GITHUB_REPOSITORY, "{details}");
    assert_eq!(details["run_id"], claims["run_id"]);
    // A flood of refusals of one job's token is sampled, and the count of
    // those skipped is recorded.
    for _ in 0..15 {
        s.refused(s.exchange_claims(&claims).await, "expired").await;
    }
    let audit: Value = s
        .app
        .admin_get("/admin/v1/audit?action=trust.exchange_refused&limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert!(audit["events"].as_array().unwrap().len() <= 10, "{audit}");
}

/// Issue 9, "done when": an admin configures a trust in two commands and
/// a job with a matching token gets a 15-minute token.
async fn two_cli_commands_then_a_job_gets_its_token(backend: Backend) {
    let s = setup_with(backend, "").await;
    let other = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = s.app.admin_token_file();
    let cli = |args: &[&str]| {
        let output = tokio::task::block_in_place(|| {
            crate::cli::run(
                crate::cli::tessera(dir.path())
                    .args([
                        "--url",
                        &s.app.url,
                        "--token-file",
                        token_file.to_str().unwrap(),
                    ])
                    .args(args),
            )
        });
        assert!(output.status.success(), "{}", crate::cli::stderr(&output));
    };
    cli(&["trust", "issuer", "add", &other.url]);
    cli(&[
        "trust",
        "create",
        "deploy",
        "--issuer",
        &other.url,
        "--service-user",
        &s.user,
        "--scope",
        "deploy",
        "--github-repo",
        GITHUB_REPOSITORY,
        "--github-repo-id",
        GITHUB_REPOSITORY_ID,
        "--github-owner-id",
        GITHUB_OWNER_ID,
        "--ref",
        "refs/heads/main",
    ]);
    let token = other.sign(&other.github_claims(&s.app.url));
    let response = s.exchange(&token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 900);
}
