//! Metrics labels come from a fixed set: no request adds a series to the
//! public `/metrics`.

use reqwest::Method;

use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(odd_methods_and_paths_do_not_grow_the_metrics);

async fn metrics_text(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

async fn odd_methods_and_paths_do_not_grow_the_metrics(backend: Backend) {
    let app = TestApp::start(backend).await;
    // One of each kind first, so that the series the flood may use exist.
    let odd =
        |i: usize| Method::from_bytes(format!("M{i:04}{}", "X".repeat(2043)).as_bytes()).unwrap();
    let send = |method: Method, path: String| {
        let request = app.http.request(method, app.endpoint(&path));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    send(odd(0), "/oauth/token".into()).await;
    send(Method::GET, "/no/such/path".into()).await;
    metrics_text(&app).await;
    let before = metrics_text(&app).await;

    for i in 1..=50 {
        let status = send(odd(i), "/oauth/token".into()).await;
        assert!((400..500).contains(&status), "{status}");
        send(
            Method::GET,
            format!("/no/such/path/{i}/{}", "p".repeat(2000)),
        )
        .await;
    }
    let after = metrics_text(&app).await;
    assert!(
        after.len() < before.len() + 512,
        "/metrics grew from {} to {} bytes:\n{after}",
        before.len(),
        after.len()
    );
    assert!(!after.contains("XXXX"), "a method name became a label");
    assert!(!after.contains("pppp"), "a path became a label");
    assert!(
        after.contains(r#"route="/oauth/token",method="other""#),
        "{after}"
    );
    assert!(
        after.contains(r#"route="unmatched",method="GET",status="404"} 51"#),
        "{after}"
    );
}
