//! Fetching a client's `jwks_uri`, against a small server the test runs:
//! one fetch at a time per URI, the body read only up to the size cap,
//! failures cached with backoff, and the last good keys kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::clients::register;
use crate::common::signing::TestKey;
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;
use crate::private_key_jwt::{claims, present};

on_both_backends!(
    concurrent_assertions_fetch_the_jwks_uri_once,
    an_oversized_jwks_body_is_not_read_whole,
    a_failed_fetch_is_not_retried_before_its_backoff,
    the_last_good_keys_are_kept_while_fetches_fail,
);

/// What the test's key server answers.
#[derive(Clone)]
enum Answer {
    Keys(Value),
    SlowKeys(Value, Duration),
    Failure,
    /// 64 MiB of whitespace, sent in chunks as the reader takes them.
    Endless,
}

const CHUNK: [u8; 16 * 1024] = [b' '; 16 * 1024];
const ENDLESS_CHUNKS: usize = 4096;

struct KeyServer {
    uri: String,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
    /// Bytes of an endless body handed to the connection so far.
    sent: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(answer: Answer) -> KeyServer {
        let answer = Arc::new(Mutex::new(answer));
        let hits = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = {
            let (answer, hits, sent) = (answer.clone(), hits.clone(), sent.clone());
            move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let answer = answer.lock().unwrap().clone();
                let sent = sent.clone();
                async move { respond(answer, sent).await }
            }
        };
        let app = axum::Router::new().route("/jwks.json", axum::routing::get(handler));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        KeyServer {
            uri: format!("http://{addr}/jwks.json"),
            answer,
            hits,
            sent,
        }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn respond(answer: Answer, sent: Arc<AtomicUsize>) -> Response {
    match answer {
        Answer::Keys(keys) => axum::Json(keys).into_response(),
        Answer::SlowKeys(keys, delay) => {
            tokio::time::sleep(delay).await;
            axum::Json(keys).into_response()
        }
        Answer::Failure => (axum::http::StatusCode::BAD_GATEWAY, "down").into_response(),
        Answer::Endless => {
            let chunks = futures::stream::iter((0..ENDLESS_CHUNKS).map(move |_| {
                sent.fetch_add(CHUNK.len(), Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(Bytes::from_static(&CHUNK))
            }));
            axum::body::Body::from_stream(chunks).into_response()
        }
    }
}

async fn client_with_jwks_uri(app: &TestApp, uri: &str) -> String {
    let spec = json!({"name": "remote-keys", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri});
    register(app, spec).await.0
}

/// A token request authenticated by a fresh assertion from `key`.
async fn authenticate(app: &TestApp, client_id: &str, key: &TestKey) -> reqwest::Response {
    present(app, &key.sign(&claims(app, client_id))).await
}

async fn concurrent_assertions_fetch_the_jwks_uri_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let key = TestKey::es256("k1");
    let server = KeyServer::start(Answer::SlowKeys(
        TestKey::jwks(&[&key]),
        Duration::from_millis(300),
    ))
    .await;
    let id = client_with_jwks_uri(&app, &server.uri).await;
    let statuses = futures::future::join_all((0..8).map(|_| authenticate(&app, &id, &key))).await;
    assert!(
        statuses.iter().all(|r| r.status() == 200),
        "{:?}",
        statuses.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    assert_eq!(server.hits(), 1, "one fetch served all eight");
}

async fn an_oversized_jwks_body_is_not_read_whole(backend: Backend) {
    let app = TestApp::start(backend).await;
    let server = KeyServer::start(Answer::Endless).await;
    let id = client_with_jwks_uri(&app, &server.uri).await;
    fail_with(
        authenticate(&app, &id, &TestKey::es256("k1")).await,
        401,
        "invalid_client",
    )
    .await;
    // Let the key server notice that its reader has gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = server.sent.load(Ordering::SeqCst);
    let whole = CHUNK.len() * ENDLESS_CHUNKS;
    // The cap is 256 KiB; socket buffers hold a few MiB more at most.
    assert!(
        sent < whole / 4,
        "{sent} of {whole} bytes were read before giving up"
    );
}

async fn a_failed_fetch_is_not_retried_before_its_backoff(backend: Backend) {
    let app = TestApp::start(backend).await;
    let key = TestKey::es256("k1");
    let server = KeyServer::start(Answer::Failure).await;
    let id = client_with_jwks_uri(&app, &server.uri).await;
    for _ in 0..3 {
        fail_with(authenticate(&app, &id, &key).await, 401, "invalid_client").await;
    }
    assert_eq!(server.hits(), 1, "the failure is remembered");

    server.answer(Answer::Keys(TestKey::jwks(&[&key])));
    // The first backoff is one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(authenticate(&app, &id, &key).await.status(), 200);
    assert_eq!(server.hits(), 2, "fetched again after the backoff");
}

async fn the_last_good_keys_are_kept_while_fetches_fail(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[clients]\njwks_cache = \"300ms\"\njwks_refetch_cooldown = \"300ms\"")
        .start()
        .await;
    let key = TestKey::es256("k1");
    let server = KeyServer::start(Answer::Keys(TestKey::jwks(&[&key]))).await;
    let id = client_with_jwks_uri(&app, &server.uri).await;
    assert_eq!(authenticate(&app, &id, &key).await.status(), 200);

    server.answer(Answer::Failure);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        authenticate(&app, &id, &key).await.status(),
        200,
        "the expired keys are used while the refetch fails"
    );
    assert_eq!(server.hits(), 2);
    assert_eq!(authenticate(&app, &id, &key).await.status(), 200);
    assert_eq!(server.hits(), 2, "and the failure is not retried at once");
}
