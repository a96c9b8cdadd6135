//! Malformed traffic (issue 8, item 15): at least 10,000 malformed requests
//! to every public endpoint, over raw TCP so that bad methods, header bytes
//! and framing can be sent at all, from a seeded generator. Then: no 5xx,
//! no panic, and the audit log and the token endpoint still answer within
//! a second.
//!
//! The seed is printed; `TESSERA_MALFORMED_SEED=<seed>` replays a run and
//! `TESSERA_MALFORMED_REQUESTS=<n>` changes the count per endpoint.

mod generator;
mod junk;
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Backend, TestApp};
use crate::on_both_backends;
use generator::{Credentials, ENDPOINTS, Generator};
use raw::{Answer, Client};

on_both_backends!(malformed_requests_leave_every_endpoint_serving);

const DEFAULT_REQUESTS: u64 = 10_000;
/// Connections in flight at once, each reused while requests are well framed.
const CONNECTIONS: u64 = 16;
/// What "still answers" means after the flood.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// Failures shown in full; the flood stops after this many.
const SHOWN: usize = 20;

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Panics raised outside the tests' own code: the server's, wherever they
/// happen (a handler, a spawned task, a connection). The previous hook
/// still prints them.
fn server_panics() -> &'static AtomicUsize {
    static PANICS: OnceLock<AtomicUsize> = OnceLock::new();
    PANICS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/"));
            if !in_tests {
                server_panics().fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
        AtomicUsize::new(0)
    })
}

/// A client with a secret, so that the token endpoint can be asked for a
/// real token after the flood (and malformed requests can carry real
/// credentials).
async fn credentials(app: &TestApp) -> Credentials {
    let response = app
        .admin_post(
            "/admin/v1/clients",
            &json!({ "name": "malformed", "scope": "read" }),
        )
        .await;
    assert_eq!(response.status(), 201, "client registration");
    let body: serde_json::Value = response.json().await.unwrap();
    Credentials {
        admin_token: app.admin_token(),
        client_id: body["client_id"].as_str().unwrap().to_owned(),
        client_secret: body["client_secret"].as_str().unwrap().to_owned(),
    }
}

fn escaped(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(300)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > 300 {
        format!("{shown}… ({} bytes)", bytes.len())
    } else {
        shown
    }
}

async fn malformed_requests_leave_every_endpoint_serving(backend: Backend) {
    let panics_before = server_panics().load(Ordering::SeqCst);
    let seed = setting("TESSERA_MALFORMED_SEED").unwrap_or_else(rand::random);
    let per_endpoint = setting("TESSERA_MALFORMED_REQUESTS").unwrap_or(DEFAULT_REQUESTS);
    eprintln!(
        "malformed traffic on {backend:?}: seed {seed} (replay with TESSERA_MALFORMED_SEED={seed}), \
         {per_endpoint} requests to each of {} endpoints",
        ENDPOINTS.len()
    );
    let app = TestApp::start(backend).await;
    let credentials = Arc::new(credentials(&app).await);
    let addr = app.url.trim_start_matches("http://").parse().unwrap();

    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let total = per_endpoint * ENDPOINTS.len() as u64;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let (credentials, failures, failed, sent) = (
                credentials.clone(),
                failures.clone(),
                failed.clone(),
                sent.clone(),
            );
            tokio::spawn(async move {
                let generator = Generator {
                    seed,
                    credentials: &credentials,
                };
                let mut client = Client::new(addr);
                let mut n = worker;
                // Enough failures to show: stop, rather than wait out every hung request.
                while n < total && failed.load(Ordering::SeqCst) < SHOWN {
                    let endpoint = (n % ENDPOINTS.len() as u64) as usize;
                    let index = n / ENDPOINTS.len() as u64;
                    let (request, broken) = generator.case(endpoint, index);
                    let answer = client.send(&request).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if matches!(answer, Answer::Hung)
                        || matches!(answer, Answer::Status(s) if s >= 500)
                    {
                        failed.fetch_add(1, Ordering::SeqCst);
                        let mut shown = failures.lock().unwrap();
                        if shown.len() < SHOWN {
                            shown.push(format!(
                                "{answer:?} for case {index} of endpoint {endpoint} ({broken}): {}",
                                escaped(&request.bytes)
                            ));
                        }
                    }
                    n += CONNECTIONS;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker");
    }
    eprintln!(
        "{} malformed requests in {:.1} s",
        sent.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "seed {seed}: requests got a 5xx or no answer:\n{}",
        failures.join("\n")
    );
    still_answers(&app, &credentials).await;
    assert_eq!(
        server_panics().load(Ordering::SeqCst),
        panics_before,
        "seed {seed}: the server panicked (see the log above)"
    );
}

/// The audit log and the token endpoint answer within a second.
async fn still_answers(app: &TestApp, credentials: &Credentials) {
    let audit = tokio::time::timeout(ANSWER_WITHIN, app.admin_get("/admin/v1/audit?limit=1"))
        .await
        .expect("the audit log answers within a second");
    assert_eq!(audit.status(), 200, "the audit log answers");

    let token = tokio::time::timeout(
        ANSWER_WITHIN,
        app.http
            .post(app.endpoint("/oauth/token"))
            .basic_auth(&credentials.client_id, Some(&credentials.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send(),
    )
    .await
    .expect("the token endpoint answers within a second")
    .expect("a response");
    assert_eq!(token.status(), 200, "the token endpoint issues");
}
