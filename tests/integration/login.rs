//! Sign-in, sessions, throttling and TOTP over HTTP, with a cookie store
//! like a browser's (issue 10, items 2 and 10).

use std::time::{Duration, Instant};

use crate::common::pages::{Visitor, by_id, field, location, set_cookie};
use crate::common::users::session_row;
use crate::common::{Backend, TestApp};
use crate::on_both_backends;

pub const PASSWORD: &str = "correct horse battery staple";
const REFUSED: &str = "Incorrect username or password.";

on_both_backends!(
    a_login_makes_a_session_with_a_safe_cookie,
    pages_carry_the_security_headers,
    a_form_without_the_right_csrf_token_changes_nothing,
    each_login_makes_a_new_session,
    an_idle_session_ends,
    a_session_ends_at_its_absolute_timeout,
    unknown_users_and_wrong_passwords_read_alike,
    disabled_users_are_refused_alike,
    an_account_is_throttled_after_its_free_failures,
    an_address_is_throttled_across_accounts,
    abandoned_logins_are_not_counted_as_failures,
    a_stranger_cannot_lock_the_owner_out_of_a_known_browser,
    two_replicas_share_the_throttle,
    parallel_guesses_are_throttled_before_they_are_checked,
    return_to_never_leaves_the_site,
    totp_enrolment_login_replay_and_recovery,
    enrolment_needs_the_form_and_a_recent_login,
    an_admin_resets_mfa,
    nul_bytes_and_huge_fields_are_refused_without_a_500,
    logout_ends_the_session,
    a_bucket_blocked_for_a_whole_window_does_not_start_afresh,
    a_blocked_bucket_counts_the_attempt_nowhere,
    a_login_settles_starts_and_audits_together_or_not_at_all,
    ended_sessions_are_purged_in_batches,
);

/// A user with `PASSWORD`.
pub async fn add_user(app: &TestApp, username: &str) -> String {
    crate::common::users::create(app, username, PASSWORD).await
}

async fn a_login_makes_a_session_with_a_safe_cookie(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let response = visitor.login("Alice", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/account");
    let cookie = set_cookie(&response, "tessera_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // The issuer is http on loopback: no Secure, no __Host- prefix.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let page = visitor.get("/account").await.text().await.unwrap();
    assert!(
        page.contains("Signed in as <strong>alice</strong>"),
        "{page}"
    );
    assert_eq!(by_id(&page, "mfa-status").as_deref(), Some("Off"));
}

async fn pages_carry_the_security_headers(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nissuer = \"https://id.example.com\"\n")
        .start()
        .await;
    let response = app.get("/login").await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(header("content-type").starts_with("text/html"));
    // An https issuer: the CSRF cookie is Secure and host-bound.
    let cookie = set_cookie(&response, "__Host-tessera_csrf").expect("a __Host- cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let page = response.text().await.unwrap();
    assert!(page.contains("<html lang=\"en\">"), "{page}");
    assert_eq!(page.matches("<h1").count(), 1);
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("<label for=\"username\">"));
    let css_href = regex::Regex::new(r#"href="(/assets/tessera\.css\?v=[0-9a-f]+)""#)
        .unwrap()
        .captures(&page)
        .expect("the stylesheet link")[1]
        .to_owned();
    let css = app.get(&css_href).await;
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = css.headers()["etag"].to_str().unwrap().to_owned();
    let again = app
        .http
        .get(app.endpoint(&css_href))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

async fn a_form_without_the_right_csrf_token_changes_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let good = visitor.csrf("/login").await;
    let wrong = format!("{}x", &good[..good.len() - 1]);
    for csrf in ["", wrong.as_str()] {
        let response = visitor
            .post(
                "/login",
                &[
                    ("csrf", csrf),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(response.status(), 403);
        assert!(set_cookie(&response, "tessera_session").is_none());
    }
    // Without the cookie, the right token is worth nothing either.
    let stranger = Visitor::new(&app);
    let response = stranger
        .post(
            "/login",
            &[
                ("csrf", &good),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(!visitor.signed_in().await);
    assert!(!stranger.signed_in().await);

    // Logout without the token leaves the session alone.
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
    let response = visitor.post("/logout", &[("csrf", "nope")]).await;
    assert_eq!(response.status(), 403);
    assert!(visitor.signed_in().await);
}

async fn each_login_makes_a_new_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let first = set_cookie(&visitor.login("alice", PASSWORD).await, "tessera_session").unwrap();
    let second = set_cookie(&visitor.login("alice", PASSWORD).await, "tessera_session").unwrap();
    let value = |c: &str| c.split(';').next().unwrap().to_owned();
    assert_ne!(value(&first), value(&second));
    assert!(visitor.signed_in().await);
    // The first cookie no longer works.
    let old = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.endpoint("/account"))
        .header("cookie", value(&first))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 303);
    assert!(location(&old).starts_with("/login?return_to="));
}

async fn an_idle_session_ends(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[sessions]\nidle_timeout = \"2s\"\nabsolute_timeout = \"1h\"\n")
        .start()
        .await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let clock = SessionClock::login(&visitor).await;
    let check = clock.check(&visitor).await;
    // Timestamps are whole seconds: a check proves something only with a
    // second's margin, which a stalled machine may not leave.
    if check.ended_before < Duration::from_secs(1) {
        assert!(check.signed_in, "ended before the idle timeout");
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(!clock.check(&visitor).await.signed_in);
}

/// Used every second, so never idle, and still it ends: checks whose
/// timing proves the session must be alive find it alive, and it is gone
/// once the absolute timeout has surely passed.
async fn a_session_ends_at_its_absolute_timeout(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[sessions]\nidle_timeout = \"3s\"\nabsolute_timeout = \"8s\"\n")
        .start()
        .await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let clock = SessionClock::login(&visitor).await;
    let (idle, absolute) = (Duration::from_secs(3), Duration::from_secs(8));
    let second = Duration::from_secs(1);
    let mut previous = clock.check(&visitor).await;
    let mut outlived_idle = false;
    loop {
        tokio::time::sleep(second).await;
        let check = clock.check(&visitor).await;
        // The server compares whole seconds, so keep a second of margin
        // on each side of both timeouts.
        // Only a check that found the session alive renewed it.
        let not_idle = previous.signed_in && check.ended - previous.started < idle - second;
        if not_idle && check.ended_before < absolute - second {
            assert!(check.signed_in, "ended early at {check:?}");
            outlived_idle |= check.started_after > idle + second;
        }
        if !check.signed_in && check.started_after < absolute + second {
            // Ended when nothing proves it must have lived: a stall let it
            // go idle. Nothing more can be told.
            eprintln!("inconclusive: the session went idle in a stall at {check:?}");
            return;
        }
        if check.started_after >= absolute + second {
            assert!(!check.signed_in, "still signed in at {check:?}");
            break;
        }
        previous = check;
    }
    assert!(
        outlived_idle,
        "the machine stalled too long to prove anything"
    );
}

/// When a session's checks ran, measured from both ends of its login.
struct SessionClock {
    login_started: Instant,
    login_ended: Instant,
}

#[derive(Debug)]
struct Check {
    signed_in: bool,
    started: Instant,
    ended: Instant,
    /// From the login's start to this check's end: the session is at most
    /// this old when the server looks at it.
    ended_before: Duration,
    /// From the login's end to this check's start: the session is at least
    /// this old.
    started_after: Duration,
}

impl SessionClock {
    async fn login(visitor: &Visitor) -> Self {
        let login_started = Instant::now();
        assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
        Self {
            login_started,
            login_ended: Instant::now(),
        }
    }

    async fn check(&self, visitor: &Visitor) -> Check {
        let started = Instant::now();
        let signed_in = visitor.signed_in().await;
        let ended = Instant::now();
        Check {
            signed_in,
            started,
            ended,
            ended_before: ended - self.login_started,
            started_after: started.saturating_duration_since(self.login_ended),
        }
    }
}

async fn unknown_users_and_wrong_passwords_read_alike(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let wrong = visitor.login("alice", "wrong password").await;
    let unknown = visitor.login("nobody", "wrong password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let wrong = wrong.text().await.unwrap();
    let unknown = unknown.text().await.unwrap();
    assert_eq!(by_id(&wrong, "message").as_deref(), Some(REFUSED));
    assert_eq!(by_id(&unknown, "message").as_deref(), Some(REFUSED));
    // The audit log keeps the reasons.
    let events = audit_reasons(&app).await;
    assert!(events.contains(&"wrong_password".to_owned()), "{events:?}");
    assert!(events.contains(&"unknown_user".to_owned()), "{events:?}");
}

async fn disabled_users_are_refused_alike(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
    crate::common::users::disable(&app, "alice").await;
    // The session ends with the user...
    assert!(!visitor.signed_in().await);
    // ...and the right password is refused like a wrong one.
    let response = visitor.login("alice", PASSWORD).await;
    assert_eq!(response.status(), 401);
    let page = response.text().await.unwrap();
    assert_eq!(by_id(&page, "message").as_deref(), Some(REFUSED));
    assert!(audit_reasons(&app).await.contains(&"disabled".to_owned()));
}

/// The `reason` of every `login.failed` event.
async fn audit_reasons(app: &TestApp) -> Vec<String> {
    let body: serde_json::Value = app
        .admin_get("/admin/v1/audit?action=login.failed")
        .await
        .json()
        .await
        .unwrap();
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str().map(str::to_owned))
        .collect()
}

const THROTTLE: &str = "[login]\nfree_failures_per_account = 2\nfree_failures_per_address = 100\n";

fn assert_throttled(status: u16, page: &str) {
    assert_eq!(status, 429, "{page}");
    let message = by_id(page, "message").expect("a message");
    let re = regex::Regex::new(r"^Too many attempts\. Try again in [0-9]+ s\.$").unwrap();
    assert!(re.is_match(&message), "{message}");
}

async fn an_account_is_throttled_after_its_free_failures(backend: Backend) {
    let app = TestApp::builder(backend).config(THROTTLE).start().await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    for name in ["alice", "ghost"] {
        for _ in 0..3 {
            assert_eq!(visitor.login(name, "wrong").await.status(), 401);
        }
        // Blocked now, even with the right password, known user or not.
        let response = visitor.login(name, PASSWORD).await;
        let status = response.status().as_u16();
        assert!(response.headers().contains_key("retry-after"));
        assert_throttled(status, &response.text().await.unwrap());
    }
    assert!(!visitor.signed_in().await);
    assert!(audit_reasons(&app).await.contains(&"throttled".to_owned()));
    // Once the block is over, the right password works.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
}

/// OWASP's device cookies: a stranger who fails on purpose until Alice's
/// account is blocked does not lock Alice out of a browser she signed in
/// with before; that browser has a budget of its own, and its cookie is
/// good for her username only.
async fn a_stranger_cannot_lock_the_owner_out_of_a_known_browser(backend: Backend) {
    let app = TestApp::builder(backend).config(THROTTLE).start().await;
    add_user(&app, "alice").await;
    add_user(&app, "bob").await;
    let alice = Visitor::new(&app);
    let signed_in = alice.login("alice", PASSWORD).await;
    assert!(set_cookie(&signed_in, "tessera_device").is_some_and(|c| c.contains("HttpOnly")));
    alice.logout().await;

    let stranger = Visitor::new(&app);
    for _ in 0..3 {
        assert_eq!(stranger.login("alice", "wrong").await.status(), 401);
    }
    let blocked = stranger.login("alice", PASSWORD).await;
    assert_throttled(blocked.status().as_u16(), &blocked.text().await.unwrap());
    // Alice's browser still signs her in; its failures count on their own.
    assert_eq!(alice.login("alice", PASSWORD).await.status(), 303);
    alice.logout().await;
    // The cookie is Alice's: as Bob, that browser is a stranger's.
    for _ in 0..3 {
        assert_eq!(alice.login("bob", "wrong").await.status(), 401);
    }
    let blocked = alice.login("bob", PASSWORD).await;
    assert_throttled(blocked.status().as_u16(), &blocked.text().await.unwrap());
}

/// A browser that goes away while its right password is being checked (a
/// closed tab) leaves nothing counted: the step runs to its end, refund
/// included, so the owner is not throttled for the attempts.
async fn abandoned_logins_are_not_counted_as_failures(backend: Backend) {
    let app = TestApp::builder(backend).config(THROTTLE).start().await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let csrf = visitor.csrf("/login").await;
    // More than the free failures, one at a time (attempts that overlap are
    // all counted until they are checked, as they must be).
    for _ in 0..3 {
        let abandoned = visitor
            .http
            .post(format!("{}/login", visitor.base))
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", "alice"),
                ("password", PASSWORD),
            ])
            .timeout(Duration::from_millis(5))
            .send()
            .await;
        assert!(abandoned.is_err(), "the hash takes longer than 5 ms");
        // Let the abandoned step finish on the server.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
}

async fn an_address_is_throttled_across_accounts(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[login]\nfree_failures_per_account = 100\nfree_failures_per_address = 2\n")
        .start()
        .await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    for name in ["spray1", "spray2", "spray3"] {
        assert_eq!(visitor.login(name, "wrong").await.status(), 401);
    }
    let response = visitor.login("alice", PASSWORD).await;
    let status = response.status().as_u16();
    assert_throttled(status, &response.text().await.unwrap());
}

async fn two_replicas_share_the_throttle(backend: Backend) {
    let first = TestApp::builder(backend.clone())
        .config(THROTTLE)
        .start()
        .await;
    let second = TestApp::builder(backend)
        .replica_of(&first)
        .config(THROTTLE)
        .start()
        .await;
    add_user(&first, "alice").await;
    let on_first = Visitor::new(&first);
    for _ in 0..3 {
        assert_eq!(on_first.login("alice", "wrong").await.status(), 401);
    }
    let on_second = Visitor::new(&second);
    let response = on_second.login("alice", PASSWORD).await;
    let status = response.status().as_u16();
    assert_throttled(status, &response.text().await.unwrap());
}

/// Twenty wrong passwords at once, then twenty wrong codes at once: each
/// attempt is counted before it is checked, so with two free failures at
/// most three are checked (the third blocks the account) and the rest are
/// refused as throttled, however they interleave.
async fn parallel_guesses_are_throttled_before_they_are_checked(backend: Backend) {
    let app = TestApp::builder(backend).config(THROTTLE).start().await;
    add_user(&app, "alice").await;
    let visitors: Vec<Visitor> = (0..20).map(|_| Visitor::new(&app)).collect();
    let guesses = visitors.iter().map(|v| v.login("alice", "wrong"));
    for response in futures::future::join_all(guesses).await {
        assert!([401, 429].contains(&response.status().as_u16()));
    }
    let reasons = audit_reasons(&app).await;
    let checked = reasons.iter().filter(|r| *r == "wrong_password").count();
    let throttled = reasons.iter().filter(|r| *r == "throttled").count();
    assert!(checked <= 3, "{reasons:?}");
    assert_eq!(checked + throttled, 20, "{reasons:?}");
    let first_throttled = throttled;

    // The same for TOTP codes, on an account past its block.
    add_user(&app, "bob").await;
    let visitor = Visitor::new(&app);
    visitor.login("bob", PASSWORD).await;
    enrol(&visitor).await;
    visitor.logout().await;
    let step = visitor.login("bob", PASSWORD).await.text().await.unwrap();
    let guesses = (0..20).map(|i| {
        let code = format!("{:06}", 100_000 + i * 7);
        let (visitor, step) = (&visitor, &step);
        async move { visitor.code(step, &code).await }
    });
    for response in futures::future::join_all(guesses).await {
        assert!([401, 429].contains(&response.status().as_u16()));
    }
    let reasons = audit_reasons(&app).await;
    let checked = reasons.iter().filter(|r| *r == "wrong_otp").count();
    let throttled = reasons.iter().filter(|r| *r == "throttled").count() - first_throttled;
    assert!(checked <= 3, "{reasons:?}");
    assert_eq!(checked + throttled, 20, "{reasons:?}");
}

async fn return_to_never_leaves_the_site(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    for evil in [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/\t/evil.example",
        "\\\\evil.example",
        "http:evil.example",
    ] {
        let response = visitor.login_to("alice", PASSWORD, evil).await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), "/account", "{evil:?}");
    }
    // Encoded forms, through the login page's query.
    for encoded in [
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "https%3A%2F%2Fevil.example",
    ] {
        let page = visitor
            .get(&format!("/login?return_to={encoded}"))
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(field(&page, "return_to").as_deref(), Some("/account"));
    }
    let page = visitor
        .get("/login?return_to=%2Fauthorize%3Fclient_id%3Dweb%26state%3Dx")
        .await
        .text()
        .await
        .unwrap();
    let target = field(&page, "return_to").unwrap();
    assert_eq!(target, "/authorize?client_id=web&state=x");
    let response = visitor.login_to("alice", PASSWORD, &target).await;
    assert_eq!(location(&response), "/authorize?client_id=web&state=x");
}

/// Submits the account page's "Set up two-factor authentication" form.
async fn begin_enrolment(visitor: &Visitor) -> reqwest::Response {
    let csrf = visitor.csrf("/account").await;
    visitor
        .post("/account/mfa", &[("csrf", &csrf), ("step", "begin")])
        .await
}

/// Turning TOTP on starts only from the account page's form (CSRF-checked
/// POST) and only within `sessions.reauthenticate_after` of a login: a link
/// cannot start an enrolment, and a session left open cannot get someone
/// else's authenticator.
async fn enrolment_needs_the_form_and_a_recent_login(backend: Backend) {
    use tessera::store::MfaStore;
    let app = TestApp::builder(backend)
        .config("[sessions]\nreauthenticate_after = \"2s\"\n")
        .start()
        .await;
    let alice = add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    visitor.login("alice", PASSWORD).await;
    let pending = || async { app.state.store.totp_for(alice.clone()).await.unwrap() };

    let link = visitor.get("/account/mfa").await;
    assert_eq!(
        (link.status().as_u16(), location(&link)),
        (303, "/account".into())
    );
    let forged = visitor
        .post("/account/mfa", &[("csrf", "forged"), ("step", "begin")])
        .await;
    assert_eq!(forged.status(), 403);
    let csrf = visitor.csrf("/account").await;
    let odd = visitor
        .post("/account/mfa", &[("csrf", &csrf), ("step", "other")])
        .await;
    assert_eq!(odd.status(), 400);
    assert!(pending().await.is_none(), "nothing started");

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let stale = begin_enrolment(&visitor).await;
    assert_eq!(stale.status(), 303);
    assert_eq!(location(&stale), "/login?return_to=%2Faccount");
    assert!(pending().await.is_none(), "an old login starts nothing");
    visitor.login("alice", PASSWORD).await;
    let fresh = begin_enrolment(&visitor).await;
    assert_eq!(fresh.status(), 200);
    let page = fresh.text().await.unwrap();
    assert!(by_id(&page, "secret").is_some());
    assert!(pending().await.is_some_and(|t| t.confirmed_at.is_none()));
    // The confirm step, once the login is old, shows no secret again.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let csrf = field(&page, "csrf").unwrap();
    let late = visitor
        .post("/account/mfa", &[("csrf", &csrf), ("code", "000000")])
        .await;
    assert_eq!(location(&late), "/login?return_to=%2Faccount");
    // Signed in again, the stale pending enrolment is not offered either.
    visitor.login("alice", PASSWORD).await;
    let csrf = visitor.csrf("/account").await;
    let stale = visitor
        .post("/account/mfa", &[("csrf", &csrf), ("code", "000000")])
        .await;
    assert_eq!(location(&stale), "/account");
}

/// Enrols TOTP for the signed-in visitor; returns the secret and the
/// recovery codes.
/// Enrols TOTP for the signed-in visitor: the secret, the recovery codes
/// and the time whose code completed the enrolment (its step is used).
pub async fn enrol(visitor: &Visitor) -> (Vec<u8>, Vec<String>, i64) {
    let page = begin_enrolment(visitor).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let secret = by_id(&page, "secret").expect("the manual key");
    let secret = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
    let csrf = field(&page, "csrf").unwrap();
    // A wrong code first: refused, nothing enrolled.
    let response = visitor
        .post("/account/mfa", &[("csrf", &csrf), ("code", "000000")])
        .await;
    assert_eq!(response.status(), 422);
    let enrolled_at = tessera::clock::now();
    let code = tessera::accounts::totp::code_at(&secret, enrolled_at);
    let response = visitor
        .post("/account/mfa", &[("csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    let codes: Vec<String> = regex::Regex::new(r"<li><code>([a-z0-9-]+)</code></li>")
        .unwrap()
        .captures_iter(&page)
        .map(|c| c[1].to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{page}");
    (secret, codes, enrolled_at)
}

async fn totp_enrolment_login_replay_and_recovery(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    visitor.login("alice", PASSWORD).await;
    let (secret, codes, enrolled_at) = enrol(&visitor).await;
    let account = visitor.get("/account").await.text().await.unwrap();
    assert_eq!(
        by_id(&account, "mfa-status").as_deref(),
        Some("On (10 recovery codes left)")
    );
    visitor.logout().await;

    // The password alone no longer signs in: a code is asked for.
    let step = visitor.login("alice", PASSWORD).await;
    assert_eq!(step.status(), 200);
    assert!(set_cookie(&step, "tessera_session").is_none());
    let step = step.text().await.unwrap();
    assert!(!visitor.signed_in().await);
    let wrong = visitor.code(&step, "123456").await;
    assert_eq!(wrong.status(), 401);
    // The enrolment's code is used: refused whether its step is still
    // within the allowed skew or not. A later step's code (the next one,
    // or the current one if a step boundary has passed since) is accepted
    // within the skew (RFC 6238 §5.2).
    let enrolment_code = tessera::accounts::totp::code_at(&secret, enrolled_at);
    let step = visitor.login("alice", PASSWORD).await.text().await.unwrap();
    assert_eq!(visitor.code(&step, &enrolment_code).await.status(), 401);
    let step = visitor.login("alice", PASSWORD).await.text().await.unwrap();
    let later = (enrolled_at + 30).max(tessera::clock::now());
    let next = tessera::accounts::totp::code_at(&secret, later);
    assert_eq!(visitor.code(&step, &next).await.status(), 303);
    assert!(visitor.signed_in().await);
    let account = visitor.get("/account").await.text().await.unwrap();
    assert!(account.contains("pwd, otp"), "{account}");
    visitor.logout().await;

    // The same code again (a replay) is refused, from any browser.
    for browser in [&visitor, &Visitor::new(&app)] {
        let step = browser.login("alice", PASSWORD).await.text().await.unwrap();
        assert_eq!(
            browser.code(&step, &next).await.status(),
            401,
            "a TOTP code is accepted once"
        );
    }
    assert!(!visitor.signed_in().await);

    // A recovery code works once.
    let step = visitor.login("alice", PASSWORD).await.text().await.unwrap();
    assert_eq!(
        visitor.code(&step, &codes[0].to_uppercase()).await.status(),
        303
    );
    visitor.logout().await;
    let step = visitor.login("alice", PASSWORD).await.text().await.unwrap();
    assert_eq!(visitor.code(&step, &codes[0]).await.status(), 401);
    assert!(!visitor.signed_in().await);
}

async fn an_admin_resets_mfa(backend: Backend) {
    let app = TestApp::start(backend).await;
    let id = add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    visitor.login("alice", PASSWORD).await;
    enrol(&visitor).await;
    assert!(visitor.signed_in().await);
    let response = app
        .http
        .delete(app.endpoint(&format!("/admin/v1/users/{id}/mfa")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // Sessions signed in with the factor no longer trusted end with it.
    assert!(!visitor.signed_in().await);
    // The password alone signs in again.
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
    let again = app
        .http
        .delete(app.endpoint("/admin/v1/users/nobody/mfa"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    crate::common::fail_with(again, 404, "not_found").await;
    let body: serde_json::Value = app
        .admin_get("/admin/v1/audit?action=mfa.reset")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
    // The session signed in before the reset ended with it.
    assert_eq!(body["events"][0]["details"]["ended_sessions"], 1, "{body}");
}

async fn nul_bytes_and_huge_fields_are_refused_without_a_500(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    let csrf = visitor.csrf("/login").await;
    let huge = "a".repeat(60_000);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("csrf", &csrf),
            ("username", "ali\0ce"),
            ("password", PASSWORD),
        ],
        vec![
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", "pa\0ss"),
        ],
        vec![("csrf", &csrf), ("username", &huge), ("password", PASSWORD)],
        vec![("csrf", &csrf), ("username", "alice"), ("password", &huge)],
        vec![
            ("csrf", "\0"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    ];
    for form in cases {
        let status = visitor.post("/login", &form).await.status();
        assert_eq!(status, 400);
    }
    let code = visitor
        .post(
            "/login/code",
            &[("csrf", &csrf), ("pending", "x\0"), ("code", "1")],
        )
        .await;
    assert_eq!(code.status(), 400);
    let too_big = "b".repeat(70_000);
    let status = visitor
        .post("/login", &[("csrf", &csrf), ("username", &too_big)])
        .await
        .status();
    assert_eq!(status, 413);
    for path in [
        "/login?return_to=%00",
        "/login?return_to=/%00",
        "/login?x=%FF",
    ] {
        let status = visitor.get(path).await.status();
        assert!(status == 200 || status == 400, "{path}: {status}");
    }
    let malformed = visitor
        .http
        .post(app.endpoint("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=%ZZ&username=%FF%FE")
        .send()
        .await
        .unwrap();
    assert!(
        malformed.status().is_client_error(),
        "{}",
        malformed.status()
    );
}

async fn logout_ends_the_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    visitor.login("alice", PASSWORD).await;
    let cookie = visitor.get("/account").await;
    assert_eq!(cookie.status(), 200);
    let page = visitor.get("/logout").await.text().await.unwrap();
    assert!(page.contains("Do you want to sign out"), "{page}");
    let response = visitor.logout().await;
    assert_eq!(response.status(), 200);
    let cleared = set_cookie(&response, "tessera_session").expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(!visitor.signed_in().await);
    let body: serde_json::Value = app
        .admin_get("/admin/v1/audit?action=logout")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
}

/// A block as long as the failure window is activity until it ends: the
/// next failure after it waits the longest delay again, instead of the
/// bucket starting over with its free failures. Idle for a window after
/// the block ended, it starts over.
async fn a_bucket_blocked_for_a_whole_window_does_not_start_afresh(backend: Backend) {
    use tessera::store::{Admission, ThrottleStore};
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let (window, max) = (900, 900);
    // One free failure, then the longest block at once.
    let delay = move || Box::new(move |attempts: i64| if attempts > 1 { max } else { 0 });
    let admit =
        |now: i64| store.admit_attempts(vec![("t:blocked".into(), delay())], now, now - window);
    let start = 1_900_000_000;
    assert!(matches!(admit(start).await.unwrap(), Admission::Allowed));
    assert!(matches!(
        admit(start + 1).await.unwrap(),
        Admission::Allowed
    ));
    assert!(matches!(
        admit(start + 2).await.unwrap(),
        Admission::Blocked { .. }
    ));
    // Just after the block: blocked again at once, not a fresh free failure.
    let after = start + 1 + max + 1;
    assert!(matches!(admit(after).await.unwrap(), Admission::Allowed));
    assert!(matches!(
        admit(after + 1).await.unwrap(),
        Admission::Blocked { .. }
    ));
    // A whole window idle after that block: free again.
    let later = after + max + window + 1;
    assert!(matches!(admit(later).await.unwrap(), Admission::Allowed));
    assert!(matches!(
        admit(later + 1).await.unwrap(),
        Admission::Allowed
    ));
}

/// A throttle bucket's failures and block, if it has a row.
async fn bucket_row(app: &TestApp, name: &str) -> Option<(i64, i64)> {
    use tessera::store::ThrottleStore;
    let rows = app.state.store.throttle_records(vec![name.into()]);
    rows.await
        .unwrap()
        .first()
        .map(|r| (r.failures, r.blocked_until))
}

/// A login's session, audit event and throttle settlement are one
/// transaction. The settlement goes last, so a database trigger refusing
/// it (here, the clearing of one bucket's row) must take the session and
/// the event with it, and leave both buckets' counts as they were. (A
/// cleared bucket is zeroed: the trigger refuses updates of one bucket,
/// installed once its attempts are counted.)
async fn a_login_settles_starts_and_audits_together_or_not_at_all(backend: Backend) {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    use tessera::audit::{Actor, Event, Outcome};
    use tessera::store::{
        AuditFilter, AuditStore, BucketPolicy, SessionStore, Settlement, ThrottleStore,
    };
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let now = tessera::clock::now();
    let app = &app;
    let failures = |name: &'static str| async move {
        bucket_row(app, name).await.map(|(failures, _)| failures)
    };
    let event = |target: &str| {
        Event::new(Actor::anonymous(), "login.succeeded", Outcome::Success)
            .target(target)
            .into_record(now * 1000)
    };
    let counted = |name: &str| -> BucketPolicy { (name.into(), Box::new(|_| 0)) };
    // The refund's bucket sorts before the cleared one in the first pair
    // and the refused one (so the refused settlement has a refund to
    // roll back), after it in the second.
    for (clear, refund) in [
        ("t:b-account", "t:a-address"),
        ("t:c-account", "t:z-address"),
        ("t:refused", "t:a2-address"),
    ] {
        for _ in 0..2 {
            let both = vec![counted(clear), counted(refund)];
            store.admit_attempts(both, now, now - 900).await.unwrap();
        }
    }
    const SQLITE_REFUSAL: &str = "CREATE TRIGGER refuse BEFORE UPDATE ON login_throttle \
        WHEN OLD.bucket = 't:refused' BEGIN SELECT RAISE(ABORT, 'refused'); END;";
    const POSTGRES_REFUSAL: &str = "CREATE FUNCTION refuse() RETURNS trigger \
        LANGUAGE plpgsql AS $$ BEGIN \
        IF OLD.bucket = 't:refused' THEN RAISE EXCEPTION 'refused'; END IF; \
        RETURN NEW; END $$; \
        CREATE TRIGGER refuse BEFORE UPDATE ON login_throttle \
        FOR EACH ROW EXECUTE FUNCTION refuse();";
    match app.db.url.strip_prefix("sqlite://") {
        Some(path) => diesel::SqliteConnection::establish(path)
            .unwrap()
            .batch_execute(SQLITE_REFUSAL),
        None => diesel::PgConnection::establish(&app.db.url)
            .unwrap()
            .batch_execute(POSTGRES_REFUSAL),
    }
    .unwrap();
    let settle = |clear: &str, refund: &str| Settlement {
        clear: clear.into(),
        refund: Some(refund.into()),
    };
    for (clear, refund, session, target) in [
        ("t:b-account", "t:a-address", "s1", "first"),
        ("t:c-account", "t:z-address", "s2", "second"),
    ] {
        let settled = settle(clear, refund);
        store
            .create_login_session(session_row(session, now, now), event(target), settled)
            .await
            .unwrap();
        assert_eq!(failures(clear).await, Some(0), "cleared");
        assert_eq!(failures(refund).await, Some(1), "refunded");
    }
    let refused = settle("t:refused", "t:a2-address");
    let outcome = store
        .create_login_session(session_row("s3", now, now), event("third"), refused)
        .await;
    assert!(outcome.is_err(), "the trigger refuses the settlement");
    assert_eq!(failures("t:refused").await, Some(2), "nothing cleared");
    assert_eq!(failures("t:a2-address").await, Some(2), "nothing refunded");
    let found = store.session_by_digest(b"s3".to_vec()).await.unwrap();
    assert!(found.is_none(), "no session without its settlement");
    assert!(
        store
            .session_by_digest(b"s1".to_vec())
            .await
            .unwrap()
            .is_some()
    );
    let events = store
        .list_audit(AuditFilter {
            action: Some("login.succeeded".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let targets: Vec<_> = events.iter().filter_map(|e| e.target.as_deref()).collect();
    assert_eq!(
        targets,
        ["second", "first"],
        "no event without its settlement"
    );
}

/// An attempt refused by one blocked bucket is counted in none of the
/// others (the transaction that counted them is rolled back), and a right
/// attempt clears its account bucket and refunds its address bucket.
async fn a_blocked_bucket_counts_the_attempt_nowhere(backend: Backend) {
    use tessera::store::{Admission, BucketPolicy, Settlement, StoreError, ThrottleStore};
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let now = 1_900_000_000;
    let free = |name: &str| -> BucketPolicy { (name.into(), Box::new(|_| 0)) };
    let failures = |name: &'static str| bucket_row(&app, name);
    let settle = |clear: &str, refund: &str| {
        let settlement = Settlement {
            clear: clear.into(),
            refund: Some(refund.into()),
        };
        async { store.settle_attempt(settlement).await.unwrap() }
    };
    // "t:shut" blocks itself for 900 s on its first attempt.
    let shut: BucketPolicy = ("t:shut".into(), Box::new(|_| 900));
    assert_eq!(
        store
            .admit_attempts(vec![shut], now, now - 900)
            .await
            .unwrap(),
        Admission::Allowed
    );
    let refused = store
        .admit_attempts(vec![free("t:open"), free("t:shut")], now + 1, now - 899)
        .await
        .unwrap();
    assert_eq!(refused, Admission::Blocked { until: now + 900 });
    assert_eq!(
        failures("t:open").await,
        None,
        "the open bucket counted nothing"
    );
    assert_eq!(failures("t:shut").await, Some((1, now + 900)));

    for _ in 0..2 {
        let both = vec![free("t:account"), free("t:address")];
        let admitted = store.admit_attempts(both, now, now - 900).await.unwrap();
        assert_eq!(admitted, Admission::Allowed);
    }
    assert_eq!(failures("t:account").await, Some((2, 0)));
    assert_eq!(failures("t:address").await, Some((2, 0)));
    settle("t:account", "t:address").await;
    assert_eq!(
        failures("t:account").await,
        Some((0, 0)),
        "zeroed, not deleted"
    );
    assert_eq!(failures("t:address").await, Some((1, 0)));
    // A blocked account bucket is cleared too; a refund never goes below zero.
    settle("t:shut", "t:open").await;
    assert_eq!(failures("t:shut").await, Some((0, 0)));
    // "t:open" had no row: it gets a zeroed one, which the purge takes.
    assert_eq!(failures("t:open").await, Some((0, 0)));
    // A refund stops at zero, and leaves a block on its bucket.
    let shut_again: BucketPolicy = ("t:shut".into(), Box::new(|_| 900));
    let blocked = store.admit_attempts(vec![shut_again], now, now - 900);
    assert_eq!(blocked.await.unwrap(), Admission::Allowed);
    settle("t:account", "t:shut").await;
    assert_eq!(failures("t:shut").await, Some((0, now + 900)), "block kept");
    settle("t:account", "t:open").await;
    assert_eq!(failures("t:open").await, Some((0, 0)), "not below zero");
    store.refund_attempt("t:address".into()).await.unwrap();
    store.refund_attempt("t:address".into()).await.unwrap();
    assert_eq!(failures("t:address").await, Some((0, 0)));
    // The first of two buckets starts a block; the second counts on.
    let first_blocks = || -> Vec<BucketPolicy> {
        vec![("t:p-first".into(), Box::new(|_| 60)), free("t:q-second")]
    };
    let admitted = store.admit_attempts(first_blocks(), now, now - 900);
    assert_eq!(admitted.await.unwrap(), Admission::Allowed);
    assert_eq!(failures("t:p-first").await, Some((1, now + 60)));
    assert_eq!(failures("t:q-second").await, Some((1, 0)));
    let refused = store.admit_attempts(first_blocks(), now + 1, now - 899);
    assert_eq!(
        refused.await.unwrap(),
        Admission::Blocked { until: now + 60 }
    );
    assert_eq!(failures("t:q-second").await, Some((1, 0)), "rolled back");
    // Two blocked buckets: the refusal names the later end.
    let both_blocked = vec![free("t:p-first"), free("t:shut")];
    let refused = store.admit_attempts(both_blocked, now + 1, now - 899);
    assert_eq!(
        refused.await.unwrap(),
        Admission::Blocked { until: now + 900 }
    );
    // A bucket named twice is refused, not counted once or twice.
    let twice = store.admit_attempts(vec![free("t:twice"), free("t:twice")], now, now - 900);
    assert!(
        matches!(twice.await, Err(StoreError::Other(why)) if why.contains("named twice")),
        "refused before any statement"
    );
    assert_eq!(failures("t:twice").await, None);
    // Attempts naming shared buckets in either order, all at once: rows
    // are locked in one order, so none deadlocks (PostgreSQL would abort
    // one of a pair that locked them crosswise).
    let attempts = (0..24).map(|n| {
        let mut both = vec![free("t:x"), free("t:y")];
        if n % 2 == 1 {
            both.reverse();
        }
        store.admit_attempts(both, now, now - 900)
    });
    for admitted in futures::future::join_all(attempts).await {
        assert_eq!(admitted.unwrap(), Admission::Allowed);
    }
    assert_eq!(failures("t:x").await, Some((24, 0)));
}

/// The purge skips a bucket an attempt holds instead of waiting for it:
/// an attempt holds one bucket's row while it locks the next, and a purge
/// that waited, holding rows it had deleted, could deadlock with it.
/// PostgreSQL only: SQLite has no row locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_skips_a_bucket_an_attempt_holds() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    use tessera::store::{BucketPolicy, ThrottleStore};
    let Some(backend) = Backend::postgres() else {
        eprintln!("skipped: {} is not set", crate::common::PG_ENV);
        return;
    };
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let long_ago = 1_000_000_000;
    let free = |name: &str| -> BucketPolicy { (name.into(), Box::new(|_| 0)) };
    store
        .admit_attempts(
            vec![free("t:held"), free("t:idle")],
            long_ago,
            long_ago - 900,
        )
        .await
        .unwrap();
    let mut holder = diesel::PgConnection::establish(&app.db.url).unwrap();
    holder
        .batch_execute(
            "BEGIN; SELECT bucket FROM login_throttle WHERE bucket = 't:held' FOR UPDATE",
        )
        .unwrap();
    let purged = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.purge_throttle(tessera::clock::now()),
    )
    .await
    .expect("the purge does not wait for the held bucket")
    .unwrap();
    assert_eq!(purged, 1, "the idle bucket is purged");
    holder.batch_execute("COMMIT").unwrap();
    let left = store
        .throttle_records(vec!["t:held".into(), "t:idle".into()])
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].bucket, "t:held");
}

/// Every write of a login's throttle rows can be a heap-only update on
/// PostgreSQL (no new index entries, the row stays on its page): the
/// table's only index is its key, which no write changes, and its pages
/// keep room for new row versions. An address's row is written twice by
/// every login from that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_rows_are_updated_in_place() {
    use diesel::{Connection, QueryableByName, RunQueryDsl, sql_types::Text};
    #[derive(QueryableByName)]
    struct Layout {
        #[diesel(sql_type = Text)]
        options: String,
        #[diesel(sql_type = Text)]
        indexes: String,
    }
    let Some(backend) = Backend::postgres() else {
        eprintln!("skipped: {} is not set", crate::common::PG_ENV);
        return;
    };
    let app = TestApp::start(backend).await;
    let mut conn = diesel::PgConnection::establish(&app.db.url).unwrap();
    let found: Layout = diesel::sql_query(
        "SELECT coalesce(array_to_string(c.reloptions, ','), '') AS options, \
         (SELECT string_agg(i.indexrelid::regclass::text, ',') FROM pg_index i \
          WHERE i.indrelid = c.oid) AS indexes \
         FROM pg_class c WHERE c.oid = 'login_throttle'::regclass",
    )
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(found.options, "fillfactor=70");
    assert_eq!(found.indexes, "login_throttle_pkey");
}

/// The maintenance loop's purge: sessions past either timeout go, in
/// batches of 1,000 until none is left; a live one stays.
async fn ended_sessions_are_purged_in_batches(backend: Backend) {
    use tessera::store::SessionStore;
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let now = tessera::clock::now();
    // Half idle for two hours, half seen just now but a day old.
    for chunk in (0..2_500).collect::<Vec<_>>().chunks(250) {
        let rows = chunk.iter().map(|n| {
            store.create_session(if n % 2 == 0 {
                session_row(&format!("idle-{n}"), now - 7_200, now - 7_200 + n % 7)
            } else {
                session_row(&format!("old-{n}"), now - 100_000, now)
            })
        });
        for created in futures::future::join_all(rows).await {
            created.unwrap();
        }
    }
    store
        .create_session(session_row("live", now - 600, now - 60))
        .await
        .unwrap();

    let (idle_before, created_before) = (now - 3_600, now - 86_400);
    let purged = store.purge_sessions(idle_before, created_before).await;
    assert_eq!(purged.unwrap(), 2_500);
    for (id, kept) in [("idle-0", false), ("old-2499", false), ("live", true)] {
        let found = store.session_by_digest(id.as_bytes().to_vec()).await;
        assert_eq!(found.unwrap().is_some(), kept, "{id}");
    }
    let again = store.purge_sessions(idle_before, created_before).await;
    assert_eq!(again.unwrap(), 0);
}
