//! JWS compact serialisation (RFC 7515 §7.1) over a cached key pair.
//!
//! Signing goes straight to aws-lc-rs with the key parsed once at load;
//! `docs/architecture.md` has the measurements behind that choice.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::json;

use crate::keys::LoadedKey;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no signing key is active for this algorithm")]
    NoActiveKey,
    #[error("claims could not be serialised: {0}")]
    Claims(#[from] serde_json::Error),
}

/// Signs `claims` with `key`, with `typ` in the header (`JWT`, or `at+jwt`
/// for RFC 9068 §2.1 access tokens) and the key's `kid`.
pub fn sign(key: &LoadedKey, typ: &str, claims: &impl Serialize) -> Result<String, SignError> {
    let material = key.material().ok_or(SignError::NoActiveKey)?;
    let header = json!({ "alg": key.alg.as_str(), "typ": typ, "kid": key.kid });
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
    let signature = material.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}
