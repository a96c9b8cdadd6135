//! The authorization endpoint for a client that redirects to a loopback
//! listener, as `tessera login --web` does: any program on the machine
//! may be the one listening (RFC 8252 §8.6), so the user is asked every
//! time, first-party client or not, and `prompt=none` cannot skip it; an
//! administrator giving admin scopes signs in again when their login is
//! older than `sessions.reauthenticate_after`, as on `/device`.

use crate::authorization::{PASSWORD, create_user, submit_consent};
use crate::common::pages::{Visitor, location};
use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_loopback_redirect_is_asked_every_time,
    admin_scopes_need_a_recent_sign_in,
);

/// RFC 7636 Appendix B's challenge.
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize(scope: &str, extra: &str) -> String {
    format!(
        "/oauth/authorize?client_id=tessera-cli&response_type=code&state=s1\
         &redirect_uri=http%3A%2F%2F127.0.0.1%3A4567%2Fcallback\
         &code_challenge={CHALLENGE}&code_challenge_method=S256&scope={scope}{extra}"
    )
}

async fn signed_in(app: &TestApp, username: &str) -> Visitor {
    let visitor = Visitor::new(app);
    assert_eq!(visitor.login(username, PASSWORD).await.status(), 303);
    visitor
}

async fn a_loopback_redirect_is_asked_every_time(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", false).await;
    let alice = signed_in(&app, "alice").await;
    for round in 0..2 {
        let page = alice.get(&authorize("openid", "")).await;
        assert_eq!(page.status(), 200, "round {round}: the consent page");
        let page = page.text().await.unwrap();
        assert!(page.contains("The answer goes to a program on this computer"));
        let back = location(&submit_consent(&alice, &page, "allow").await);
        assert!(
            back.starts_with("http://127.0.0.1:4567/callback?code="),
            "{back}"
        );
    }
    let silent = alice.get(&authorize("openid", "&prompt=none")).await;
    let back = location(&silent);
    assert!(back.contains("error=consent_required"), "{back}");
}

async fn admin_scopes_need_a_recent_sign_in(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[sessions]\nreauthenticate_after = \"3s\"\n")
        .start()
        .await;
    create_user(&app, "root", true).await;
    let root = signed_in(&app, "root").await;
    let admin = authorize("openid%20admin", "");
    assert_eq!(root.get(&admin).await.status(), 200, "just signed in");

    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let stale = root.get(&admin).await;
    assert_eq!(stale.status(), 303);
    assert!(
        location(&stale).starts_with("/login"),
        "{}",
        location(&stale)
    );
    let silent = root.get(&authorize("openid%20admin", "&prompt=none")).await;
    assert!(
        location(&silent).contains("error=login_required"),
        "{}",
        location(&silent)
    );
    // Without admin scopes the old login is enough.
    assert_eq!(root.get(&authorize("openid", "")).await.status(), 200);
    // Signed in again: asked.
    assert_eq!(root.login_to("root", PASSWORD, &admin).await.status(), 303);
    let page = root.get(&admin).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let back = location(&submit_consent(&root, &page, "allow").await);
    assert!(back.contains("code="), "{back}");
}
