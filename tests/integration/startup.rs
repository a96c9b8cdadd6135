//! Start-up: migrations on both backends, a wrong master key, and the
//! database being initialised once.

use tessera::server::StartError;
use tessera::store::{KeyStore, Store};

use std::sync::Arc;
use std::time::Duration;

use tessera::keys::{KeyManager, MasterKey};

use crate::common::{Backend, DEFAULT_MASTER_KEY, TestApp, TestDb, eventually, read_token};
use crate::on_both_backends;

on_both_backends!(
    migrations_apply_and_are_idempotent,
    wrong_master_key_is_a_clear_start_up_error,
    restart_keeps_keys_and_admin,
    replicas_started_at_once_share_one_administrator,
);

async fn migrations_apply_and_are_idempotent(backend: Backend) {
    let db = TestDb::fresh(&backend);
    let store = Store::new(&db.url, 2, std::time::Duration::from_secs(2)).unwrap();
    store.migrate().await.expect("first run applies");
    store.migrate().await.expect("second run is a no-op");
    assert!(store.list_signing_keys().await.unwrap().is_empty());
}

async fn wrong_master_key_is_a_clear_start_up_error(backend: Backend) {
    let first = TestApp::start(backend.clone()).await;
    let kids_before = first.state.store.list_signing_keys().await.unwrap().len();
    let result = TestApp::builder(backend)
        .database(&first.db)
        .master_key([9; 32])
        .try_start()
        .await;
    match result {
        Err(StartError::Fatal(message)) => {
            assert!(message.contains("master key"), "{message}");
            assert!(
                message.contains("TESSERA_MASTER_KEY"),
                "says how to fix it: {message}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a wrong master key must not start"),
    }
    // Never silent regeneration.
    assert_eq!(
        first.state.store.list_signing_keys().await.unwrap().len(),
        kids_before
    );
}

async fn restart_keeps_keys_and_admin(backend: Backend) {
    let first = TestApp::start(backend.clone()).await;
    let token = first.admin_token();
    let jwks_before: serde_json::Value = first.get("/oauth/jwks").await.json().await.unwrap();
    let db = first.db.clone();
    first.stop().await.expect("clean stop");
    let again = TestApp::builder(backend).database(&db).start().await;
    let jwks_after: serde_json::Value = again.get("/oauth/jwks").await.json().await.unwrap();
    assert_eq!(jwks_before, jwks_after, "keys survive a restart");
    let me = again
        .http
        .get(again.endpoint("/admin/v1/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

/// SIGTERM semantics: a request already in flight when shutdown starts is
/// answered, then the server stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_during_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::start(Backend::Sqlite).await;
    let body = r#"{"alg":"ES256"}"#;
    let (head, tail) = body.split_at(5);
    let mut stream = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "POST /admin/v1/keys/rotate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        app.admin_token(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the request in flight"
    );
    stream.write_all(tail.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stopping.await.unwrap().expect("clean stop");
}

/// Issue 8, item 6: replicas started at once on one empty database and one
/// token file path (the docker-compose setup) end with exactly one
/// administrator, whose token is the one in the file, and all serve. In
/// the later rounds the keys already exist (a first start that stopped
/// before the bootstrap), so the replicas reach the bootstrap together.
async fn replicas_started_at_once_share_one_administrator(backend: Backend) {
    for round in 0..8 {
        let db = TestDb::fresh(&backend);
        if round > 0 {
            keys_without_administrator(&db).await;
        }
        let starting: Vec<_> = (0..3)
            .map(|_| tokio::spawn(TestApp::builder(backend.clone()).database(&db).try_start()))
            .collect();
        let mut replicas = Vec::new();
        for started in futures::future::join_all(starting).await {
            let app = started.unwrap();
            replicas.push(app.unwrap_or_else(|e| panic!("round {round}: a replica failed: {e}")));
        }
        let token = read_token(&db.path("admin.token"));
        for app in &replicas {
            let ready = eventually(10, || async { app.get("/readyz").await.status() == 200 }).await;
            assert!(ready, "round {round}: every replica serves");
            let me = app
                .http
                .get(app.endpoint("/admin/v1/whoami"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                me.status(),
                200,
                "round {round}: the token in the file works"
            );
        }
        let users: serde_json::Value = replicas[0]
            .admin_get("/admin/v1/service-users")
            .await
            .json()
            .await
            .unwrap();
        let admins = users["service_users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["is_admin"] == true)
            .count();
        assert_eq!(admins, 1, "round {round}: exactly one administrator");
        let leftovers: Vec<_> = std::fs::read_dir(db.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("admin.") && name != "admin.token")
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: temporary files left: {leftovers:?}"
        );
    }
}

async fn keys_without_administrator(db: &TestDb) {
    let store = Store::new(&db.url, 2, Duration::from_secs(2)).unwrap();
    store.migrate().await.unwrap();
    let master = Arc::new(MasterKey::from_bytes(DEFAULT_MASTER_KEY));
    let hour = Duration::from_secs(3600);
    let keys = KeyManager::new(store, master, hour, 30 * 24 * hour);
    keys.ensure_keys().await.unwrap();
}
