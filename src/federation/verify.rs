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
    /// The claims of a token whose signature verified but that failed a
    /// later check: trustworthy enough to say, in the audit log, which job
    /// it came from.
    pub signed_claims: Option<Map<String, Value>>,
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
            signed_claims: None,
            unknown_kid: false,
        }
    }

    /// A failure after the signature verified: the claims are kept for the
    /// audit log.
    fn fail_after_signature(
        self,
        check: &'static str,
        detail: impl Into<String>,
        claims: Map<String, Value>,
    ) -> Verification {
        let mut failed = self.fail(check, detail);
        failed.signed_claims = Some(claims);
        failed
    }
}

/// The JWA name of an algorithm, as the issuer's pinned list spells it.
fn name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// Whether `jwk` is a key of `alg`'s family and, if it names an algorithm,
/// that one.
pub(crate) fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
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
            let detail = format!("iss is {:?}", bounded(iss, 200));
            return checks.fail_after_signature("issuer", detail, claims);
        }
        None => return checks.fail_after_signature("issuer", "iss is missing", claims),
    }
    match time_checks(&claims, issuer, now) {
        Ok(passed) => {
            for (check, detail) in passed {
                checks.pass(check, detail);
            }
        }
        Err((passed, check, detail)) => {
            for (check, detail) in passed {
                checks.pass(check, detail);
            }
            return checks.fail_after_signature(check, detail, claims);
        }
    }
    let has_jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .is_some_and(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_LEN);
    if !has_jti {
        let detail = "a jti (at most 255 bytes) is required for single use";
        return checks.fail_after_signature("jti", detail, claims);
    }
    checks.pass("jti", "present");
    if !claims.get("sub").is_some_and(Value::is_string) {
        return checks.fail_after_signature("subject", "sub is missing", claims);
    }
    checks.pass("subject", "present");
    Verification {
        checks: checks.0,
        claims: Some(claims),
        signed_claims: None,
        unknown_kid: false,
    }
}

type Passed = Vec<(&'static str, String)>;

/// `exp`, `nbf`, `iat` (each within the leeway) and the token's own
/// lifetime under the issuer's cap: the checks passed, or those and the
/// first that failed.
fn time_checks(
    claims: &Map<String, Value>,
    issuer: &TrustedIssuer,
    now: i64,
) -> Result<Passed, (Passed, &'static str, String)> {
    let mut passed: Passed = Vec::new();
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    let Some(exp) = time("exp") else {
        return Err((passed, "expiry", "exp is missing or not a number".into()));
    };
    if exp.saturating_add(LEEWAY_SECS) < now {
        let detail = format!("expired {} s ago", now.saturating_sub(exp));
        return Err((passed, "expiry", detail));
    }
    passed.push((
        "expiry",
        format!("expires in {} s", exp.saturating_sub(now)),
    ));
    match (claims.get("nbf"), time("nbf")) {
        (Some(_), None) => return Err((passed, "not before", "nbf is not a number".into())),
        (_, Some(nbf)) if nbf > now.saturating_add(LEEWAY_SECS) => {
            let detail = format!("valid only in {} s", nbf.saturating_sub(now));
            return Err((passed, "not before", detail));
        }
        _ => passed.push(("not before", "valid now".into())),
    }
    let Some(iat) = time("iat") else {
        return Err((passed, "issued at", "iat is missing or not a number".into()));
    };
    if iat > now.saturating_add(LEEWAY_SECS) {
        return Err((passed, "issued at", "issued in the future".into()));
    }
    passed.push(("issued at", format!("{} s ago", now.saturating_sub(iat))));
    let lifetime = exp.saturating_sub(iat);
    let cap = i64::try_from(issuer.max_token_age).unwrap_or(i64::MAX);
    if lifetime > cap {
        let detail = format!("the token lives {lifetime} s; this issuer's cap is {cap} s");
        return Err((passed, "lifetime", detail));
    }
    passed.push(("lifetime", format!("{lifetime} s, cap {cap} s")));
    Ok(passed)
}
