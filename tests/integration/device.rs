//! The device authorization grant (RFC 8628): the `oauth2` crate's
//! device-flow client on one side, a person approving on `/device` on the
//! other (a cookie-keeping client here, headless Chromium in
//! `device_browser`); every §3.5 answer, `slow_down` across replicas,
//! user-code guessing, expiry, denial and double redemption.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse,
    TokenResponse, TokenUrl,
};
use serde_json::{Value, json};
use tessera::oauth::device::{device_code_digest, user_code_digest};
use tessera::store::{DeviceRecord, DeviceStore};

use crate::authorization::{PASSWORD, create_user};
use crate::clients::register;
use crate::common::pages::{Visitor, by_id, field, location};
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    the_oauth2_crate_logs_in_through_an_approval,
    every_poll_gets_the_answer_rfc_8628_names,
    slow_down_holds_across_replicas,
    user_code_guesses_are_throttled,
    the_page_needs_a_login_csrf_and_a_click,
    expired_denied_and_redeemed_codes,
    refused_device_authorization_requests,
    alice_approves_in_a_real_browser,
    the_right_code_after_wrong_ones_can_be_approved,
    a_new_password_ends_an_approval_not_yet_redeemed,
    the_cli_registers_a_device_client,
    polls_on_time_are_pending_and_slow_down_lasts,
    an_admin_signs_in_again_to_give_a_device_admin_scopes,
    links_from_other_sites_spend_no_guesses,
    old_device_authorizations_are_purged_in_batches,
);

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Polls may come every second in these tests.
const FAST: &str = "[device]\ninterval = \"1s\"\n";

/// Polls that must count as too soon come within a 5 s interval, however
/// slow the machine.
const SLOW: &str = "[device]\ninterval = \"5s\"\n";

async fn start(backend: Backend) -> TestApp {
    TestApp::builder(backend).config(FAST).start().await
}

/// A public CLI client allowed the device and refresh grants.
async fn cli_client(app: &TestApp) -> String {
    let (id, secret) = register(
        app,
        json!({"name": "Deploy CLI", "grant_types": [DEVICE_GRANT, "refresh_token"],
               "public": true}),
    )
    .await;
    assert!(secret.is_none(), "a public client has no secret");
    id
}

/// `POST /oauth/device_authorization` as a form.
async fn request_codes(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .post(app.endpoint("/oauth/device_authorization"))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn codes(app: &TestApp, client_id: &str, scope: &str) -> Value {
    let response = request_codes(app, &[("client_id", client_id), ("scope", scope)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn poll(app: &TestApp, client_id: &str, device_code: &str) -> reqwest::Response {
    app.http
        .post(app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", client_id),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap()
}

/// The stored row behind a device code.
async fn row(app: &TestApp, user_code: &str) -> DeviceRecord {
    let normal = user_code.replace('-', "");
    app.state
        .store
        .device_by_user_code(user_code_digest(&app.state, &normal))
        .await
        .unwrap()
        .expect("stored")
}

/// A signed-in browser.
async fn signed_in(app: &TestApp, username: &str) -> Visitor {
    let visitor = Visitor::new(app);
    assert_eq!(visitor.login(username, PASSWORD).await.status(), 303);
    visitor
}

/// Opens `/device` with the code, as `verification_uri_complete` does,
/// and answers `decision` on the page it shows.
pub(crate) async fn answer(
    visitor: &Visitor,
    user_code: &str,
    decision: &str,
) -> reqwest::Response {
    let page = visitor.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert_eq!(
        field(&page, "user_code").as_deref(),
        Some(user_code),
        "{page}"
    );
    let csrf = field(&page, "csrf").unwrap();
    let seen = field(&page, "seen").expect("the page's mark");
    visitor
        .post(
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", user_code),
                ("decision", decision),
                ("seen", &seen),
            ],
        )
        .await
}

async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let body: Value = app
        .admin_get(&format!("/admin/v1/audit?action={action}"))
        .await
        .json()
        .await
        .unwrap();
    body["events"].as_array().unwrap().clone()
}

async fn the_oauth2_crate_logs_in_through_an_approval(backend: Backend) {
    let app = start(backend).await;
    let alice = create_user(&app, "alice", false).await;
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["device_authorization_endpoint"],
        app.endpoint("/oauth/device_authorization")
    );
    assert!(
        discovery["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(DEVICE_GRANT))
    );
    let client_id = cli_client(&app).await;
    let client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(app.endpoint("/oauth/token")).unwrap())
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(app.endpoint("/oauth/device_authorization")).unwrap(),
        );
    let http = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .expect("device authorization");
    let user_code = details.user_code().secret().clone();
    assert!(
        regex::Regex::new("^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
            .unwrap()
            .is_match(&user_code),
        "{user_code}"
    );
    assert_eq!(details.verification_uri().as_str(), app.endpoint("/device"));
    assert_eq!(
        details
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        Some(format!("{}?user_code={user_code}", app.endpoint("/device")))
    );
    assert_eq!(details.expires_in().as_secs(), 600);
    assert_eq!(details.interval().as_secs(), 1);
    let device_code = details.device_code().secret();
    assert!(device_code.len() >= 43, "at least 256 bits");
    assert!(
        !row(&app, &user_code)
            .await
            .device_digest
            .contains(device_code.as_str()),
        "only a digest is stored"
    );

    // The person approves while the crate polls.
    let approver = {
        let app_url = app.url.clone();
        let user_code = user_code.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let visitor = Visitor::at(&app_url);
            assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
            let page = visitor
                .get(&format!("/device?user_code={user_code}"))
                .await
                .text()
                .await
                .unwrap();
            assert_eq!(by_id(&page, "client-name").as_deref(), Some("Deploy CLI"));
            assert!(page.contains("Stay signed in"), "scopes in words: {page}");
            assert_eq!(by_id(&page, "requested-from").as_deref(), Some("127.0.0.1"));
            assert!(
                page.contains(
                    "Only approve if you started this yourself on a device you have in front of you"
                ),
                "{page}"
            );
            let csrf = field(&page, "csrf").unwrap();
            let done = visitor
                .post(
                    "/device",
                    &[
                        ("csrf", &csrf),
                        ("user_code", &user_code),
                        ("decision", "approve"),
                    ],
                )
                .await;
            assert_eq!(done.status(), 200);
            assert_eq!(
                by_id(&done.text().await.unwrap(), "message").as_deref(),
                Some("You can close this window and go back to your device.")
            );
        }
    };
    let polling = client.exchange_device_access_token(&details).request_async(
        &http,
        tokio::time::sleep,
        None,
    );
    let (token, ()) = tokio::join!(polling, approver);
    let token = token.expect("tokens once approved");
    let access =
        crate::clients::verify_access_token(&app, token.access_token().secret(), &client_id).await;
    assert_eq!(access["sub"], alice);
    assert_eq!(access["identity_kind"], "human");
    let refresh = token.refresh_token().expect("offline_access gives one");
    let refreshed = client
        .exchange_refresh_token(refresh)
        .request_async(&http)
        .await
        .expect("the refresh token works");
    assert!(refreshed.refresh_token().is_some(), "rotated");

    let requested = audit(&app, "device.requested").await;
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["client_id"], client_id);
    let approved = audit(&app, "device.approved").await;
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["actor_id"], alice);
    let issued = audit(&app, "token.issued").await;
    assert!(
        issued
            .iter()
            .any(|e| e["details"]["grant_type"] == DEVICE_GRANT && e["actor_id"] == alice),
        "{issued:?}"
    );
}

async fn every_poll_gets_the_answer_rfc_8628_names(backend: Backend) {
    let app = TestApp::builder(backend).config(SLOW).start().await;
    create_user(&app, "alice", false).await;
    let client_id = cli_client(&app).await;
    let codes = codes(&app, &client_id, "openid").await;
    let device_code = codes["device_code"].as_str().unwrap();
    let user_code = codes["user_code"].as_str().unwrap();

    fail_with(
        poll(&app, &client_id, device_code).await,
        400,
        "authorization_pending",
    )
    .await;
    // Too soon (within 5 s): slow_down, and 5 s more for this device code (§3.5), each
    // time.
    fail_with(poll(&app, &client_id, device_code).await, 400, "slow_down").await;
    assert_eq!(row(&app, user_code).await.interval_secs, 10);
    fail_with(poll(&app, &client_id, device_code).await, 400, "slow_down").await;
    assert_eq!(row(&app, user_code).await.interval_secs, 15);

    // Another client's poll of this code is an unknown code, and changes
    // nothing.
    let other = cli_client(&app).await;
    fail_with(poll(&app, &other, device_code).await, 400, "invalid_grant").await;
    assert_eq!(row(&app, user_code).await.interval_secs, 15);
    fail_with(
        poll(&app, &client_id, "no-such-code").await,
        400,
        "invalid_grant",
    )
    .await;

    // Approved: the next poll gets the tokens even if it comes soon.
    let alice = signed_in(&app, "alice").await;
    assert_eq!(answer(&alice, user_code, "approve").await.status(), 200);
    let response = poll(&app, &client_id, device_code).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    assert!(tokens["id_token"].is_string(), "openid gives an ID token");
    assert!(tokens["refresh_token"].is_null(), "no offline_access");
    // Exactly once.
    fail_with(
        poll(&app, &client_id, device_code).await,
        400,
        "invalid_grant",
    )
    .await;
}

async fn slow_down_holds_across_replicas(backend: Backend) {
    let first = TestApp::builder(backend.clone()).config(SLOW).start().await;
    let second = TestApp::builder(backend)
        .config(SLOW)
        .replica_of(&first)
        .start()
        .await;
    create_user(&first, "alice", false).await;
    let client_id = cli_client(&first).await;
    let codes = codes(&first, &client_id, "openid").await;
    let device_code = codes["device_code"].as_str().unwrap();
    let user_code = codes["user_code"].as_str().unwrap();
    fail_with(
        poll(&first, &client_id, device_code).await,
        400,
        "authorization_pending",
    )
    .await;
    for (n, app) in [&second, &first, &second, &first].into_iter().enumerate() {
        fail_with(poll(app, &client_id, device_code).await, 400, "slow_down").await;
        assert_eq!(
            row(app, user_code).await.interval_secs,
            5 + 5 * (n as i64 + 1)
        );
    }
    // Approved on one, redeemed once across both.
    let alice = signed_in(&second, "alice").await;
    assert_eq!(answer(&alice, user_code, "approve").await.status(), 200);
    let polls = (0..6).map(|n| poll([&first, &second][n % 2], &client_id, device_code));
    let answers = futures::future::join_all(polls).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "one poll redeems: {statuses:?}"
    );
    for response in answers {
        if response.status() != 200 {
            fail_with(response, 400, "invalid_grant").await;
        }
    }
}

async fn user_code_guesses_are_throttled(backend: Backend) {
    use tessera::store::ThrottleStore;
    let app = TestApp::builder(backend)
        .config("[device]\nfree_guesses_per_user = 3\nfree_guesses_per_address = 5\n")
        .start()
        .await;
    create_user(&app, "mallory", false).await;
    create_user(&app, "alice", false).await;
    let client_id = cli_client(&app).await;
    let codes = codes(&app, &client_id, "openid").await;
    let user_code = codes["user_code"].as_str().unwrap();
    let mallory = signed_in(&app, "mallory").await;
    // Three free wrong codes, then a fourth that is checked and blocks
    // the user for 2 s (as the login throttle counts), in any session.
    for wrong in ["BBBB-BBBB", "CCCC-CCCC", "not a code"] {
        let response = guess(&mallory, wrong).await;
        assert_eq!(response.status(), 422);
        assert!(response.text().await.unwrap().contains("not valid"));
    }
    let blocking = std::time::Instant::now();
    assert_eq!(guess(&mallory, "DDDD-DDDD").await.status(), 422);
    let blocked = guess(&mallory, "FFFF-FFFF").await.status();
    let in_a_new_session = guess(&signed_in(&app, "mallory").await, "FFFF-FFFF")
        .await
        .status();
    if blocking.elapsed() < std::time::Duration::from_millis(1500) {
        assert_eq!(blocked, 429);
        assert_eq!(
            in_a_new_session, 429,
            "signing in again starts no new count"
        );
    }
    // The address's bucket counted those four (and maybe the fifth):
    // counted without a block up to ten, the next wrong code blocks the
    // address for at least 2^(11 - 5) = 64 s, long enough to check what a
    // block refuses on any machine, for another user too.
    let now = tessera::clock::now();
    let counted = app
        .state
        .store
        .throttle_records(vec!["dv:a:127.0.0.1".into()])
        .await
        .unwrap()[0]
        .failures;
    for _ in counted..10 {
        app.state
            .store
            .admit_attempts(
                vec![("dv:a:127.0.0.1".into(), Box::new(|_| 0))],
                now,
                now - 900,
            )
            .await
            .unwrap();
    }
    let alice = signed_in(&app, "alice").await;
    assert_eq!(guess(&alice, "GGGG-GGGG").await.status(), 422);
    let blocked = guess(&alice, user_code).await;
    assert_eq!(blocked.status(), 429, "even the right code");
    assert!(
        blocked
            .text()
            .await
            .unwrap()
            .contains("Too many wrong codes")
    );
    assert_eq!(
        answer_blocked(&alice, user_code).await,
        429,
        "an answer without the page's mark is a guess too"
    );
    // Nothing was decided meanwhile.
    assert_eq!(row(&app, user_code).await.status, "pending");
}

async fn the_right_code_after_wrong_ones_can_be_approved(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[device]\nfree_guesses_per_user = 2\n")
        .start()
        .await;
    create_user(&app, "alice", false).await;
    let client_id = cli_client(&app).await;
    let codes = codes(&app, &client_id, "openid").await;
    let user_code = codes["user_code"].as_str().unwrap();
    let alice = signed_in(&app, "alice").await;
    for typo in ["BBBB-BBBB", "CCCC-CCCC"] {
        assert_eq!(guess(&alice, typo).await.status(), 422);
    }
    // The third attempt is the right code: counted, then given back, but
    // its count set a block; the click on the page it found is no guess.
    assert_eq!(answer(&alice, user_code, "approve").await.status(), 200);
    assert_eq!(row(&app, user_code).await.status, "approved");
    // A mark for another code (or session) is no mark.
    let other = crate::device::codes(&app, &client_id, "openid").await;
    let page = alice.get(&format!("/device?user_code={user_code}")).await;
    let page = page.text().await.unwrap();
    let seen = field(&page, "seen").unwrap_or_default();
    let csrf = alice.csrf("/device").await;
    let forged = alice
        .post(
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", other["user_code"].as_str().unwrap()),
                ("decision", "approve"),
                ("seen", &seen),
            ],
        )
        .await;
    assert_ne!(forged.status(), 200);
    assert_eq!(
        row(&app, other["user_code"].as_str().unwrap()).await.status,
        "pending"
    );
}

async fn a_new_password_ends_an_approval_not_yet_redeemed(backend: Backend) {
    let app = start(backend).await;
    let alice_id = create_user(&app, "alice", false).await;
    let client_id = cli_client(&app).await;
    let alice = signed_in(&app, "alice").await;
    // One login already handed out (an access token alone, no refresh
    // token), one approved and not yet redeemed.
    let done = crate::device::codes(&app, &client_id, "openid").await;
    let done_code = done["user_code"].as_str().unwrap();
    assert_eq!(answer(&alice, done_code, "approve").await.status(), 200);
    let tokens: Value = poll(&app, &client_id, done["device_code"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert!(crate::authorization::introspect_active(&app, &access).await);
    let codes = codes(&app, &client_id, "openid offline_access").await;
    let user_code = codes["user_code"].as_str().unwrap();
    assert_eq!(answer(&alice, user_code, "approve").await.status(), 200);
    let response = app
        .http
        .put(app.endpoint(&format!("/admin/v1/users/{alice_id}/password")))
        .bearer_auth(app.admin_token())
        .json(&json!({"password": "another long passphrase here"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    fail_with(
        poll(&app, &client_id, codes["device_code"].as_str().unwrap()).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(
        !crate::authorization::introspect_active(&app, &access).await,
        "the access token a device login gave is revoked too"
    );
}

/// Types `code` on the entry form.
async fn guess(visitor: &Visitor, code: &str) -> reqwest::Response {
    let csrf = visitor.csrf("/device").await;
    visitor
        .post("/device", &[("csrf", &csrf), ("user_code", code)])
        .await
}

/// Posts an approval directly (no page first); the status it gets.
async fn answer_blocked(visitor: &Visitor, user_code: &str) -> u16 {
    let csrf = visitor.csrf("/device").await;
    visitor
        .post(
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", user_code),
                ("decision", "approve"),
            ],
        )
        .await
        .status()
        .as_u16()
}

async fn the_page_needs_a_login_csrf_and_a_click(backend: Backend) {
    let app = start(backend).await;
    create_user(&app, "alice", false).await;
    let client_id = cli_client(&app).await;
    let codes = codes(&app, &client_id, "openid").await;
    let user_code = codes["user_code"].as_str().unwrap();
    let device_code = codes["device_code"].as_str().unwrap();
    let visitor = Visitor::new(&app);
    let link = visitor.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(link.status(), 303, "a login first");
    let to_login = location(&link);
    assert!(to_login.starts_with("/login?return_to="), "{to_login}");
    let back = url::form_urlencoded::parse(to_login.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "return_to")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(back, format!("/device?user_code={user_code}"));
    let login = visitor.login_to("alice", PASSWORD, &back).await;
    assert_eq!(location(&login), back, "back to the code after the login");

    // Arriving with the code shows the question; nothing is approved
    // until the click.
    let page = visitor.get(&back).await;
    assert_eq!(page.status(), 200);
    assert_eq!(row(&app, user_code).await.status, "pending");
    fail_with(
        poll(&app, &client_id, device_code).await,
        400,
        "authorization_pending",
    )
    .await;
    // Lower case, spaces instead of the dash: the same code.
    let typed = user_code.to_lowercase().replace('-', " ");
    let csrf = visitor.csrf("/device").await;
    let page = visitor
        .post("/device", &[("csrf", &csrf), ("user_code", &typed)])
        .await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert_eq!(by_id(&page, "user-code").as_deref(), Some(user_code));

    // A forged form changes nothing.
    let forged = visitor
        .post(
            "/device",
            &[
                ("csrf", "forged"),
                ("user_code", user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(forged.status(), 403);
    assert_eq!(row(&app, user_code).await.status, "pending");
    let odd = visitor
        .post(
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", "ab\0cd"),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(odd.status(), 400);
    let huge = visitor
        .get(&format!("/device?user_code={}", "B".repeat(10_000)))
        .await;
    assert_eq!(huge.status(), 400);
}

async fn expired_denied_and_redeemed_codes(backend: Backend) {
    let app = start(backend).await;
    create_user(&app, "alice", false).await;
    let client_id = cli_client(&app).await;
    let alice = signed_in(&app, "alice").await;

    // Denied: access_denied, and the page says so.
    let codes_ = codes(&app, &client_id, "openid").await;
    let (device_code, user_code) = (
        codes_["device_code"].as_str().unwrap(),
        codes_["user_code"].as_str().unwrap(),
    );
    let denied = answer(&alice, user_code, "deny").await;
    assert_eq!(denied.status(), 200);
    assert_eq!(
        by_id(&denied.text().await.unwrap(), "message").as_deref(),
        Some("Nothing was shared with the device. You can close this window.")
    );
    fail_with(
        poll(&app, &client_id, device_code).await,
        400,
        "access_denied",
    )
    .await;
    let used = alice.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(used.status(), 422);
    assert!(used.text().await.unwrap().contains("already been used"));
    assert_eq!(audit(&app, "device.denied").await.len(), 1);

    // Expired before anyone answered: the page and the poll say so.
    let now = tessera::clock::now();
    let stale_device = "stale-device-code";
    app.state
        .store
        .create_device(DeviceRecord::pending(
            device_code_digest(&app.state, stale_device),
            user_code_digest(&app.state, "BCDFGHJK"),
            client_id.clone(),
            "openid".into(),
            now - 700,
            Some("127.0.0.1".into()),
            now - 100,
            1,
        ))
        .await
        .unwrap();
    let late = alice.get("/device?user_code=BCDF-GHJK").await;
    assert_eq!(late.status(), 422);
    assert!(late.text().await.unwrap().contains("expired"));
    let csrf = alice.csrf("/device").await;
    let late_answer = alice
        .post(
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", "BCDF-GHJK"),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(late_answer.status(), 422);
    assert_eq!(
        row(&app, "BCDFGHJK").await.status,
        "pending",
        "not approved"
    );
    fail_with(
        poll(&app, &client_id, stale_device).await,
        400,
        "expired_token",
    )
    .await;
}

async fn refused_device_authorization_requests(backend: Backend) {
    let app = start(backend).await;
    let client_id = cli_client(&app).await;
    // Not registered for the device grant.
    let (browser_only, _) = register(
        &app,
        json!({"name": "Web", "grant_types": ["authorization_code"],
               "redirect_uris": ["https://app.example/cb"], "public": true}),
    )
    .await;
    fail_with(
        request_codes(&app, &[("client_id", &browser_only)]).await,
        400,
        "unauthorized_client",
    )
    .await;
    fail_with(
        request_codes(&app, &[("scope", "openid")]).await,
        401,
        "invalid_client",
    )
    .await;
    fail_with(
        request_codes(&app, &[("client_id", "nobody")]).await,
        401,
        "invalid_client",
    )
    .await;
    fail_with(
        request_codes(
            &app,
            &[("client_id", &client_id), ("scope", "deploy:write")],
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    fail_with(
        request_codes(&app, &[("client_id", &client_id), ("scope", "open\0id")]).await,
        400,
        "invalid_request",
    )
    .await;
    fail_with(
        request_codes(
            &app,
            &[("client_id", &client_id), ("client_id", &client_id)],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    let json_body = app
        .http
        .post(app.endpoint("/oauth/device_authorization"))
        .json(&json!({"client_id": client_id}))
        .send()
        .await
        .unwrap();
    fail_with(json_body, 400, "invalid_request").await;
    // A device code too long to be one, or missing.
    fail_with(
        poll(&app, &client_id, &"a".repeat(5000)).await,
        400,
        "invalid_grant",
    )
    .await;
    let missing = app
        .http
        .post(app.endpoint("/oauth/token"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    fail_with(missing, 400, "invalid_request").await;

    // Requests from one address are limited (100 by default): with 105
    // counted, the next is admitted and blocks the address for 2^6 s; the
    // one after is refused.
    {
        use tessera::store::ThrottleStore;
        let now = tessera::clock::now();
        for _ in 0..105 {
            app.state
                .store
                .admit_attempts(
                    vec![("dr:a:127.0.0.1".into(), Box::new(|_| 0))],
                    now,
                    now - 900,
                )
                .await
                .unwrap();
        }
        assert_eq!(
            request_codes(&app, &[("client_id", &client_id)])
                .await
                .status(),
            200
        );
        let limited = request_codes(&app, &[("client_id", &client_id)]).await;
        assert_eq!(limited.status(), 429);
        let retry_after: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["error"], "slow_down", "{body}");
        app.state
            .store
            .clear_bucket("dr:a:127.0.0.1".into())
            .await
            .unwrap();
    }

    // `tessera login`'s client is there from the first start.
    let cli: Value = app
        .admin_get("/admin/v1/clients/tessera-cli")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cli["token_endpoint_auth_method"], "none", "{cli}");
    assert!(
        cli["grant_types"]
            .as_array()
            .unwrap()
            .contains(&json!(DEVICE_GRANT))
    );
    let codes = codes(&app, "tessera-cli", "openid offline_access tokens:self").await;
    assert!(codes["user_code"].is_string());
}

async fn alice_approves_in_a_real_browser(backend: Backend) {
    use crate::common::browser::Browser;
    let browser_name = format!("device-{}", backend.name());
    let app = start(backend).await;
    create_user(&app, "alice", false).await;
    let client_id = cli_client(&app).await;
    let codes = codes(&app, &client_id, "openid offline_access").await;
    let device_code = codes["device_code"].as_str().unwrap();
    let user_code = codes["user_code"].as_str().unwrap();

    let browser = Browser::start(&browser_name).await;
    // The link the CLI prints: first the login, then back to the code.
    browser
        .goto(codes["verification_uri_complete"].as_str().unwrap())
        .await;
    assert_eq!(browser.path().await, "/login");
    browser.fill("#username", "alice").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#submit").await;
    assert_eq!(browser.path().await, "/device");
    assert_eq!(browser.h1().await, "Connect Deploy CLI?");
    assert_eq!(browser.text("#user-code").await, user_code);
    assert!(
        browser
            .text("#warning")
            .await
            .contains("Only approve if you started this yourself")
    );
    browser.screenshot("approve").await;
    fail_with(
        poll(&app, &client_id, device_code).await,
        400,
        "authorization_pending",
    )
    .await;
    browser.click("#approve").await;
    assert_eq!(browser.h1().await, "Device connected");
    browser.screenshot("approved").await;

    // Typed by hand on the entry page, a second request is denied.
    let second = crate::device::codes(&app, &client_id, "openid").await;
    browser.goto(&app.endpoint("/device")).await;
    assert_eq!(browser.h1().await, "Connect a device");
    browser
        .fill(
            "#user_code",
            &second["user_code"].as_str().unwrap().to_lowercase(),
        )
        .await;
    browser.click("#submit").await;
    browser.click("#deny").await;
    assert_eq!(browser.h1().await, "Request denied");
    browser.close().await;

    let tokens: Value = poll(&app, &client_id, device_code)
        .await
        .json()
        .await
        .unwrap();
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    fail_with(
        poll(&app, &client_id, second["device_code"].as_str().unwrap()).await,
        400,
        "access_denied",
    )
    .await;
}

async fn the_cli_registers_a_device_client(backend: Backend) {
    use crate::cli::{run, tessera};
    let app = start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = app.admin_token_file();
    let mut command = tessera(dir.path());
    command.args([
        "--url",
        &app.url,
        "--token-file",
        token_file.to_str().unwrap(),
        "--json",
        "client",
        "create",
        "--grant-type",
        DEVICE_GRANT,
        "--grant-type",
        "refresh_token",
        "--auth-method",
        "none",
        "--public",
    ]);
    let created = tokio::task::block_in_place(|| run(&mut command));
    assert!(created.status.success(), "{created:?}");
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert!(created["client_secret"].is_null(), "{created}");
    assert_eq!(created["token_endpoint_auth_method"], "none");
    // As the issue types it, without --name: a plain name to change later.
    assert_eq!(created["name"], "Unnamed client");
    let client_id = created["client_id"].as_str().unwrap();
    let codes = codes(&app, client_id, "openid offline_access").await;
    assert!(codes["device_code"].is_string());
}

async fn polls_on_time_are_pending_and_slow_down_lasts(backend: Backend) {
    let app = start(backend).await;
    let client_id = cli_client(&app).await;
    let codes = codes(&app, &client_id, "openid").await;
    let device_code = codes["device_code"].as_str().unwrap();
    let user_code = codes["user_code"].as_str().unwrap();
    let pending = "authorization_pending";
    fail_with(poll(&app, &client_id, device_code).await, 400, pending).await;
    // One interval (1 s) later: on time, however slow the machine.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    fail_with(poll(&app, &client_id, device_code).await, 400, pending).await;
    // At once: early, unless the machine took over 0.5 s between the two.
    let at_once: Value = poll(&app, &client_id, device_code)
        .await
        .json()
        .await
        .unwrap();
    if at_once["error"] == "slow_down" {
        // 6 s from then on: what was on time before is early now.
        assert_eq!(row(&app, user_code).await.interval_secs, 6);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        fail_with(poll(&app, &client_id, device_code).await, 400, "slow_down").await;
        assert_eq!(row(&app, user_code).await.interval_secs, 11);
    } else {
        assert_eq!(at_once["error"], pending, "{at_once}");
    }
}

async fn an_admin_signs_in_again_to_give_a_device_admin_scopes(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[sessions]\nreauthenticate_after = \"3s\"\n")
        .start()
        .await;
    create_user(&app, "root", true).await;
    let admin_codes = codes(&app, "tessera-cli", "openid admin").await;
    let user_code = admin_codes["user_code"].as_str().unwrap();
    let root = signed_in(&app, "root").await;
    let page = format!("/device?user_code={user_code}");
    // Just signed in: the question is asked.
    let fresh = root.get(&page).await;
    assert_eq!(fresh.status(), 200);
    let fresh = fresh.text().await.unwrap();
    let (csrf, seen) = (
        field(&fresh, "csrf").unwrap(),
        field(&fresh, "seen").unwrap(),
    );
    // A session older than sessions.reauthenticate_after signs in again
    // first, for the page and for the answer.
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let stale = root.get(&page).await;
    assert_eq!(stale.status(), 303);
    assert!(
        location(&stale).starts_with("/login?return_to="),
        "{}",
        location(&stale)
    );
    let answer_now = root
        .post(
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", user_code),
                ("decision", "approve"),
                ("seen", &seen),
            ],
        )
        .await;
    assert_eq!(answer_now.status(), 303);
    assert_eq!(row(&app, user_code).await.status, "pending");
    // Codes without admin scopes need no fresh login.
    let plain = codes(&app, "tessera-cli", "openid").await;
    assert_eq!(
        answer(&root, plain["user_code"].as_str().unwrap(), "approve")
            .await
            .status(),
        200
    );
    // Signed in again: approved.
    assert_eq!(root.login_to("root", PASSWORD, &page).await.status(), 303);
    assert_eq!(answer(&root, user_code, "approve").await.status(), 200);
    let tokens: Value = poll(
        &app,
        "tessera-cli",
        admin_codes["device_code"].as_str().unwrap(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tokens["scope"], "openid admin", "{tokens}");
}

/// A page on another site linking to `/device?user_code=…` (a top-level
/// navigation carries the session cookie) must not spend the user's
/// guesses: the code is shown filled in, and looked up only when sent.
async fn links_from_other_sites_spend_no_guesses(backend: Backend) {
    let app = start(backend).await;
    create_user(&app, "alice", false).await;
    let alice = signed_in(&app, "alice").await;
    let client_id = cli_client(&app).await;
    for _ in 0..30 {
        let page = alice
            .http
            .get(app.endpoint("/device?user_code=BBBB-BBBB"))
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        assert_eq!(field(&page, "user_code").as_deref(), Some("BBBB-BBBB"));
        assert!(field(&page, "seen").is_none(), "not looked up: {page}");
    }
    // Far past the free guesses, and alice's own code still goes through.
    let codes = codes(&app, &client_id, "openid").await;
    let user_code = codes["user_code"].as_str().unwrap();
    assert_eq!(answer(&alice, user_code, "approve").await.status(), 200);
}

/// The maintenance loop's purge: device authorizations an hour past their
/// expiry go, in batches of 1,000 until none is left; a recent one stays
/// (a late poll is still told `expired_token`), and so does one whose
/// access token still lives.
async fn old_device_authorizations_are_purged_in_batches(backend: Backend) {
    let app = start(backend).await;
    let store = &app.state.store;
    let now = tessera::clock::now();
    let device = |name: &str, expires_at: i64| {
        DeviceRecord::pending(
            format!("device-{name}"),
            format!("user-{name}"),
            "c".into(),
            "openid".into(),
            expires_at - 600,
            None,
            expires_at,
            5,
        )
    };
    for chunk in (0..2_500).collect::<Vec<_>>().chunks(250) {
        let rows = chunk
            .iter()
            .map(|n| store.create_device(device(&format!("old-{n}"), now - 4_000 - n % 7)));
        for created in futures::future::join_all(rows).await {
            created.unwrap();
        }
    }
    store
        .create_device(device("recent", now - 60))
        .await
        .unwrap();
    let mut live_access = device("live-access", now - 4_000);
    live_access.access_jti = Some("jti-live".into());
    live_access.access_exp = Some(now + 300);
    store.create_device(live_access).await.unwrap();

    assert_eq!(store.purge_devices(now).await.unwrap(), 2_500);
    for (name, kept) in [
        ("old-0", false),
        ("old-2499", false),
        ("recent", true),
        ("live-access", true),
    ] {
        let found = store
            .device_by_user_code(format!("user-{name}"))
            .await
            .unwrap();
        assert_eq!(found.is_some(), kept, "{name}");
    }
    assert_eq!(store.purge_devices(now).await.unwrap(), 0);
}
