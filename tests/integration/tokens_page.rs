//! The personal access token page over HTTP (issue 12 item 9): the
//! creation form makes one token however often it is sent (a reload of
//! the page that showed the value, a double click, the other replica),
//! and offers only the lifetimes the configuration allows.

use crate::common::pages::{Visitor, by_id, field};
use crate::common::{Backend, TestApp};
use crate::login::add_user;
use crate::on_both_backends;

const PASSWORD: &str = "correct horse battery staple";

on_both_backends!(
    the_creation_form_makes_one_token_however_often_it_is_sent,
    the_form_offers_only_the_lifetimes_allowed,
);

async fn page(visitor: &Visitor) -> String {
    let response = visitor.get("/account/tokens").await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

fn count_tokens(page: &str) -> usize {
    page.matches("id=\"token-").count()
}

async fn the_creation_form_makes_one_token_however_often_it_is_sent(backend: Backend) {
    let app = TestApp::start(backend.clone()).await;
    let replica = TestApp::builder(backend).replica_of(&app).start().await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
    let form_page = page(&visitor).await;
    let csrf = field(&form_page, "csrf").unwrap();
    let once = field(&form_page, "once").expect("a single-use field");
    let form = [
        ("csrf", csrf.as_str()),
        ("once", once.as_str()),
        ("name", "deploy"),
        ("env", "prod"),
        ("expires", "7d"),
    ];
    let created = visitor.post("/account/tokens", &form).await;
    assert_eq!(created.status(), 200);
    let shown = created.text().await.unwrap();
    assert!(by_id(&shown, "new-token").is_some_and(|t| t.starts_with("tsr_pat_prod_")));

    // The same form again, here and on the other replica (the session
    // cookie is the host's, whatever the port): no second token.
    let elsewhere = Visitor {
        http: visitor.http.clone(),
        base: replica.url.clone(),
    };
    for sender in [&visitor, &elsewhere] {
        let again = sender.post("/account/tokens", &form).await;
        assert_eq!(again.status(), 409);
        let text = again.text().await.unwrap();
        assert!(
            by_id(&text, "message").is_some_and(|m| m.contains("already sent")),
            "{text}"
        );
        assert!(by_id(&text, "new-token").is_none());
    }
    // A forged or stale single-use value makes nothing either.
    let old = format!("{}.{}", tessera::clock::now() - 13 * 3600, "a".repeat(22));
    for once in ["", "x", old.as_str()] {
        let mut forged = form;
        forged[1] = ("once", once);
        assert_eq!(visitor.post("/account/tokens", &forged).await.status(), 409);
    }
    assert_eq!(count_tokens(&page(&visitor).await), 1);

    // A fresh form makes a second one.
    let fresh = page(&visitor).await;
    let (csrf, once) = (
        field(&fresh, "csrf").unwrap(),
        field(&fresh, "once").unwrap(),
    );
    let mut second = form;
    second[0] = ("csrf", csrf.as_str());
    second[1] = ("once", once.as_str());
    assert_eq!(visitor.post("/account/tokens", &second).await.status(), 200);
    assert_eq!(count_tokens(&page(&visitor).await), 2);
}

async fn the_form_offers_only_the_lifetimes_allowed(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[personal_tokens]\nmax_lifetime = \"14d\"\nenv_max_lifetime = { prod = \"1d\" }\n")
        .start()
        .await;
    add_user(&app, "alice").await;
    let visitor = Visitor::new(&app);
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
    let form = page(&visitor).await;
    for offered in ["1h", "8h", "1d", "7d", "14d"] {
        assert!(
            form.contains(&format!("id=\"expires-{offered}\"")),
            "{offered}"
        );
    }
    assert!(
        !form.contains("id=\"expires-30d\""),
        "30d is above max_lifetime"
    );
    assert!(form.contains("prod (at most 1d)"), "{form}");
    assert!(!form.contains("staging (at most"));
}
