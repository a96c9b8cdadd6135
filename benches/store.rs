//! Store throughput through the one code path both backends share
//! (diesel `MultiConnection`, r2d2 pool, tokio `spawn_blocking`), with 64
//! concurrent callers. `cargo bench --bench store` runs SQLite, and
//! PostgreSQL too when TESSERA_BENCH_DATABASE_URL (or
//! TESSERA_TEST_DATABASE_URL) names a database it may create tables in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera::store::{AuditStore, BatchWriter, CredentialStore, NewAuditRecord, Store};

const CALLERS: usize = 64;
const RUN_FOR: Duration = Duration::from_secs(3);

fn event(i: u64) -> NewAuditRecord {
    NewAuditRecord {
        occurred_at_ms: i as i64,
        actor_id: Some("svc".into()),
        actor_kind: "service".into(),
        action: "bench.write".into(),
        target: None,
        client_id: None,
        remote_addr: None,
        outcome: "success".into(),
        details: "{}".into(),
        actor_owner: None,
    }
}

async fn drive<F, Fut>(name: &str, store: Arc<Store>, op: F) -> u64
where
    F: Fn(Arc<Store>, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < RUN_FOR {
                op(store.clone(), caller as u64 * 1_000_000 + done).await;
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("{name:<44} {rate:>9.0} ops/s");
    total
}

async fn bench(label: &str, url: &str, pool: u32) {
    let store = Arc::new(Store::new(url, pool, Duration::from_secs(5)).unwrap());
    store.migrate().await.unwrap();
    println!("{label} (pool {pool}, {CALLERS} concurrent callers):");
    drive(
        "  append audit event (one INSERT)",
        store.clone(),
        |s, i| async move {
            s.append_audit(event(i)).await.unwrap();
        },
    )
    .await;
    // The hot path's writer: callers only queue; the rate that counts is
    // how fast its thread stores them, so the final flush is timed too.
    // Leaked so the closures stay `Copy`; the bench process ends anyway.
    let config = tessera::config::Config::from_toml_layers(&[]).expect("default configuration");
    let writer: &'static BatchWriter = Box::leak(Box::new(BatchWriter::spawn(
        (*store).clone(),
        &config.audit,
        Default::default(),
    )));
    let started = Instant::now();
    let queued = drive(
        "  audit event queued to the batch writer",
        store.clone(),
        move |_, i| async move {
            writer.append_audit(event(i)).await.unwrap();
        },
    )
    .await;
    writer.flush_within(Duration::from_secs(600)).await;
    let rate = queued as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<44} {rate:>9.0} ops/s",
        "    ... stored, counting the final flush"
    );
    let exp = tessera::clock::now() + 300;
    let cpu_before = cpu_seconds();
    let done = drive(
        "  jti consumed through the batch writer",
        store.clone(),
        move |_, i| async move {
            assert!(writer.consume(format!("{i:064}"), exp).await.unwrap());
        },
    )
    .await;
    println!(
        "{:<44} {:>9.1} µs CPU/op",
        "",
        (cpu_seconds() - cpu_before) * 1e6 / done as f64
    );
    // Production keys are SHA-256 digests: each lands on a random page of
    // the table's B-tree, unlike the ordered keys above. The table first
    // holds what a 30 s load run leaves behind.
    let digest = |i: u64| {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_le_bytes());
        tessera::keys::hex(d.as_ref())
    };
    for i in 0..200_000u64 {
        let _ = writer.consume(digest(u64::MAX - i), exp).await;
    }
    let cpu_before = cpu_seconds();
    let done = drive(
        "  jti consumed, digest keys, 200k rows",
        store.clone(),
        move |_, i| async move {
            assert!(writer.consume(digest(i), exp).await.unwrap());
        },
    )
    .await;
    println!(
        "{:<44} {:>9.1} µs CPU/op",
        "",
        (cpu_seconds() - cpu_before) * 1e6 / done as f64
    );
    drive(
        "  token lookup by prefix (one indexed SELECT)",
        store.clone(),
        |s, i| async move {
            s.token_by_lookup(format!("{i:012}")).await.unwrap();
        },
    )
    .await;
}

/// This process's CPU seconds (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("SQLite (WAL)", &sqlite, 4).await;
    let pg = std::env::var("TESSERA_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TESSERA_TEST_DATABASE_URL"))
        .ok();
    match pg {
        Some(url) => bench("PostgreSQL", &url, 16).await,
        None => println!("PostgreSQL: skipped (set TESSERA_BENCH_DATABASE_URL)"),
    }
}
