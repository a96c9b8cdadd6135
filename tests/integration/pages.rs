//! The pages framework: layout, stylesheet, security headers, CSRF, and
//! database-backed sessions (any replica serves them).

use crate::common::pages::{Visitor, field, set_cookie};
use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    pages_have_security_headers_and_a_cached_stylesheet,
    a_session_is_served_by_any_replica_and_ends_on_logout,
);

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn pages_have_security_headers_and_a_cached_stylesheet(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nissuer = \"https://id.example.com\"\n")
        .start()
        .await;
    let response = app.get("/logout").await;
    assert_eq!(response.status(), 200);
    let csp = header(&response, "content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert_eq!(header(&response, "referrer-policy"), "no-referrer");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(header(&response, "content-type").starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("<html lang=\"en\">"), "{page}");
    assert!(page.contains("name=\"viewport\""), "{page}");
    assert_eq!(page.matches("<h1").count(), 1);
    assert!(!page.contains("<script"), "{page}");
    let href = regex::Regex::new(r#"href="(/assets/tessera\.css\?v=[0-9a-f]+)""#)
        .unwrap()
        .captures(&page)
        .expect("the stylesheet link")[1]
        .to_owned();
    let css = app.get(&href).await;
    assert_eq!(css.status(), 200);
    assert!(header(&css, "content-type").starts_with("text/css"));
    assert!(header(&css, "cache-control").contains("immutable"));
    let etag = header(&css, "etag");
    let again = app
        .http
        .get(app.endpoint(&href))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

async fn a_session_is_served_by_any_replica_and_ends_on_logout(backend: Backend) {
    let first = TestApp::start(backend.clone()).await;
    let second = TestApp::builder(backend).replica_of(&first).start().await;
    let user = crate::common::users::create(&first, "alice", "correct horse battery").await;
    let (session, secret) = tessera::accounts::sessions::start(&first.state, &user, &["pwd"])
        .await
        .unwrap();
    assert_eq!(session.amr, ["pwd"]);
    let cookie = format!("tessera_session={}", secret.expose());
    // Another replica finds it, and shows the logout form with a CSRF token.
    let http = reqwest::Client::new();
    let page = http
        .get(second.endpoint("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie(&page, "tessera_csrf").expect("a CSRF cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(csrf_cookie.contains(attribute), "{csrf_cookie}");
    }
    let csrf_cookie = csrf_cookie.split(';').next().unwrap().to_owned();
    let page = page.text().await.unwrap();
    assert!(page.contains("Do you want to sign out"), "{page}");
    let token = field(&page, "csrf").expect("a CSRF field");
    let both = format!("{cookie}; {csrf_cookie}");

    // Without the token, or with another's, nothing happens.
    for wrong in ["", "x", &token[1..]] {
        let refused = http
            .post(first.endpoint("/logout"))
            .header("cookie", &both)
            .form(&[("csrf", wrong)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
    }
    let info = tessera::accounts::sessions::resolve(&first.state, secret.expose())
        .await
        .unwrap()
        .expect("still signed in");
    assert_eq!(info.sid, session.sid);

    // The token from one replica is good on the other.
    let done = http
        .post(first.endpoint("/logout"))
        .header("cookie", &both)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let cleared = set_cookie(&done, "tessera_session").expect("cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(
        tessera::accounts::sessions::resolve(&second.state, secret.expose())
            .await
            .unwrap()
            .is_none()
    );
    // A session whose user is disabled is no session.
    let visitor = Visitor::new(&first);
    visitor.login("alice", "correct horse battery").await;
    assert!(visitor.signed_in().await);
    crate::common::users::disable(&first, "alice").await;
    assert!(!visitor.signed_in().await);
}
