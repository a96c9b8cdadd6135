//! OpenID Connect ID tokens (OIDC Core §2, §3.1.3.6).

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::jwt::{self, SignError, VerifyError};
use crate::keys::{Alg, KeyRing, KeySet};

/// OIDC Core §2.
#[derive(Debug, Serialize)]
pub struct IdClaims<'a> {
    pub iss: &'a str,
    /// The user's id: stable and opaque, never the username.
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub at_hash: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub amr: &'a [String],
    /// OIDC Front-Channel Logout §2 / RP-Initiated Logout: the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<&'a str>,
    /// OIDC Core §2: the party the token was issued to.
    pub azp: &'a str,
}

/// What signing needs beyond the claims.
pub struct IdTokenRequest<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub lifetime_secs: i64,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    pub amr: &'a [String],
    pub sid: Option<&'a str>,
    pub access_token: &'a str,
    pub alg: Alg,
    pub now: i64,
}

/// OIDC Core §3.1.3.6: `at_hash` is the base64url of the left half of the
/// hash of the access token's ASCII octets, with the hash of the ID token's
/// `alg` (SHA-256 for both RS256 and ES256).
pub fn at_hash(access_token: &str) -> String {
    let hash = digest::digest(&digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}

/// Signs an ID token with the active key of the client's algorithm.
pub fn mint(ring: &KeyRing, request: &IdTokenRequest<'_>) -> Result<String, SignError> {
    let set = ring.get().ok_or(SignError::NoActiveKey)?;
    let key = set
        .signer(request.alg, request.now)
        .ok_or(SignError::NoActiveKey)?;
    let claims = IdClaims {
        iss: request.issuer,
        sub: request.subject,
        aud: request.client_id,
        exp: request.now + request.lifetime_secs,
        iat: request.now,
        auth_time: request.auth_time,
        nonce: request.nonce,
        at_hash: at_hash(request.access_token),
        amr: request.amr,
        sid: request.sid,
        azp: request.client_id,
    };
    jwt::sign(key, "JWT", &claims)
}

/// The claims of an `id_token_hint` that RP-initiated logout reads.
#[derive(Debug, Deserialize)]
pub struct HintClaims {
    pub iss: String,
    pub sub: String,
    pub aud: serde_json::Value,
    #[serde(default)]
    pub sid: Option<String>,
}

impl HintClaims {
    /// The client it was issued to: `aud` as a string, or a one-element
    /// array.
    pub fn client_id(&self) -> Option<&str> {
        match &self.aud {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Array(a) if a.len() == 1 => a[0].as_str(),
            _ => None,
        }
    }
}

/// OIDC RP-Initiated Logout §2: an ID token we issued, verified with our
/// keys. An expired one is accepted (the hint names a past sign-in); the
/// issuer must be ours and the type not an access token.
pub fn verify_hint(
    set: &KeySet,
    token: &str,
    issuer: &str,
    now: i64,
    max_lifetime: std::time::Duration,
) -> Result<HintClaims, VerifyError> {
    let (typ, claims) = jwt::verify_own::<HintClaims>(set, token, now, max_lifetime)?;
    if typ.as_deref() == Some("at+jwt") || claims.iss != issuer {
        return Err(VerifyError::Malformed);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OIDC Core §A.3's example: the access token `jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y`
    /// has `at_hash` `77QmUPtjPfzWtF2AnpK9RQ`.
    #[test]
    fn at_hash_matches_the_spec_example() {
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
