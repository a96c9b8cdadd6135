//! PostgreSQL going away: at start and while serving. A proxy of the test's
//! own stands between Tessera and PostgreSQL and is cut; the real server is
//! never touched.

use serde_json::Value;

use crate::common::proxy::{Proxy, target_of};
use crate::common::{Backend, TestApp, TestDb, eventually, fail_with};

pub async fn ready(app: &TestApp) -> bool {
    app.http
        .get(app.endpoint("/readyz"))
        .send()
        .await
        .map(|r| r.status() == 200)
        .unwrap_or(false)
}

/// A server whose only way to PostgreSQL is a proxy the test controls.
pub async fn behind_proxy(backend: Backend, open: bool) -> (TestApp, Proxy) {
    let db = TestDb::fresh(&backend);
    let proxy = Proxy::start(target_of(&db.url), open).await;
    let app = TestApp::builder(backend)
        .database(&db)
        .database_url(proxy.url_for(&db.url))
        .start()
        .await;
    (app, proxy)
}

pub fn postgres() -> Option<Backend> {
    let backend = Backend::postgres();
    if backend.is_none() {
        eprintln!("skipped: {} is not set", crate::common::PG_ENV);
    }
    backend
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_then_back() {
    let Some(backend) = postgres() else { return };
    let (app, proxy) = behind_proxy(backend, false).await;

    assert_eq!(app.get("/healthz").await.status(), 200, "the process is up");
    let readiness = app.get("/readyz").await;
    assert_eq!(readiness.status(), 503);
    let body: Value = readiness.json().await.unwrap();
    assert_eq!(body["database"], "unavailable");
    fail_with(app.get("/oauth/jwks").await, 503, "temporarily_unavailable").await;
    assert!(!app.admin_token_file().exists());

    proxy.restore();
    assert!(eventually(15, || ready(&app)).await, "recovers by itself");
    assert_eq!(app.get("/oauth/jwks").await.status(), 200);
    assert_eq!(app.admin_get("/admin/v1/whoami").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_goes_away_and_returns() {
    let Some(backend) = postgres() else { return };
    let (app, proxy) = behind_proxy(backend, true).await;
    assert!(ready(&app).await);
    assert_eq!(app.admin_get("/admin/v1/whoami").await.status(), 200);

    proxy.cut();
    assert!(
        eventually(10, || async { !ready(&app).await }).await,
        "readiness follows the database"
    );
    // The administrator's token row is cached for at most a second
    // (`token_cache`); once that is gone, the check needs the database.
    assert!(
        eventually(10, || async {
            app.admin_get("/admin/v1/whoami").await.status() == 503
        })
        .await,
        "token checks follow the database once the cached row is stale"
    );
    fail_with(
        app.admin_get("/admin/v1/whoami").await,
        503,
        "temporarily_unavailable",
    )
    .await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(
        app.get("/oauth/jwks").await.status(),
        200,
        "keys stay served from memory"
    );

    proxy.restore();
    assert!(eventually(15, || ready(&app)).await, "recovers by itself");
    assert_eq!(app.admin_get("/admin/v1/whoami").await.status(), 200);
}
