//! Browser sign-in: the authorization endpoint, consent, the
//! authorization code and refresh token grants, ID tokens, userinfo and
//! RP-initiated logout. A person signs in through the real `/login` form
//! (a cookie-keeping client); the `openidconnect` crate is the relying
//! party where a full flow is tested.

use std::time::Duration;

use openidconnect::core::{
    CoreIdTokenVerifier, CoreJwsSigningAlgorithm, CoreResponseType, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RefreshToken, Scope, TokenResponse,
};
use serde_json::{Value, json};
use tessera::oauth::pkce::s256;

use crate::clients::register;
use crate::common::pages::{Visitor, field, location};
use crate::common::relying_party::discover;
use crate::common::{Backend, TableLock, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    openidconnect_relying_party_signs_alice_in_and_refreshes,
    pkce_is_required_s256_only_and_checked,
    a_reused_code_revokes_what_it_issued,
    expired_codes_and_other_clients_codes_are_refused,
    redirect_uris_must_match_and_never_open_redirect,
    consent_needs_csrf_is_remembered_and_can_be_denied,
    prompt_none_without_a_session_is_login_required,
    prompt_login_and_max_age_force_a_login_that_no_url_skips,
    public_client_exchanges_without_a_secret,
    es256_id_tokens_for_a_client_that_asks,
    refresh_reuse_revokes_the_family,
    logout_ends_the_session_and_its_refresh_tokens_only,
    the_logout_page_revokes_the_sessions_refresh_tokens_too,
    a_new_password_or_disabling_ends_every_grant,
    rotations_racing_a_new_password_leave_nothing_alive,
    api_scopes_only_for_administrators,
    cli_registers_browser_clients,
    a_reuse_after_the_claim_revokes_what_it_named,
    claims_in_one_round_take_each_code_once,
    audit_events_are_stored_while_claims_stream,
    a_claim_round_carries_the_queued_audit_events,
    dead_refresh_families_are_purged,
    concurrent_first_consents_and_revocations_do_not_fail,
    codes_and_refresh_tokens_are_single_use_across_replicas,
    refresh_tokens_introspect_for_their_client_only,
    old_codes_are_purged,
);

/// A browser: a cookie jar, no automatic redirects.
/// Signs `username` in through the real `/login` form.
async fn log_in(visitor: &Visitor, username: &str) {
    let response = visitor.login(username, PASSWORD).await;
    assert_eq!(response.status(), 303, "{username} signed in");
}

pub const PASSWORD: &str = "correct horse battery staple";
const REDIRECT: &str = "http://127.0.0.1/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// Creates a user through the admin API; returns the user's id.
pub async fn create_user(app: &TestApp, username: &str, admin: bool) -> String {
    let response = app
        .admin_post(
            "/admin/v1/users",
            &json!({
                "username": username,
                "password": PASSWORD,
                "email": format!("{username}@example.com"),
                "email_verified": true,
                "display_name": format!("{username} Example"),
                "admin": admin,
            }),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// A browser client for `REDIRECT` (any loopback port).
async fn browser_client(app: &TestApp, extra: Value) -> (String, Option<String>) {
    let mut spec = json!({
        "name": "Photo Album",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": ["http://127.0.0.1/signed-out"],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    register(app, spec).await
}

fn authorize_path(client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "st4te")
        .append_pair("nonce", "n0nce")
        .append_pair("code_challenge", &s256(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    let mut path = format!("/oauth/authorize?{}", query.finish());
    for (k, v) in extra {
        // A later value replaces an earlier one of the same name.
        path = replace_param(&path, k, v);
    }
    path
}

fn replace_param(path: &str, name: &str, value: &str) -> String {
    let (base, query) = path.split_once('?').unwrap();
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != name)
        .collect();
    if !value.is_empty() {
        pairs.push((name.to_owned(), value.to_owned()));
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}?{query}")
}

/// The query parameters of a redirect to the client.
fn client_params(location: &str) -> Value {
    let url = url::Url::parse(location).unwrap_or_else(|_| panic!("absolute: {location}"));
    let map: serde_json::Map<String, Value> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), json!(v)))
        .collect();
    Value::Object(map)
}

/// Follows the authorization request through login and consent to the
/// redirect back to the client; returns that redirect's location.
async fn sign_in(visitor: &Visitor, path: &str, username: &str) -> String {
    let mut response = visitor.get(path).await;
    if response.status() == 303 && location(&response).starts_with("/login") {
        let login = location(&response);
        let return_to = url::Url::parse(&format!("http://x{login}"))
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
            .expect("return_to");
        assert!(return_to.starts_with("/oauth/authorize?"), "{return_to}");
        log_in(visitor, username).await;
        response = visitor.get(&return_to).await;
    }
    if response.status() == 200 {
        let page = response.text().await.unwrap();
        assert!(page.contains("wants to"), "a consent page: {page}");
        response = submit_consent(visitor, &page, "allow").await;
    }
    assert_eq!(response.status(), 303);
    let to = location(&response);
    assert!(
        to.starts_with("http://127.0.0.1"),
        "back to the client: {to}"
    );
    to
}

/// Submits the consent form of `page` with `decision`.
pub(crate) async fn submit_consent(
    visitor: &Visitor,
    page: &str,
    decision: &str,
) -> reqwest::Response {
    let mut form: Vec<(String, String)> = hidden_fields(page);
    form.push(("decision".into(), decision.into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    visitor.post("/oauth/authorize/decision", &pairs).await
}

fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(r#"<input type="hidden" name="([^"]+)" value="([^"]*)""#).unwrap();
    re.captures_iter(page)
        .map(|c| {
            let name = c[1].to_owned();
            let value = field(page, &name).unwrap_or_else(|| c[2].to_owned());
            (name, value)
        })
        .collect()
}

/// A code for `client_id`, signed in as `username`.
async fn code_for(
    app: &TestApp,
    client_id: &str,
    scope: &str,
    username: &str,
) -> (Visitor, String) {
    let visitor = Visitor::new(app);
    let to = sign_in(
        &visitor,
        &authorize_path(client_id, &[("scope", scope)]),
        username,
    )
    .await;
    let params = client_params(&to);
    assert_eq!(params["state"], "st4te", "state comes back unchanged");
    assert_eq!(params["iss"], app.url, "RFC 9207");
    (visitor, params["code"].as_str().expect("a code").to_owned())
}

async fn exchange(
    app: &TestApp,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    verifier: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let request = app.http.post(app.endpoint("/oauth/token"));
    let request = match secret {
        Some(secret) => request.basic_auth(client_id, Some(secret)),
        None => {
            form.push(("client_id", client_id));
            request
        }
    };
    request.form(&form).send().await.unwrap()
}

async fn refresh(app: &TestApp, client_id: &str, secret: &str, token: &str) -> reqwest::Response {
    app.http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

pub async fn introspect_active(app: &TestApp, token: &str) -> bool {
    let body: Value = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .bearer_auth(app.admin_token())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["active"] == true
}

/// Whether the audit log holds an event `action` (the batch writer may
/// still hold the newest events for a moment).
async fn audited(app: &TestApp, action: &str) -> bool {
    crate::common::eventually(5, || async {
        let page: Value = app
            .admin_get(&format!("/admin/v1/audit?action={action}"))
            .await
            .json()
            .await
            .unwrap();
        page["events"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await
}

async fn openidconnect_relying_party_signs_alice_in_and_refreshes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({})).await;
    let secret = secret.expect("a confidential client");

    let (client, http) =
        discover(&app, &client_id, &secret, "http://127.0.0.1:4711/callback").await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf_state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let path = &url.as_str()[app.url.len()..];
    let visitor = Visitor::new(&app);
    let back = sign_in(&visitor, path, "alice").await;
    assert!(
        back.starts_with("http://127.0.0.1:4711/callback?"),
        "{back}"
    );
    let params = client_params(&back);
    assert_eq!(params["state"], csrf_state.secret().as_str());

    let tokens = client
        .exchange_code(AuthorizationCode::new(
            params["code"].as_str().unwrap().into(),
        ))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is exchanged");
    let id_token = tokens.id_token().expect("an ID token for openid");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("signature, issuer, audience, expiry and nonce verify");
    assert_eq!(claims.subject().as_str(), alice, "sub is the user id");
    assert_ne!(claims.subject().as_str(), "alice", "never the username");
    let expected = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected), "at_hash");
    assert!(claims.auth_time().is_some());
    let raw: Value = id_token_payload(&id_token.to_string());
    assert_eq!(raw["amr"], json!(["pwd"]));
    assert!(raw["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(id_token_header(&id_token.to_string())["alg"], "RS256");

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), alice);
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.com"));
    // POST works too (OIDC Core §5.3.1).
    let posted = app
        .http
        .post(app.endpoint("/oauth/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    // Without a token: RFC 6750 challenge.
    let bare = app.get("/oauth/userinfo").await;
    assert_eq!(bare.status(), 401);
    assert!(
        bare.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    // Refresh: rotated, and the new ID token keeps the subject.
    let first = tokens.refresh_token().expect("offline_access gives one");
    assert!(first.secret().starts_with("tsr_rt_"));
    let renewed = client
        .exchange_refresh_token(first)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let second = renewed.refresh_token().expect("rotated");
    assert_ne!(second.secret(), first.secret());
    assert!(introspect_active(&app, renewed.access_token().secret()).await);
    let again = client
        .exchange_refresh_token(&RefreshToken::new(second.secret().clone()))
        .unwrap()
        .request_async(&http)
        .await;
    assert!(again.is_ok(), "the rotated token works once");

    for action in ["code.issued", "consent.granted", "token.issued"] {
        assert!(audited(&app, action).await, "{action}");
    }
}

fn id_token_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

fn id_token_payload(token: &str) -> Value {
    id_token_part(token, 1)
}

fn id_token_header(token: &str) -> Value {
    id_token_part(token, 0)
}

async fn pkce_is_required_s256_only_and_checked(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let visitor = Visitor::new(&app);
    log_in(&visitor, "alice").await;
    for (name, extra) in [
        (
            "missing",
            vec![("code_challenge", ""), ("code_challenge_method", "")],
        ),
        (
            "plain",
            vec![
                ("code_challenge", VERIFIER),
                ("code_challenge_method", "plain"),
            ],
        ),
        ("no method", vec![("code_challenge_method", "")]),
    ] {
        let response = visitor.get(&authorize_path(&client_id, &extra)).await;
        assert_eq!(response.status(), 303, "{name}");
        let params = client_params(&location(&response));
        assert_eq!(params["error"], "invalid_request", "{name}: {params}");
        assert_eq!(params["state"], "st4te");
        assert_eq!(params["iss"], app.url);
    }
    let (_, code) = code_for(&app, &client_id, "openid", "alice").await;
    let wrong = "A".repeat(43);
    fail_with(
        exchange(&app, &client_id, Some(&secret), &code, Some(&wrong)).await,
        400,
        "invalid_grant",
    )
    .await;
    let (_, code) = code_for(&app, &client_id, "openid", "alice").await;
    fail_with(
        exchange(&app, &client_id, Some(&secret), &code, None).await,
        400,
        "invalid_request",
    )
    .await;
}

async fn a_reused_code_revokes_what_it_issued(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let (_, code) = code_for(&app, &client_id, "openid offline_access", "alice").await;
    let first = exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER)).await;
    assert_eq!(first.status(), 200);
    let tokens: Value = first.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert!(introspect_active(&app, access).await);

    fail_with(
        exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER)).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(
        !introspect_active(&app, access).await,
        "revoked by the reuse"
    );
    fail_with(
        refresh(&app, &client_id, &secret, refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(audited(&app, "code.reused").await);
}

async fn expired_codes_and_other_clients_codes_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let (other_id, other_secret) = browser_client(&app, json!({"name": "Other"})).await;

    let (_, code) = code_for(&app, &client_id, "openid", "alice").await;
    fail_with(
        exchange(
            &app,
            &other_id,
            other_secret.as_deref(),
            &code,
            Some(VERIFIER),
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;

    let (_, code) = code_for(&app, &client_id, "openid", "alice").await;
    app.state
        .store
        .run(|conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query("UPDATE authorization_codes SET expires_at = expires_at - 61")
                .execute(conn)
                .map_err(tessera::store::StoreError::from)
        })
        .await
        .unwrap();
    let expired = fail_with(
        exchange(&app, &client_id, secret.as_deref(), &code, Some(VERIFIER)).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(
        expired["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

async fn redirect_uris_must_match_and_never_open_redirect(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let visitor = Visitor::new(&app);
    log_in(&visitor, "alice").await;
    for path in [
        replace_param(
            &authorize_path(&client_id, &[]),
            "redirect_uri",
            "https://evil.example/cb",
        ),
        replace_param(
            &authorize_path(&client_id, &[]),
            "redirect_uri",
            "http://127.0.0.1/other",
        ),
        authorize_path("no-such-client", &[]),
        replace_param(&authorize_path(&client_id, &[]), "redirect_uri", ""),
    ] {
        let response = visitor.get(&path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.headers().get("location").is_none(), "{path}");
        let page = response.text().await.unwrap();
        assert!(page.contains("Sign-in request refused"), "{page}");
    }
    // Loopback: any port (RFC 8252 §7.3).
    let path = replace_param(
        &authorize_path(&client_id, &[]),
        "redirect_uri",
        "http://127.0.0.1:65000/callback",
    );
    let response = visitor.get(&path).await;
    assert!(location(&response).starts_with("http://127.0.0.1:65000/callback?code="));
    // The token request must name the same redirect URI.
    let (_, code) = code_for(&app, &client_id, "openid", "alice").await;
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(&client_id, secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    fail_with(response, 400, "invalid_grant").await;
}

async fn consent_needs_csrf_is_remembered_and_can_be_denied(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, _) = browser_client(&app, json!({})).await;
    let visitor = Visitor::new(&app);
    log_in(&visitor, "alice").await;
    let path = authorize_path(&client_id, &[("scope", "openid profile")]);
    let response = visitor.get(&path).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("Photo Album"), "the client's name");
    assert!(
        page.contains("See your name and username"),
        "scopes in words"
    );

    // Without the CSRF token, or with a wrong one: refused, nothing issued.
    for csrf in ["", "forged"] {
        let mut form: Vec<(String, String)> = hidden_fields(&page)
            .into_iter()
            .filter(|(k, _)| k != "csrf")
            .collect();
        form.push(("csrf".into(), csrf.into()));
        form.push(("decision".into(), "allow".into()));
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let response = visitor.post("/oauth/authorize/decision", &pairs).await;
        assert_eq!(response.status(), 403);
        assert!(response.headers().get("location").is_none());
    }
    // Deny: access_denied at the client.
    let denied = submit_consent(&visitor, &page, "deny").await;
    let params = client_params(&location(&denied));
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st4te");

    // Allow, then the same scopes again need no consent.
    let allowed = submit_consent(&visitor, &page, "allow").await;
    assert!(client_params(&location(&allowed))["code"].is_string());
    let again = visitor.get(&path).await;
    assert_eq!(again.status(), 303, "consent is remembered");
    assert!(client_params(&location(&again))["code"].is_string());
    // A wider scope set asks again; prompt=consent always asks.
    let wider = visitor
        .get(&authorize_path(
            &client_id,
            &[("scope", "openid profile email")],
        ))
        .await;
    assert_eq!(wider.status(), 200);
    let forced = visitor
        .get(&authorize_path(
            &client_id,
            &[("scope", "openid profile"), ("prompt", "consent")],
        ))
        .await;
    assert_eq!(forced.status(), 200);
    // prompt=none when consent is needed: consent_required.
    let none = visitor
        .get(&authorize_path(
            &client_id,
            &[("scope", "openid email"), ("prompt", "none")],
        ))
        .await;
    assert_eq!(client_params(&location(&none))["error"], "consent_required");
}

async fn prompt_none_without_a_session_is_login_required(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (client_id, _) = browser_client(&app, json!({})).await;
    let visitor = Visitor::new(&app);
    let response = visitor
        .get(&authorize_path(&client_id, &[("prompt", "none")]))
        .await;
    assert_eq!(response.status(), 303);
    let params = client_params(&location(&response));
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], "st4te");
    // Without prompt=none: to the login page, and back here afterwards.
    let response = visitor.get(&authorize_path(&client_id, &[])).await;
    let to = location(&response);
    assert!(
        to.starts_with("/login?return_to=%2Foauth%2Fauthorize%3F"),
        "{to}"
    );
}

/// The return URL of a redirect to the login page.
fn return_to_of(login: &str) -> String {
    url::Url::parse(&format!("http://x{login}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .expect("return_to")
}

/// OIDC Core §3.1.2.1: `prompt=login` and `max_age` make a signed-in user
/// sign in again. The way back from that login carries a mark sealed for
/// this browser and request; a hand-made mark, or one from another
/// browser, forces the login again.
async fn prompt_login_and_max_age_force_a_login_that_no_url_skips(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, _) = browser_client(&app, json!({"first_party": true})).await;
    let visitor = Visitor::new(&app);
    log_in(&visitor, "alice").await;
    assert!(
        client_params(&visitor_code(&visitor, &authorize_path(&client_id, &[])).await)["code"]
            .is_string(),
        "signed in: a code at once"
    );
    let forged = [
        vec![("prompt", "login"), ("tessera_auth_after", "0")],
        vec![("max_age", "0"), ("tessera_auth_after", "0")],
        vec![
            ("prompt", "login"),
            ("tessera_auth_after", "9999999999.AAAA"),
        ],
    ];
    for extra in &forged {
        let response = visitor.get(&authorize_path(&client_id, extra)).await;
        assert_eq!(response.status(), 303, "{extra:?}");
        assert!(location(&response).starts_with("/login?"), "{extra:?}");
    }
    // The real way back works once the user has signed in again.
    let response = visitor
        .get(&authorize_path(&client_id, &[("prompt", "login")]))
        .await;
    let back = return_to_of(&location(&response));
    assert!(back.contains("tessera_auth_after="), "{back}");
    log_in(&visitor, "alice").await;
    let to = visitor_code(&visitor, &back).await;
    assert!(client_params(&to)["code"].is_string(), "{to}");
    // Another browser, signed in too, cannot use this browser's mark to
    // skip a forced login (the way back itself drops `prompt=login`: the
    // mark stands for it).
    let other = Visitor::new(&app);
    log_in(&other, "alice").await;
    let borrowed = replace_param(&back, "prompt", "login");
    let response = other.get(&borrowed).await;
    let to = location(&response);
    assert!(to.starts_with("/login?"), "{to}");
}

/// The redirect `path` answers at once (no login or consent expected).
async fn visitor_code(visitor: &Visitor, path: &str) -> String {
    let response = visitor.get(path).await;
    assert_eq!(response.status(), 303);
    location(&response)
}

async fn public_client_exchanges_without_a_secret(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) =
        browser_client(&app, json!({"public": true, "first_party": true})).await;
    assert!(secret.is_none(), "a public client has no secret");
    // PKCE cannot be turned off for it.
    let refused = app
        .admin_post(
            "/admin/v1/clients",
            &json!({"name": "p", "public": true, "grant_types": ["authorization_code"],
                    "redirect_uris": [REDIRECT], "require_pkce": false}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let (_, code) = code_for(&app, &client_id, "openid offline_access", "alice").await;
    let response = exchange(&app, &client_id, None, &code, Some(VERIFIER)).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let tokens: Value = response.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token");

    // RFC 7662: introspection stays with confidential clients.
    let introspected = app
        .http
        .post(app.endpoint("/oauth/introspect"))
        .form(&[("token", access), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(introspected.status(), 401);
    // RFC 7009 §2.1: a public client revokes its own tokens with its
    // client_id alone.
    for token in [access, refresh_token] {
        let revoked = app
            .http
            .post(app.endpoint("/oauth/revoke"))
            .form(&[("token", token), ("client_id", client_id.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 200, "{}", revoked.text().await.unwrap());
    }
    assert!(!introspect_active(&app, access).await);
    let refreshed = app
        .http
        .post(app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 400, "the family is revoked");
}

async fn es256_id_tokens_for_a_client_that_asks(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(
        &app,
        json!({"first_party": true, "id_token_signed_response_alg": "ES256"}),
    )
    .await;
    let (_, code) = code_for(&app, &client_id, "openid", "alice").await;
    let response = exchange(&app, &client_id, secret.as_deref(), &code, Some(VERIFIER)).await;
    let tokens: Value = response.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(id_token_header(id_token)["alg"], "ES256");
    let http = openidconnect::reqwest::Client::new();
    let jwks = openidconnect::core::CoreJsonWebKeySet::fetch_async(
        &openidconnect::JsonWebKeySetUrl::new(app.endpoint("/oauth/jwks")).unwrap(),
        &http,
    )
    .await
    .unwrap();
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(client_id.clone()),
        ClientSecret::new(secret.unwrap()),
        IssuerUrl::new(app.url.clone()).unwrap(),
        jwks,
    )
    .set_allowed_algs([CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let parsed: openidconnect::core::CoreIdToken = id_token.parse().unwrap();
    let claims = parsed
        .claims(&verifier, &Nonce::new("n0nce".into()))
        .expect("verifies as ES256 with the nonce");
    assert_eq!(claims.subject().as_str(), alice);
}

async fn refresh_reuse_revokes_the_family(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let (_, code) = code_for(&app, &client_id, "openid offline_access", "alice").await;
    let tokens: Value = exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let renewed: Value = refresh(&app, &client_id, &secret, &first)
        .await
        .json()
        .await
        .unwrap();
    let second = renewed["refresh_token"].as_str().unwrap().to_owned();
    let access = renewed["access_token"].as_str().unwrap().to_owned();
    assert!(renewed["id_token"].is_string());
    // Narrowing works; widening does not.
    let wider = app
        .http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &second),
            ("scope", "openid profile"),
        ])
        .send()
        .await
        .unwrap();
    fail_with(wider, 400, "invalid_scope").await;

    // The first one again: a leak. The family goes.
    fail_with(
        refresh(&app, &client_id, &secret, &first).await,
        400,
        "invalid_grant",
    )
    .await;
    fail_with(
        refresh(&app, &client_id, &secret, &second).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(!introspect_active(&app, &access).await);
    assert!(audited(&app, "refresh.reused").await);

    // RFC 7009: a client revokes its refresh token.
    let (_, code) = code_for(&app, &client_id, "openid offline_access", "alice").await;
    let tokens: Value = exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    let token = tokens["refresh_token"].as_str().unwrap();
    let revoked = app
        .http
        .post(app.endpoint("/oauth/revoke"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    fail_with(
        refresh(&app, &client_id, &secret, token).await,
        400,
        "invalid_grant",
    )
    .await;
}

async fn logout_ends_the_session_and_its_refresh_tokens_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    // Two sessions: a browser and, say, another device.
    let (browser, code) = code_for(&app, &client_id, "openid offline_access", "alice").await;
    let (_other, other_code) = code_for(&app, &client_id, "openid offline_access", "alice").await;
    let tokens: Value = exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    let other: Value = exchange(&app, &client_id, Some(&secret), &other_code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();

    // An unregistered post_logout_redirect_uri: refused, no redirect.
    let bad = browser
        .get(&format!(
            "/oauth/end_session?id_token_hint={id_token}&post_logout_redirect_uri=https%3A%2F%2Fevil.example"
        ))
        .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.headers().get("location").is_none());
    // Without a hint: a confirmation page, whose form needs CSRF.
    let confirm = browser.get("/oauth/end_session").await;
    assert_eq!(confirm.status(), 200);
    let forged = browser
        .post("/oauth/end_session", &[("confirm", "yes"), ("csrf", "x")])
        .await;
    assert_eq!(forged.status(), 403);
    assert!(browser.signed_in().await, "nothing ended");

    // With the hint of this session: ends at once, back to the client.
    let done = browser
        .get(&format!(
            "/oauth/end_session?id_token_hint={id_token}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%2Fsigned-out&state=bye"
        ))
        .await;
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), "http://127.0.0.1/signed-out?state=bye");
    assert!(!browser.signed_in().await, "the session ended");
    fail_with(
        refresh(
            &app,
            &client_id,
            &secret,
            tokens["refresh_token"].as_str().unwrap(),
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    // The other session's refresh token lives on.
    let still = refresh(
        &app,
        &client_id,
        &secret,
        other["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(still.status(), 200);
    assert!(audited(&app, "logout").await);
}

/// Issue 10 item 6: signing out on Tessera's own page (not only through
/// RP-initiated logout) revokes the refresh tokens issued in that session.
async fn the_logout_page_revokes_the_sessions_refresh_tokens_too(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let (browser, tokens) = with_tokens(&app, &client_id, &secret, "alice").await;
    // A code issued just before the logout, not yet redeemed.
    let pending = pending_code(&browser, &client_id).await;
    let page = browser.get("/logout").await.text().await.unwrap();
    let csrf = field(&page, "csrf").expect("a CSRF field on /logout");
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 200);
    assert!(!browser.signed_in().await);
    assert_grants_ended(&app, &client_id, &secret, &tokens, &pending).await;
}

/// `username`, signed in through a browser, and the tokens of their first
/// code (`offline_access`: a refresh token too).
async fn with_tokens(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    username: &str,
) -> (Visitor, Value) {
    let (browser, code) = code_for(app, client_id, "openid offline_access", username).await;
    let tokens = exchange(app, client_id, Some(secret), &code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    (browser, tokens)
}

/// A second code for the signed-in `browser` (consent already given).
async fn pending_code(browser: &Visitor, client_id: &str) -> String {
    let to = visitor_code(
        browser,
        &authorize_path(client_id, &[("scope", "openid offline_access")]),
    )
    .await;
    client_params(&to)["code"]
        .as_str()
        .expect("a code")
        .to_owned()
}

/// The refresh token and access token of `tokens` are revoked, and the
/// `pending` code is refused.
async fn assert_grants_ended(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    tokens: &Value,
    pending: &str,
) {
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let refused = refresh(app, client_id, secret, refresh_token).await;
    fail_with(refused, 400, "invalid_grant").await;
    assert!(!introspect_active(app, tokens["access_token"].as_str().unwrap()).await);
    let refused = exchange(app, client_id, Some(secret), pending, Some(VERIFIER)).await;
    fail_with(refused, 400, "invalid_grant").await;
}

/// An administrator's new password, and disabling, end every session and
/// grant of the user; enabling them again brings none back.
async fn a_new_password_or_disabling_ends_every_grant(backend: Backend) {
    use crate::users::send;
    use reqwest::Method;
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    create_user(&app, "bob", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let (_, bob) = with_tokens(&app, &client_id, &secret, "bob").await;
    for change in ["password", "disable"] {
        let (browser, tokens) = with_tokens(&app, &client_id, &secret, "alice").await;
        let pending = pending_code(&browser, &client_id).await;
        // An access token from a code alone (no refresh token), elsewhere.
        let (_, code) = code_for(&app, &client_id, "openid", "alice").await;
        let response = exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER)).await;
        let code_only: Value = response.json().await.unwrap();
        let code_only = code_only["access_token"].as_str().unwrap().to_owned();
        if change == "password" {
            // The same text, a new hash: what matters is that it was set.
            let body = json!({ "password": PASSWORD });
            let set = send(
                &app,
                Method::PUT,
                "/admin/v1/users/alice/password",
                Some(body),
            )
            .await;
            assert_eq!(set.status(), 204);
        } else {
            for path in ["disable", "enable"] {
                let path = format!("/admin/v1/users/alice/{path}");
                assert_eq!(send(&app, Method::POST, &path, None).await.status(), 200);
            }
        }
        assert!(!browser.signed_in().await, "{change}");
        assert_grants_ended(&app, &client_id, &secret, &tokens, &pending).await;
        assert!(!introspect_active(&app, &code_only).await, "{change}");
        // The event says what ended: two browsers' sessions, one refresh
        // token (the code-only sign-in got none).
        let action = if change == "password" {
            "user.password_set"
        } else {
            "user.disabled"
        };
        let events = crate::users::audit(&app, action).await;
        let details = &events.last().expect("the change is audited")["details"];
        assert_eq!(details["ended_sessions"], 2, "{change}: {details}");
        assert_eq!(details["revoked_refresh_tokens"], 1, "{change}: {details}");
    }
    // Bob's grants live on.
    assert!(introspect_active(&app, bob["access_token"].as_str().unwrap()).await);
    let refreshed = refresh(
        &app,
        &client_id,
        &secret,
        bob["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(refreshed.status(), 200);
}

/// A client refreshing in a loop on one replica while an administrator sets
/// a new password on another: whichever rotation the revocation races
/// with, the last token handed out is refused afterwards (on PostgreSQL a
/// successor inserted by a rotation the revocation waited for is revoked
/// too).
async fn rotations_racing_a_new_password_leave_nothing_alive(backend: Backend) {
    use crate::users::send;
    let app = TestApp::start(backend.clone()).await;
    let second = TestApp::builder(backend).replica_of(&app).start().await;
    create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let (_, tokens) = with_tokens(&app, &client_id, &secret, "alice").await;
    let mut token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresher = {
        let (http, url) = (second.http.clone(), second.endpoint("/oauth/token"));
        let (client_id, secret) = (client_id.clone(), secret.clone());
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                let response = http
                    .post(&url)
                    .basic_auth(&client_id, Some(&secret))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                    .send()
                    .await
                    .unwrap();
                if response.status() != 200 {
                    return Some(token);
                }
                let body: Value = response.json().await.unwrap();
                token = body["refresh_token"].as_str().unwrap().to_owned();
            }
            None
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let body = json!({ "password": PASSWORD });
    let set = send(
        &app,
        reqwest::Method::PUT,
        "/admin/v1/users/alice/password",
        Some(body),
    )
    .await;
    assert_eq!(set.status(), 204);
    let last = refresher
        .await
        .unwrap()
        .expect("the refresh loop is stopped by the new password");
    let refused = refresh(&app, &client_id, &secret, &last).await;
    fail_with(refused, 400, "invalid_grant").await;
}

async fn api_scopes_only_for_administrators(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    create_user(&app, "root", true).await;
    let (client_id, secret) = browser_client(
        &app,
        json!({"first_party": true, "scope": "admin:read tokens:self"}),
    )
    .await;
    let secret = secret.unwrap();
    let (_, code) = code_for(&app, &client_id, "openid admin:read tokens:self", "alice").await;
    let tokens: Value = exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "openid tokens:self", "admin:read left out");
    let claims = id_token_payload(tokens["access_token"].as_str().unwrap());
    assert!(claims["aud"].to_string().contains(&app.url), "{claims}");

    let (_, code) = code_for(&app, &client_id, "openid admin:read", "root").await;
    let tokens: Value = exchange(&app, &client_id, Some(&secret), &code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "openid admin:read");
    let claims = id_token_payload(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], json!([client_id, app.url]));
    assert_eq!(claims["identity_kind"], "human");
}

async fn cli_registers_browser_clients(backend: Backend) {
    use crate::cli::{run, stderr, tessera};
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = app.admin_token_file();
    let cli = |args: &[&str]| {
        let mut command = tessera(dir.path());
        command
            .args([
                "--url",
                &app.url,
                "--token-file",
                token_file.to_str().unwrap(),
                "--json",
            ])
            .args(args);
        tokio::task::block_in_place(|| run(&mut command))
    };
    let created = cli(&[
        "client",
        "create",
        "--name",
        "SPA",
        "--public",
        "--first-party",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--redirect-uri",
        REDIRECT,
        "--redirect-uri",
        "https://app.example.com/cb",
        "--post-logout-redirect-uri",
        "https://app.example.com/bye",
        "--id-token-alg",
        "ES256",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let client: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert!(client["client_secret"].is_null(), "public: no secret");
    assert_eq!(client["token_endpoint_auth_method"], "none");
    assert_eq!(client["first_party"], true);
    assert_eq!(client["require_pkce"], true);
    assert_eq!(client["id_token_signed_response_alg"], "ES256");
    assert_eq!(
        client["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        client["post_logout_redirect_uris"],
        json!(["https://app.example.com/bye"])
    );

    // PKCE can be made optional for a confidential client only.
    let legacy = cli(&[
        "client",
        "create",
        "--name",
        "Legacy",
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        "https://legacy.example.com/cb",
        "--pkce-optional",
    ]);
    assert!(legacy.status.success(), "{}", stderr(&legacy));
    let legacy: Value = serde_json::from_slice(&legacy.stdout).unwrap();
    assert_eq!(legacy["require_pkce"], false);
    assert_eq!(
        legacy["id_token_signed_response_alg"], "RS256",
        "the default"
    );
    let refused = cli(&[
        "client",
        "create",
        "--name",
        "Bad",
        "--public",
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        REDIRECT,
        "--pkce-optional",
    ]);
    assert!(!refused.status.success());
    // authorization_code needs a redirect URI; fragments and plain http
    // to other hosts are refused.
    for args in [
        vec!["--grant-type", "authorization_code"],
        vec![
            "--grant-type",
            "authorization_code",
            "--redirect-uri",
            "https://a.example/cb#frag",
        ],
        vec![
            "--grant-type",
            "authorization_code",
            "--redirect-uri",
            "http://a.example/cb",
        ],
    ] {
        let mut all = vec!["client", "create", "--name", "X"];
        all.extend(args.iter().copied());
        assert!(!cli(&all).status.success(), "{args:?}");
    }
}

fn code_row(digest: &str, now: i64) -> tessera::store::CodeRecord {
    tessera::store::CodeRecord {
        digest: digest.to_owned(),
        client_id: "c".into(),
        redirect_uri: REDIRECT.into(),
        code_challenge: None,
        user_id: "u".into(),
        session_id: "s".into(),
        auth_time: now,
        amr: "pwd".into(),
        nonce: None,
        scopes: "openid offline_access".into(),
        created_at: now,
        expires_at: now + 60,
        used_at: None,
        access_jti: None,
        access_exp: None,
        refresh_family: None,
    }
}

fn refresh_row(id: &str, family: &str, now: i64) -> tessera::store::RefreshTokenRecord {
    tessera::store::RefreshTokenRecord {
        id: id.into(),
        lookup: format!("lookup-{id}"),
        digest: vec![1, 2, 3],
        family_id: family.into(),
        client_id: "c".into(),
        user_id: "u".into(),
        session_id: Some("s".into()),
        scopes: "openid offline_access".into(),
        auth_time: now,
        amr: "pwd".into(),
        created_at: now,
        idle_expires_at: now + 3600,
        family_expires_at: now + 7200,
        used_at: None,
        revoked_at: None,
        access_jti: Some(format!("jti-{id}")),
        access_exp: Some(now + 300),
    }
}

/// RFC 6749 §4.1.2: a second use revokes what the first gave. The claim
/// names the access token, so a reuse right after it revokes that token
/// while the first exchange is still minting it; a refresh token stored
/// after the reuse by the late `finish_code` is revoked and refused too.
/// A code whose session ended before its claim gives nothing.
async fn a_reuse_after_the_claim_revokes_what_it_named(backend: Backend) {
    use tessera::store::{AuthorizationStore, Finish, Redemption, RevocationStore, SessionStore};
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let now = tessera::clock::now();
    open_session(store, "s", now).await;
    store.create_code(code_row("d1", now)).await.unwrap();
    let first = named_access(now);
    assert!(matches!(
        store
            .redeem_code("d1".into(), first.clone(), now)
            .await
            .unwrap(),
        Redemption::Fresh(_)
    ));
    assert!(!store.is_revoked(first.jti.clone()).await.unwrap());
    let second = named_access(now);
    assert!(matches!(
        store
            .redeem_code("d1".into(), second.clone(), now)
            .await
            .unwrap(),
        Redemption::Reused(_)
    ));
    assert!(
        store.is_revoked(first.jti).await.unwrap(),
        "the token named at the claim is revoked by the reuse"
    );
    assert!(!store.is_revoked(second.jti).await.unwrap());
    let finish = store
        .finish_code(
            "d1".into(),
            "jti-r1".into(),
            now + 300,
            refresh_row("r1", "f1", now),
            now,
        )
        .await
        .unwrap();
    assert_eq!(finish, Finish::Reused, "the late finish is refused");
    assert!(store.is_revoked("jti-r1".into()).await.unwrap());
    let row = store
        .refresh_by_lookup("lookup-r1".into())
        .await
        .unwrap()
        .expect("stored");
    assert!(row.revoked_at.is_some(), "the family starts revoked");

    // Without a reuse, the tokens live; a later reuse revokes them.
    store.create_code(code_row("d2", now)).await.unwrap();
    assert!(matches!(
        store
            .redeem_code("d2".into(), named_access(now), now)
            .await
            .unwrap(),
        Redemption::Fresh(_)
    ));
    let finish = store
        .finish_code(
            "d2".into(),
            "jti-r2".into(),
            now + 300,
            refresh_row("r2", "f2", now),
            now,
        )
        .await
        .unwrap();
    assert_eq!(finish, Finish::Issued);
    assert!(!store.is_revoked("jti-r2".into()).await.unwrap());
    assert!(matches!(
        store
            .redeem_code("d2".into(), named_access(now), now)
            .await
            .unwrap(),
        Redemption::Reused(_)
    ));
    assert!(store.is_revoked("jti-r2".into()).await.unwrap());

    // A code whose session ended while it was being redeemed (a logout, a
    // new password): its tokens are revoked, not handed out.
    open_session(store, "s3", now).await;
    let mut code = code_row("d3", now);
    code.session_id = "s3".into();
    store.create_code(code).await.unwrap();
    assert!(matches!(
        store
            .redeem_code("d3".into(), named_access(now), now)
            .await
            .unwrap(),
        Redemption::Fresh(_)
    ));
    store.delete_session("s3".into()).await.unwrap();
    let mut row = refresh_row("r3", "f3", now);
    row.session_id = Some("s3".into());
    let finish = store
        .finish_code("d3".into(), "jti-r3".into(), now + 300, row, now)
        .await
        .unwrap();
    assert_eq!(finish, Finish::SessionEnded);
    assert!(store.is_revoked("jti-r3".into()).await.unwrap());
    let row = store.refresh_by_lookup("lookup-r3".into()).await.unwrap();
    assert!(row.expect("stored").revoked_at.is_some());
    // A code whose session ended before the claim: marked used, nothing
    // given, and a second use is still told apart as a reuse.
    open_session(store, "s4", now).await;
    let mut code = code_row("d4", now);
    code.session_id = "s4".into();
    store.create_code(code).await.unwrap();
    store.delete_session("s4".into()).await.unwrap();
    assert!(matches!(
        store
            .redeem_code("d4".into(), named_access(now), now)
            .await
            .unwrap(),
        Redemption::SessionEnded
    ));
    assert!(matches!(
        store
            .redeem_code("d4".into(), named_access(now), now)
            .await
            .unwrap(),
        Redemption::Reused(_)
    ));
}

/// The token endpoint's claims, gathered by the batch writer into one
/// round (one statement on PostgreSQL): the writer is held in a round of
/// its own (a single-use id waiting for a locked table) while they queue.
/// A code named twice goes to exactly one claim, the one whose token its
/// row names; an unknown code and one whose session ended go to none; the
/// losing claim, sent on to `redeem_code`, is a reuse that revokes the
/// winner's token.
async fn claims_in_one_round_take_each_code_once(backend: Backend) {
    use tessera::store::{AuthorizationStore, CodeClaim, Redemption, RevocationStore};
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let writer = &app.state.writer;
    let now = tessera::clock::now();
    open_session(store, "s", now).await;
    for digest in ["r1", "r2", "r3"] {
        store.create_code(code_row(digest, now)).await.unwrap();
    }
    let orphan = tessera::store::CodeRecord {
        session_id: "ended".into(),
        ..code_row("r4", now)
    };
    store.create_code(orphan).await.unwrap();
    let claims: Vec<CodeClaim> = ["r1", "r1", "r2", "r3", "r4", "unknown"]
        .into_iter()
        .map(|digest| CodeClaim {
            digest: digest.into(),
            access: named_access(now),
            now,
        })
        .collect();

    let lock = TableLock::take(&app.db, "used_assertion_ids");
    let held = tokio::spawn({
        let writer = writer.clone();
        async move { writer.consume("held-round".into(), now + 60).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answers = tokio::spawn({
        let writer = writer.clone();
        let claims = claims.clone();
        async move { futures::future::join_all(claims.into_iter().map(|c| writer.claim_code(c))).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.release();
    assert!(held.await.unwrap().unwrap(), "the held round's id is new");
    let taken: Vec<Option<tessera::store::CodeRecord>> = answers
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();

    for (claim, record) in claims.iter().zip(&taken) {
        if let Some(record) = record {
            assert_eq!(record.digest, claim.digest);
            assert_eq!(
                record.access_jti.as_deref(),
                Some(claim.access.jti.as_str())
            );
            assert_eq!(record.used_at, Some(now));
        }
    }
    assert_eq!(
        usize::from(taken[0].is_some()) + usize::from(taken[1].is_some()),
        1,
        "a code named twice goes to one claim"
    );
    assert!(
        taken[2].is_some() && taken[3].is_some(),
        "fresh codes are claimed"
    );
    assert!(
        taken[4].is_none(),
        "a code whose session ended is not claimed"
    );
    assert!(taken[5].is_none(), "an unknown code is not claimed");

    let (winner, loser) = match taken[0] {
        Some(_) => (&claims[0], &claims[1]),
        None => (&claims[1], &claims[0]),
    };
    let redeemed = store
        .redeem_code(loser.digest.clone(), loser.access.clone(), now)
        .await
        .unwrap();
    assert!(matches!(redeemed, Redemption::Reused(_)));
    assert!(store.is_revoked(winner.access.jti.clone()).await.unwrap());
    let redeemed = store
        .redeem_code("r4".into(), named_access(now), now)
        .await
        .unwrap();
    assert!(matches!(redeemed, Redemption::SessionEnded));
    let redeemed = store
        .redeem_code("unknown".into(), named_access(now), now)
        .await
        .unwrap();
    assert!(matches!(redeemed, Redemption::Unknown));
}

/// Under a steady stream of claims an audit event is still stored within
/// its linger, not held until the queue fills.
async fn audit_events_are_stored_while_claims_stream(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tessera::audit::{Actor, Event, Outcome};
    use tessera::store::{AuditFilter, AuditStore, CodeClaim};
    let app = TestApp::start(backend).await;
    let now = tessera::clock::now();
    let streaming = Arc::new(AtomicBool::new(true));
    // More claims in flight than a round takes (1,024), so the writer
    // always finds more waiting when it comes back to its queues.
    let claimers: Vec<_> = (0..8)
        .map(|n| {
            let writer = app.state.writer.clone();
            let streaming = streaming.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while streaming.load(Ordering::Relaxed) {
                    let claims = (0..512).map(|k| {
                        writer.claim_code(CodeClaim {
                            digest: format!("absent-{n}-{sent}-{k}"),
                            access: named_access(now),
                            now,
                        })
                    });
                    for answer in futures::future::join_all(claims).await {
                        assert!(answer.unwrap().is_none());
                    }
                    sent += 512;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Event::new(Actor::system(), "test.during_claims", Outcome::Success)
        .record_via(&app.state.writer)
        .await;
    let filter = AuditFilter {
        action: Some("test.during_claims".into()),
        limit: 10,
        ..AuditFilter::default()
    };
    let started = std::time::Instant::now();
    let mut stored = false;
    while !stored && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stored = !app
            .state
            .store
            .list_audit(filter.clone())
            .await
            .unwrap()
            .is_empty();
    }
    streaming.store(false, Ordering::Relaxed);
    let mut claims = 0;
    for claimer in claimers {
        claims += claimer.await.unwrap();
    }
    assert!(claims > 100, "claims kept coming ({claims})");
    assert!(
        stored,
        "the event was stored while {claims} claims streamed"
    );
}

/// Audit events queued before a claim go in the claim's round and commit
/// (on PostgreSQL, the code's own transaction), in the order they were
/// queued. A round whose events the database refuses (NUL, which
/// PostgreSQL refuses in `text`) answers its claim "not claimed", which
/// `redeem_code` then takes, and its events are stored on their own, the
/// bad one in its safe form; the next round claims and carries as before.
/// Each time, the writer is held in a round of its own (a single-use id
/// waiting for a locked table) while the events and the claim queue, so
/// the claim's round is the first to find the events. That they commit
/// with the claim is checked on PostgreSQL (`xmin`); on SQLite a round of
/// their own right after the claim's would pass as well.
async fn a_claim_round_carries_the_queued_audit_events(backend: Backend) {
    use tessera::store::{AuditFilter, AuditStore, AuthorizationStore, Redemption};
    let postgres = matches!(backend, Backend::Postgres(_));
    let app = TestApp::start(backend).await;
    let (store, writer) = (&app.state.store, &app.state.writer);
    let now = tessera::clock::now();
    open_session(store, "s", now).await;
    for digest in ["c1", "c2", "c3"] {
        store.create_code(code_row(digest, now)).await.unwrap();
    }
    // The stored events' targets, oldest first (by id).
    let stored = || async {
        let filter = AuditFilter {
            action: Some("test.carried".into()),
            limit: 100,
            ..AuditFilter::default()
        };
        let mut records = store.list_audit(filter).await.unwrap();
        records.sort_by_key(|record| record.id);
        records
            .into_iter()
            .filter_map(|record| record.target)
            .collect::<Vec<String>>()
    };

    assert!(
        claim_while_held(&app, &["a", "b"], "c1", now)
            .await
            .is_some()
    );
    assert_eq!(
        stored().await,
        ["a", "b"],
        "stored with the claim, in order"
    );
    if postgres {
        use diesel::{Connection, QueryableByName, RunQueryDsl, sql_types::BigInt};
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = diesel::PgConnection::establish(&app.db.url).unwrap();
        let transactions: Count = diesel::sql_query(
            "SELECT count(DISTINCT x) AS n FROM ( \
               SELECT xmin::text AS x FROM audit_events WHERE action = 'test.carried' \
               UNION ALL SELECT xmin::text FROM authorization_codes WHERE digest = 'c1') AS t",
        )
        .get_result(&mut conn)
        .unwrap();
        assert_eq!(
            transactions.n, 1,
            "the events and the claim commit together"
        );
    }

    let answered = claim_while_held(&app, &["c", "nul\0here", "d"], "c2", now).await;
    assert_eq!(
        answered.is_none(),
        postgres,
        "a refused round claims nothing"
    );
    if postgres {
        let redeemed = store.redeem_code("c2".into(), named_access(now), now).await;
        assert!(matches!(redeemed.unwrap(), Redemption::Fresh(_)));
    }
    assert!(writer.flush_within(Duration::from_secs(10)).await);
    let bad = if postgres {
        "nul\\u{0}here"
    } else {
        "nul\0here"
    };
    assert_eq!(
        stored().await,
        ["a", "b", "c", bad, "d"],
        "every event is stored once, in order"
    );

    assert!(claim_while_held(&app, &["e"], "c3", now).await.is_some());
    assert_eq!(stored().await, ["a", "b", "c", bad, "d", "e"]);
    app.stop().await.unwrap();
}

/// Queues events with `targets` (action `test.carried`), then a claim of
/// `digest`, while the writer is held in a round of its own (a single-use
/// id waiting for a locked table); the claim's answer.
async fn claim_while_held(
    app: &TestApp,
    targets: &[&str],
    digest: &str,
    now: i64,
) -> Option<tessera::store::CodeRecord> {
    let writer = &app.state.writer;
    let lock = TableLock::take(&app.db, "used_assertion_ids");
    let held = tokio::spawn({
        let writer = writer.clone();
        let key = format!("held-{digest}");
        async move { writer.consume(key, now + 60).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for target in targets {
        let event = crate::audit::record("test.carried", target, tessera::clock::now_ms());
        writer.append_audit(event).await.unwrap();
    }
    let claim = tokio::spawn({
        let writer = writer.clone();
        let claim = tessera::store::CodeClaim {
            digest: digest.into(),
            access: named_access(now),
            now,
        };
        async move { writer.claim_code(claim).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    lock.release();
    assert!(held.await.unwrap().unwrap(), "the held round's id is new");
    claim.await.unwrap().unwrap()
}

/// A round never waits for a lock: a session held by another transaction
/// (here as a disable deleting the user's sessions would) leaves its code
/// unclaimed at once, and the claim waits for it in `redeem_code` on the
/// blocking pool instead, where it holds up nobody else. PostgreSQL only:
/// SQLite has no row locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_round_skips_a_locked_session() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    use tessera::store::{AuthorizationStore, CodeClaim, Redemption};
    let Some(backend) = Backend::postgres() else {
        eprintln!("skipped: {} is not set", crate::common::PG_ENV);
        return;
    };
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let now = tessera::clock::now();
    open_session(store, "s", now).await;
    store.create_code(code_row("held", now)).await.unwrap();
    let mut holder = diesel::PgConnection::establish(&app.db.url).unwrap();
    holder
        .batch_execute("BEGIN; SELECT id FROM sessions WHERE id = 's' FOR UPDATE")
        .unwrap();
    let claim = CodeClaim {
        digest: "held".into(),
        access: named_access(now),
        now,
    };
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        app.state.writer.claim_code(claim.clone()),
    )
    .await
    .expect("the round does not wait for the lock");
    assert!(
        answered.unwrap().is_none(),
        "the locked code is left unclaimed"
    );
    assert!(
        app.state
            .writer
            .consume("after-the-skip".into(), now + 60)
            .await
            .unwrap(),
        "the writer goes on"
    );
    let redeem = tokio::spawn({
        let store = store.clone();
        async move { store.redeem_code(claim.digest, claim.access, now).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!redeem.is_finished(), "redeem_code waits for the lock");
    holder.batch_execute("COMMIT").unwrap();
    assert!(matches!(
        redeem.await.unwrap().unwrap(),
        Redemption::Fresh(_)
    ));
}

/// Each code is updated in place by its claim: its table leaves room on
/// every page for the claimed version (a heap-only update, no new index
/// entries), which PostgreSQL only does when asked. PostgreSQL only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_pages_leave_room_for_their_claims() {
    use diesel::{Connection, QueryableByName, RunQueryDsl, sql_types::Text};
    #[derive(QueryableByName)]
    struct Options {
        #[diesel(sql_type = Text)]
        options: String,
    }
    let Some(backend) = Backend::postgres() else {
        eprintln!("skipped: {} is not set", crate::common::PG_ENV);
        return;
    };
    let app = TestApp::start(backend).await;
    let mut conn = diesel::PgConnection::establish(&app.db.url).unwrap();
    let found: Options = diesel::sql_query(
        "SELECT coalesce(array_to_string(reloptions, ','), '') AS options \
         FROM pg_class WHERE oid = 'authorization_codes'::regclass",
    )
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(found.options, "fillfactor=70");
}

/// A new access token name for a code claim, living five minutes.
fn named_access(now: i64) -> tessera::store::CodeAccess {
    tessera::store::CodeAccess {
        jti: tessera::tokens::access::new_jti(),
        exp: now + 300,
    }
}

/// A browser session `id` for the user `u` of [`code_row`].
async fn open_session(store: &tessera::store::Store, id: &str, now: i64) {
    use tessera::store::SessionStore;
    let record = crate::common::users::session_row(id, now, now);
    store.create_session(record).await.unwrap();
}

/// Stores a refresh family `f-{id}` (one token, `id`) issued at `at`
/// through a redeemed code, as the token endpoint does; `tweak` adjusts the
/// token's row first.
async fn stored_family(
    store: &tessera::store::Store,
    id: &str,
    at: i64,
    tweak: impl FnOnce(&mut tessera::store::RefreshTokenRecord),
) {
    use tessera::store::{AuthorizationStore, Finish, Redemption};
    let digest = format!("d-{id}");
    store.create_code(code_row(&digest, at)).await.unwrap();
    let redeemed = store
        .redeem_code(digest.clone(), named_access(at), at)
        .await
        .unwrap();
    assert!(matches!(redeemed, Redemption::Fresh(_)));
    let mut row = refresh_row(id, &format!("f-{id}"), at);
    tweak(&mut row);
    let jti = format!("jti-code-{id}");
    let finish = store.finish_code(digest, jti, at + 300, row, at).await;
    assert_eq!(finish.unwrap(), Finish::Issued);
}

/// The maintenance sweep deletes the families nobody can use any more and
/// keeps every row of a live one, used tokens included (reuse detection
/// needs them), and every row whose access token still lives (a new
/// password must still find its jti).
async fn dead_refresh_families_are_purged(backend: Backend) {
    use tessera::store::{AuthorizationStore, REVOKED_KEPT_SECS, Rotation};
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let now = tessera::clock::now();
    open_session(store, "s", now).await;
    let as_is = |_: &mut tessera::store::RefreshTokenRecord| {};
    // Live, rotated: its first token is used and past its idle expiry.
    stored_family(store, "live", now - 4000, as_is).await;
    let successor = refresh_row("live-2", "f-live", now);
    let rotated = store
        .rotate_refresh("live".into(), "f-live".into(), successor, now - 500)
        .await
        .unwrap();
    assert!(matches!(rotated, Rotation::Rotated));
    // Past its absolute lifetime (not idle), its access token expired.
    stored_family(store, "absolute", now - 8000, |row| {
        row.idle_expires_at = now + 100;
    })
    .await;
    // Past its absolute lifetime, but its access token still lives.
    stored_family(store, "absolute-live-access", now - 8000, |row| {
        row.idle_expires_at = now + 100;
        row.access_exp = Some(now + 100);
    })
    .await;
    // refresh_row: idle lifetime 3600 s, absolute 7200 s.
    stored_family(store, "idle", now - 4000, as_is).await;
    stored_family(store, "revoked-long-ago", now, as_is).await;
    let long_ago = now - REVOKED_KEPT_SECS - 1;
    store
        .revoke_refresh_family("f-revoked-long-ago".into(), long_ago)
        .await
        .unwrap();
    stored_family(store, "revoked-now", now, as_is).await;
    store
        .revoke_refresh_family("f-revoked-now".into(), now)
        .await
        .unwrap();

    assert_eq!(store.purge_refresh_tokens(now).await.unwrap(), 3);
    for (id, kept) in [
        ("live", true),
        ("live-2", true),
        ("absolute", false),
        ("absolute-live-access", true),
        ("idle", false),
        ("revoked-long-ago", false),
        ("revoked-now", true),
    ] {
        let row = store.refresh_by_lookup(format!("lookup-{id}")).await;
        assert_eq!(row.unwrap().is_some(), kept, "{id}");
    }
}

/// Two replicas recording the same first consent, or revoking the same
/// refresh family, at once: both succeed (no primary key conflict).
async fn concurrent_first_consents_and_revocations_do_not_fail(backend: Backend) {
    use tessera::store::AuthorizationStore;
    let app = TestApp::start(backend).await;
    let now = tessera::clock::now();
    for round in 0..10 {
        let user = format!("u{round}");
        let consents = (0..8).map(|i| {
            let store = app.state.store.clone();
            let user = user.clone();
            tokio::spawn(async move {
                store
                    .grant_consent(
                        user,
                        "c".into(),
                        vec![format!("s{i}"), "openid".into()],
                        now,
                    )
                    .await
            })
        });
        for result in futures::future::join_all(consents).await {
            result
                .unwrap()
                .expect("a concurrent first consent succeeds");
        }
        let granted = app
            .state
            .store
            .consent(user.clone(), "c".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(granted.len(), 9, "no scope lost: {granted:?}");
        let family = format!("f{round}");
        let store = &app.state.store;
        let digest = format!("dd{round}");
        store.create_code(code_row(&digest, now)).await.unwrap();
        store
            .redeem_code(digest.clone(), named_access(now), now)
            .await
            .unwrap();
        store
            .finish_code(
                digest,
                format!("jti-a{round}"),
                now + 300,
                refresh_row(&format!("a{round}"), &family, now),
                now,
            )
            .await
            .unwrap();
        let revokes = (0..8).map(|_| {
            let store = app.state.store.clone();
            let family = family.clone();
            tokio::spawn(async move { store.revoke_refresh_family(family, now).await })
        });
        for result in futures::future::join_all(revokes).await {
            result.unwrap().expect("a concurrent revocation succeeds");
        }
    }
}

/// Eight redemptions of one code race on two replicas, then eight
/// rotations of one refresh token: at most one of each gets tokens, the
/// rest are `invalid_grant`, and the reuse revokes what the winner got
/// (RFC 6749 §4.1.2, RFC 9700 §4.14.2), on whichever replica it is asked.
/// None may win: a reuse that lands right after a redemption's claim
/// revokes the access token the claim named (and a refresh token stored
/// after it), even if that redemption still hands it out.
async fn codes_and_refresh_tokens_are_single_use_across_replicas(backend: Backend) {
    let first = TestApp::start(backend.clone()).await;
    let second = TestApp::builder(backend).replica_of(&first).start().await;
    create_user(&first, "alice", false).await;
    let (client_id, secret) = browser_client(&first, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let replicas = [&first, &second];

    let (_, code) = code_for(&first, &client_id, "openid offline_access", "alice").await;
    let redemptions = (0..8).map(|n| {
        exchange(
            replicas[n % 2],
            &client_id,
            Some(&secret),
            &code,
            Some(VERIFIER),
        )
    });
    let winner = at_most_one_winner(futures::future::join_all(redemptions).await).await;
    for app in replicas {
        if let Some(winner) = &winner {
            let access = winner["access_token"].as_str().unwrap();
            assert!(
                !introspect_active(app, access).await,
                "revoked by the reuse"
            );
        }
    }

    let (_, tokens) = with_tokens(&first, &client_id, &secret, "alice").await;
    let token = tokens["refresh_token"].as_str().unwrap();
    let rotations = (0..8).map(|n| refresh(replicas[n % 2], &client_id, &secret, token));
    let winner = at_most_one_winner(futures::future::join_all(rotations).await).await;
    // Checked before the used token is presented again here, which would
    // revoke the family by itself: the racing reuses must have done it.
    if let Some(winner) = &winner {
        for app in replicas {
            let successor = winner["refresh_token"].as_str().unwrap();
            assert!(!introspect_active(app, successor).await, "family revoked");
            assert!(!introspect_active(app, winner["access_token"].as_str().unwrap()).await);
        }
    }
    for app in replicas {
        fail_with(
            refresh(app, &client_id, &secret, token).await,
            400,
            "invalid_grant",
        )
        .await;
    }
}

/// The 200 among `responses`, if there is one; more than one is a double
/// spend, and every other answer must be `invalid_grant`.
async fn at_most_one_winner(responses: Vec<reqwest::Response>) -> Option<Value> {
    let mut winners = Vec::new();
    for response in responses {
        if response.status() == 200 {
            winners.push(response.json::<Value>().await.unwrap());
        } else {
            fail_with(response, 400, "invalid_grant").await;
        }
    }
    assert!(winners.len() <= 1, "one use at most wins: {winners:?}");
    winners.pop()
}

/// RFC 7662 for refresh tokens: active exactly while the refresh grant
/// would take it, and shown to its own client and administrators only.
async fn refresh_tokens_introspect_for_their_client_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = create_user(&app, "alice", false).await;
    let (client_id, secret) = browser_client(&app, json!({"first_party": true})).await;
    let secret = secret.unwrap();
    let (other_id, other_secret) = browser_client(&app, json!({"name": "Other"})).await;
    let other_secret = other_secret.unwrap();
    let (_, tokens) = with_tokens(&app, &client_id, &secret, "alice").await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let as_client = |id: &str, secret: &str, token: &str| {
        app.http
            .post(app.endpoint("/oauth/introspect"))
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .send()
    };
    let own: Value = as_client(&client_id, &secret, &first)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["active"], true, "{own}");
    assert_eq!(own["sub"], alice.as_str());
    assert_eq!(own["client_id"], client_id.as_str());
    assert_eq!(own["scope"], "openid offline_access");
    assert!(own["exp"].as_i64().unwrap() > own["iat"].as_i64().unwrap());
    assert!(
        introspect_active(&app, &first).await,
        "administrators see it"
    );
    let foreign: Value = as_client(&other_id, &other_secret, &first)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        foreign,
        json!({"active": false}),
        "another client learns nothing"
    );

    // Rotated: the old one is inactive, its successor active.
    let renewed: Value = refresh(&app, &client_id, &secret, &first)
        .await
        .json()
        .await
        .unwrap();
    let second = renewed["refresh_token"].as_str().unwrap().to_owned();
    assert!(!introspect_active(&app, &first).await);
    assert!(introspect_active(&app, &second).await);
    // A typo of a live token, and a disabled user, are inactive too.
    let last = if second.ends_with('x') { 'y' } else { 'x' };
    let typo = format!("{}{last}", &second[..second.len() - 1]);
    assert!(!introspect_active(&app, &typo).await);
    crate::common::users::disable(&app, "alice").await;
    assert!(!introspect_active(&app, &second).await);
}

/// The maintenance loop's code purge: codes an hour past their expiry go,
/// unless the access token one gave still lives.
async fn old_codes_are_purged(backend: Backend) {
    use tessera::store::{AuthorizationStore, CodeRecord};
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let now = tessera::clock::now();
    open_session(store, "s", now).await;
    let code = |digest: &str, expires_at: i64, access_exp: Option<i64>| CodeRecord {
        created_at: expires_at - 60,
        expires_at,
        access_jti: access_exp.map(|_| format!("jti-{digest}")),
        access_exp,
        ..code_row(digest, now)
    };
    for record in [
        code("fresh", now + 60, None),
        code("expired-recently", now - 60, None),
        code("expired-long-ago", now - 4000, None),
        code("long-ago-live-access", now - 4000, Some(now + 100)),
        code("long-ago-dead-access", now - 4000, Some(now - 100)),
    ] {
        store.create_code(record).await.unwrap();
    }
    assert_eq!(store.purge_codes(now).await.unwrap(), 2);
    for (digest, kept) in [
        ("fresh", true),
        ("expired-recently", true),
        ("expired-long-ago", false),
        ("long-ago-live-access", true),
        ("long-ago-dead-access", false),
    ] {
        let used = store
            .redeem_code(digest.into(), named_access(now), now)
            .await
            .unwrap();
        let found = !matches!(used, tessera::store::Redemption::Unknown);
        assert_eq!(found, kept, "{digest}");
    }
}
