//! Typed configuration: `config/default.toml` (embedded), then an optional
//! file, then `TESSERA_SECTION__KEY` environment variables, then flags.
//! Unknown keys are an error that names them; values are validated once, at
//! start-up.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

/// The embedded default, so that `tessera serve` works with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub keys: KeysConfig,
    pub tokens: TokensConfig,
    pub clients: ClientsConfig,
    pub admin: AdminConfig,
    pub audit: AuditConfig,
    pub federation: FederationConfig,
    pub passwords: PasswordsConfig,
    pub sessions: SessionsConfig,
    pub login: LoginConfig,
    pub device: DeviceConfig,
    pub personal_tokens: PersonalTokensConfig,
    pub agents: AgentsConfig,
}

/// Agents (issue 13): bootstrap tokens, registered keys and their tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// A bootstrap token's lifetime when `--expires` is not given.
    #[serde(with = "humantime_serde")]
    pub bootstrap_default_lifetime: Duration,
    /// The longest a bootstrap token may live.
    #[serde(with = "humantime_serde")]
    pub bootstrap_max_lifetime: Duration,
    /// The most registrations one bootstrap token may allow.
    pub bootstrap_max_uses: u32,
    /// Usable bootstrap tokens one service user may hold at once.
    pub max_live_bootstrap_tokens: u32,
    /// How long a registered key (and the registration access token that
    /// can replace it) lives; the agent rotates before then.
    #[serde(with = "humantime_serde")]
    pub key_lifetime: Duration,
    /// How long a rotated-out key keeps working.
    #[serde(with = "humantime_serde")]
    pub key_overlap: Duration,
    /// An agent's access tokens live this long (within its service user's
    /// cap and `tokens.max_lifetime`).
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    /// Whether agents may register P-256 (ES256) keys beside Ed25519.
    pub allow_p256: bool,
    /// How long an agent whose key expired unrotated (it can never work
    /// again: a restarted container's earlier self) is kept for
    /// `tessera agent list --all`, before it is deleted.
    #[serde(with = "humantime_serde")]
    pub keep_expired_agents: Duration,
}

impl AgentsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            self.bootstrap_default_lifetime,
            self.bootstrap_max_lifetime,
            self.key_lifetime,
            self.access_token_lifetime,
        ];
        if positive.iter().any(Duration::is_zero)
            || self.bootstrap_default_lifetime > self.bootstrap_max_lifetime
            || self.bootstrap_max_uses == 0
            || self.max_live_bootstrap_tokens == 0
            || self.key_overlap >= self.key_lifetime
        {
            return Err(ConfigError::Invalid(
                "agents: lifetimes must be positive, bootstrap_default_lifetime at most \
                 bootstrap_max_lifetime, bootstrap_max_uses and max_live_bootstrap_tokens \
                 at least 1 and key_overlap shorter than key_lifetime"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// argon2id parameters for human passwords (RFC 9106 §3.1). Hashes made
/// at other parameters still verify and are replaced at the next login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordsConfig {
    /// Memory cost `m` in KiB.
    pub memory_kib: u32,
    /// Passes `t`.
    pub iterations: u32,
    /// Lanes `p`.
    pub parallelism: u32,
}

/// Browser sessions (issue 10, item 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session unused for this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after the login that made it, used or not.
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// Sensitive changes (turning on TOTP) need a login at most this old.
    #[serde(with = "humantime_serde")]
    pub reauthenticate_after: Duration,
}

/// Sign-in throttling (issue 10, item 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Failed attempts on one account (known or not) before each further
    /// failure blocks it for a growing delay.
    pub free_failures_per_account: u32,
    /// The same, per client address (an IPv6 /64).
    pub free_failures_per_address: u32,
    /// The longest block.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// A bucket without a failure for this long starts again from zero.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long the second step of a login (the TOTP code) may take.
    #[serde(with = "humantime_serde")]
    pub second_step_timeout: Duration,
}

/// The device authorization grant (issue 11, RFC 8628).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// How long a device authorization can be approved (`expires_in`).
    #[serde(with = "humantime_serde")]
    pub code_lifetime: Duration,
    /// The least time between polls (`interval`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Wrong user codes a signed-in user (in any of their sessions) may
    /// type before each further one blocks them for a growing delay (RFC
    /// 8628 §5.1).
    pub free_guesses_per_user: u32,
    /// The same, per client address.
    pub free_guesses_per_address: u32,
    /// Device authorization requests one address may make within
    /// `login.failure_window` before each further one waits longer.
    pub requests_per_address: u32,
}

/// Personal access tokens and machine tokens (issue 12).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalTokensConfig {
    /// The lifetimes a new token may be given (`--expires`), as written.
    pub expiry_choices: Vec<String>,
    /// The longest lifetime of any token.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Stricter maxima per environment label (`prod = "7d"`).
    pub env_max_lifetime: std::collections::BTreeMap<String, String>,
    /// The environment labels a token may carry.
    pub environments: Vec<String>,
    /// Whether an administrator allows machine tokens that never expire
    /// (`--expires never`). Personal tokens always expire.
    pub allow_non_expiring_machine_tokens: bool,
    /// Live (not revoked, not expired) tokens one owner may hold.
    pub max_active_per_owner: u32,
    /// How often counted uses are written (at most once per token per
    /// interval) and audited as one `token.used` event each.
    #[serde(with = "humantime_serde")]
    pub usage_flush_interval: Duration,
}

impl PersonalTokensConfig {
    /// The lifetime a configured choice names (`7d`), if it is one.
    pub fn choice(&self, text: &str) -> Option<Duration> {
        self.expiry_choices
            .iter()
            .find(|c| c.as_str() == text)
            .and_then(|c| humantime::parse_duration(c).ok())
    }

    /// The longest lifetime a token for `env` may have.
    pub fn max_for(&self, env: &str) -> Duration {
        self.env_max_lifetime
            .get(env)
            .and_then(|m| humantime::parse_duration(m).ok())
            .map_or(self.max_lifetime, |m| m.min(self.max_lifetime))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: String| Err(ConfigError::Invalid(format!("personal_tokens.{what}")));
        if self.expiry_choices.is_empty() {
            return invalid("expiry_choices must name at least one lifetime".into());
        }
        for choice in &self.expiry_choices {
            match humantime::parse_duration(choice) {
                Ok(d) if !d.is_zero() => {}
                _ => return invalid(format!("expiry_choices: `{choice}` is not a lifetime")),
            }
        }
        for env in &self.environments {
            if !crate::tokens::opaque::is_env_label(env) {
                return invalid(format!(
                    "environments: `{env}` must be 1 to 16 lowercase letters and digits"
                ));
            }
        }
        if self.environments.is_empty() {
            return invalid("environments must name at least one label".into());
        }
        for (env, max) in &self.env_max_lifetime {
            if !self.environments.contains(env) {
                return invalid(format!("env_max_lifetime: `{env}` is not in environments"));
            }
            if humantime::parse_duration(max).map_or(true, |d| d.is_zero()) {
                return invalid(format!("env_max_lifetime: `{max}` is not a lifetime"));
            }
        }
        if self.max_lifetime.is_zero() || self.max_active_per_owner == 0 {
            return invalid("max_lifetime and max_active_per_owner must be positive".into());
        }
        if self.usage_flush_interval < Duration::from_millis(100) {
            return invalid("usage_flush_interval must be at least 100ms".into());
        }
        Ok(())
    }
}

/// CI federation (token exchange of CI platforms' OIDC tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// How long a trusted issuer's keys are used before they are fetched
    /// again (an unknown `kid` refetches sooner, once a minute at most).
    #[serde(with = "humantime_serde")]
    pub keys_cache: Duration,
    /// Tell the client why its token was refused (which check, which
    /// policy condition) instead of a generic description. For setting up
    /// a trust; the audit log always has the reason.
    pub debug: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Events older than this are deleted; zero keeps them for ever.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    pub queue_capacity: usize,
    #[serde(with = "humantime_serde")]
    pub queue_wait: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsConfig {
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_cache: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_cooldown: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub issuer: Url,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How long a request head may take from its first byte.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a request body may take after its head.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections at most; more wait to be accepted.
    pub max_connections: usize,
    /// Open connections from one address (one IPv6 /64) at most; trusted
    /// proxies are exempt. More are closed when accepted.
    pub max_connections_per_address: usize,
    /// How long a write may wait for the client to read.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Peers whose forwarding header names the client; see
    /// `http::client_addr`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarding_header: ForwardingHeader,
}

/// Which header the trusted proxies write. A proxy passes the other one
/// through from the client untouched, so only one can be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardingHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub pool_size: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub max_retry_backoff: Duration,
}

/// The URL may carry a password: `Debug` shows only the backend.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = crate::store::DatabaseUrl::parse(&self.url)
            .map(|u| u.backend())
            .unwrap_or("invalid");
        f.debug_struct("DatabaseConfig")
            .field("url", &format_args!("{backend}://<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_retry_backoff", &self.max_retry_backoff)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub master_key_file: PathBuf,
    #[serde(with = "humantime_serde")]
    pub rotation_period: Duration,
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// A refresh token not used for this long expires (its family too).
    #[serde(with = "humantime_serde")]
    pub refresh_idle_lifetime: Duration,
    /// A refresh-token family ends this long after the sign-in that
    /// started it, however often it was rotated.
    #[serde(with = "humantime_serde")]
    pub refresh_absolute_lifetime: Duration,
    /// How long an authorization code may wait for its redemption
    /// (RFC 6749 §4.1.2: short-lived, at most 10 minutes recommended).
    #[serde(with = "humantime_serde")]
    pub code_lifetime: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub bootstrap: bool,
    pub token_file: PathBuf,
    /// How long the bootstrap administrator token works.
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub issuer: Option<Url>,
    pub database_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the configuration with the documented precedence. Environment
    /// variables count only when their name holds `__` (section separator),
    /// so `TESSERA_MASTER_KEY`, `TESSERA_URL` and `TESSERA_TOKEN` keep their
    /// own meanings.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(
            Env::prefixed("TESSERA_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("server.listen", listen));
        }
        if let Some(issuer) = &overrides.issuer {
            figment = figment.merge(Serialized::default("server.issuer", issuer.as_str()));
        }
        if let Some(url) = &overrides.database_url {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;
        config.validated()
    }

    /// Parses TOML documents, each over the one before, on top of the
    /// embedded default, without the environment: what tests use.
    pub fn from_toml_layers(layers: &[&str]) -> Result<Self, ConfigError> {
        let figment = layers
            .iter()
            .fold(Figment::from(Toml::string(DEFAULT_TOML)), |f, layer| {
                f.merge(Toml::string(layer))
            });
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;
        config.validated()
    }

    fn validated(mut self) -> Result<Self, ConfigError> {
        let issuer = &self.server.issuer;
        let loopback = match issuer.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        // OIDC Discovery 1.0 §3 / RFC 8414 §2: the issuer is an https URL
        // with no query or fragment. Plain http is allowed on loopback only.
        if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
            return Err(ConfigError::Invalid(format!(
                "server.issuer must use https unless its host is loopback, got {issuer}"
            )));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(ConfigError::Invalid(
                "server.issuer must not have a query or fragment".into(),
            ));
        }
        let trimmed = issuer.as_str().trim_end_matches('/').to_owned();
        self.server.issuer = Url::parse(&trimmed)
            .map_err(|e| ConfigError::Invalid(format!("server.issuer: {e}")))?;
        let server = &self.server;
        if [
            server.header_read_timeout,
            server.body_read_timeout,
            server.idle_timeout,
            server.write_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
            || server.max_connections == 0
            || server.max_connections_per_address == 0
        {
            return Err(ConfigError::Invalid(
                "server.header_read_timeout, server.body_read_timeout, server.idle_timeout, \
                 server.write_timeout, server.max_connections and \
                 server.max_connections_per_address must be positive"
                    .into(),
            ));
        }
        if self.database.pool_size == 0 {
            return Err(ConfigError::Invalid(
                "database.pool_size must be at least 1".into(),
            ));
        }
        self.personal_tokens.validate()?;
        self.agents.validate()?;
        if self.tokens.access_token_lifetime > self.tokens.max_lifetime {
            return Err(ConfigError::Invalid(
                "tokens.access_token_lifetime must not exceed tokens.max_lifetime".into(),
            ));
        }
        if self.tokens.refresh_idle_lifetime.is_zero()
            || self.tokens.refresh_idle_lifetime > self.tokens.refresh_absolute_lifetime
        {
            return Err(ConfigError::Invalid(
                "tokens.refresh_idle_lifetime must be positive and at most \
                 tokens.refresh_absolute_lifetime"
                    .into(),
            ));
        }
        let code_lifetime = self.tokens.code_lifetime;
        if code_lifetime < Duration::from_secs(1) || code_lifetime > Duration::from_secs(600) {
            return Err(ConfigError::Invalid(
                "tokens.code_lifetime must be between 1s and 10m (RFC 6749 §4.1.2)".into(),
            ));
        }
        if self.tokens.max_lifetime.is_zero() || self.keys.rotation_period.is_zero() {
            return Err(ConfigError::Invalid(
                "tokens.max_lifetime and keys.rotation_period must be positive".into(),
            ));
        }
        if self.keys.check_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "keys.check_interval must be positive".into(),
            ));
        }
        if self.federation.keys_cache < std::time::Duration::from_secs(60) {
            return Err(ConfigError::Invalid(
                "federation.keys_cache must be at least 60s: each fetch is a request to the \
                 CI platform"
                    .into(),
            ));
        }
        if self.audit.queue_capacity == 0 || self.audit.prune_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "audit.queue_capacity and audit.prune_interval must be positive".into(),
            ));
        }
        if self.sessions.idle_timeout.is_zero()
            || self.sessions.absolute_timeout < self.sessions.idle_timeout
        {
            return Err(ConfigError::Invalid(
                "sessions.idle_timeout must be positive and at most sessions.absolute_timeout"
                    .into(),
            ));
        }
        if self.sessions.reauthenticate_after.is_zero() {
            return Err(ConfigError::Invalid(
                "sessions.reauthenticate_after must be positive".into(),
            ));
        }
        if self.login.max_delay.is_zero()
            || self.login.failure_window.is_zero()
            || self.login.second_step_timeout.is_zero()
        {
            return Err(ConfigError::Invalid(
                "login.max_delay, login.failure_window and login.second_step_timeout must be \
                 positive"
                    .into(),
            ));
        }
        let lifetime = self.device.code_lifetime.as_secs();
        let interval = self.device.interval.as_secs();
        if !(60..=1800).contains(&lifetime) || !(1..=60).contains(&interval) {
            return Err(ConfigError::Invalid(
                "device.code_lifetime must be from 1m to 30m, device.interval from 1s to 60s \
                 (whole seconds)"
                    .into(),
            ));
        }
        crate::accounts::passwords::Passwords::new(&self.passwords)
            .map_err(|e| ConfigError::Invalid(format!("passwords: {e}")))?;
        crate::store::DatabaseUrl::parse(&self.database.url)
            .map_err(|e| ConfigError::Invalid(format!("database.url: {e}")))?;
        Ok(self)
    }

    /// The issuer as a string without a trailing slash, for `iss` claims.
    pub fn issuer(&self) -> &str {
        self.server.issuer.as_str().trim_end_matches('/')
    }

    /// An absolute URL under the issuer.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer(), path)
    }
}

/// Figment's messages name the offending key; keep them on one line.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            if path.is_empty() {
                e.kind.to_string()
            } else {
                format!("{} (key `{path}`)", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::from_toml_layers(&[]).unwrap();
        assert_eq!(config.issuer(), "http://127.0.0.1:8080");
        assert_eq!(
            config.tokens.access_token_lifetime,
            Duration::from_secs(900)
        );
    }

    #[test]
    fn debug_hides_the_database_password() {
        let config = Config::from_toml_layers(&[
            "[database]\nurl = \"postgres://tessera:hunter2@db:5432/tessera\"\n",
        ])
        .unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://<redacted>"), "{text}");
    }

    #[test]
    fn password_parameters_are_checked() {
        let config = Config::from_toml_layers(&[]).unwrap();
        assert_eq!(
            (
                config.passwords.memory_kib,
                config.passwords.iterations,
                config.passwords.parallelism
            ),
            (19456, 2, 1)
        );
        let err = Config::from_toml_layers(&["[passwords]\niterations = 0\n"]).unwrap_err();
        assert!(err.to_string().contains("passwords"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_layers(&["[server]\nlisten_port = 1\n"]).unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_cidrs() {
        assert!(
            Config::from_toml_layers(&[])
                .unwrap()
                .server
                .trusted_proxies
                .is_empty()
        );
        let config = Config::from_toml_layers(&[
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\n",
        ])
        .unwrap();
        assert_eq!(config.server.trusted_proxies.len(), 2);
        let err = Config::from_toml_layers(&["[server]\ntrusted_proxies = [\"10.0.0.300/8\"]\n"])
            .unwrap_err();
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn public_http_issuer_is_refused() {
        let err = Config::from_toml_layers(&["[server]\nissuer = \"http://id.example.com\"\n"])
            .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        Config::from_toml_layers(&["[server]\nissuer = \"https://id.example.com/\"\n"]).unwrap();
        Config::from_toml_layers(&["[server]\nissuer = \"http://localhost:9000\"\n"]).unwrap();
    }

    #[test]
    fn connection_limits_must_be_positive() {
        let config = Config::from_toml_layers(&[]).unwrap();
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.server.max_connections, 1024);
        for layer in [
            "[server]\nheader_read_timeout = \"0s\"\n",
            "[server]\nbody_read_timeout = \"0s\"\n",
            "[server]\nidle_timeout = \"0s\"\n",
            "[server]\nmax_connections = 0\n",
            "[server]\nmax_connections_per_address = 0\n",
        ] {
            let err = Config::from_toml_layers(&[layer]).unwrap_err();
            assert!(err.to_string().contains("must be positive"), "{err}");
        }
    }

    #[test]
    fn codes_live_at_most_ten_minutes() {
        let config = Config::from_toml_layers(&[]).unwrap();
        assert_eq!(config.tokens.code_lifetime, Duration::from_secs(60));
        Config::from_toml_layers(&["[tokens]\ncode_lifetime = \"10m\"\n"]).unwrap();
        for value in ["0s", "500ms", "11m"] {
            let layer = format!("[tokens]\ncode_lifetime = \"{value}\"\n");
            let err = Config::from_toml_layers(&[&layer]).unwrap_err();
            assert!(err.to_string().contains("code_lifetime"), "{err}");
        }
    }
}
