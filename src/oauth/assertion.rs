//! JWT assertions signed by a client or a service user (RFC 7523 §3):
//! signature by a registered key chosen by `kid`, algorithm pinned by that
//! key, issuer, subject, audience, expiry, lifetime, age and single use.

use std::time::Duration;

use aws_lc_rs::digest;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, decode, decode_header};
use serde::Deserialize;

use super::discovery::TOKEN_PATH;
use super::syntax;
use super::{ErrorCode, OAuthError};
use crate::clock;
use crate::config::Config;
use crate::store::BatchWriter;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;
const LEEWAY: i64 = LEEWAY_SECS as i64;

#[derive(Debug, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: Option<i64>,
    pub jti: Option<String>,
}

/// RFC 7519 §4.1.3: `aud` is a string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The value, when there is exactly one.
    fn only(&self) -> Option<&str> {
        match self {
            Audience::One(aud) => Some(aud),
            Audience::Many(auds) if auds.len() == 1 => Some(&auds[0]),
            Audience::Many(_) => None,
        }
    }
}

/// The audiences an assertion may name: the issuer or the token endpoint
/// (RFC 7523 §3 item 3). draft-ietf-oauth-rfc7523bis and the OpenID
/// Foundation's January 2025 advisory (CVE-2025-27370/27371) add that `aud`
/// holds that one value alone, so an assertion made for another server
/// cannot be replayed here.
pub fn audiences(config: &Config) -> [String; 2] {
    [config.issuer().to_owned(), config.endpoint(TOKEN_PATH)]
}

/// What makes an assertion single-use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ReplayKey {
    /// Its `jti`, which it must carry (OIDC Core §9 for client assertions).
    Jti,
    /// Its `jti`, or when it has none the assertion itself: ZITADEL's SDKs
    /// send JWT-bearer assertions without a `jti`.
    JtiOrAssertion,
}

/// What a caller expects of an assertion.
pub struct Expectations<'a> {
    /// `iss` and `sub` must both be this (RFC 7523 §2.2 for client
    /// authentication, §2.1 as ZITADEL's JWT profile uses it).
    pub subject: &'a str,
    /// `aud` must be exactly one of these (see [`audiences`]).
    pub audiences: &'a [String],
    /// `exp` may be at most this far ahead, so a replay row never outlives
    /// this (plus the leeway).
    pub max_lifetime: Duration,
    /// `iat` may be at most this old.
    pub max_age: Option<Duration>,
    pub replay_key: ReplayKey,
    /// The error code for a refusal (`invalid_client` or `invalid_grant`).
    pub error: ErrorCode,
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The one algorithm a key may be used with (RFC 7518 §3.1, RFC 8037):
/// taken from the key, never from the token, so a token cannot pick HMAC
/// with a public key, or `none`.
fn pinned_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm.map(|a| format!("{a:?}")) {
        None => Some(by_type),
        Some(declared) if declared == format!("{by_type:?}") => Some(by_type),
        Some(_) => None,
    }
}

/// At most this many keys are tried for a token that names no `kid`:
/// enough for an agent's current and previous key, and few, since a stranger
/// can send junk without a `kid` too.
const MAX_KEYS_WITHOUT_KID: usize = 2;

/// The key named by `kid`. A token that names none (RFC 7523 does not ask
/// for one) is tried against the set's keys of its algorithm, at most
/// [`MAX_KEYS_WITHOUT_KID`]: an agent's set holds its current and its
/// previous key through a rotation's overlap. `None` when nothing fits.
fn select_key<'a>(keys: &'a JwkSet, token: &str, header: &Header) -> Option<&'a Jwk> {
    if let Some(kid) = header.kid.as_deref() {
        return keys.find(kid);
    }
    if keys.keys.len() == 1 {
        return keys.keys.first();
    }
    let (message, signature) = token.rsplit_once('.')?;
    keys.keys
        .iter()
        .filter(|jwk| pinned_algorithm(jwk) == Some(header.alg))
        .take(MAX_KEYS_WITHOUT_KID)
        .find(|jwk| {
            DecodingKey::from_jwk(jwk).is_ok_and(|key| {
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, header.alg)
                    .unwrap_or(false)
            })
        })
}

/// Checks everything but single use, and returns the claims.
pub fn verify(
    token: &str,
    keys: &JwkSet,
    expect: &Expectations<'_>,
) -> Result<AssertionClaims, AssertionError> {
    let refuse = |why: &'static str| AssertionError::Invalid(OAuthError::new(expect.error, why));
    let header = decode_header(token)
        .map_err(|_| refuse("the assertion is not a well-formed signed JWT"))?;
    if names_critical_extensions(token) {
        return Err(refuse(
            "the assertion names critical header extensions (crit) this server does not support",
        ));
    }
    let jwk = match select_key(keys, token, &header) {
        Some(jwk) => jwk,
        None => return Err(AssertionError::UnknownKey),
    };
    let pinned = pinned_algorithm(jwk)
        .ok_or_else(|| refuse("the registered key cannot verify assertions"))?;
    if header.alg != pinned {
        return Err(refuse(
            "the assertion's algorithm does not match the registered key",
        ));
    }
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|_| refuse("the registered key cannot verify assertions"))?;
    let mut validation = Validation::new(pinned);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[expect.subject]);
    // `aud` is checked below: jsonwebtoken accepts an array that merely
    // contains an expected value.
    validation.validate_aud = false;
    validation.sub = Some(expect.subject.to_owned());
    let claims = decode::<AssertionClaims>(token, &key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => refuse("the assertion has expired"),
                InvalidIssuer | InvalidSubject => {
                    refuse("the assertion's iss and sub must be the caller's id")
                }
                ImmatureSignature => refuse("the assertion is not valid yet"),
                MissingRequiredClaim(_) => refuse("the assertion lacks exp, iss, sub or aud"),
                _ => refuse("the assertion's signature or claims are invalid"),
            }
        })?
        .claims;
    if !claims
        .aud
        .only()
        .is_some_and(|aud| expect.audiences.iter().any(|a| a == aud))
    {
        return Err(refuse(
            "the assertion's aud must be one value: this server's issuer or token endpoint",
        ));
    }
    let now = clock::now();
    let latest = now
        .saturating_add(secs(expect.max_lifetime))
        .saturating_add(LEEWAY);
    if claims.exp > latest {
        return Err(refuse("the assertion expires too far in the future"));
    }
    if let Some(max_age) = expect.max_age {
        let iat = claims
            .iat
            .ok_or_else(|| refuse("the assertion lacks iat"))?;
        if iat < now.saturating_sub(secs(max_age)).saturating_sub(LEEWAY) {
            return Err(refuse("the assertion was issued too long ago"));
        }
        if iat > now.saturating_add(LEEWAY) {
            return Err(refuse("the assertion was issued in the future"));
        }
    }
    Ok(claims)
}

/// RFC 7515 §4.1.11: a recipient that does not understand every extension
/// `crit` lists MUST reject the JWS. Tessera understands none.
pub fn names_critical_extensions(token: &str) -> bool {
    #[derive(Deserialize)]
    struct Critical {
        crit: Option<serde_json::Value>,
    }
    use base64::Engine;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Critical>(&bytes).ok())
        .is_some_and(|h| h.crit.is_some())
}

/// The `sub` an assertion claims, read before anything is verified: it only
/// names whose keys to verify it with. A `sub` that could not be an id
/// (control characters, NUL, over [`syntax::MAX_IDENTIFIER_LEN`]) counts as
/// absent, so it never reaches a cache or a query.
pub fn unverified_subject(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        sub: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Named>(token)
        .ok()
        .and_then(|c| c.sub)
        .filter(|sub| syntax::is_identifier(sub))
}

#[derive(Debug)]
pub enum AssertionError {
    /// No registered key matches the `kid`: the caller may refresh keys.
    UnknownKey,
    Invalid(OAuthError),
}

/// RFC 7523 §3 item 7 (and OIDC Core §9: "these tokens MUST only be used
/// once"): an assertion is accepted once for its lifetime, on every replica
/// (the store is shared). Its replay key is a digest of issuer and `jti`
/// alone, so the same `jti` with another `exp` is a replay too.
///
/// An assertion without a `jti` (where `expect.replay_key` allows it) is
/// keyed by a digest of its signed part, header and claims: two assertions
/// signed with the same claims are the same assertion. The signature is left
/// out because an ECDSA signature (r, s) has a twin (r, n - s) that anyone
/// can compute and that verifies too. A JWS never contains a NUL byte and
/// the `jti` digest's input always does, so the two kinds of key cannot meet.
pub async fn consume_once(
    writer: &BatchWriter,
    token: &str,
    claims: &AssertionClaims,
    expect: &Expectations<'_>,
) -> Result<(), OAuthError> {
    let refuse = |why: &'static str| OAuthError::new(expect.error, why);
    let mut ctx = digest::Context::new(&digest::SHA256);
    match claims.jti.as_deref().filter(|j| !j.is_empty()) {
        Some(jti) => {
            ctx.update(claims.iss.as_bytes());
            ctx.update(b"\0");
            ctx.update(jti.as_bytes());
        }
        None if expect.replay_key == ReplayKey::JtiOrAssertion => {
            let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
            ctx.update(signed.as_bytes());
        }
        None => return Err(refuse("the assertion lacks a jti")),
    }
    let key = crate::keys::hex(ctx.finish().as_ref());
    let until = claims
        .exp
        .checked_add(LEEWAY)
        .ok_or_else(|| refuse("the assertion expires too far in the future"))?;
    if writer.consume(key, until).await? {
        Ok(())
    } else {
        Err(refuse("the assertion was already used"))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::*;

    fn token(header: Value, claims: Value) -> String {
        let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", part(header), part(claims))
    }

    #[test]
    fn a_crit_header_is_noticed() {
        let plain = token(json!({"alg": "RS256"}), json!({}));
        let critical = token(json!({"alg": "RS256", "crit": ["x"]}), json!({}));
        assert!(!names_critical_extensions(&plain));
        assert!(names_critical_extensions(&critical));
    }

    #[test]
    fn a_subject_that_cannot_be_an_id_counts_as_absent() {
        let named =
            |sub: &str| unverified_subject(&token(json!({"alg": "RS256"}), json!({"sub": sub})));
        assert_eq!(named("svc-1").as_deref(), Some("svc-1"));
        assert_eq!(named("a\u{0}b"), None);
        assert_eq!(named(&"x".repeat(256)), None);
        assert_eq!(named(""), None);
    }
}
