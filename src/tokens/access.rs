//! RFC 9068 JWT access tokens.

use std::time::Duration;

use serde::Serialize;

use super::jwt::{self, SignError};
use crate::clock;
use crate::keys::{Alg, KeyRing};
use crate::secret::Secret;

/// RFC 9068 §2.2 claims, plus the identity kind Tessera's resource servers
/// and introspection use.
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    /// One audience is a string, several an array (RFC 7519 §4.1.3).
    pub aud: Audience<'a>,
    pub exp: i64,
    pub iat: i64,
    pub jti: &'a str,
    pub client_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub scope: &'a str,
    /// `human`, `service` or `workload`.
    pub identity_kind: &'a str,
    /// RFC 8693 §4.1: who acts as the subject (a CI job, for an exchanged
    /// token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<&'a serde_json::Value>,
    /// Which CI job it was: issuer, subject, repository or project, ref,
    /// run, event, policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<&'a serde_json::Value>,
    /// The personal or machine token this one was exchanged for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<&'a str>,
}

#[derive(Debug)]
pub struct Audience<'a>(pub &'a [String]);

impl Serialize for Audience<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

/// An issued access token and what the token response reports about it.
#[derive(Debug)]
pub struct Issued {
    pub token: Secret,
    pub jti: String,
    pub expires_in: u64,
    pub exp: i64,
}

pub struct AccessTokenRequest<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub audience: &'a [String],
    pub scopes: &'a [String],
    pub identity_kind: &'a str,
    pub lifetime: Duration,
    pub alg: Alg,
    /// For exchanged tokens: the `act` and `workload` claims.
    pub delegation: Option<&'a Delegation>,
    /// For a token exchanged for a personal or machine token: that
    /// token's id (`token_id`), which must stay live for this one to.
    pub source_token: Option<&'a str>,
    /// The `jti` and `exp` to use, when they were chosen (and stored, so
    /// the token can be revoked) before it is signed; `lifetime` is then
    /// ignored. A new `jti` and `now + lifetime` otherwise.
    pub named: Option<Named<'a>>,
}

/// An access token's `jti` and `exp`, chosen before it is signed.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub jti: &'a str,
    pub exp: i64,
}

/// Who acts for the subject of an exchanged token (RFC 8693 §4.1), and the
/// CI job it was.
#[derive(Debug)]
pub struct Delegation {
    pub act: serde_json::Value,
    pub workload: serde_json::Value,
}

/// A new access token `jti`. uuid's `fast-rng`: a thread-local CSPRNG
/// seeded by the OS, not a `getrandom` system call per token (1.4% of the
/// endpoint's CPU).
pub fn new_jti() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Signs an access token with the active key for the requested algorithm.
/// RFC 9068 §2.1: `typ` is `at+jwt`.
pub fn mint(ring: &KeyRing, request: &AccessTokenRequest<'_>) -> Result<Issued, SignError> {
    let set = ring.get().ok_or(SignError::NoActiveKey)?;
    let now = clock::now();
    let key = set.signer(request.alg, now).ok_or(SignError::NoActiveKey)?;
    let (jti, exp) = match request.named {
        Some(named) => (named.jti.to_owned(), named.exp),
        None => (new_jti(), now + request.lifetime.as_secs() as i64),
    };
    let scope = request.scopes.join(" ");
    let claims = AccessClaims {
        iss: request.issuer,
        sub: request.subject,
        aud: Audience(request.audience),
        exp,
        iat: now,
        jti: &jti,
        client_id: request.client_id,
        scope: &scope,
        identity_kind: request.identity_kind,
        act: request.delegation.map(|d| &d.act),
        workload: request.delegation.map(|d| &d.workload),
        token_id: request.source_token,
    };
    let token = jwt::sign(key, "at+jwt", &claims)?;
    Ok(Issued {
        token: Secret::new(token),
        jti,
        expires_in: exp.saturating_sub(now).max(0) as u64,
        exp,
    })
}
