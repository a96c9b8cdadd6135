//! Issue 10's two scenarios: password logins and `authorization_code`
//! redemptions. Each is reported beside a limit this benchmark measures
//! in the same run, on the same machine, because the machine's speed
//! drifts 2–3× between hours and only ratios measured together mean
//! anything:
//!
//! - logins: `cores ÷ the time of one argon2id hash` at the configured
//!   parameters (a login verifies one password; verifying costs a hash);
//! - redemptions: `cores ÷ (one RS256 ID-token signature + one ES256
//!   access-token signature)`, with the key ring's own signers.
//!
//! Two figures are printed for each. The first sets the scenario's median
//! rate against the mean of its limit timed (2 s) right before and right
//! after the whole scenario. The second, the one the targets are checked
//! against since 2026-12-07, sets each run against its limit timed (1 s)
//! right before and right after that run, once the machine has settled
//! ([`wrk_against`]), and takes the median of the runs' percentages: the
//! speed drifts within minutes too (2026-12-06: one RS256 signature took
//! 368 µs, and 597 µs two minutes later), and a redemption run is minted
//! its codes for 10–30 s before it, so the first figure's limits can be a
//! minute and more away from a run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera::keys::{Alg, KeyMaterial};
use tessera::secret::Secret;

use super::{Plan, RateAndLimit, Server, admin, median, settle, wrk_against};

const USERNAME: &str = "bench-alice";
const PASSWORD: &str = "correct horse battery staple";
/// A web app's redirect: a public client redirecting to loopback is asked
/// for consent on every authorization (RFC 8252 §8.6), which the
/// benchmark's code-minting loop does not answer.
const REDIRECT_URI: &str = "https://app.example.com/callback";
/// RFC 7636 §4.1: 43 characters of the unreserved set.
const VERIFIER: &str = "bench-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
/// Logins run at 16 concurrent clients (the figure).
const LOGIN_CONNECTIONS: u32 = 16;
/// The users those clients sign in as, in turn: one user signing in 16
/// times at once would trip the per-account throttle, which counts each
/// attempt before checking it (as it must, to bound parallel guessing).
const LOGIN_USERS: usize = 64;

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// The form of both limits: `cores ÷ the time of one call`, in
/// calls a second, for a call of `micros` µs.
fn limit_of(micros: f64) -> f64 {
    cores() * 1e6 / micros
}

/// Runs `op` for about `time` after a short warm-up, in batches of at
/// least 100 ms; µs per call, the median of the batches' means, so that
/// a stall of another process in one batch does not move it.
fn time_per_call(time: Duration, mut op: impl FnMut()) -> f64 {
    const BATCH: Duration = Duration::from_millis(100);
    for _ in 0..3 {
        op();
    }
    let started = Instant::now();
    let mut batches = Vec::new();
    while started.elapsed() < time || batches.len() < 3 {
        let batch = Instant::now();
        let mut calls = 0u32;
        while batch.elapsed() < BATCH {
            op();
            calls += 1;
        }
        batches.push(batch.elapsed().as_secs_f64() * 1e6 / f64::from(calls));
    }
    median(batches)
}

/// Hashes a password at the server's default parameters.
struct Hasher {
    passwords: tessera::accounts::passwords::Passwords,
    password: Secret,
}

impl Hasher {
    fn new() -> Hasher {
        let config = tessera::config::Config::from_toml_layers(&[]).expect("default configuration");
        Hasher {
            passwords: tessera::accounts::passwords::Passwords::new(&config.passwords).unwrap(),
            password: Secret::new(PASSWORD.to_owned()),
        }
    }

    fn hash(&self) {
        std::hint::black_box(self.passwords.hash(&self.password).unwrap());
    }

    fn micros(&self, time: Duration) -> f64 {
        time_per_call(time, || self.hash())
    }

    /// `cores ÷ one argon2id hash` (the limit), timed for `time`.
    fn limit(&self, time: Duration) -> f64 {
        limit_of(self.micros(time))
    }

    /// Timed around a whole scenario, once the machine has settled: the
    /// µs of one hash, the limit, and, for comparison, how many hashes a
    /// second all cores make when each hashes at once (parallel hashes
    /// share the last-level cache and memory bandwidth, and each can run
    /// slower).
    fn scenario_limits(&self) -> (f64, f64, f64) {
        settle();
        let micros = self.micros(Duration::from_secs(2));
        (micros, limit_of(micros), all_cores_at_once(|| self.hash()))
    }
}

/// Calls a second when every core calls `op` at once, for two seconds:
/// what the cores reach together, which can be less than `cores ÷ one
/// call` (shared caches, memory bandwidth, or vector units shared by two
/// hardware threads of one core).
fn all_cores_at_once(op: impl Fn() + Sync) -> f64 {
    let started = Instant::now();
    let calls: u32 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores() as usize)
            .map(|_| {
                scope.spawn(|| {
                    let mut count = 0u32;
                    while started.elapsed() < Duration::from_secs(2) {
                        op();
                        count += 1;
                    }
                    count
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    f64::from(calls) / started.elapsed().as_secs_f64()
}

/// The two signatures of one redemption, made by the key ring's signers
/// over claims of the usual size.
struct Signers {
    set: tessera::keys::KeySet,
    claims: Value,
}

impl Signers {
    fn new() -> Signers {
        let master = tessera::keys::MasterKey::from_bytes([7; 32]);
        let es = KeyMaterial::generate(Alg::ES256).unwrap();
        let rs = KeyMaterial::generate(Alg::RS256).unwrap();
        let records = vec![
            tessera::store::SigningKeyRecord::seal(&es, 1, &master, 0, 0).unwrap(),
            tessera::store::SigningKeyRecord::seal(&rs, 1, &master, 0, 0).unwrap(),
        ];
        let claims = json!({
            "iss": "http://127.0.0.1:8080", "sub": "5f0c6f53-8d0b-4a55-9a43-1c0d8e1f2a3b",
            "aud": "bench-web", "exp": 1_900_000_000, "iat": 1_899_999_100,
            "auth_time": 1_899_999_000, "nonce": "n-0S6_WzA2Mj", "amr": ["pwd"],
            "at_hash": "77QmUPtjPfzWtF2AnpK9RQ", "sid": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        });
        Signers {
            set: tessera::keys::KeySet::from_records(records, &master, 1).unwrap(),
            claims,
        }
    }

    fn sign(&self, alg: Alg, typ: &str) {
        let key = self.set.signer(alg, 1).unwrap();
        std::hint::black_box(tessera::tokens::jwt::sign(key, typ, &self.claims).unwrap());
    }

    /// The µs of one RS256 signature and of one ES256 signature, each
    /// timed for `time`.
    fn micros(&self, time: Duration) -> (f64, f64) {
        (
            time_per_call(time, || self.sign(Alg::RS256, "JWT")),
            time_per_call(time, || self.sign(Alg::ES256, "at+jwt")),
        )
    }

    /// `cores ÷ (RS256 + ES256)` (the limit), each timed for `time`.
    fn limit(&self, time: Duration) -> f64 {
        let (rs, es) = self.micros(time);
        limit_of(rs + es)
    }

    /// Timed around a whole scenario, once the machine has settled: each
    /// signature's µs, the limit, and, for comparison, how many pairs a
    /// second all cores sign at once.
    fn scenario_limits(&self) -> (f64, f64, f64, f64) {
        settle();
        let (rs, es) = self.micros(Duration::from_secs(2));
        let parallel = all_cores_at_once(|| {
            self.sign(Alg::RS256, "JWT");
            self.sign(Alg::ES256, "at+jwt");
        });
        (rs, es, limit_of(rs + es), parallel)
    }
}

/// How long a limit is timed right before and after each run.
const LIMIT_AROUND_A_RUN: Duration = Duration::from_secs(1);

/// The median of the runs' percentages of the limits timed around them,
/// then each run's percentage and limit.
fn around_each_run(what: &str, runs: &[RateAndLimit]) -> String {
    let percent = |run: &RateAndLimit| run.rps * 100.0 / run.limit;
    let each = runs
        .iter()
        .map(|run| format!("{:.0}% of {:.1}/s", percent(run), run.limit))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{what} at {:.0}% of the limit timed around each run (median; runs: {each})",
        median(runs.iter().map(percent).collect())
    )
}

/// The user and the browser client both scenarios use.
pub struct People {
    client_id: String,
}

pub fn setup(server: &Server) -> People {
    admin(
        server,
        "/admin/v1/users",
        json!({"username": USERNAME, "password": PASSWORD, "email": "alice@example.com"}),
    );
    let client = admin(
        server,
        "/admin/v1/clients",
        json!({"name": "Bench web", "public": true, "first_party": true,
               "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code"],
               "redirect_uris": [REDIRECT_URI], "scope": "openid profile email"}),
    );
    for n in 0..LOGIN_USERS {
        admin(
            server,
            "/admin/v1/users",
            json!({"username": format!("{USERNAME}-{n}"), "password": PASSWORD}),
        );
    }
    People {
        client_id: client["client_id"].as_str().unwrap().to_owned(),
    }
}

fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The login form's CSRF token and the cookie it is bound to.
fn login_form(server: &Server, http: &reqwest::blocking::Client) -> (String, String) {
    let response = http.get(format!("{}/login", server.base)).send().unwrap();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let page = response.text().unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the login page has a csrf field")
        .to_owned();
    (csrf, cookie)
}

/// Password logins at 16 concurrent clients: each POST checks the CSRF
/// token, verifies the password (argon2id) and writes a new session.
pub fn logins(server: &Server, plan: &Plan) {
    let hasher = Hasher::new();
    let (argon2_before, limit_before, parallel_before) = hasher.scenario_limits();
    let http = browser();
    let (csrf, cookie) = login_form(server, &http);
    let body = |username: &str| {
        format!(
            "csrf={csrf}&username={username}&password={}",
            PASSWORD.replace(' ', "+")
        )
    };
    // One login by hand first: it must succeed (303 to the account page).
    let first = http
        .post(format!("{}/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body(USERNAME))
        .send()
        .unwrap();
    assert_eq!(first.status(), 303, "a bench login succeeds");
    let lines = server.dir.path().join("logins.txt");
    let bodies: Vec<String> = (0..LOGIN_USERS)
        .map(|n| body(&format!("{USERNAME}-{n}")))
        .collect();
    std::fs::write(&lines, bodies.join("\n")).unwrap();
    let limit_around = || hasher.limit(LIMIT_AROUND_A_RUN);
    let measured = wrk_against(
        "login",
        "password login (CSRF, argon2id, session write)",
        server,
        "lines.lua",
        |_| {
            vec![
                ("BENCH_PATH", "/login".to_owned()),
                ("BENCH_LINES", lines.display().to_string()),
                ("BENCH_CYCLE", "1".to_owned()),
                ("BENCH_COOKIE", cookie.clone()),
            ]
        },
        &Plan {
            connections: LOGIN_CONNECTIONS,
            ..*plan
        },
        Some(&limit_around),
    );
    if let Some((measured, runs)) = measured {
        let rps = measured.rps;
        let (argon2_after, limit_after, parallel_after) = hasher.scenario_limits();
        let limit = (limit_before + limit_after) / 2.0;
        let parallel = (parallel_before + parallel_after) / 2.0;
        println!(
            "  {:<46} argon2id {:.1} ms a hash before the scenario, {:.1} ms after; limit {limit:.1}/s on {} cores (mean); logins at {:.0}% of it",
            "",
            argon2_before / 1e3,
            argon2_after / 1e3,
            cores(),
            rps * 100.0 / limit
        );
        println!("  {:<46} {}", "", around_each_run("logins", &runs));
        println!(
            "  {:<46} (all cores hashing at once: {parallel:.1}/s; logins at {:.0}% of that)",
            "",
            rps * 100.0 / parallel
        );
    }
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(verifier))`.
fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, VERIFIER.as_bytes()).as_ref())
}

/// A browser in which the bench user has signed in.
fn signed_in_browser(server: &Server) -> reqwest::blocking::Client {
    let http = browser();
    let (csrf, _) = login_form(server, &http);
    let signed_in = http
        .post(format!("{}/login", server.base))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", USERNAME),
            ("password", PASSWORD),
        ])
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), 303, "the bench user signs in");
    http
}

/// Signs in once, then asks `/authorize` for `count` codes (first-party
/// client: no consent), and writes one token request per line.
fn code_file(server: &Server, people: &People, count: usize, run: usize) -> PathBuf {
    let http = signed_in_browser(server);
    let authorize = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid+profile&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        server.base,
        people.client_id,
        urlencode(REDIRECT_URI),
        challenge()
    );
    let path = server.dir.path().join(format!("codes-{run}.txt"));
    let mut lines = String::new();
    let started = Instant::now();
    let per_thread = count.div_ceil(8);
    let codes: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let http = &http;
                let authorize = &authorize;
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|_| {
                            let response = http.get(authorize).send().unwrap();
                            let location = response
                                .headers()
                                .get("location")
                                .and_then(|l| l.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let url = url::Url::parse(&location).unwrap_or_else(|_| {
                                panic!("authorize answered {} {location}", response.status())
                            });
                            url.query_pairs()
                                .find(|(k, _)| k == "code")
                                .map(|(_, v)| v.into_owned())
                                .expect("a code in the redirect")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    for code in codes {
        lines.push_str(&format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={}&code_verifier={VERIFIER}\n",
            urlencode(REDIRECT_URI),
            people.client_id
        ));
    }
    std::fs::write(&path, lines).unwrap();
    eprintln!(
        "  ({count} codes in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    path
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `authorization_code` redemptions at 64 connections: each checks the
/// code and PKCE, consumes the code, and signs an ID token (RS256) and an
/// access token (ES256). Each run gets fresh codes, made right before it
/// (the bench server lets them live 10 minutes), and lasts at most 5 s.
pub fn redemptions(server: &Server, people: &People, plan: &Plan) {
    let signers = Signers::new();
    let (rs_before, es_before, limit_before, parallel_before) = signers.scenario_limits();
    let plan = Plan {
        seconds: plan.seconds.min(5),
        ..*plan
    };
    // Enough codes for the signing limit, so the run never runs dry.
    let count = (limit_before * plan.seconds as f64 * 1.2) as usize + 500;
    check_one_redemption(server, people);
    let limit_around = || signers.limit(LIMIT_AROUND_A_RUN);
    let measured = wrk_against(
        "code",
        "authorization_code redemption (ID + access token)",
        server,
        "lines.lua",
        |run| {
            vec![
                ("BENCH_PATH", "/oauth/token".to_owned()),
                (
                    "BENCH_LINES",
                    code_file(server, people, count, run).display().to_string(),
                ),
            ]
        },
        &plan,
        Some(&limit_around),
    );
    if let Some((measured, runs)) = measured {
        let rps = measured.rps;
        let (rs_after, es_after, limit_after, parallel_after) = signers.scenario_limits();
        let limit = (limit_before + limit_after) / 2.0;
        let parallel = (parallel_before + parallel_after) / 2.0;
        println!(
            "  {:<46} RS256 {rs_before:.0} µs + ES256 {es_before:.0} µs before the scenario, {rs_after:.0} + {es_after:.0} µs after; limit {limit:.0}/s on {} cores (mean); redemptions at {:.0}% of it",
            "",
            cores(),
            rps * 100.0 / limit
        );
        println!("  {:<46} {}", "", around_each_run("redemptions", &runs));
        println!(
            "  {:<46} (all cores signing at once: {parallel:.0} pairs/s; redemptions at {:.0}% of that)",
            "",
            rps * 100.0 / parallel
        );
    }
}

/// One redemption by hand: it must give an ID token and an access token.
fn check_one_redemption(server: &Server, people: &People) {
    let file = code_file(server, people, 1, usize::MAX);
    // Eight workers make at least one code each: the first will do.
    let body = std::fs::read_to_string(file).unwrap();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/oauth/token", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.lines().next().unwrap_or_default().to_owned())
        .send()
        .unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "a bench redemption succeeds: {text}");
    let tokens: Value = serde_json::from_str(&text).unwrap();
    assert!(tokens["id_token"].is_string() && tokens["access_token"].is_string());
}

/// A personal access token of the bench user, made the way a person
/// makes one: a sign-in, an authorization code for a first-party client
/// asking for `tokens:self` (its access token is meant for Tessera's API),
/// and `POST /admin/v1/tokens` with that access token.
pub fn personal_token(server: &Server) -> String {
    let made = TokenMaker::new(server).make("bench");
    made["token"].as_str().unwrap().to_owned()
}

/// Makes personal access tokens of the bench user with the access token
/// of one sign-in (which may also revoke or disable them).
pub struct TokenMaker {
    http: reqwest::blocking::Client,
    base: String,
    pub access: String,
}

impl TokenMaker {
    /// Signs in as a person does for [`personal_token`].
    pub fn new(server: &Server) -> TokenMaker {
        let console = admin(
            server,
            "/admin/v1/clients",
            json!({"name": "Bench console", "public": true, "first_party": true,
                   "token_endpoint_auth_method": "none",
                   "grant_types": ["authorization_code"],
                   "redirect_uris": [REDIRECT_URI], "scope": "openid tokens:self"}),
        );
        let client_id = console["client_id"].as_str().unwrap();
        let http = signed_in_browser(server);
        let authorized = http
            .get(format!(
                "{}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid+tokens%3Aself&state=s&code_challenge={}&code_challenge_method=S256",
                server.base,
                urlencode(REDIRECT_URI),
                challenge()
            ))
            .send()
            .unwrap();
        let location = authorized
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let code = url::Url::parse(&location)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_else(|| panic!("authorize answered {} {location}", authorized.status()));
        let tokens: Value = http
            .post(format!("{}/oauth/token", server.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT_URI),
                ("client_id", client_id),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let access = tokens["access_token"].as_str().expect("an access token");
        TokenMaker {
            http,
            base: server.base.clone(),
            access: access.to_owned(),
        }
    }

    /// A 7-day prod token: the creation's answer (`id`, `token`, ...).
    pub fn make(&self, name: &str) -> Value {
        let created: Value = self
            .http
            .post(format!("{}/admin/v1/tokens", self.base))
            .bearer_auth(&self.access)
            .json(&json!({"name": name, "env": "prod", "expires": "7d", "scope": "tokens:self"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let token = created["token"].as_str().expect("a personal access token");
        assert!(token.starts_with("tsr_pat_prod_"), "{created}");
        created
    }
}
