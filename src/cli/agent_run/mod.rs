//! `tessera agent run`: the reference agent beside a workload. It registers
//! an Ed25519 key of its own with a one-time bootstrap token (RFC 7591),
//! keeps a fresh access token in a file the workload reads (client
//! credentials with `private_key_jwt`, RFC 7523 §2.2), and replaces its key
//! before the key expires (RFC 7592). The private key and the registration
//! access token live in memory only, and the agent opens no listening port.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;
use zeroize::Zeroizing;

mod key;
mod retry;
mod sink;

use key::AgentKey;
use retry::{Backoff, Call, Failure, Kind, Retry, retrying, send_json};
use sink::{check_sink_writable, write_sink};

use super::client::{printable, refuse_cleartext};
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
/// How long after a rotation a refused token request is tried again with
/// the replaced key.
const JUST_ROTATED: Duration = Duration::from_secs(30);
/// The header that proves a repeated rotation comes from the new key's
/// holder (the server's `configuration::KEY_PROOF_HEADER`).
const KEY_PROOF_HEADER: &str = "tessera-key-proof";
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

/// The client metadata the agent registers (RFC 7591 §2), sent whole again
/// on every rotation (RFC 7592 §2.2) as it was asked, not as the server
/// returned it: a scope left out means "all of the service user's" at each
/// update, so an agent started without --scope follows its service user
/// when that user loses a scope instead of failing to rotate.
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
}

/// What the agent holds between events, all of it in memory only.
struct Agent {
    http: reqwest::Client,
    endpoints: Endpoints,
    key: AgentKey,
    registration: Registration,
    /// Also gives the scope asked for at the token endpoint.
    metadata: Metadata,
    sink: PathBuf,
    refresh: Task,
    /// `None` while the key does not expire.
    rotation: Option<Task>,
    /// The key a failed rotation sent, sent again by the next attempt.
    next_key: Option<AgentKey>,
    /// The key the last rotation replaced, and when: right after a
    /// rotation a replica that has not heard of it yet may still know only
    /// that key (the server accepts it through the overlap). Dropped (and
    /// wiped) once `JUST_ROTATED` has passed.
    replaced: Option<(AgentKey, Instant)>,
}

/// A recurring piece of work: when it is next due, and its backoff. Token
/// refresh and key rotation each have one, so that a failing rotation
/// does not hold the next token back, nor a failing refresh the rotation.
/// Wall-clock time, not `Instant`: the deadlines are the server's (a key's
/// expiry), and a monotonic clock stands still while the host sleeps.
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
            // Quoted: a scope list has spaces.
            scope = ?printable(registration.scope.as_deref().unwrap_or("")),
            key_expires_at = %format_unix(registration.key_expires_at),
            "registered"
        );
        Ok(Agent {
            http,
            endpoints,
            key,
            metadata: asked,
            rotation: rotation_delay(unix_now(), registration.key_expires_at).map(Task::due_in),
            next_key: None,
            replaced: None,
            registration,
            sink: args.token_sink.clone(),
            refresh: Task::due_in(Duration::ZERO),
        })
    }

    /// Rotates the key and refreshes the token, each when due, until the
    /// server refuses the agent. A rotation due goes first: the token it
    /// would delay is still valid, while a key that expires is lost.
    async fn keep_fresh(&mut self) -> anyhow::Result<()> {
        loop {
            if self
                .replaced
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= JUST_ROTATED)
            {
                self.replaced = None;
            }
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
                // Awake when the replaced key is due to go, too.
                let replaced_left = self.replaced.as_ref().map_or(LONGEST_NAP, |(_, at)| {
                    JUST_ROTATED.saturating_sub(at.elapsed())
                });
                let nap = wait.unwrap_or_default().min(LONGEST_NAP).min(replaced_left);
                tokio::time::sleep(nap).await;
            }
        }
    }

    /// RFC 7523 §2.2: a client_credentials token, written to the sink.
    /// Returns when the next one is due.
    async fn refresh_token(&self) -> Result<Duration, Failure> {
        let token = match self.token_signed_by(&self.key).await {
            Err(failure) if failure.kind == Kind::Disabled => {
                // Just rotated: a replica may not have the new key yet.
                match self.recently_replaced() {
                    Some(old) => self.token_signed_by(old).await?,
                    None => return Err(failure),
                }
            }
            other => other?,
        };
        write_sink(&self.sink, token.access_token.expose()).map_err(Failure::final_)?;
        tracing::info!(expires_in = token.expires_in, "token refreshed");
        Ok(refresh_delay(token.expires_in))
    }

    /// The key a rotation replaced less than `JUST_ROTATED` ago.
    fn recently_replaced(&self) -> Option<&AgentKey> {
        let (key, at) = self.replaced.as_ref()?;
        (at.elapsed() < JUST_ROTATED).then_some(key)
    }

    async fn token_signed_by(&self, key: &AgentKey) -> Result<TokenResponse, Failure> {
        let assertion = key.assertion(
            &self.registration.client_id,
            &self.endpoints.issuer,
            unix_now(),
        );
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.expose()),
        ];
        if let Some(scope) = &self.metadata.scope {
            form.push(("scope", scope));
        }
        let request = self.http.post(self.endpoints.token_endpoint.clone());
        send_json(Call::Token, request.form(&form)).await
    }

    /// RFC 7592 §2.2: replaces the registered key with a new one, used from
    /// here on. The answer carries a new registration access token: the one
    /// used is now dead. Returns when the next rotation is due.
    async fn rotate_key(&mut self) -> Result<Duration, Failure> {
        // A retry sends the same key with the same registration access
        // token: if the first attempt reached the server and only its
        // answer was lost, the server takes the repeat (and only that).
        let (key, repeat) = match self.next_key.take() {
            Some(key) => (key, true),
            None => (AgentKey::generate().map_err(Failure::final_)?, false),
        };
        let body = self.metadata.body(&key, Some(&self.registration.client_id));
        let uri = &self.registration.registration_client_uri;
        let token = self.registration.registration_access_token.expose();
        let mut request = self.http.put(uri.clone()).bearer_auth(token).json(&body);
        if repeat {
            // The server takes a repeat only from whoever holds the key.
            let proof = key.assertion(&self.registration.client_id, uri.as_str(), unix_now());
            request = request.header(KEY_PROOF_HEADER, proof.expose());
        }
        let registration: Registration = match send_json(Call::Rotate, request).await {
            Ok(registration) => registration,
            Err(failure) => {
                self.next_key = Some(key);
                return Err(failure);
            }
        };
        self.registration = registration;
        let replaced = std::mem::replace(&mut self.key, key);
        self.replaced = Some((replaced, Instant::now()));
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
