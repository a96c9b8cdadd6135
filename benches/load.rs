//! The token endpoint under load, over real HTTP, from a separate process.
//!
//!     cargo bench --bench load
//!     TESSERA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench cargo bench --bench load
//!
//! Starts the release `tessera` binary on SQLite (and on PostgreSQL when
//! TESSERA_BENCH_DATABASE_URL names an empty database), sets up its own
//! clients and service user through the admin API, checks that a sample
//! token is a valid ES256 JWT, then drives each scenario with `wrk` (one
//! thread, 64 connections) BENCH_RUNS times (default 3) for BENCH_SECONDS
//! each (default 10), and prints the median req/s, p50, p99 and the errors,
//! as the peer's harness in ../shared/bench does. Needs `wrk` (Debian
//! package `wrk`).
//! `BENCH_ONLY=basic,pkjwt,agent,jwt-bearer,exchange,introspection,pat,login,code,poll,revoke` picks scenarios (all by
//! default), for profiling one at a time; the server's pid is printed, and
//! `BENCH_BINARY` runs another build of `tessera`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tessera::keys::{Alg, KeyMaterial};

#[path = "load/agents.rs"]
mod agents;
#[path = "load/device.rs"]
mod device;
#[path = "load/people.rs"]
mod people;
#[path = "load/revocation.rs"]
mod revocation;

const CONNECTIONS: u32 = 64;
/// Assertions prepared per second of run: above any rate reached here.
const ASSERTIONS_PER_SECOND: u64 = 30_000;
/// CI tokens prepared per second of run for the exchange scenario (RS256
/// signing is slow; the exchange is slower than private_key_jwt).
const EXCHANGES_PER_SECOND: u64 = 15_000;

struct Server {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server; with `replica_of`, a second replica of that one (the
/// same database, issuer and master key).
fn start(database_url: Option<&str>, replica_of: Option<&Server>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let issuer = replica_of.map_or(base.clone(), |first| first.base.clone());
    // BENCH_BINARY: another build of tessera, e.g. one with frame pointers
    // for `perf record -g`.
    let binary = std::env::var("BENCH_BINARY")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or(env!("CARGO_BIN_EXE_tessera").into());
    let mut command = Command::new(binary);
    command
        .current_dir(dir.path())
        .arg("serve")
        .env("TESSERA_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("TESSERA_SERVER__ISSUER", &issuer)
        .env("TESSERA_LOG", "warn")
        // Every bench client shares 127.0.0.1: the per-address login
        // bucket is still counted and refunded, but 16 logins in flight
        // from one address must not block it as a spray would.
        .env("TESSERA_LOGIN__FREE_FAILURES_PER_ADDRESS", "1000000")
        // A redemption run's codes are made before it starts: on
        // PostgreSQL that took longer than the default 60 s code life.
        .env("TESSERA_TOKENS__CODE_LIFETIME", "10m")
        // The polling scenario makes 10,000 device authorizations from
        // 127.0.0.1 at once.
        .env("TESSERA_DEVICE__REQUESTS_PER_ADDRESS", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = database_url {
        command.env("TESSERA_DATABASE__URL", url);
    }
    if let Some(first) = replica_of {
        let key = std::fs::read_to_string(first.dir.path().join("keys/master.key"));
        command.env(
            "TESSERA_MASTER_KEY",
            key.expect("the first replica's master key").trim(),
        );
    }
    let child = command.spawn().expect("start tessera");
    eprintln!("tessera pid {}", child.id());
    let server = Server { child, base, dir };
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http
            .get(format!("{}/readyz", server.base))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("tessera did not become ready");
}

struct Setup {
    basic_id: String,
    basic_secret: String,
    pkjwt_id: String,
    pkjwt_key: EncodingKey,
    user_id: String,
    user_kid: String,
    user_key: EncodingKey,
    /// The CI issuer the exchange scenario's tokens come from.
    ci_key: EncodingKey,
}

/// A GitHub-shaped CI issuer for the exchange scenario. Its keys are given
/// to Tessera as a static JWKS (`--jwks-file`), so the benchmark needs no
/// server of its own; the verification work per token is the same.
const CI_ISSUER: &str = "https://token.actions.bench.invalid";
const CI_KID: &str = "ci-1";

fn admin(server: &Server, path: &str, body: Value) -> Value {
    let token = std::fs::read_to_string(server.dir.path().join("keys/admin.token")).unwrap();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}{path}", server.base))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().unwrap()
}

fn setup(server: &Server) -> Setup {
    let basic = admin(
        server,
        "/admin/v1/clients",
        json!({"name": "bench-basic", "scope": "bench"}),
    );
    let client_key = KeyMaterial::generate(Alg::ES256).unwrap();
    let pkjwt = admin(
        server,
        "/admin/v1/clients",
        json!({"name": "bench-pkjwt", "scope": "bench", "token_endpoint_auth_method": "private_key_jwt",
               "jwks": {"keys": [client_key.public_jwk("bench")]}}),
    );
    let user = admin(
        server,
        "/admin/v1/service-users",
        json!({"name": "bench-bot", "scope": "bench"}),
    );
    let user_id = user["id"].as_str().unwrap().to_owned();
    let user_key = KeyMaterial::generate(Alg::ES256).unwrap();
    let added = admin(
        server,
        &format!("/admin/v1/service-users/{user_id}/keys"),
        json!({"public_key": user_key.public_jwk("x")}),
    );
    let ci_key = KeyMaterial::generate(Alg::RS256).unwrap();
    admin(
        server,
        "/admin/v1/trust/issuers",
        json!({"issuer": CI_ISSUER, "jwks": {"keys": [ci_key.public_jwk(CI_KID)]}}),
    );
    admin(
        server,
        "/admin/v1/trust/policies",
        json!({"name": "bench-deploy", "issuer": CI_ISSUER, "service_user": user_id, "scope": "bench",
               "refused_events": ["pull_request_target"],
               "conditions": [
                   {"claim": "repository", "match": "exact", "value": "octo-org/octo-repo"},
                   {"claim": "repository_id", "match": "exact", "value": "123456789"},
                   {"claim": "repository_owner_id", "match": "exact", "value": "987654321"},
                   {"claim": "ref", "match": "glob", "value": "refs/heads/*"}]}),
    );
    let ci_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(&*ci_key.to_pkcs8().unwrap())
    );
    Setup {
        ci_key: EncodingKey::from_rsa_pem(ci_pem.as_bytes()).unwrap(),
        basic_id: basic["client_id"].as_str().unwrap().to_owned(),
        basic_secret: basic["client_secret"].as_str().unwrap().to_owned(),
        pkjwt_id: pkjwt["client_id"].as_str().unwrap().to_owned(),
        pkjwt_key: EncodingKey::from_ec_der(&client_key.to_pkcs8().unwrap()),
        user_id,
        user_kid: added["keyId"].as_str().unwrap().to_owned(),
        user_key: EncodingKey::from_ec_der(&user_key.to_pkcs8().unwrap()),
    }
}

fn basic_header(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// One token the ordinary way, checked as a relying party would: an ES256
/// `at+jwt` that verifies against the published JWKS.
fn sample_token(server: &Server, setup: &Setup) -> String {
    let http = reqwest::blocking::Client::new();
    let body: Value = http
        .post(format!("{}/oauth/token", server.base))
        .basic_auth(&setup.basic_id, Some(&setup.basic_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = body["access_token"].as_str().expect("a token").to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(format!("{}/oauth/jwks", server.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("the sample token verifies");
    token
}

/// One file of form bodies with unique-`jti` assertions, one per line, for
/// each run of a scenario, so no run replays a `jti`. Made right before the
/// scenario runs: the server refuses an `exp` more than 5 minutes ahead, so
/// the assertions' clock starts here. `per_second` lines per second of run
/// (above any rate reached here), signed on every core.
fn assertion_files(
    server: &Server,
    name: &str,
    plan: &Plan,
    per_second: u64,
    body: impl Fn(u64, i64) -> String + Sync,
) -> Vec<PathBuf> {
    let now = tessera::clock::now();
    let count = per_second * plan.seconds;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    (0..plan.runs)
        .map(|run| {
            let first = count * run as u64;
            let chunk = count.div_ceil(threads);
            let lines: Vec<Vec<String>> = std::thread::scope(|scope| {
                let body = &body;
                let parts: Vec<_> = (0..threads)
                    .map(|t| {
                        let from = first + t * chunk;
                        let to = (from + chunk).min(first + count);
                        scope.spawn(move || (from..to).map(|i| body(i, now)).collect())
                    })
                    .collect();
                parts.into_iter().map(|p| p.join().unwrap()).collect()
            });
            let path = server.dir.path().join(format!("{name}-{run}.txt"));
            let mut out = BufWriter::new(std::fs::File::create(&path).unwrap());
            for line in lines.iter().flatten() {
                writeln!(out, "{line}").unwrap();
            }
            path
        })
        .collect()
}

fn signed(key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    signed_with(Algorithm::ES256, key, kid, claims)
}

fn signed_with(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn lua_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench")
}

/// BENCH_ONLY=pkjwt,basic runs only the scenarios whose key is listed.
fn selected(key: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|k| k.trim() == key))
}

/// CPU seconds the process has used so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // the 12th and 13th of them, in clock ticks (100 per second on Linux).
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

/// One wrk run's figures.
struct RunResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    cpu_us_per_request: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs scenario `key` `runs` times and prints the median of each figure,
/// as ../shared/bench/load/bench.py does for the peer, then every run's
/// req/s and p99. `env` gives each run's environment: runs that post
/// assertions get a file of their own, so no `jti` is ever replayed.
fn wrk(
    key: &str,
    label: &str,
    server: &Server,
    script: &str,
    env: impl Fn(usize) -> Vec<(&'static str, String)>,
    plan: &Plan,
) -> Option<Measured> {
    wrk_against(key, label, server, script, env, plan, None).map(|(measured, _)| measured)
}

/// A limit in calls a second, measured by the benchmark itself.
type Limit<'a> = &'a dyn Fn() -> f64;

/// [`wrk`], with `limit` timed right before and right after each run, so
/// that each run can be set against what the machine could do in those
/// same seconds: its speed drifts within minutes, and a limit timed at
/// the scenario's start or end alone was off by up to a third for a run
/// in its middle (2026-12-07: one RS256 signature took 494 µs, then 381
/// µs a minute later). Each timing waits for the machine to settle
/// first ([`settle`]): the run's codes were just made, or the run just
/// ended, and work they left (the server's writer, a checkpoint) would
/// slow the timing and flatter the run. Returns the scenario's figures
/// and, for each run, its rate and the mean of its two limits.
fn wrk_against(
    key: &str,
    label: &str,
    server: &Server,
    script: &str,
    env: impl Fn(usize) -> Vec<(&'static str, String)>,
    plan: &Plan,
    limit: Option<Limit<'_>>,
) -> Option<(Measured, Vec<RateAndLimit>)> {
    if !selected(key) {
        return None;
    }
    let mut around = Vec::new();
    let mut results = Vec::new();
    for run in 0..plan.runs {
        let env = env(run);
        let Some(measure) = limit else {
            results.push(wrk_once(label, server, script, &env, plan));
            continue;
        };
        settle();
        let before = measure();
        let result = wrk_once(label, server, script, &env, plan);
        settle();
        around.push(RateAndLimit {
            rps: result.rps,
            limit: (before + measure()) / 2.0,
        });
        results.push(result);
    }
    let med = |figure: fn(&RunResult) -> f64| median(results.iter().map(figure).collect());
    let each = |figure: fn(&RunResult) -> f64, digits: usize| {
        results
            .iter()
            .map(|r| format!("{:.digits$}", figure(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  {label:<46} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}   server CPU {:>4.0} µs/req",
        med(|r| r.rps),
        med(|r| r.p50_ms),
        med(|r| r.p99_ms),
        results.iter().map(|r| r.errors).sum::<u64>(),
        med(|r| r.cpu_us_per_request),
    );
    if plan.runs > 1 {
        println!(
            "  {:<46} runs: {} req/s; p99 {} ms",
            "",
            each(|r| r.rps, 0),
            each(|r| r.p99_ms, 2)
        );
    }
    let measured = Measured {
        rps: med(|r| r.rps),
        errors: results.iter().map(|r| r.errors).sum(),
    };
    Some((measured, around))
}

/// One run's rate and the limit measured around it, in calls a second.
struct RateAndLimit {
    rps: f64,
    limit: f64,
}

/// Waits, at most `SETTLE_AT_MOST`, until the machine is idle: under
/// a tenth of its CPU time busy over 100 ms (`/proc/stat`), whatever
/// process was busy (the server, PostgreSQL, a leftover client).
fn settle() {
    const SETTLE_AT_MOST: Duration = Duration::from_secs(10);
    let started = Instant::now();
    let mut last = busy_and_total();
    while started.elapsed() < SETTLE_AT_MOST {
        std::thread::sleep(Duration::from_millis(100));
        let now = busy_and_total();
        let (busy, total) = (now.0 - last.0, now.1 - last.1);
        if total > 0 && busy * 10 < total {
            return;
        }
        last = now;
    }
    eprintln!("  (the machine did not settle within {SETTLE_AT_MOST:?})");
}

/// Busy and total CPU ticks of the machine so far (the first seven
/// fields of the `cpu` line of `/proc/stat`; idle and iowait are not
/// busy, and steal, time the host gave to others, is left out).
fn busy_and_total() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// A scenario's median rate and its errors over all runs.
#[derive(Clone, Copy)]
struct Measured {
    rps: f64,
    errors: u64,
}

fn wrk_once(
    label: &str,
    server: &Server,
    script: &str,
    env: &[(&str, String)],
    plan: &Plan,
) -> RunResult {
    let cpu_before = cpu_seconds(server.child.id());
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{}", plan.connections),
            &format!("-d{}s", plan.seconds),
            "--latency",
            "-s",
        ])
        .arg(lua_dir().join(script))
        .arg(&server.base)
        .env("BENCH_LUA_DIR", lua_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCHJSON "))
        .unwrap_or_else(|| {
            panic!(
                "{label}: no result from wrk:\n{text}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let result: Value = serde_json::from_str(line).unwrap();
    let figure = |name: &str| result[name].as_f64().unwrap();
    RunResult {
        rps: figure("rps"),
        p50_ms: figure("p50_ms"),
        p99_ms: figure("p99_ms"),
        errors: result["errors"].as_u64().unwrap(),
        cpu_us_per_request: cpu * 1e6 / figure("requests").max(1.0),
    }
}

/// How long and how often each scenario runs, and over how many
/// connections.
#[derive(Clone, Copy)]
struct Plan {
    seconds: u64,
    runs: usize,
    connections: u32,
}

fn run(label: &str, database_url: Option<&str>, plan: &Plan) {
    let server = start(database_url, None);
    let setup = setup(&server);
    let token = sample_token(&server, &setup);
    let issuer = server.base.clone();
    let endpoint = format!("{issuer}/oauth/token");
    println!(
        "{label}: {CONNECTIONS} connections, {} × {} s per scenario (median), wrk -t1 on the same machine",
        plan.runs, plan.seconds
    );
    let basic_env = |body: &str, path: &str| {
        vec![
            ("BENCH_PATH", path.to_owned()),
            ("BENCH_BODY", body.to_owned()),
            (
                "BENCH_AUTH",
                basic_header(&setup.basic_id, &setup.basic_secret),
            ),
        ]
    };
    // Warm-up, not reported.
    let body = "grant_type=client_credentials&scope=bench";
    let warm = Command::new("wrk")
        .args(["-t1", "-c16", "-d3s", "-s"])
        .arg(lua_dir().join("form.lua"))
        .arg(&server.base)
        .env("BENCH_LUA_DIR", lua_dir())
        .envs(basic_env(body, "/oauth/token"))
        .output();
    assert!(warm.is_ok_and(|o| o.status.success()), "warm-up run");
    let basic = wrk(
        "basic",
        "client_credentials + client_secret_basic",
        &server,
        "form.lua",
        |_| basic_env(body, "/oauth/token"),
        plan,
    );
    let lines = |files: &[PathBuf], run: usize| {
        vec![
            ("BENCH_PATH", "/oauth/token".to_owned()),
            ("BENCH_LINES", files[run].display().to_string()),
        ]
    };
    let mut pkjwt = None;
    if selected("pkjwt") {
        let files = assertion_files(&server, "pkjwt", plan, ASSERTIONS_PER_SECOND, |i, now| {
            let claims = json!({"iss": setup.pkjwt_id, "sub": setup.pkjwt_id, "aud": endpoint,
                                "exp": now + 280, "jti": format!("pk-{i}")});
            format!(
                "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
                signed(&setup.pkjwt_key, Some("bench"), &claims)
            )
        });
        pkjwt = wrk(
            "pkjwt",
            "client_credentials + private_key_jwt",
            &server,
            "lines.lua",
            |run| lines(&files, run),
            plan,
        );
    }
    // Agents (issue 13): EdDSA assertions, at least the ES256 rate.
    if selected("agent") {
        let agent = agents::setup(&server, &setup.user_id);
        let files = assertion_files(&server, "agent", plan, ASSERTIONS_PER_SECOND, |i, now| {
            let claims = json!({"iss": agent.client_id, "sub": agent.client_id, "aud": issuer,
                                "exp": now + 280, "jti": format!("ag-{i}")});
            format!(
                "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
                signed_with(Algorithm::EdDSA, &agent.key, Some(&agent.kid), &claims)
            )
        });
        let measured = wrk(
            "agent",
            "agent token: client_credentials + EdDSA pk_jwt",
            &server,
            "lines.lua",
            |run| lines(&files, run),
            plan,
        );
        if let (Some(agent), Some(es256)) = (measured, pkjwt) {
            let ratio = agent.rps / es256.rps;
            let met = ratio >= 1.0 && agent.errors == 0;
            println!(
                "  agent (EdDSA) / private_key_jwt (ES256): {ratio:.2}×, {} errors (target ≥ 1×, none): {}",
                agent.errors,
                if met { "MET" } else { "MISSED" }
            );
        }
    }
    if selected("jwt-bearer") {
        let files = assertion_files(
            &server,
            "jwt-bearer",
            plan,
            ASSERTIONS_PER_SECOND,
            |i, now| {
                let claims = json!({"iss": setup.user_id, "sub": setup.user_id, "aud": issuer,
                                "iat": now, "exp": now + 280, "jti": format!("jb-{i}")});
                format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
                    signed(&setup.user_key, Some(&setup.user_kid), &claims)
                )
            },
        );
        wrk(
            "jwt-bearer",
            "jwt-bearer grant (service user key)",
            &server,
            "lines.lua",
            |run| lines(&files, run),
            plan,
        );
    }
    if selected("exchange") {
        // GitHub-shaped tokens, RS256, each with its own jti (RFC 8693).
        // RSA signing is slow (about 1 ms a token): runs of at most 5 s,
        // and fewer tokens per second than the ES256 scenarios get.
        let plan = &Plan {
            seconds: plan.seconds.min(5),
            ..*plan
        };
        let files = assertion_files(&server, "exchange", plan, EXCHANGES_PER_SECOND, |i, now| {
            let claims = json!({
                "iss": CI_ISSUER, "aud": issuer, "jti": format!("ci-{i}"),
                "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
                "repository": "octo-org/octo-repo", "repository_id": "123456789",
                "repository_owner": "octo-org", "repository_owner_id": "987654321",
                "ref": "refs/heads/main", "ref_type": "branch", "event_name": "push",
                "run_id": format!("{}", 8_000_000_000u64 + i), "runner_environment": "github-hosted",
                "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
                "iat": now, "nbf": now - 5, "exp": now + 280});
            format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&subject_token={}",
                signed_with(Algorithm::RS256, &setup.ci_key, Some(CI_KID), &claims)
            )
        });
        wrk(
            "exchange",
            "token exchange (GitHub-shaped RS256 token)",
            &server,
            "lines.lua",
            |run| lines(&files, run),
            plan,
        );
    }
    let introspect_body = format!("token={token}");
    wrk(
        "introspection",
        "introspection of a JWT access token",
        &server,
        "form.lua",
        |_| basic_env(&introspect_body, "/oauth/introspect"),
        plan,
    );
    // Personal access tokens (issue 12): introspected by a resource
    // server, and used on the admin API; the first against 1.5× the
    // client_credentials rate of this run.
    let people = ["pat", "login", "code", "revoke"]
        .into_iter()
        .any(selected)
        .then(|| people::setup(&server));
    if selected("pat") {
        let pat = people::personal_token(&server);
        let body = format!("token={pat}");
        let introspected = wrk(
            "pat",
            "introspection of a personal access token",
            &server,
            "form.lua",
            |_| basic_env(&body, "/oauth/introspect"),
            plan,
        );
        let auth = format!("Bearer {pat}");
        wrk(
            "pat",
            "GET /admin/v1/whoami with a personal access token",
            &server,
            "get.lua",
            |_| {
                vec![
                    ("BENCH_PATH", "/admin/v1/whoami".to_owned()),
                    ("BENCH_AUTH", auth.clone()),
                ]
            },
            plan,
        );
        if let (Some(pat), Some(basic)) = (introspected, basic) {
            let ratio = pat.rps / basic.rps;
            println!(
                "  PAT introspection / client_credentials: {ratio:.2}× (target ≥ 1.5×): {}",
                if ratio >= 1.5 { "MET" } else { "MISSED" }
            );
        }
    }
    // People (issue 10): logins and code redemptions, each beside the
    // limit this run measures for it.
    if let Some(people) = &people {
        if selected("login") {
            people::logins(&server, plan);
        }
        if selected("code") {
            people::redemptions(&server, people, plan);
        }
    }
    // CLI login (issue 11): pending device authorizations polled at their
    // interval.
    if selected("poll") {
        device::polling(&server);
    }
    // Issue 12: a token revoked or disabled on one replica, refused by the
    // other (two replicas need the shared database).
    if let (Some(url), true) = (database_url, selected("revoke")) {
        revocation::across_replicas(&server, url);
    }
}

fn main() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: apt-get install wrk");
        std::process::exit(2);
    }
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let plan = Plan {
        seconds: setting("BENCH_SECONDS", 10),
        runs: setting("BENCH_RUNS", 3).max(1) as usize,
        connections: CONNECTIONS,
    };
    run("SQLite", None, &plan);
    match std::env::var("TESSERA_BENCH_DATABASE_URL") {
        Ok(url) => run("PostgreSQL", Some(&url), &plan),
        Err(_) => {
            println!("PostgreSQL: skipped (set TESSERA_BENCH_DATABASE_URL to an empty database)")
        }
    }
}
