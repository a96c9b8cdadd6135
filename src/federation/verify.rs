//! Checks on an incoming CI token (issue 9 item 4), before any policy:
//! signature by one of the issuer's keys with an algorithm the issuer is
//! pinned to, `iss` exact, `exp`/`nbf`/`iat` with [`LEEWAY_SECS`], the
//! token's own lifetime under the issuer's cap, and a `jti` to make it
//! single-use. Each check is reported, so `tessera trust test` shows the
//! same reasoning the exchange follows; the exchange stops at the first
//! failure.
//!
//! RFC 8725 §3.1 and §2.1: the algorithm is never taken from the token
//! alone. It must be one the administrator pinned for this issuer (never
//! `none` or HMAC), and the key it names must be of that algorithm's family,
//! so an HS256 token "signed" with an RSA public key is refused.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Serialize;
use serde_json::{Map, Value};

use super::model::TrustedIssuer;
use crate::audit::bounded;

/// Clock skew tolerated on `exp`, `nbf` and `iat` (issue 9: at most 60 s).
pub const LEEWAY_SECS: i64 = 60;
/// A `jti` is stored as a replay key: bounded like any identifier.
const MAX_JTI_LEN: usize = 255;

/// One check and its outcome, as `trust test` prints it and the audit log
/// records the first failure.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The outcome of the token-level checks.
#[derive(Debug)]
pub struct Verification {
    pub checks: Vec<Check>,
    /// The claims, once every check passed.
    pub claims: Option<Map<String, Value>>,
    /// No key of the issuer has the token's `kid`: the caller may refetch
    /// the issuer's keys (once per cooldown) and verify again.
    pub unknown_kid: bool,
}

impl Verification {
    /// The first failed check, for the audit log.
    pub fn failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.passed)
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, check: &'static str, detail: impl Into<String>) {
        self.0.push(Check {
            check,
            passed: true,
            detail: detail.into(),
        });
    }

    fn fail(mut self, check: &'static str, detail: impl Into<String>) -> Verification {
        self.0.push(Check {
            check,
            passed: false,
            detail: detail.into(),
        });
        Verification {
            checks: self.0,
            claims: None,
            unknown_kid: false,
        }
    }
}

/// The JWA name of an algorithm, as the issuer's pinned list spells it.
fn name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// Whether `jwk` is a key of `alg`'s family and, if it names an algorithm,
/// that one.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    use Algorithm::*;
    let family = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512) => true,
        (AlgorithmParameters::EllipticCurve(ec), ES256) => ec.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(ec), ES384) => ec.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(okp), EdDSA) => okp.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    family
        && jwk
            .common
            .key_algorithm
            .is_none_or(|declared| format!("{declared:?}") == name(alg))
}

/// Runs the token-level checks of `token` against `issuer` and its `keys`,
/// at `now` (Unix seconds).
pub fn verify(token: &str, issuer: &TrustedIssuer, keys: &JwkSet, now: i64) -> Verification {
    let mut checks = Checks(Vec::new());
    let Ok(header) = decode_header(token) else {
        return checks.fail(
            "format",
            "not a signed JWT (three base64url parts, a JSON header with an asymmetric alg)",
        );
    };
    if crate::oauth::assertion::names_critical_extensions(token) {
        return checks.fail(
            "format",
            "the header names critical extensions (crit), which are not supported",
        );
    }
    checks.pass("format", "a signed JWT");
    let alg = name(header.alg);
    if !issuer.algorithms.contains(&alg) {
        return checks.fail(
            "algorithm",
            format!(
                "{alg} is not one of the issuer's algorithms ({})",
                issuer.algorithms.join(", ")
            ),
        );
    }
    checks.pass("algorithm", alg.clone());
    let jwk = match header.kid.as_deref() {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    };
    let Some(jwk) = jwk else {
        let kid = header
            .kid
            .as_deref()
            .map_or("(none)".into(), |k| bounded(k, 100));
        let mut failed = checks.fail("key", format!("no key of the issuer has kid {kid:?}"));
        failed.unknown_kid = header.kid.is_some();
        return failed;
    };
    if !key_fits(jwk, header.alg) {
        return checks.fail("key", format!("the key named by kid is not a {alg} key"));
    }
    let Ok(key) = DecodingKey::from_jwk(jwk) else {
        return checks.fail("key", "the issuer's key cannot be used");
    };
    checks.pass("key", "found by kid");
    let mut validation = Validation::new(header.alg);
    // Times are checked below, one by one, so that each is reported.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match decode::<Map<String, Value>>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(_) => return checks.fail("signature", "the signature does not verify"),
    };
    checks.pass("signature", "verified");
    check_claims(checks, claims, issuer, now)
}

fn check_claims(
    mut checks: Checks,
    claims: Map<String, Value>,
    issuer: &TrustedIssuer,
    now: i64,
) -> Verification {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == issuer.issuer => checks.pass("issuer", iss),
        Some(iss) => {
            return checks.fail("issuer", format!("iss is {:?}", bounded(iss, 200)));
        }
        None => return checks.fail("issuer", "iss is missing"),
    }
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    let Some(exp) = time("exp") else {
        return checks.fail("expiry", "exp is missing or not a number");
    };
    if exp.saturating_add(LEEWAY_SECS) < now {
        return checks.fail("expiry", format!("expired {} s ago", now - exp));
    }
    checks.pass("expiry", format!("expires in {} s", exp - now));
    match time("nbf") {
        Some(nbf) if nbf > now.saturating_add(LEEWAY_SECS) => {
            return checks.fail("not before", format!("valid only in {} s", nbf - now));
        }
        _ if claims.get("nbf").is_some_and(|v| !v.is_i64()) => {
            return checks.fail("not before", "nbf is not a number");
        }
        _ => checks.pass("not before", "valid now"),
    }
    let Some(iat) = time("iat") else {
        return checks.fail("issued at", "iat is missing or not a number");
    };
    if iat > now.saturating_add(LEEWAY_SECS) {
        return checks.fail("issued at", "issued in the future");
    }
    checks.pass("issued at", format!("{} s ago", now - iat));
    let lifetime = exp.saturating_sub(iat);
    let cap = i64::try_from(issuer.max_token_age).unwrap_or(i64::MAX);
    if lifetime > cap {
        return checks.fail(
            "lifetime",
            format!("the token lives {lifetime} s; this issuer's cap is {cap} s"),
        );
    }
    checks.pass("lifetime", format!("{lifetime} s, cap {cap} s"));
    match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => {
            checks.pass("jti", "present");
        }
        _ => {
            return checks.fail(
                "jti",
                "a jti (at most 255 bytes) is required for single use",
            );
        }
    }
    if !claims.get("sub").is_some_and(Value::is_string) {
        return checks.fail("subject", "sub is missing");
    }
    checks.pass("subject", "present");
    Verification {
        checks: checks.0,
        claims: Some(claims),
        unknown_kid: false,
    }
}
