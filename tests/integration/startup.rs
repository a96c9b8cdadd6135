//! Start-up: migrations on both backends, a wrong master key, and the
//! database being initialised once.

use tessera::server::StartError;
use tessera::store::{KeyStore, Store};

use crate::common::{Backend, TestApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    migrations_apply_and_are_idempotent,
    wrong_master_key_is_a_clear_start_up_error,
    restart_keeps_keys_and_admin,
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
