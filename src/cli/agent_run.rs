//! `tessera agent run`: the reference agent beside a workload. It registers
//! an Ed25519 key of its own with a one-time bootstrap token (RFC 7591),
//! keeps a fresh access token in a file the workload reads (client
//! credentials with `private_key_jwt`, RFC 7523 §2.2), and replaces its key
//! before the key expires (RFC 7592). The private key and the registration
//! access token live in memory only, and the agent opens no listening port.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;
use zeroize::Zeroizing;

use super::client::{printable, refuse_cleartext, root_cause};
use crate::random::{random_base62, random_bytes};
use crate::secret::Secret;

/// RFC 7523 §2.2: the `client_assertion_type` of a JWT client assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Seconds a client assertion is valid: long enough for one request.
const ASSERTION_LIFETIME: i64 = 60;
/// The latest a key is replaced: this many seconds before it expires.
const ROTATION_MARGIN: i64 = 120;
/// The longest any wait is scheduled for (136 years): a value from the
/// server far in the future must not overflow the clock.
const LONGEST_DELAY: i64 = u32::MAX as i64;
/// The longest the agent sleeps before looking at the wall clock again, so
/// that a suspended machine or a stepped clock does not make it late.
const LONGEST_NAP: Duration = Duration::from_secs(30);
/// What the agent registers for: the only grant and the only method it uses.
const GRANT_TYPES: [&str; 1] = ["client_credentials"];
const AUTH_METHOD: &str = "private_key_jwt";

/// The options of `tessera agent run`. The server's URL and `--insecure`
/// are the admin options that every `tessera agent` command takes
/// (`--url`, else TESSERA_URL), and reach [`run`] beside these.
#[derive(Debug, clap::Args)]
pub struct AgentRunArgs {
    /// File holding the one-time bootstrap token (`tsr_ab_…`). It is read
    /// once at start; the token is spent by the registration.
    #[arg(long)]
    pub bootstrap_token_file: PathBuf,
    /// File the agent keeps a fresh access token in (mode 0600, replaced
    /// atomically): the token alone, without a newline.
    #[arg(long)]
    pub token_sink: PathBuf,
    /// Space-separated scopes to register for (default: all of the service user's).
    #[arg(long)]
    pub scope: Option<String>,
    /// The client_name to register (e.g. the pod name); default: the host name.
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs the agent against the Tessera server at `url` (plain http only to
/// loopback unless `insecure`) until SIGTERM or Ctrl-C (then `Ok`), or
/// until the server refuses it for good (then an error saying why).
pub async fn run(url: Url, insecure: bool, args: AgentRunArgs) -> anyhow::Result<()> {
    tokio::select! {
        result = run_until_refused(&url, insecure, &args) => result,
        () = crate::server::shutdown_signal() => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

async fn run_until_refused(url: &Url, insecure: bool, args: &AgentRunArgs) -> anyhow::Result<()> {
    let mut agent = Agent::start(url, insecure, args).await?;
    agent.keep_fresh().await
}

/// The agent's Ed25519 key, generated in memory and never written anywhere.
/// It signs with the aws-lc key pair directly rather than through
/// jsonwebtoken, whose `EncodingKey` would keep a second copy of the private
/// key in a plain `Vec`: here the only copy is aws-lc's, which it cleanses
/// when the key is dropped.
struct AgentKey {
    pair: Ed25519KeyPair,
    kid: String,
}

impl AgentKey {
    fn generate() -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::generate().map_err(|_| anyhow!("cannot generate a key"))?;
        Ok(AgentKey {
            pair,
            kid: random_base62(16),
        })
    }

    /// RFC 8037 §2: the public half as an OKP JWK.
    fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }

    /// RFC 7523 §3: a client assertion from `client_id` to `audience` (the
    /// issuer), valid for a minute, with a `jti` of its own so the server
    /// can refuse a replay.
    fn assertion(&self, client_id: &str, audience: &str, now: i64) -> Secret {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": random_base62(22),
        });
        let signing_input = format!("{}.{}", base64_json(&header), base64_json(&claims));
        let signature = self.pair.sign(signing_input.as_bytes());
        Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("kid", &self.kid)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

fn base64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// OpenID Connect Discovery 1.0 §3: the endpoints the agent uses.
#[derive(Debug, Deserialize)]
struct Endpoints {
    issuer: String,
    token_endpoint: Url,
    registration_endpoint: Option<Url>,
}

/// RFC 7591 §3.2.1 and RFC 7592 §3: the server's record of the agent.
#[derive(Debug, Deserialize)]
struct Registration {
    client_id: String,
    client_name: Option<String>,
    scope: Option<String>,
    registration_access_token: Secret,
    registration_client_uri: Url,
    /// Unix seconds; absent when the key does not expire.
    key_expires_at: Option<i64>,
}

/// RFC 6749 §5.1: a successful token response.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: Secret,
    expires_in: i64,
}

/// The client metadata the agent registers (RFC 7591 §2). It is sent whole
/// again on every rotation, as RFC 7592 §2.2 asks of an update.
#[derive(Debug, Clone)]
struct Metadata {
    client_name: String,
    scope: Option<String>,
}

impl Metadata {
    /// The registration body (RFC 7591 §3.1), or with `client_id` the
    /// update body (RFC 7592 §2.2), listing `key` as the only key.
    fn body(&self, key: &AgentKey, client_id: Option<&str>) -> Value {
        let mut body = json!({
            "client_name": self.client_name,
            "token_endpoint_auth_method": AUTH_METHOD,
            "grant_types": GRANT_TYPES,
            "jwks": {"keys": [key.public_jwk()]},
        });
        if let Some(scope) = &self.scope {
            body["scope"] = json!(scope);
        }
        if let Some(client_id) = client_id {
            body["client_id"] = json!(client_id);
        }
        body
    }

    /// RFC 7592 §2.2: an update carries the metadata as the server last
    /// returned it, which may differ from what was asked (a scope left out
    /// at registration comes back as the service user's scopes).
    fn as_returned(&self, registration: &Registration) -> Metadata {
        Metadata {
            client_name: (registration.client_name.clone())
                .unwrap_or_else(|| self.client_name.clone()),
            scope: registration.scope.clone().or_else(|| self.scope.clone()),
        }
    }
}

/// What the agent holds between events, all of it in memory only.
struct Agent {
    http: reqwest::Client,
    endpoints: Endpoints,
    key: AgentKey,
    registration: Registration,
    metadata: Metadata,
    /// The scope asked for at the token endpoint: --scope, as given.
    token_scope: Option<String>,
    sink: PathBuf,
    refresh: Task,
    /// `None` while the key does not expire.
    rotation: Option<Task>,
}

/// A recurring piece of work: when it is next due, and its backoff. Token
/// refresh and key rotation each have one, so that a failing rotation
/// does not hold the next token back, nor a failing refresh the rotation.
struct Task {
    due: SystemTime,
    retry: Retry,
}

impl Task {
    fn due_in(delay: Duration) -> Task {
        Task {
            due: SystemTime::now() + delay,
            retry: Retry::new(Backoff::DEFAULT),
        }
    }

    fn is_due(&self) -> bool {
        SystemTime::now() >= self.due
    }

    /// Schedules the next run after a success or a transient failure; a
    /// failure that is not transient is returned.
    fn reschedule(&mut self, what: &str, outcome: Result<Duration, Failure>) -> anyhow::Result<()> {
        let delay = match outcome {
            Ok(delay) => {
                self.retry = Retry::new(self.retry.backoff);
                delay
            }
            Err(failure) => self.retry.after_failure(what, failure)?,
        };
        self.due = SystemTime::now() + delay;
        Ok(())
    }
}

impl Agent {
    /// Reads the bootstrap token, registers a new key with it, and forgets
    /// it. Everything that can be checked first is, because a registration
    /// spends the one-time token.
    async fn start(url: &Url, insecure: bool, args: &AgentRunArgs) -> anyhow::Result<Agent> {
        refuse_cleartext(url, insecure)?;
        check_sink_writable(&args.token_sink)?;
        let bootstrap = read_bootstrap_token(&args.bootstrap_token_file)?;
        let http = http_client()?;
        let endpoints = retrying(Backoff::DEFAULT, "discovery", || discover(&http, url)).await?;
        let registration_endpoint = endpoints.registration_endpoint.clone().ok_or_else(|| {
            anyhow!("the server does not offer dynamic client registration (RFC 7591)")
        })?;
        // The discovered endpoints receive credentials too, and need not
        // be on the host that --url names.
        refuse_cleartext(&registration_endpoint, insecure)?;
        refuse_cleartext(&endpoints.token_endpoint, insecure)?;
        let key = AgentKey::generate()?;
        let asked = Metadata {
            client_name: args.name.clone().unwrap_or_else(host_name),
            scope: args.scope.clone(),
        };
        let request = || {
            let body = asked.body(&key, None);
            let request = http.post(registration_endpoint.clone());
            send_json(
                Call::Register,
                request.bearer_auth(bootstrap.expose()).json(&body),
            )
        };
        let registration: Registration =
            retrying(Backoff::DEFAULT, "registration", request).await?;
        // Spent: wiped now rather than kept for the life of the process.
        drop(bootstrap);
        refuse_cleartext(&registration.registration_client_uri, insecure)?;
        tracing::info!(
            client_id = %printable(&registration.client_id),
            kid = %key.kid,
            key_expires_at = %format_unix(registration.key_expires_at),
            "registered"
        );
        Ok(Agent {
            http,
            endpoints,
            key,
            metadata: asked.as_returned(&registration),
            rotation: rotation_delay(unix_now(), registration.key_expires_at).map(Task::due_in),
            registration,
            token_scope: args.scope.clone(),
            sink: args.token_sink.clone(),
            refresh: Task::due_in(Duration::ZERO),
        })
    }

    /// Rotates the key and refreshes the token, each when due, until the
    /// server refuses the agent. A rotation due goes first: the token it
    /// would delay is still valid, while a key that expires is lost.
    async fn keep_fresh(&mut self) -> anyhow::Result<()> {
        loop {
            if self.rotation.as_ref().is_some_and(Task::is_due) {
                let outcome = self.rotate_key().await;
                if let Some(rotation) = &mut self.rotation {
                    rotation.reschedule("key rotation", outcome)?;
                }
                if self.registration.key_expires_at.is_none() {
                    self.rotation = None;
                }
            } else if self.refresh.is_due() {
                let outcome = self.refresh_token().await;
                self.refresh.reschedule("token request", outcome)?;
            } else {
                let due = self.rotation.as_ref().map_or(self.refresh.due, |r| r.due);
                let wait = due.min(self.refresh.due).duration_since(SystemTime::now());
                tokio::time::sleep(wait.unwrap_or_default().min(LONGEST_NAP)).await;
            }
        }
    }

    /// RFC 7523 §2.2: a client_credentials token, written to the sink.
    /// Returns when the next one is due.
    async fn refresh_token(&self) -> Result<Duration, Failure> {
        let assertion = self.key.assertion(
            &self.registration.client_id,
            &self.endpoints.issuer,
            unix_now(),
        );
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.expose()),
        ];
        if let Some(scope) = &self.token_scope {
            form.push(("scope", scope));
        }
        let request = self.http.post(self.endpoints.token_endpoint.clone());
        let token: TokenResponse = send_json(Call::Token, request.form(&form)).await?;
        write_sink(&self.sink, token.access_token.expose()).map_err(Failure::final_)?;
        tracing::info!(expires_in = token.expires_in, "token refreshed");
        Ok(refresh_delay(token.expires_in))
    }

    /// RFC 7592 §2.2: replaces the registered key with a new one, used from
    /// here on. The answer carries a new registration access token: the one
    /// used is now dead. Returns when the next rotation is due.
    async fn rotate_key(&mut self) -> Result<Duration, Failure> {
        let key = AgentKey::generate().map_err(Failure::final_)?;
        let body = self.metadata.body(&key, Some(&self.registration.client_id));
        let request = self
            .http
            .put(self.registration.registration_client_uri.clone());
        let token = self.registration.registration_access_token.expose();
        let request = request.bearer_auth(token).json(&body);
        let registration: Registration = send_json(Call::Rotate, request).await?;
        self.metadata = self.metadata.as_returned(&registration);
        self.registration = registration;
        self.key = key;
        tracing::info!(
            kid = %self.key.kid,
            key_expires_at = %format_unix(self.registration.key_expires_at),
            "key rotated"
        );
        // A key that no longer expires ends the rotations (`keep_fresh`).
        let delay = rotation_delay(unix_now(), self.registration.key_expires_at);
        Ok(delay.unwrap_or_default())
    }
}

/// No redirects: one could take a credential to another host or scheme
/// than the one checked.
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("tessera-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// OpenID Connect Discovery 1.0 §4: the configuration document under the
/// base URL, which may have a path.
fn discovery_url(base: &Url) -> Url {
    let mut url = base.clone();
    let path = format!(
        "{}/.well-known/openid-configuration",
        base.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.set_query(None);
    url
}

async fn discover(http: &reqwest::Client, base: &Url) -> Result<Endpoints, Failure> {
    send_json(Call::Discover, http.get(discovery_url(base))).await
}

/// Reads the bootstrap token: the file's content without surrounding
/// whitespace. The buffer read is wiped when it goes.
fn read_bootstrap_token(path: &Path) -> anyhow::Result<Secret> {
    let content = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .with_context(|| format!("cannot read the bootstrap token file {}", path.display()))?;
    let token = content.trim();
    if token.is_empty() {
        bail!("the bootstrap token file {} is empty", path.display());
    }
    Ok(Secret::new(token))
}

/// The default client_name: the host name, which in Kubernetes is the pod's.
fn host_name() -> String {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_kernel = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_env
        .or_else(from_kernel)
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "tessera-agent".to_owned())
}

/// The request a failure came from: what an error answer means depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Discover,
    Register,
    Token,
    Rotate,
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The network, or a server fault: try again later.
    Transient,
    /// The server no longer accepts this agent.
    Disabled,
    /// Anything else: another try would get the same answer.
    Final,
}

#[derive(Debug)]
struct Failure {
    kind: Kind,
    error: anyhow::Error,
}

impl Failure {
    fn final_(error: anyhow::Error) -> Failure {
        Failure {
            kind: Kind::Final,
            error,
        }
    }
}

/// Sorts an error answer. RFC 6749 §5.2 `invalid_client` from the token
/// endpoint is final: the key is the agent's own, so no transient cause
/// explains it; the agent, its service user or its key was disabled,
/// deleted or expired. RFC 7592 §3: a 401 from the registration's own URI
/// says the registration is gone (or its access token is dead).
fn classify(call: Call, status: StatusCode, error: Option<&str>) -> Kind {
    let transient = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    let unauthorized = status == StatusCode::UNAUTHORIZED;
    match call {
        _ if transient => Kind::Transient,
        Call::Token if error == Some("invalid_client") => Kind::Disabled,
        Call::Rotate if unauthorized => Kind::Disabled,
        _ => Kind::Final,
    }
}

/// Sends `request` and reads a JSON answer. Not reaching the server is
/// transient; an error answer is sorted by [`classify`].
async fn send_json<T: DeserializeOwned>(
    call: Call,
    request: reqwest::RequestBuilder,
) -> Result<T, Failure> {
    let transient = |what: &str, e: reqwest::Error| Failure {
        kind: Kind::Transient,
        error: anyhow!("{what}: {}", root_cause(&e)),
    };
    let response = request
        .send()
        .await
        .map_err(|e| transient("cannot reach Tessera", e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| transient("the answer was cut short", e))?;
    if !status.is_success() {
        let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = answer["error"].as_str();
        let error = match (code, answer["error_description"].as_str()) {
            (Some(code), Some(text)) => {
                anyhow!("{} ({}, HTTP {status})", printable(text), printable(code))
            }
            (Some(code), None) => anyhow!("{} (HTTP {status})", printable(code)),
            _ => anyhow!("the server answered HTTP {status}"),
        };
        let kind = classify(call, status, code);
        return Err(Failure { kind, error });
    }
    serde_json::from_slice(&body).map_err(|e| {
        Failure::final_(anyhow!(
            "the server's answer is not the expected JSON: {}",
            json_error(&e)
        ))
    })
}

/// serde's message can quote a value from the body, and the body holds
/// tokens: say which field is missing, else only where the error is.
fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("missing field") {
        return message;
    }
    format!("line {} column {}", error.line(), error.column())
}

/// How long to wait between tries.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    first: Duration,
    longest: Duration,
}

impl Backoff {
    /// 1 s, doubling up to a minute.
    const DEFAULT: Backoff = Backoff {
        first: Duration::from_secs(1),
        longest: Duration::from_secs(60),
    };
}

/// Between half of `delay` and all of it, at random: agents restarted
/// together then do not all knock at the same moment.
fn jittered(delay: Duration) -> Duration {
    let millis = delay.as_millis() as u64;
    let half = millis / 2;
    let spread = u64::from_le_bytes(random_bytes::<8>()) % (millis - half + 1);
    Duration::from_millis(half + spread)
}

/// The backoff of one piece of work across its failed attempts.
#[derive(Debug)]
struct Retry {
    backoff: Backoff,
    delay: Duration,
    failed_before: bool,
}

impl Retry {
    fn new(backoff: Backoff) -> Retry {
        Retry {
            backoff,
            delay: backoff.first,
            failed_before: false,
        }
    }

    /// After a failed attempt at `what`: how long to wait before the next
    /// one, or, for a failure that is not transient, the error to stop
    /// with. `Disabled` is also logged, as the event it is.
    fn after_failure(&mut self, what: &str, failure: Failure) -> anyhow::Result<Duration> {
        // A transient failure may hide an attempt that reached the server
        // (only its answer was lost), which matters for single-use tokens.
        let hint = if self.failed_before {
            " (an earlier attempt failed on the way and may have reached the server)"
        } else {
            ""
        };
        match failure.kind {
            Kind::Transient => {
                let wait = jittered(self.delay);
                let retry_in = humantime::format_duration(wait);
                tracing::warn!(%retry_in, "{what} failed: {:#}", failure.error);
                self.delay = (self.delay * 2).min(self.backoff.longest);
                self.failed_before = true;
                Ok(wait)
            }
            Kind::Disabled => {
                tracing::error!("disabled: {:#}", failure.error);
                Err(failure.error.context(format!(
                    "Tessera no longer accepts this agent: the agent, its service user or its \
                     key was disabled, deleted or expired{hint}"
                )))
            }
            Kind::Final => Err(failure.error.context(format!("{what} failed{hint}"))),
        }
    }
}

/// Makes `attempt` until it succeeds, retrying transient failures with
/// backoff for as long as it takes.
async fn retrying<T, F, Fut>(backoff: Backoff, what: &str, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retry = Retry::new(backoff);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) => tokio::time::sleep(retry.after_failure(what, failure)?).await,
        }
    }
}

/// Replaces the token sink with `token`, alone and without a newline.
/// The token goes to a new file in the same directory (mode 0600, made
/// here so nobody can have opened it first), reaches the disk, and is
/// renamed over the sink: the workload reads the old token or the new
/// one, never half of one. A symbolic link at the sink is replaced, not
/// followed.
fn write_sink(sink: &Path, token: &str) -> anyhow::Result<()> {
    let (temporary, mut file) = create_temporary(sink)?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, sink))
        .with_context(|| format!("cannot write the token sink {}", sink.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}

/// Fails now, before the one-time bootstrap token is spent, if the sink's
/// directory would not take the token.
fn check_sink_writable(sink: &Path) -> anyhow::Result<()> {
    let (temporary, _) = create_temporary(sink)?;
    std::fs::remove_file(&temporary)
        .with_context(|| format!("cannot remove {}", temporary.display()))
}

/// A new, empty, owner-only file beside `sink`, with a random name.
fn create_temporary(sink: &Path) -> anyhow::Result<(PathBuf, File)> {
    let name = sink
        .file_name()
        .with_context(|| format!("the token sink {} names no file", sink.display()))?;
    let dir = sink.parent().filter(|dir| !dir.as_os_str().is_empty());
    let temporary = dir.unwrap_or(Path::new(".")).join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        random_base62(12)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&temporary).with_context(|| {
        format!(
            "cannot create a file beside the token sink {}",
            sink.display()
        )
    })?;
    Ok((temporary, file))
}

/// How long until a key that expires at `expires_at`, seen at `now`, is
/// replaced: once 80% of its remaining life has passed, and at least two
/// minutes before it ends when it lives longer than that. Never sooner
/// than 10 seconds, so that a clock far ahead of the server's cannot make
/// the agent rotate in a loop. `None` for a key that does not expire.
fn rotation_delay(now: i64, expires_at: Option<i64>) -> Option<Duration> {
    let life = expires_at?.saturating_sub(now).max(0);
    let by_fraction = life - life / 5;
    let by_margin = life - ROTATION_MARGIN;
    let delay = if by_margin > 0 {
        by_fraction.min(by_margin)
    } else {
        by_fraction
    };
    Some(Duration::from_secs(delay.clamp(10, LONGEST_DELAY) as u64))
}

/// How long until the next token: half this one's life, which leaves the
/// other half for retries while the server is away.
fn refresh_delay(expires_in: i64) -> Duration {
    Duration::from_secs((expires_in / 2).clamp(1, LONGEST_DELAY) as u64)
}

fn unix_now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    since_epoch.map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// RFC 3339 where it can be (years 1970 to 9999), else the number.
fn format_unix(seconds: Option<i64>) -> String {
    const YEAR_10000: i64 = 253_402_300_800;
    match seconds {
        None => "never".to_owned(),
        Some(s @ 0..YEAR_10000) => {
            let time = UNIX_EPOCH + Duration::from_secs(s as u64);
            humantime::format_rfc3339_seconds(time).to_string()
        }
        Some(s) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

    #[test]
    fn the_jwk_is_an_ed25519_public_key_and_nothing_more() {
        let key = AgentKey::generate().unwrap();
        let jwk = key.public_jwk();
        let fields: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 6, "{fields:?}");
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["kid"], key.kid.as_str());
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        assert_eq!(x, key.pair.public_key().as_ref());
        assert_eq!(x.len(), 32);
    }

    #[test]
    fn an_assertion_verifies_with_the_public_key() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let key = AgentKey::generate().unwrap();
        let public_key = |key: &AgentKey| {
            DecodingKey::from_ed_components(key.public_jwk()["x"].as_str().unwrap()).unwrap()
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["https://id.example.com"]);
        validation.set_issuer(&["client-1"]);
        let verify = |jwt: &Secret, key| decode::<Value>(jwt.expose(), key, &validation);
        let now = unix_now();
        let assertion = key.assertion("client-1", "https://id.example.com", now);

        let public = public_key(&key);
        let claims = verify(&assertion, &public).unwrap().claims;
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["exp"], now + 60);
        let header = decode_header(assertion.expose()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));

        let again = key.assertion("client-1", "https://id.example.com", now);
        let jti = verify(&again, &public).unwrap().claims["jti"].clone();
        assert_ne!(jti, claims["jti"], "each assertion has its own jti");
        let stranger = AgentKey::generate().unwrap();
        let stranger = public_key(&stranger);
        assert!(verify(&assertion, &stranger).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = AgentKey::generate().unwrap();
        assert_eq!(
            format!("{key:?}"),
            format!(
                "AgentKey {{ kid: {:?}, private_key: \"<redacted>\" }}",
                key.kid
            )
        );
        let registration: Registration = serde_json::from_value(json!({
            "client_id": "c1",
            "registration_access_token": "tsr_rat_s3cr3t",
            "registration_client_uri": "https://id.example.com/register/c1",
            "key_expires_at": 1_900_000_000,
        }))
        .unwrap();
        assert!(!format!("{registration:?}").contains("s3cr3t"));
        let token: TokenResponse =
            serde_json::from_value(json!({"access_token": "eyJs3cr3t", "expires_in": 900}))
                .unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_bodies_follow_rfc_7591_and_7592() {
        let key = AgentKey::generate().unwrap();
        let mut metadata = Metadata {
            client_name: "pod-1".into(),
            scope: None,
        };
        let register = metadata.body(&key, None);
        assert_eq!(register["client_name"], "pod-1");
        assert_eq!(register["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(register["grant_types"], json!(["client_credentials"]));
        assert_eq!(register["jwks"]["keys"][0], key.public_jwk());
        assert!(register.get("scope").is_none() && register.get("client_id").is_none());
        metadata.scope = Some("read write".into());
        let update = metadata.body(&key, Some("c1"));
        assert_eq!(update["scope"], "read write");
        assert_eq!(update["client_id"], "c1");
    }

    #[test]
    fn an_update_sends_the_metadata_as_the_server_returned_it() {
        let asked = Metadata {
            client_name: "pod-1".into(),
            scope: None,
        };
        let registration: Registration = serde_json::from_value(json!({
            "client_id": "c1",
            "client_name": "pod-1",
            "scope": "read write",
            "registration_access_token": "t",
            "registration_client_uri": "https://id.example.com/register/c1",
        }))
        .unwrap();
        let returned = asked.as_returned(&registration);
        assert_eq!(returned.scope.as_deref(), Some("read write"));
        assert_eq!(returned.client_name, "pod-1");
        assert_eq!(registration.key_expires_at, None);
    }

    #[test]
    fn errors_are_sorted_into_transient_disabled_and_final() {
        use Call::*;
        let cases = [
            (Token, 401, Some("invalid_client"), Kind::Disabled),
            (Token, 400, Some("invalid_client"), Kind::Disabled),
            (Token, 400, Some("invalid_scope"), Kind::Final),
            (Token, 400, Some("unauthorized_client"), Kind::Final),
            (Token, 500, Some("server_error"), Kind::Transient),
            (Token, 503, None, Kind::Transient),
            (Token, 429, None, Kind::Transient),
            (Register, 401, Some("invalid_token"), Kind::Final),
            (Register, 400, Some("invalid_client_metadata"), Kind::Final),
            (Register, 502, None, Kind::Transient),
            (Rotate, 401, Some("invalid_token"), Kind::Disabled),
            (Rotate, 400, Some("invalid_client_metadata"), Kind::Final),
            (Rotate, 504, None, Kind::Transient),
            (Discover, 404, None, Kind::Final),
            (Discover, 302, None, Kind::Final),
        ];
        for (call, status, error, kind) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                classify(call, status, error),
                kind,
                "{call:?} {status} {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let request = http_client().unwrap().get(url);
        let failure = send_json::<Value>(Call::Token, request).await.unwrap_err();
        assert_eq!(failure.kind, Kind::Transient);
    }

    #[tokio::test]
    async fn retries_transient_failures_and_stops_at_a_final_one() {
        let quick = Backoff {
            first: Duration::from_millis(1),
            longest: Duration::from_millis(4),
        };
        let fail = |kind| Failure {
            kind,
            error: anyhow!("HTTP 503"),
        };
        let mut calls = 0;
        let value = retrying(quick, "test", || {
            calls += 1;
            let result = if calls < 4 {
                Err(fail(Kind::Transient))
            } else {
                Ok(calls)
            };
            async move { result }
        })
        .await
        .unwrap();
        assert_eq!(value, 4);
        let mut calls = 0;
        let error = retrying(quick, "registration", || {
            calls += 1;
            let kind = if calls == 1 {
                Kind::Transient
            } else {
                Kind::Final
            };
            async move { Err::<(), _>(fail(kind)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 2);
        assert!(format!("{error:#}").starts_with("registration failed (an earlier attempt"));
        let error = retrying(quick, "token request", || async {
            Err::<(), _>(fail(Kind::Disabled))
        })
        .await
        .unwrap_err();
        assert!(format!("{error:#}").starts_with("Tessera no longer accepts this agent"));
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        for _ in 0..200 {
            let wait = jittered(Duration::from_secs(8));
            assert!(
                wait >= Duration::from_secs(4) && wait <= Duration::from_secs(8),
                "{wait:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_sink_is_owner_only_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sink = dir.path().join("token");
        write_sink(&sink, "first").unwrap();
        let mut reader = File::open(&sink).unwrap();
        write_sink(&sink, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&sink).unwrap(), "second");
        // A reader who opened the old file still reads the old token whole:
        // the new one came by rename, not by rewriting in place.
        let mut old = String::new();
        std::io::Read::read_to_string(&mut reader, &mut old).unwrap();
        assert_eq!(old, "first");
        let mode = std::fs::metadata(&sink).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["token"], "no temporary file is left");
    }

    #[test]
    fn a_link_at_the_sink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "untouched").unwrap();
        let sink = dir.path().join("token");
        std::os::unix::fs::symlink(&target, &sink).unwrap();
        write_sink(&sink, "token").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert!(std::fs::symlink_metadata(&sink).unwrap().is_file());
    }

    #[test]
    fn an_unwritable_sink_is_found_before_registering() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_sink_writable(&dir.path().join("token")).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(check_sink_writable(&dir.path().join("missing/token")).is_err());
        assert!(check_sink_writable(Path::new("/")).is_err());
    }

    #[test]
    fn the_bootstrap_token_is_read_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bootstrap");
        std::fs::write(&file, "  tsr_ab_abc123\n").unwrap();
        assert_eq!(
            read_bootstrap_token(&file).unwrap().expose(),
            "tsr_ab_abc123"
        );
        std::fs::write(&file, "\n").unwrap();
        assert!(read_bootstrap_token(&file).is_err());
    }

    #[test]
    fn keys_rotate_at_80_percent_and_two_minutes_before_the_end() {
        let now = 1_000_000;
        let after = |seconds| Some(Duration::from_secs(seconds));
        assert_eq!(rotation_delay(now, Some(now + 3600)), after(2880));
        assert_eq!(rotation_delay(now, Some(now + 300)), after(180));
        assert_eq!(rotation_delay(now, Some(now + 100)), after(80));
        assert_eq!(rotation_delay(now, Some(now - 10)), after(10));
        assert_eq!(rotation_delay(now, None), None);
    }

    #[test]
    fn far_and_strange_times_neither_panic_nor_overflow() {
        let far = rotation_delay(0, Some(i64::MAX)).unwrap();
        let _ = SystemTime::now() + far;
        let _ = SystemTime::now() + refresh_delay(i64::MAX);
        assert!(rotation_delay(1_000, Some(i64::MIN)).is_some());
        assert_eq!(format_unix(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(Some(i64::MAX)), i64::MAX.to_string());
        assert_eq!(format_unix(Some(-1)), "-1");
        assert_eq!(format_unix(None), "never");
    }

    #[test]
    fn tokens_refresh_halfway_through_their_life() {
        assert_eq!(refresh_delay(900), Duration::from_secs(450));
        assert_eq!(refresh_delay(1), Duration::from_secs(1));
        assert_eq!(refresh_delay(0), Duration::from_secs(1));
    }

    #[test]
    fn discovery_keeps_the_base_path() {
        let url = |base: &str| discovery_url(&Url::parse(base).unwrap()).to_string();
        assert_eq!(
            url("https://id.example.com"),
            "https://id.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            url("https://example.com/tessera/"),
            "https://example.com/tessera/.well-known/openid-configuration"
        );
    }
}
