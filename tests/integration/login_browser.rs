//! The sign-in pages in headless Chromium (issue 10, item 10): every page
//! visited is screenshotted under target/screenshots/.

use crate::common::browser::Browser;
use crate::common::{Backend, TestApp};
use crate::login::add_user;
use crate::on_both_backends;

const PASSWORD: &str = "correct horse battery staple";

on_both_backends!(
    a_user_signs_in_and_out_in_a_browser,
    a_user_enrols_totp_and_signs_in_with_it,
);

async fn sign_in(browser: &Browser, app: &TestApp, username: &str, password: &str, shot: &str) {
    browser.goto(&app.endpoint("/login")).await;
    browser.screenshot(shot).await;
    browser.fill("#username", username).await;
    browser.fill("#password", password).await;
    browser.click("#submit").await;
}

async fn a_user_signs_in_and_out_in_a_browser(backend: Backend) {
    let browser_name = format!("signin-{}", backend.name());
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let browser = Browser::start(&browser_name).await;

    sign_in(&browser, &app, "alice", "not it", "login").await;
    assert_eq!(browser.path().await, "/login");
    assert_eq!(
        browser.text("#message").await,
        "Incorrect username or password."
    );
    browser.screenshot("wrong-password").await;

    browser.fill("#password", PASSWORD).await;
    browser.click("#submit").await;
    assert_eq!(browser.path().await, "/account");
    assert_eq!(browser.h1().await, "Your account");
    assert!(browser.text("#signed-in").await.contains("alice"));
    browser.screenshot("account").await;

    browser.click("#logout").await;
    assert_eq!(browser.path().await, "/logout");
    browser.screenshot("logout-confirm").await;
    browser.click("#submit").await;
    assert_eq!(browser.h1().await, "Signed out");
    browser.screenshot("signed-out").await;

    browser.goto(&app.endpoint("/account")).await;
    assert_eq!(browser.path().await, "/login");
    browser.close().await;
}

async fn a_user_enrols_totp_and_signs_in_with_it(backend: Backend) {
    use tessera::accounts::totp::code_at;
    let browser_name = format!("totp-{}", backend.name());
    let app = TestApp::start(backend).await;
    add_user(&app, "bob").await;
    let browser = Browser::start(&browser_name).await;
    sign_in(&browser, &app, "bob", PASSWORD, "login").await;
    assert_eq!(browser.path().await, "/account");

    browser.click("#enrol").await;
    assert_eq!(browser.path().await, "/account/mfa");
    browser.screenshot("enrol").await;
    let secret = browser.text("#secret").await;
    let secret = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
    browser
        .fill("#code", &code_at(&secret, tessera::clock::now()))
        .await;
    browser.click("#submit").await;
    assert_eq!(browser.h1().await, "Two-factor authentication is on");
    browser.screenshot("recovery-codes").await;
    let codes = browser.text("#recovery-codes").await;
    let codes: Vec<String> = codes.split_whitespace().map(str::to_owned).collect();
    assert_eq!(codes.len(), 10, "{codes:?}");

    // Sign out, then in with password and code.
    browser.goto(&app.endpoint("/logout")).await;
    browser.click("#submit").await;
    sign_in(&browser, &app, "bob", PASSWORD, "login-again").await;
    assert_eq!(browser.h1().await, "Two-factor authentication");
    browser.screenshot("code").await;
    // The enrolment used the current step; the next one's code is within
    // the allowed skew.
    browser
        .fill("#code", &code_at(&secret, tessera::clock::now() + 30))
        .await;
    browser.click("#submit").await;
    assert_eq!(browser.path().await, "/account");
    assert!(browser.text("#mfa-status").await.starts_with("On"));
    browser.screenshot("account-with-totp").await;

    // A recovery code works once.
    for (attempt, expected) in [(0, "/account"), (1, "/login/code")] {
        browser.goto(&app.endpoint("/logout")).await;
        browser.click("#submit").await;
        sign_in(
            &browser,
            &app,
            "bob",
            PASSWORD,
            &format!("login-recovery-{attempt}"),
        )
        .await;
        browser.fill("#code", &codes[0]).await;
        browser.click("#submit").await;
        assert_eq!(browser.path().await, expected, "recovery attempt {attempt}");
    }
    assert_eq!(
        browser.text("#message").await,
        "That code is not valid. Try again, or use a recovery code."
    );
    browser.screenshot("recovery-reused").await;
    browser.close().await;
}
