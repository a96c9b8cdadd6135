//! The audit pipeline: no request can stop the log (rows the database
//! refuses, a full queue, shutdown), failed bearer authentication is
//! throttled per source, old events are pruned, and the row stays lean.

use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use serde_json::{Value, json};
use tessera::store::NewAuditRecord;

use crate::clients::register;
use crate::common::{Backend, TableLock, TestApp, TestDb, eventually, fail_with};
use crate::on_both_backends;

on_both_backends!(
    a_round_keeps_its_events_in_order_and_its_replays_apart,
    a_row_the_database_refuses_does_not_stop_the_writer,
    nul_client_id_at_the_token_endpoint_leaves_the_log_working,
    a_full_audit_queue_refuses_issuance_and_readiness,
    failed_bearer_authentication_is_throttled_per_source,
    retention_prunes_old_events_in_batches,
    an_issuance_costs_few_bytes,
    export_writes_json_lines_between_two_times,
);

const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) fn record(action: &str, target: &str, occurred_at_ms: i64) -> NewAuditRecord {
    NewAuditRecord {
        occurred_at_ms,
        actor_id: Some("tester".into()),
        actor_kind: "service".into(),
        action: action.into(),
        target: Some(target.into()),
        client_id: None,
        remote_addr: None,
        outcome: "success".into(),
        details: "{}".into(),
        actor_owner: None,
    }
}

/// The admin audit listing, which must answer within `PATIENCE`.
async fn audit_page(app: &TestApp, query: &str) -> Value {
    let response =
        tokio::time::timeout(PATIENCE, app.admin_get(&format!("/admin/v1/audit?{query}")))
            .await
            .expect("the audit listing answers");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn targets(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn metric(app: &TestApp, name: &str) -> Option<String> {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
}

/// The writer on its own: audit events and single-use keys queued
/// together, which the writer stores in one round (on PostgreSQL, one
/// statement). Every event is stored, in the order it was queued, also
/// when PostgreSQL refuses one of them (NUL) and the round is stored the
/// slow way; of two uses of one key only the first is new, and a key used
/// in an earlier round is a replay whatever its expiry.
async fn a_round_keeps_its_events_in_order_and_its_replays_apart(backend: Backend) {
    let app = TestApp::start(backend).await;
    let now = tessera::clock::now_ms();
    let writer = &app.state.writer;
    let expires = tessera::clock::now() + 300;
    assert!(writer.consume("used-before".into(), expires).await.unwrap());
    let queued: Vec<String> = (0..20).map(|i| format!("event-{i:02}")).collect();
    for target in &queued {
        let mut event = record("test.round", target, now);
        if target == "event-10" {
            event.client_id = Some("nul\0here".into());
        }
        writer.append_audit(event).await.unwrap();
    }
    let verdicts = futures::future::join_all([
        writer.consume("fresh-a".into(), expires),
        writer.consume("fresh-b".into(), expires),
        writer.consume("fresh-a".into(), expires + 1),
        writer.consume("used-before".into(), expires + 60),
    ])
    .await;
    let verdicts: Vec<bool> = verdicts.into_iter().map(Result::unwrap).collect();
    assert_eq!(verdicts, [true, true, false, false]);
    assert!(!writer.consume("fresh-b".into(), expires).await.unwrap());
    assert!(writer.flush_within(PATIENCE).await, "the round is stored");
    let mut stored = targets(&audit_page(&app, "action=test.round").await);
    stored.reverse();
    assert_eq!(
        stored, queued,
        "newest first, so reversed: the queue's order"
    );
    app.stop().await.unwrap();
}

/// SQLite: what the writer commits is copied from the WAL into the
/// database file in the background (`store/checkpointer.rs`), long before
/// the WAL reaches the thousands of pages at which a commit would copy it
/// itself. Read with `immutable=1`, which ignores the WAL, the file alone
/// soon holds every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_reach_the_database_file_in_the_background() {
    let app = TestApp::start(Backend::Sqlite).await;
    let now = tessera::clock::now_ms();
    for i in 0..50 {
        let event = record("test.checkpoint", &format!("event-{i}"), now);
        app.state.writer.append_audit(event).await.unwrap();
    }
    assert!(app.state.writer.flush_within(PATIENCE).await);
    let path = app.db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let in_the_file = || {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        // Pages being copied meanwhile may read as malformed: not yet.
        let counted = SqliteConnection::establish(&format!("file:{path}?mode=ro&immutable=1"))
            .ok()
            .and_then(|mut conn| {
                diesel::sql_query(
                    "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'test.checkpoint'",
                )
                .get_result::<Count>(&mut conn)
                .ok()
            });
        std::future::ready(counted.is_some_and(|c| c.n == 50))
    };
    assert!(
        eventually(PATIENCE.as_secs(), in_the_file).await,
        "the events reach the database file itself"
    );
    app.stop().await.unwrap();
}

/// The writer on its own: a row with NUL (PostgreSQL refuses it in `text`)
/// between two good ones, all in one batch. The good rows are stored, the
/// bad one in a safe form and counted, and the writer goes on.
async fn a_row_the_database_refuses_does_not_stop_the_writer(backend: Backend) {
    let postgres = matches!(backend, Backend::Postgres(_));
    let app = TestApp::start(backend).await;
    let now = tessera::clock::now_ms();
    let writer = &app.state.writer;
    writer
        .append_audit(record("test.row", "before", now))
        .await
        .unwrap();
    let mut bad = record("test.row", "nul\0here", now);
    bad.client_id = Some("\0".into());
    writer.append_audit(bad).await.unwrap();
    writer
        .append_audit(record("test.row", "after", now))
        .await
        .unwrap();
    assert!(writer.flush_within(PATIENCE).await, "the batch is stored");

    let page = audit_page(&app, "action=test.row").await;
    let stored = targets(&page);
    assert_eq!(stored.len(), 3, "{page}");
    assert_eq!(stored[0], "after");
    assert_eq!(stored[2], "before");
    if postgres {
        assert_eq!(stored[1], "nul\\u{0}here", "stored escaped");
        assert_eq!(page["events"][1]["details"]["refused_by_database"], true);
        assert_eq!(
            metric(&app, "tessera_audit_events_refused_total").await,
            Some("1".into())
        );
    }
    writer
        .append_audit(record("test.row", "later", now))
        .await
        .unwrap();
    assert_eq!(
        targets(&audit_page(&app, "action=test.row").await)[0],
        "later"
    );
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("shutdown does not hang on the writer")
        .unwrap();
}

/// A well-formed JWT whose subject is not the client_id, signed by nobody.
const ANY_ASSERTION: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.\
    eyJpc3MiOiJhIiwic3ViIjoiYSIsImF1ZCI6IngiLCJleHAiOjQxMDI0NDQ4MDB9.c2ln";

/// The issue's reproduction: an unauthenticated `client_id=%00` with a
/// client assertion. Whatever the token endpoint answers, the audit log,
/// issuance and shutdown keep working.
async fn nul_client_id_at_the_token_endpoint_leaves_the_log_working(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, secret) = register(&app, json!({"name": "worker"})).await;
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id=%00&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion={ANY_ASSERTION}"
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let issued = app
        .http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(&id, secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);
    let page = audit_page(&app, "action=token.issued").await;
    assert_eq!(page["events"][0]["client_id"], id);
    let everything = audit_page(&app, "limit=500").await.to_string();
    assert!(!everything.contains("\\u0000"), "no raw NUL stored");
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("shutdown does not hang on the writer")
        .unwrap();
}

/// With the audit table locked, the writer cannot drain its queue. Once
/// the queue is full, issuance waits `audit.queue_wait` and answers 503
/// `temporarily_unavailable`, and /readyz says not ready, until the lock
/// goes and the queue drains. Every token that was issued is audited.
async fn a_full_audit_queue_refuses_issuance_and_readiness(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[audit]\nqueue_capacity = 4\nqueue_wait = \"200ms\"\n")
        .start()
        .await;
    let (id, secret) = register(&app, json!({"name": "worker"})).await;
    let issue = || {
        app.http
            .post(app.endpoint("/oauth/token"))
            .basic_auth(&id, secret.as_deref())
            .form(&[("grant_type", "client_credentials")])
            .timeout(PATIENCE)
            .send()
    };
    assert_eq!(issue().await.unwrap().status(), 200);
    app.state.writer.flush().await;
    let lock = TableLock::take(&app.db, "audit_events");
    let mut issued = 1;
    let refused = loop {
        let response = issue().await.expect("an answer, not a hang");
        if response.status() == 200 {
            issued += 1;
            assert!(issued < 100, "the queue never filled");
            continue;
        }
        break response;
    };
    fail_with(refused, 503, "temporarily_unavailable").await;
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503);
    assert_eq!(readyz.json::<Value>().await.unwrap()["audit"], "backlogged");

    lock.release();
    let ready = eventually(15, || async { app.get("/readyz").await.status() == 200 }).await;
    assert!(ready, "ready again once the queue drained");
    assert_eq!(issue().await.unwrap().status(), 200);
    issued += 1;
    let page = audit_page(&app, "action=token.issued&limit=500").await;
    assert_eq!(page["events"].as_array().unwrap().len(), issued);
}

/// `Authorization: Bearer x` in a loop: ten events per source and minute
/// reach the log, written by the batch writer; the rest are counted.
async fn failed_bearer_authentication_is_throttled_per_source(backend: Backend) {
    let app = TestApp::start(backend).await;
    for _ in 0..30 {
        let response = app
            .http
            .get(app.endpoint("/admin/v1/whoami"))
            .bearer_auth("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let page = audit_page(&app, "action=auth.failed&limit=500").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 10, "{page}");
    assert_eq!(events[0]["remote_addr"], "127.0.0.1");
}

/// Events older than `audit.retention` go, a batch at a time; newer stay.
async fn retention_prunes_old_events_in_batches(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[audit]\nretention = \"1h\"\nprune_interval = \"100ms\"\n")
        .start()
        .await;
    let now = tessera::clock::now_ms();
    let old = now - 2 * 3_600_000;
    for i in 0..1_200 {
        let event = record("test.old", &i.to_string(), old);
        app.state.writer.append_audit(event).await.unwrap();
    }
    let fresh = record("test.fresh", "kept", now);
    app.state.writer.append_audit(fresh).await.unwrap();
    let pruned = eventually(20, || async {
        audit_page(&app, "action=test.old&limit=1").await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    assert!(pruned, "events past retention are deleted");
    let kept = audit_page(&app, "action=test.fresh").await;
    assert_eq!(targets(&kept), ["kept"]);
}

/// Bytes the database grows by per `client_credentials` issuance, with the
/// audit table's indexes; printed for the record and bounded. Measured
/// before the partial `action` index: 324 on SQLite, 442 on PostgreSQL.
async fn an_issuance_costs_few_bytes(backend: Backend) {
    const ISSUANCES: usize = 1_000;
    let bound = match backend {
        Backend::Sqlite => 312.0,
        Backend::Postgres(_) => 425.0,
    };
    let app = TestApp::start(backend).await;
    let (id, secret) = register(
        &app,
        json!({"name": "measured", "scope": "deploy:read", "audiences": ["https://api.example.com"]}),
    )
    .await;
    app.state.writer.flush().await;
    let before = audit_bytes(&app.db);
    for _ in 0..ISSUANCES / 20 {
        let batch = (0..20).map(|_| {
            app.http
                .post(app.endpoint("/oauth/token"))
                .basic_auth(&id, secret.as_deref())
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "deploy:read"),
                ])
                .send()
        });
        for response in futures::future::join_all(batch).await {
            assert_eq!(response.unwrap().status(), 200);
        }
    }
    app.state.writer.flush().await;
    let per_issuance = (audit_bytes(&app.db) - before) as f64 / ISSUANCES as f64;
    eprintln!("audit bytes per issuance: {per_issuance:.0}");
    assert!(per_issuance < bound, "{per_issuance:.0} bytes per issuance");
}

/// The audit table with its indexes: PostgreSQL's own count, or the SQLite
/// file's pages in use (the table is the only one that grows here).
fn audit_bytes(db: &TestDb) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Bytes {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let (sql, bytes) = match db.url.strip_prefix("sqlite://") {
        Some(path) => {
            let sql = "SELECT (page_count - freelist_count) * page_size AS bytes \
                       FROM pragma_page_count, pragma_freelist_count, pragma_page_size";
            let mut conn = SqliteConnection::establish(path).unwrap();
            (sql, diesel::sql_query(sql).get_result::<Bytes>(&mut conn))
        }
        None => {
            let sql = "SELECT pg_total_relation_size('audit_events') AS bytes";
            let mut conn = PgConnection::establish(&db.url).unwrap();
            (sql, diesel::sql_query(sql).get_result::<Bytes>(&mut conn))
        }
    };
    bytes.unwrap_or_else(|e| panic!("{sql}: {e}")).bytes
}

/// `tessera audit export` pages through the admin API: every event in the
/// window, one JSON object per line, and nothing outside it.
async fn export_writes_json_lines_between_two_times(backend: Backend) {
    let app = TestApp::start(backend).await;
    let now = tessera::clock::now_ms();
    let day = 86_400_000;
    for i in 0..620 {
        let event = record("test.export", &i.to_string(), now - day);
        app.state.writer.append_audit(event).await.unwrap();
    }
    let recent = record("test.export", "recent", now);
    app.state.writer.append_audit(recent).await.unwrap();
    app.state.writer.flush().await;

    let export = |since: i64, until: i64| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .env_remove("TESSERA_TOKEN")
            .args(["--url", &app.url, "--token-file"])
            .arg(app.admin_token_file())
            .args([
                "audit",
                "export",
                "--since",
                &tessera::clock::rfc3339_ms(since),
            ])
            .args(["--until", &tessera::clock::rfc3339_ms(until)])
            .output()
            .expect("run tessera");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("one JSON object per line"))
            .filter(|event| event["action"] == "test.export")
            .map(|event| event["target"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let old = export(now - 2 * day, now - day / 2);
    assert_eq!(old.len(), 620, "every page");
    assert_eq!(old.first().map(String::as_str), Some("619"), "newest first");
    assert_eq!(export(now - day / 2, now + 1_000), ["recent"]);
}

/// PostgreSQL away at shutdown: the writer cannot store what is queued,
/// and shutdown still ends, after `server.shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_the_database_away_does_not_hang() {
    let Some(backend) = crate::outage::postgres() else {
        return;
    };
    let (app, proxy) = crate::outage::behind_proxy(backend, true).await;
    assert!(eventually(10, || crate::outage::ready(&app)).await);
    proxy.cut();
    let event = record("test.lost", "queued", tessera::clock::now_ms());
    app.state.writer.append_audit(event).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("shutdown ends although the audit events cannot be stored")
        .unwrap();
}
