//! Two replicas on one PostgreSQL: what one changes, the other stops using
//! at once (LISTEN/NOTIFY), not a cache TTL later. The TTL and the key check
//! are set to an hour here, so nothing but a notification (or the flush
//! after the listener reconnects) can explain a prompt refusal.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::{Value, json};

use crate::clients::register;
use crate::common::{Backend, PG_ENV, TestApp, eventually};

const SLOW_FALLBACKS: &str = r#"
[clients]
cache_ttl = "1h"
[keys]
check_interval = "1h"
"#;

/// A generous bound: notifications take milliseconds, the TTL an hour.
const PROMPTLY_SECS: u64 = 10;

fn postgres() -> Option<Backend> {
    let backend = Backend::postgres();
    if backend.is_none() {
        eprintln!("skipped: {PG_ENV} is not set (replicas share PostgreSQL)");
    }
    backend
}

/// Two replicas, both listening: changes from now on are heard by both.
async fn two_replicas(backend: Backend) -> (TestApp, TestApp, Postgres) {
    let a = TestApp::builder(backend.clone())
        .config(SLOW_FALLBACKS)
        .start()
        .await;
    let b = TestApp::builder(backend.clone())
        .config(SLOW_FALLBACKS)
        .replica_of(&a)
        .start()
        .await;
    let Backend::Postgres(base) = backend else {
        unreachable!("replicas share PostgreSQL")
    };
    let mut db = Postgres {
        conn: PgConnection::establish(&base).unwrap(),
        schema: a.db.url.split("search_path%3D").nth(1).unwrap().to_owned(),
    };
    assert!(
        eventually(PROMPTLY_SECS, || std::future::ready(db.listeners() == 2)).await,
        "both replicas listen"
    );
    (a, b, db)
}

/// A connection to the replicas' database, beside them.
struct Postgres {
    conn: PgConnection,
    schema: String,
}

impl Postgres {
    fn listener_name(&self) -> String {
        format!(
            "{} {}",
            tessera::store::LISTENER_APPLICATION_NAME,
            self.schema
        )
    }

    fn listeners(&mut self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let query = format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = '{}'",
            self.listener_name()
        );
        diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query(query), &mut self.conn)
            .unwrap()
            .n
    }
}

pub async fn token_status(app: &TestApp, id: &str, secret: &str) -> u16 {
    app.http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn set_enabled(app: &TestApp, id: &str, enabled: bool) {
    let patch = app
        .http
        .patch(app.endpoint(&format!("/admin/v1/clients/{id}")))
        .bearer_auth(app.admin_token())
        .json(&json!({ "enabled": enabled }))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
}

/// Whether the token endpoint of `b` comes to answer `status` promptly.
async fn b_answers(b: &TestApp, id: &str, secret: &str, status: u16) -> bool {
    eventually(PROMPTLY_SECS, || async {
        token_status(b, id, secret).await == status
    })
    .await
}

async fn deployer(app: &TestApp) -> (String, String) {
    let (id, secret) = register(
        app,
        json!({"name": "deployer", "scope": "deploy:read", "audiences": ["https://api.example.com"]}),
    )
    .await;
    (id, secret.unwrap())
}

async fn published_kids(app: &TestApp) -> usize {
    let jwks: Value = app.get("/oauth/jwks").await.json().await.unwrap();
    jwks["keys"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disabled_on_one_replica_is_refused_by_the_other_at_once() {
    let Some(backend) = postgres() else { return };
    let (a, b, _db) = two_replicas(backend).await;
    let (id, secret) = deployer(&a).await;
    // B reads the client now and would keep it for the hour-long TTL.
    assert_eq!(token_status(&b, &id, &secret).await, 200);
    set_enabled(&a, &id, false).await;
    assert!(
        b_answers(&b, &id, &secret, 401).await,
        "replica B kept issuing tokens to a client disabled on A"
    );
    set_enabled(&a, &id, true).await;
    assert!(
        b_answers(&b, &id, &secret, 200).await,
        "replica B kept refusing a client enabled again on A"
    );

    // A rotation on A is published by B without waiting for its key check.
    let before = published_kids(&b).await;
    let rotate = a
        .admin_post("/admin/v1/keys/rotate", &json!({"alg": "ES256"}))
        .await;
    assert_eq!(rotate.status(), 200, "{}", rotate.text().await.unwrap());
    assert!(
        eventually(PROMPTLY_SECS, || async {
            published_kids(&b).await == before + 1
        })
        .await,
        "replica B did not publish the key A stored"
    );

    // A service user deleted on A leaves B's cache, which the JWT-bearer
    // grant reads.
    let created = a
        .admin_post(
            "/admin/v1/service-users",
            &json!({"name": "ci-bot", "scope": "deploy:read"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let user = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cached_on_b = || async {
        let cache = &b.state.service_user_cache;
        cache.get(&b.state.store, &user).await.unwrap().is_some()
    };
    assert!(cached_on_b().await);
    let delete = a
        .http
        .delete(a.endpoint(&format!("/admin/v1/service-users/{user}")))
        .bearer_auth(a.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    assert!(
        eventually(PROMPTLY_SECS, || async { !cached_on_b().await }).await,
        "replica B kept a service user deleted on A"
    );
}

/// A change whose notification was never heard (here: made with triggers
/// off) is picked up when the listening connection comes back, because the
/// listener flushes the caches on every reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_are_flushed_when_the_listener_reconnects() {
    let Some(backend) = postgres() else { return };
    let (a, b, mut db) = two_replicas(backend).await;
    let (id, secret) = deployer(&a).await;
    // B has heard a change, so also its first `Missed` (they come in
    // order); once the notifications still in flight have landed, what it
    // caches next it keeps.
    set_enabled(&a, &id, false).await;
    assert!(b_answers(&b, &id, &secret, 401).await);
    set_enabled(&a, &id, true).await;
    assert!(b_answers(&b, &id, &secret, 200).await);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(token_status(&b, &id, &secret).await, 200);

    let schema = &db.schema;
    db.conn
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE {schema}.clients SET enabled = FALSE WHERE id = '{id}'; \
             SET session_replication_role = origin;"
        ))
        .unwrap();
    // Unheard: B still uses what it cached.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(token_status(&b, &id, &secret).await, 200);

    let listener = db.listener_name();
    db.conn
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{listener}'"
        ))
        .unwrap();
    assert!(
        b_answers(&b, &id, &secret, 401).await,
        "replica B kept a cached client after its listener reconnected"
    );
}
