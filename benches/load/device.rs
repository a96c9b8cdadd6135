//! The device flow's polling scenario (issue 11): `BENCH_POLL_PENDING`
//! (10,000) pending device authorizations, each polled at its interval
//! (5 s: 2,000 polls/s) for `BENCH_POLL_SECONDS` (60), by a client that
//! keeps every poll on its schedule. Targets, measured in the same run:
//! every poll answered `authorization_pending` (none `slow_down`: no poll
//! is early), no poll slower than a tenth of the interval, and the server
//! under half of one core (its CPU per poll is printed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, admin, cpu_seconds};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// What the polls got.
#[derive(Default)]
struct Tally {
    pending: AtomicU64,
    slow_down: AtomicU64,
    other: AtomicU64,
    failed: AtomicU64,
}

/// Makes `count` device authorizations for a public client, from a few
/// threads; returns the client id and the device codes.
fn pending_authorizations(server: &Server, count: usize) -> (String, Vec<String>, u64) {
    let client = admin(
        server,
        "/admin/v1/clients",
        json!({"name": "bench CLI", "public": true, "grant_types": [GRANT]}),
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let threads = 8;
    let endpoint = format!("{}/oauth/device_authorization", server.base);
    let made: Vec<(Vec<String>, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (endpoint, client_id) = (&endpoint, &client_id);
                scope.spawn(move || {
                    let http = reqwest::blocking::Client::new();
                    let mut codes = Vec::new();
                    let mut interval = 0;
                    for _ in (t..count).step_by(threads) {
                        let answer: Value = http
                            .post(endpoint)
                            .form(&[("client_id", client_id.as_str())])
                            .send()
                            .and_then(|r| r.error_for_status())
                            .expect("a device authorization")
                            .json()
                            .unwrap();
                        interval = answer["interval"].as_u64().unwrap();
                        codes.push(answer["device_code"].as_str().unwrap().to_owned());
                    }
                    (codes, interval)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let interval = made.iter().map(|(_, i)| *i).max().unwrap_or(5);
    let codes = made.into_iter().flat_map(|(codes, _)| codes).collect();
    (client_id, codes, interval)
}

pub fn polling(server: &Server) {
    let count = setting("BENCH_POLL_PENDING", 10_000) as usize;
    let seconds = setting("BENCH_POLL_SECONDS", 60);
    let made = Instant::now();
    let (client_id, codes, interval) = pending_authorizations(server, count);
    println!(
        "  poll: {count} pending device authorizations made in {:.1} s; interval {interval} s, \
         {:.0} polls/s for {seconds} s",
        made.elapsed().as_secs_f64(),
        count as f64 / interval as f64
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let pid = server.child.id();
    let endpoint = format!("{}/oauth/token", server.base);
    let (latencies, cpu, wall) = runtime.block_on(async {
        // At most this many polls in flight, so the client stays within
        // the server's per-address connection share (128): ten thousand
        // CLIs would come from as many addresses.
        let in_flight = Arc::new(tokio::sync::Semaphore::new(100));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(100)
            .build()
            .unwrap();
        let period = Duration::from_secs(interval);
        let start = tokio::time::Instant::now() + Duration::from_millis(200);
        let end = start + Duration::from_secs(seconds);
        let cpu_before = cpu_seconds(pid);
        let wall = Instant::now();
        let tasks: Vec<_> = codes
            .into_iter()
            .enumerate()
            .map(|(i, code)| {
                let (http, endpoint, client_id, tally, in_flight) = (
                    http.clone(),
                    endpoint.clone(),
                    client_id.clone(),
                    tally.clone(),
                    in_flight.clone(),
                );
                // Spread evenly over one interval, then every interval on
                // the dot: never early.
                let first = start + period.mul_f64(i as f64 / count as f64);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut due = first;
                    while due < end {
                        tokio::time::sleep_until(due).await;
                        // From when the poll was due: waiting for a slot
                        // counts.
                        let sent = Instant::now();
                        let _slot = in_flight.acquire().await.unwrap();
                        let answer = http
                            .post(&endpoint)
                            .form(&[
                                ("grant_type", GRANT),
                                ("client_id", client_id.as_str()),
                                ("device_code", code.as_str()),
                            ])
                            .send()
                            .await;
                        let body = match answer {
                            Ok(response) => response.json::<Value>().await.ok(),
                            Err(e) => {
                                if tally.failed.load(Ordering::Relaxed) < 3 {
                                    eprintln!("  poll: failed: {e}");
                                }
                                None
                            }
                        };
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                        let counter = match body.as_ref().map(|b| b["error"].as_str()) {
                            Some(Some("authorization_pending")) => &tally.pending,
                            Some(Some("slow_down")) => &tally.slow_down,
                            Some(_) => &tally.other,
                            None => &tally.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        // The next poll one interval after this one was
                        // due, or after this one was answered if it was late.
                        due = (due + period).max(tokio::time::Instant::now());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let cpu = cpu_seconds(pid) - cpu_before;
        (latencies, cpu, wall.elapsed().as_secs_f64())
    });
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    let polls = sorted.len().max(1);
    let at = |q: f64| sorted[((polls - 1) as f64 * q) as usize];
    let max = sorted.last().copied().unwrap_or(0.0);
    let cores = cpu / wall;
    let pending = tally.pending.load(Ordering::Relaxed);
    let slow = tally.slow_down.load(Ordering::Relaxed);
    let other = tally.other.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    println!(
        "  poll: {polls} polls in {wall:.1} s ({:.0}/s): {pending} authorization_pending, \
         {slow} slow_down, {other} other errors, {failed} failed",
        polls as f64 / wall
    );
    println!(
        "  poll: latency p50 {:.1} ms, p99 {:.1} ms, max {max:.1} ms (limit {} ms); \
         server CPU {:.0} µs per poll, {cores:.2} cores (limit 0.50)",
        at(0.5),
        at(0.99),
        interval * 100,
        cpu / polls as f64 * 1e6
    );
    let correct = slow == 0 && other == 0 && failed == 0;
    let fast = max < (interval * 100) as f64;
    let light = cores < 0.5;
    println!(
        "  poll: targets: every poll answered correctly {}, none slower than interval/10 {}, \
         under half a core {}",
        verdict(correct),
        verdict(fast),
        verdict(light)
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}
