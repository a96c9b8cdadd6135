//! Account → Security → Personal access tokens in headless Chromium
//! (issue 12 item 9, and its "done when"): alice signs in, creates a
//! 7-day prod token on the page, uses it with `TESSERA_TOKEN` from the
//! CLI, disables it (403), enables it, rolls it and revokes it, each after
//! a confirmation; every page is screenshotted under target/screenshots/.

use crate::cli::{run, stderr, tessera};
use crate::common::browser::Browser;
use crate::common::{Backend, TestApp};
use crate::login::add_user;
use crate::on_both_backends;

const PASSWORD: &str = "correct horse battery staple";

on_both_backends!(alice_manages_a_token_on_the_page);

/// `tessera whoami` with `token` in TESSERA_TOKEN: the exit status and
/// what it printed.
fn whoami(app: &TestApp, token: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tessera(dir.path());
    command
        .env("TESSERA_TOKEN", token)
        .args(["--url", &app.url, "whoami"]);
    let output = tokio::task::block_in_place(|| run(&mut command));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    (output.status.success(), text)
}

/// The id of the token listed first.
async fn first_token_id(browser: &Browser) -> String {
    browser
        .client
        .find(fantoccini::Locator::Css(".token"))
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap()
        .unwrap()
        .trim_start_matches("token-")
        .to_owned()
}

/// Confirms `action` on the token shown first in the list.
async fn confirm(browser: &Browser, action: &str, id: &str, shot: &str) {
    browser.click(&format!("#{action}-{id}")).await;
    assert_eq!(browser.h1().await, "Are you sure?");
    assert!(!browser.text("#question").await.is_empty());
    browser.screenshot(&format!("{shot}-confirm")).await;
    browser.click("#confirm").await;
}

async fn alice_manages_a_token_on_the_page(backend: Backend) {
    let browser_name = format!("tokens-{}", backend.name());
    let app = TestApp::start(backend).await;
    add_user(&app, "alice").await;
    let browser = Browser::start(&browser_name).await;

    browser.goto(&app.endpoint("/login")).await;
    browser.fill("#username", "alice").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#submit").await;
    assert_eq!(browser.path().await, "/account");
    browser.click("#tokens-link").await;
    assert_eq!(browser.path().await, "/account/tokens");
    assert_eq!(browser.h1().await, "Personal access tokens");
    assert!(browser.text("#no-tokens").await.contains("no tokens"));
    browser.screenshot("empty").await;

    // A 7-day prod token with tokens:self.
    browser.fill("#name", "deploy script").await;
    browser.tick("#env-prod").await;
    browser.tick("#expires-7d").await;
    browser.tick("#scope-tokens-self").await;
    browser.screenshot("create-form").await;
    browser.click("#create-token").await;
    assert_eq!(browser.h1().await, "Your new token");
    assert!(
        browser
            .text("#warning")
            .await
            .contains("cannot be shown again")
    );
    let token = browser.text("#new-token").await;
    assert!(token.starts_with("tsr_pat_prod_"), "{token}");
    // The copy button is there (its script ran) and answers a click.
    browser.tick("#copy").await;
    let copied = browser.text("#copy").await;
    assert!(
        copied == "Copied" || copied.starts_with("Selected"),
        "{copied}"
    );
    browser.screenshot("shown-once").await;

    // Used from the CLI.
    let (ok, text) = whoami(&app, &token);
    assert!(ok && text.contains("alice"), "{text}");

    browser.click("#back").await;
    let item = browser.text(".token").await;
    assert!(item.contains("deploy script") && item.contains("prod") && item.contains("active"));
    assert!(!item.contains(&token), "the list never shows the value");
    let id = first_token_id(&browser).await;
    browser.screenshot("listed").await;

    // Disable: 403 from the CLI; enable: back.
    confirm(&browser, "disable", &id, "disable").await;
    assert_eq!(browser.text(".token .status").await, "disabled");
    browser.screenshot("disabled").await;
    let (ok, text) = whoami(&app, &token);
    assert!(
        !ok && text.contains("403") && text.contains("token disabled"),
        "{text}"
    );
    confirm(&browser, "enable", &id, "enable").await;
    assert_eq!(browser.text(".token .status").await, "active");
    assert!(whoami(&app, &token).0);

    // Roll: a new value, shown once; the old one stops.
    confirm(&browser, "roll", &id, "roll").await;
    assert_eq!(browser.h1().await, "Your rolled token");
    let rolled = browser.text("#new-token").await;
    assert!(rolled.starts_with("tsr_pat_prod_") && rolled != token);
    browser.screenshot("rolled").await;
    assert!(!whoami(&app, &token).0);
    assert!(whoami(&app, &rolled).0);

    // Revoke, for good.
    browser.click("#back").await;
    let new_id = first_token_id(&browser).await;
    confirm(&browser, "revoke", &new_id, "revoke").await;
    let (ok, text) = whoami(&app, &rolled);
    assert!(!ok && text.contains("401"), "{text}");
    assert!(browser.text("#no-tokens").await.contains("no tokens"));

    // A token close to expiry is marked.
    browser.fill("#name", "short").await;
    browser.tick("#env-dev").await;
    browser.tick("#expires-1h").await;
    browser.click("#create-token").await;
    browser.click("#back").await;
    assert!(browser.has_class(".token", "expiring").await);
    assert!(
        browser
            .text(".token .expires")
            .await
            .contains("expires soon")
    );
    browser.screenshot("expiring").await;

    // The audit names alice for each step made on the page.
    let page: serde_json::Value = app
        .admin_get(&format!("/admin/v1/audit?token={id}"))
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "token.created",
        "token.disabled",
        "token.enabled",
        "token.rolled",
    ] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    browser.close().await;
}
