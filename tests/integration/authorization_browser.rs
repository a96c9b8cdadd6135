//! Issue 10's "done when", in headless Chromium: Alice, with TOTP, signs in
//! to a relying party (the `openidconnect` crate) through Tessera's pages
//! (login, code, consent), the browser is sent back to the relying party's
//! loopback callback, and the relying party exchanges the code, verifies
//! the ID token (signature, nonce, `at_hash`) and calls userinfo. Every
//! page is screenshotted under target/screenshots/.

use openidconnect::core::{CoreResponseType, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, Scope, TokenResponse,
};
use serde_json::json;
use tessera::accounts::totp::code_at;

use crate::clients::register;
use crate::common::browser::Browser;
use crate::common::relying_party::discover;
use crate::common::{Backend, TestApp};
use crate::login::add_user;
use crate::on_both_backends;

const PASSWORD: &str = "correct horse battery staple";

on_both_backends!(a_relying_party_signs_alice_in_with_totp_in_a_browser);

/// The relying party's redirect target: a loopback page that only says
/// where the browser arrived (RFC 8252 §7.3: any port on loopback).
async fn callback_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(|| async {
            axum::response::Html(
                "<!doctype html><html lang=en><title>Relying party</title><h1>Back at the relying party</h1>",
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/callback")
}

/// Signs in at /login, turns TOTP on at /account/mfa, signs out; returns
/// the TOTP secret.
async fn enrol_totp(browser: &Browser, app: &TestApp) -> Vec<u8> {
    browser.goto(&app.endpoint("/login")).await;
    browser.fill("#username", "alice").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#submit").await;
    browser.click("#enrol").await;
    let secret = browser.text("#secret").await;
    let secret = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
    browser
        .fill("#code", &code_at(&secret, tessera::clock::now()))
        .await;
    browser.click("#submit").await;
    assert_eq!(browser.h1().await, "Two-factor authentication is on");
    browser.goto(&app.endpoint("/logout")).await;
    browser.click("#submit").await;
    assert_eq!(browser.h1().await, "Signed out");
    secret
}

async fn a_relying_party_signs_alice_in_with_totp_in_a_browser(backend: Backend) {
    let browser_name = format!("rp-{}", backend.name());
    let app = TestApp::start(backend).await;
    let alice = add_user(&app, "alice").await;
    let callback = callback_server().await;
    // Registered without the port: a loopback redirect matches any port
    // (RFC 8252 §7.3).
    let (client_id, secret) = register(
        &app,
        json!({"name": "Photo Album", "grant_types": ["authorization_code"],
               "redirect_uris": ["http://127.0.0.1/callback"]}),
    )
    .await;
    let browser = Browser::start(&browser_name).await;
    let totp = enrol_totp(&browser, &app).await;

    let secret = secret.expect("a confidential client");
    let (client, http) = discover(&app, &client_id, &secret, &callback).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    browser.goto(url.as_str()).await;
    assert_eq!(browser.path().await, "/login");
    browser.screenshot("login").await;
    browser.fill("#username", "alice").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#submit").await;
    assert_eq!(browser.h1().await, "Two-factor authentication");
    browser.screenshot("code").await;
    browser
        .fill("#code", &code_at(&totp, tessera::clock::now() + 30))
        .await;
    browser.click("#submit").await;
    assert_eq!(browser.h1().await, "Allow Photo Album?");
    let consent = browser.text("main").await;
    assert!(consent.contains("Photo Album"), "{consent}");
    browser.screenshot("consent").await;
    browser.click("button[value=allow]").await;

    let back = browser.url().await;
    assert_eq!(browser.h1().await, "Back at the relying party");
    browser.screenshot("callback").await;
    assert!(back.as_str().starts_with(&callback), "{back}");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("{name} in {back}"))
    };
    assert_eq!(
        param("state"),
        *state.secret(),
        "state comes back unchanged"
    );
    assert_eq!(param("iss"), app.url, "RFC 9207 iss");

    let tokens = client
        .exchange_code(AuthorizationCode::new(param("code")))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is exchanged");
    let id_token = tokens.id_token().expect("an ID token");
    let id_verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("signature, issuer, audience, expiry and nonce verify");
    assert_eq!(claims.subject().as_str(), alice);
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    let amr: Vec<String> = claims
        .auth_method_refs()
        .expect("amr")
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(amr, ["pwd", "otp"]);

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), alice);
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));
    browser.close().await;
}
