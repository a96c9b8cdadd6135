//! JWS compact serialisation (RFC 7515 §7.1) over a cached key pair.
//!
//! Signing goes straight to aws-lc-rs with the key parsed once at load;
//! `docs/architecture.md` has the measurements behind that choice.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::json;

use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::keys::{KeySet, KeyStatus, LoadedKey};

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

/// Why a token is not one of ours, or not valid any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("no published key has this kid, or the algorithm does not match it")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
}

fn segment(text: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| VerifyError::Malformed)
}

/// Verifies a JWT that Tessera signed: the `kid` must name a published key,
/// the header `alg` must be that key's algorithm (never the token's
/// choice), and the signature must verify. Returns the header `typ` and
/// the claims; the caller checks expiry and the rest.
pub fn verify_own<C: DeserializeOwned>(
    set: &KeySet,
    token: &str,
    now: i64,
    max_lifetime: std::time::Duration,
) -> Result<(Option<String>, C), VerifyError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let header_json: Value =
        serde_json::from_slice(&segment(header)?).map_err(|_| VerifyError::Malformed)?;
    let kid = header_json["kid"].as_str().ok_or(VerifyError::UnknownKey)?;
    let key = set
        .keys()
        .iter()
        .find(|k| k.kid == kid && set.status(k, now, max_lifetime) != KeyStatus::Expired)
        .ok_or(VerifyError::UnknownKey)?;
    if header_json["alg"].as_str() != Some(key.alg.as_str()) {
        return Err(VerifyError::UnknownKey);
    }
    let signed = &token[..header.len() + 1 + payload.len()];
    let signature = segment(signature)?;
    let jwk = &key.public_jwk;
    let member = |name: &str| {
        jwk[name]
            .as_str()
            .ok_or(VerifyError::UnknownKey)
            .and_then(segment)
    };
    let verified = match key.alg {
        crate::keys::Alg::ES256 => {
            let mut point = vec![4u8];
            point.extend(member("x")?);
            point.extend(member("y")?);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &signature)
        }
        crate::keys::Alg::RS256 => PublicKeyComponents {
            n: member("n")?,
            e: member("e")?,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature),
    };
    verified.map_err(|_| VerifyError::BadSignature)?;
    let claims = serde_json::from_slice(&segment(payload)?).map_err(|_| VerifyError::Malformed)?;
    Ok((header_json["typ"].as_str().map(str::to_owned), claims))
}
