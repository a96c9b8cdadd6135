//! Trusted issuers (issue 9 item 1): exact URLs, pinned asymmetric
//! algorithms, a cap on the incoming token's own lifetime, and optionally a
//! static JWK Set for an issuer Tessera cannot reach.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::{Value, json};

use super::issuer_from_record;
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::federation::issuers::{could_be_issuer, is_acceptable_url, is_canonical};
use crate::federation::model::{
    ALLOWED_ALGORITHMS, DEFAULT_ALGORITHMS, DEFAULT_MAX_TOKEN_AGE, MAX_MAX_TOKEN_AGE,
    TrustedIssuer, TrustedIssuerSpec,
};
use crate::federation::verify::key_fits;
use crate::oauth::{ErrorCode, OAuthError, etag};
use crate::store::{StoreError, TrustStore, TrustedIssuerRecord};

pub(super) const URL_RULE: &str = "the issuer must be an absolute https URL (http only on a \
    loopback address), without credentials, query or fragment, at most 255 bytes";
/// A static key set larger than this is not a CI platform's.
const MAX_STATIC_KEYS: usize = 100;

fn not_found(issuer: &str) -> OAuthError {
    OAuthError::not_found(format!("no trusted issuer `{issuer}`"))
}

/// The spec, checked, as the record to store.
fn validate(spec: TrustedIssuerSpec, now: i64) -> Result<TrustedIssuerRecord, OAuthError> {
    // Literally `https://` or `http://`: issuers are compared byte for byte
    // with a token's `iss`, and only such values are ever looked up.
    if !(could_be_issuer(&spec.issuer) && is_acceptable_url(&spec.issuer)) {
        return Err(OAuthError::invalid_request(URL_RULE));
    }
    if !is_canonical(&spec.issuer) {
        return Err(OAuthError::invalid_request(
            "the issuer must be written as its tokens write iss: host in lower case, \
             no default port, no . or .. segments",
        ));
    }
    let mut algorithms: Vec<String> = Vec::new();
    let wanted = spec
        .algorithms
        .unwrap_or_else(|| DEFAULT_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect());
    if wanted.is_empty() {
        return Err(OAuthError::invalid_request("algorithms must not be empty"));
    }
    for alg in wanted {
        if !ALLOWED_ALGORITHMS.contains(&alg.as_str()) {
            return Err(OAuthError::invalid_request(format!(
                "algorithm `{alg}` is not allowed: one of {} (never none or HMAC)",
                ALLOWED_ALGORITHMS.join(", ")
            )));
        }
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let max_token_age = spec.max_token_age.unwrap_or(DEFAULT_MAX_TOKEN_AGE);
    if !(1..=MAX_MAX_TOKEN_AGE).contains(&max_token_age) {
        return Err(OAuthError::invalid_request(
            "max_token_age must be between 1 and 86400 seconds",
        ));
    }
    let jwks = match spec.jwks {
        Some(Value::Null) | None => None,
        Some(jwks) => {
            check_static_jwks(&jwks, &algorithms).map_err(OAuthError::invalid_request)?;
            Some(jwks.to_string())
        }
    };
    Ok(TrustedIssuerRecord {
        issuer: spec.issuer,
        algorithms: algorithms.join(" "),
        max_token_age: max_token_age as i64,
        jwks,
        created_at: now,
    })
}

/// RFC 7517 §5: a JWK Set of public keys, at least one of which verifies
/// one of `algorithms` (the issuer's pinned ones).
fn check_static_jwks(jwks: &Value, algorithms: &[String]) -> Result<(), String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks must be a JWK Set: an object with a `keys` array")?;
    if keys.is_empty() || keys.len() > MAX_STATIC_KEYS {
        return Err(format!("jwks must hold 1 to {MAX_STATIC_KEYS} keys"));
    }
    // Each key as the document's `Jwk` schema says: public, of a kind
    // the server verifies with, its common members well typed (a `kid` of
    // null is refused, not read as absent).
    for key in keys {
        crate::keys::public::check_public_jwk(key).map_err(|e| format!("jwks: {}", e.0))?;
    }
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|_| "jwks is not a JWK Set of RSA, EC or OKP public keys")?;
    let usable = set.keys.iter().any(|key| {
        algorithms
            .iter()
            .filter_map(|a| a.parse::<Algorithm>().ok())
            .any(|alg| fits(key, alg))
    });
    if !usable {
        return Err(format!(
            "no key in jwks verifies any of the issuer's algorithms ({})",
            algorithms.join(", ")
        ));
    }
    Ok(())
}

/// Whether `key` is of `alg`'s family, names no other algorithm (as the
/// exchange checks it), and loads.
fn fits(key: &Jwk, alg: Algorithm) -> bool {
    key_fits(key, alg) && jsonwebtoken::DecodingKey::from_jwk(key).is_ok()
}

pub async fn create_issuer<S: TrustStore>(
    store: &S,
    spec: TrustedIssuerSpec,
    actor: Actor,
) -> Result<TrustedIssuer, OAuthError> {
    let record = validate(spec, clock::now())?;
    let event = Event::new(actor, "trust.issuer_added", Outcome::Success)
        .target(record.issuer.clone())
        .details(json!({
            "algorithms": record.algorithms,
            "max_token_age": record.max_token_age,
            "static_jwks": record.jwks.is_some(),
        }))
        .into_record(clock::now_ms());
    match store.create_trusted_issuer(record.clone(), event).await {
        Ok(()) => Ok(issuer_from_record(record)?),
        Err(StoreError::Conflict) => Err(OAuthError::new(
            ErrorCode::Conflict,
            format!("the issuer `{}` is already trusted", record.issuer),
        )),
        Err(other) => Err(other.into()),
    }
}

pub async fn list_issuers<S: TrustStore>(store: &S) -> Result<Vec<TrustedIssuer>, OAuthError> {
    let records = store.list_trusted_issuers().await?;
    Ok(records
        .into_iter()
        .map(issuer_from_record)
        .collect::<Result<_, _>>()?)
}

pub async fn get_issuer<S: TrustStore>(
    store: &S,
    issuer: &str,
) -> Result<TrustedIssuer, OAuthError> {
    let record = store
        .trusted_issuer(issuer.to_owned())
        .await?
        .ok_or_else(|| not_found(issuer))?;
    Ok(issuer_from_record(record)?)
}

/// Removes the issuer; refused (409, naming it) while a policy names it.
/// With `If-Match`, only the version the caller read (RFC 9110 §13.1.1).
pub async fn delete_issuer<S: TrustStore>(
    store: &S,
    issuer: &str,
    actor: Actor,
    if_match: Option<String>,
) -> Result<(), OAuthError> {
    let event = Event::new(actor, "trust.issuer_removed", Outcome::Success)
        .target(issuer.to_owned())
        .into_record(clock::now_ms());
    let precondition = move |current: TrustedIssuerRecord| {
        let current = issuer_from_record(current)?;
        etag::check(if_match.as_deref(), &etag::of(&current))
    };
    match store
        .delete_trusted_issuer(issuer.to_owned(), event, precondition)
        .await
    {
        Ok(result) => result,
        Err(StoreError::NotFound) => Err(not_found(issuer)),
        Err(StoreError::InUse(by)) => Err(OAuthError::new(
            ErrorCode::Conflict,
            format!(
                "the issuer is named by {by}: delete that policy (or move it to another issuer) first"
            ),
        )),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(issuer: &str) -> TrustedIssuerSpec {
        TrustedIssuerSpec {
            issuer: issuer.into(),
            ..TrustedIssuerSpec::default()
        }
    }

    #[test]
    fn issuer_rules() {
        let ok = validate(spec("https://token.actions.githubusercontent.com"), 5).unwrap();
        assert_eq!(ok.algorithms, "RS256 ES256");
        assert_eq!(ok.max_token_age, 3600);
        assert!(validate(spec("http://127.0.0.1:9/x"), 5).is_ok());
        assert!(validate(spec("http://ci.example.com"), 5).is_err());
        assert!(validate(spec("HTTPS://ci.example.com"), 5).is_err());
        assert!(validate(spec("https:ci.example.com"), 5).is_err());
        for algs in [vec![], vec!["none"], vec!["HS256"], vec!["RS256", "hs256"]] {
            let s = TrustedIssuerSpec {
                algorithms: Some(algs.iter().map(|a| (*a).to_owned()).collect()),
                ..spec("https://a.example")
            };
            assert!(validate(s, 5).is_err(), "{algs:?}");
        }
        for age in [0, 86401] {
            let s = TrustedIssuerSpec {
                max_token_age: Some(age),
                ..spec("https://a.example")
            };
            assert!(validate(s, 5).is_err(), "{age}");
        }
    }

    #[test]
    fn static_jwks_needs_a_usable_public_key() {
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let es = vec!["ES256".to_owned()];
        let rs = vec!["RS256".to_owned()];
        assert!(check_static_jwks(&json!({"keys": [ec]}), &es).is_ok());
        assert!(check_static_jwks(&json!({"keys": [ec]}), &rs).is_err());
        assert!(check_static_jwks(&json!({"keys": []}), &es).is_err());
        assert!(check_static_jwks(&json!([ec]), &es).is_err());
        let mut private = ec.clone();
        private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        assert!(check_static_jwks(&json!({"keys": [private]}), &es).is_err());
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(check_static_jwks(&json!({"keys": [oct]}), &es).is_err());
        // Schemathesis seed 777: a `kid` of null is not a string, so the
        // document refuses it, and so does the server.
        let mut null_kid = ec.clone();
        null_kid["kid"] = Value::Null;
        assert!(check_static_jwks(&json!({"keys": [null_kid]}), &es).is_err());
    }
}
