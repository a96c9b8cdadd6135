//! What an administrator configures for CI federation: trusted issuers
//! and the trust policies that map their tokens to service users. These
//! are the admin API's bodies and the store's records' meaning; checks
//! that need no lookup live here, so the API and the CLI refuse the same
//! things.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An identity platform whose tokens Tessera may exchange (GitHub Actions,
/// GitLab CI, or any OIDC issuer). Matched by exact URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrustedIssuer {
    /// `https://…`, or `http://` on a loopback address only.
    pub issuer: String,
    /// The signature algorithms accepted from it (never `none` or HMAC).
    pub algorithms: Vec<String>,
    /// The longest lifetime (`exp - iat`, seconds) an incoming token may
    /// have.
    pub max_token_age: u64,
    /// A static JWK Set used instead of discovery, for instances Tessera
    /// cannot reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    pub created_at: i64,
}

/// `POST /admin/v1/trust/issuers`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerSpec {
    pub issuer: String,
    /// Default: RS256 and ES256.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Seconds (1 to 86400); default [`DEFAULT_MAX_TOKEN_AGE`].
    #[serde(default, deserialize_with = "crate::oauth::client::whole_number")]
    #[schema(minimum = 1, maximum = 86400)]
    pub max_token_age: Option<u64>,
    /// A static JWK Set (RFC 7517 §5) used instead of discovery: public
    /// keys only, at least one usable with the algorithms.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
}

/// The longest `max_token_age`: a day.
pub const MAX_MAX_TOKEN_AGE: u64 = 24 * 60 * 60;

/// Algorithms an issuer may be pinned to: asymmetric only, so a token can
/// never choose `none` or an HMAC keyed with a public key.
pub const ALLOWED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256"];
/// One hour: GitHub's tokens live minutes; GitLab's live as long as the job
/// plus five minutes, so GitLab jobs with long timeouts need a larger cap.
pub const DEFAULT_MAX_TOKEN_AGE: u64 = 3600;

/// How a condition compares a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// The whole value, byte for byte.
    Exact,
    /// An anchored glob: `*` within one segment (never across `/` or
    /// `:`), `**` across segments, `?` one character.
    Glob,
    /// An anchored regular expression (Rust `regex` syntax).
    Regex,
}

/// One claim test. Claims are compared as strings: numbers and booleans as
/// JSON writes them (`123`, `true`). A missing claim fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub claim: String,
    #[serde(rename = "match")]
    pub kind: MatchKind,
    pub value: String,
    #[serde(default)]
    pub ignore_case: bool,
}

/// Claims that pin a repository or project by number. Names can be
/// re-registered by someone else after a rename or a deletion; numbers
/// cannot.
pub const ID_CLAIMS: &[&str] = &[
    "repository_id",
    "repository_owner_id",
    "project_id",
    "namespace_id",
];

/// A trust policy: which tokens of one issuer may act as which service
/// user, with which scopes, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrustPolicy {
    pub name: String,
    pub issuer: String,
    /// What the incoming token's `aud` must contain.
    pub audience: String,
    pub allow_multiple_audiences: bool,
    pub service_user: String,
    pub scopes: Vec<String>,
    /// Seconds the issued token lives (at most 3600, and never more than
    /// the service user allows).
    pub lifetime: u64,
    pub conditions: Vec<Condition>,
    /// `event_name` values refused whatever else matches (the GitHub preset
    /// refuses `pull_request_target`).
    pub refused_events: Vec<String>,
    /// Saved without a numeric id condition, on purpose.
    pub name_only: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

pub const DEFAULT_LIFETIME: u64 = 15 * 60;
pub const MAX_LIFETIME: u64 = 60 * 60;
pub const MIN_LIFETIME: u64 = 60;

/// `POST /admin/v1/trust/policies`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicySpec {
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit:
    /// the issued token's `client_id` is `trust:<name>`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// A trusted issuer's exact URL.
    pub issuer: String,
    /// What the incoming token's `aud` must contain; default: Tessera's
    /// issuer URL.
    #[serde(default)]
    pub audience: Option<String>,
    /// Default `false`: a token with several audiences is refused.
    #[serde(default)]
    pub allow_multiple_audiences: Option<bool>,
    /// The id of the service user the workload acts as.
    pub service_user: String,
    /// Space-separated scopes, each one the service user may ask for.
    #[serde(default)]
    pub scope: Option<String>,
    /// Seconds the issued token lives: 60 to 3600, default 900, never more
    /// than the service user allows.
    #[serde(default, deserialize_with = "crate::oauth::client::whole_number")]
    #[schema(minimum = 60, maximum = 3600)]
    pub lifetime: Option<u64>,
    /// Every one must hold. At least one; one must pin a numeric id unless
    /// `name_only`.
    pub conditions: Vec<Condition>,
    /// `event_name` values refused whatever else matches.
    #[serde(default)]
    pub refused_events: Option<Vec<String>>,
    /// Accept conditions that match on names alone (names can be
    /// re-registered by someone else after a rename or deletion).
    #[serde(default)]
    pub name_only: Option<bool>,
}

/// `PATCH /admin/v1/trust/policies/{name}`: the fields present change;
/// `conditions` is replaced whole. The name cannot change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyPatch {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub allow_multiple_audiences: Option<bool>,
    #[serde(default)]
    pub service_user: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "crate::oauth::client::whole_number")]
    #[schema(minimum = 60, maximum = 3600)]
    pub lifetime: Option<u64>,
    #[serde(default)]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default)]
    pub refused_events: Option<Vec<String>>,
    #[serde(default)]
    pub name_only: Option<bool>,
}
