//! JWT assertions signed by a client or a service user (RFC 7523 §3):
//! signature by a registered key chosen by `kid`, algorithm pinned by that
//! key, issuer, subject, audience, expiry, age and single use.

use std::time::Duration;

use aws_lc_rs::digest;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::{ErrorCode, OAuthError};
use crate::clock;
use crate::store::BatchWriter;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: Option<i64>,
    pub jti: Option<String>,
}

/// What a caller expects of an assertion.
pub struct Expectations<'a> {
    /// `iss` and `sub` must both be this (RFC 7523 §2.2 for client
    /// authentication, §2.1 as ZITADEL's JWT profile uses it).
    pub subject: &'a str,
    /// `aud` must contain one of these.
    pub audiences: &'a [String],
    /// `exp` may be at most this far ahead.
    pub max_lifetime: Option<Duration>,
    /// `iat` may be at most this old.
    pub max_age: Option<Duration>,
    /// The error code for a refusal (`invalid_client` or `invalid_grant`).
    pub error: ErrorCode,
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

/// The key named by `kid`, or the only key when the token names none.
fn select_key<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
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
    let jwk = match select_key(keys, header.kid.as_deref()) {
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
    validation.set_audience(expect.audiences);
    validation.sub = Some(expect.subject.to_owned());
    let claims = decode::<AssertionClaims>(token, &key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => refuse("the assertion has expired"),
                InvalidAudience => refuse("the assertion's audience is not this server"),
                InvalidIssuer | InvalidSubject => {
                    refuse("the assertion's iss and sub must be the caller's id")
                }
                ImmatureSignature => refuse("the assertion is not valid yet"),
                MissingRequiredClaim(_) => refuse("the assertion lacks exp, iss, sub or aud"),
                _ => refuse("the assertion's signature or claims are invalid"),
            }
        })?
        .claims;
    let now = clock::now();
    if let Some(max) = expect.max_lifetime
        && claims.exp > now + max.as_secs() as i64 + LEEWAY_SECS as i64
    {
        return Err(refuse("the assertion expires too far in the future"));
    }
    if let Some(max_age) = expect.max_age {
        let iat = claims
            .iat
            .ok_or_else(|| refuse("the assertion lacks iat"))?;
        if iat < now - max_age.as_secs() as i64 - LEEWAY_SECS as i64 {
            return Err(refuse("the assertion was issued too long ago"));
        }
        if iat > now + LEEWAY_SECS as i64 {
            return Err(refuse("the assertion was issued in the future"));
        }
    }
    Ok(claims)
}

/// The `sub` an assertion claims, read before anything is verified: it only
/// names whose keys to verify it with.
pub fn unverified_subject(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        sub: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Named>(token)
        .ok()
        .and_then(|c| c.sub)
}

#[derive(Debug)]
pub enum AssertionError {
    /// No registered key matches the `kid`: the caller may refresh keys.
    UnknownKey,
    Invalid(OAuthError),
}

/// RFC 7523 §3 item 7 (and OIDC Core §9: "these tokens MUST only be used
/// once"): an assertion is accepted once for its lifetime, on every replica
/// (the store is shared). It is recorded by its expiry and a digest of
/// issuer and `jti`; a replay is the same token, so it meets its own row.
/// Keying by expiry first keeps each batch's rows on a few pages.
pub async fn consume_once(
    writer: &BatchWriter,
    claims: &AssertionClaims,
    error: ErrorCode,
) -> Result<(), OAuthError> {
    let jti = claims
        .jti
        .as_deref()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| OAuthError::new(error, "the assertion lacks a jti"))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(claims.iss.as_bytes());
    ctx.update(b"\0");
    ctx.update(jti.as_bytes());
    let key = crate::keys::hex(ctx.finish().as_ref());
    if writer.consume(key, claims.exp + LEEWAY_SECS as i64).await? {
        Ok(())
    } else {
        Err(OAuthError::new(error, "the assertion was already used"))
    }
}
