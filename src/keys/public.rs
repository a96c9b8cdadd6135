//! Public keys that users register (PEM SubjectPublicKeyInfo or JWK),
//! normalised to a public JWK with a `kid`.

use aws_lc_rs::rsa::{PublicKey as RsaPublicKey, PublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use serde_json::{Value, json};

use super::material::KeyError;

/// DER prefix of a P-256 SubjectPublicKeyInfo (RFC 5480): the uncompressed
/// point (65 bytes) follows.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): 32 bytes follow.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn pem_body(pem: &str) -> Result<Vec<u8>, KeyError> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    if !pem.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(KeyError(
            "expected a PEM public key (BEGIN PUBLIC KEY) or a JWK",
        ));
    }
    STANDARD
        .decode(body)
        .map_err(|_| KeyError("the PEM body is not base64"))
}

/// Reads a PEM public key or a JWK and returns the public JWK with `kid`,
/// `alg` and `use` set.
pub fn public_jwk(text: &str, kid: &str) -> Result<Value, KeyError> {
    let mut jwk = if text.trim_start().starts_with('{') {
        let jwk: Value = serde_json::from_str(text).map_err(|_| KeyError("the JWK is not JSON"))?;
        let alg = check_public_jwk(&jwk)?;
        let mut jwk = jwk;
        jwk["alg"] = json!(alg);
        jwk
    } else {
        let der = pem_body(text)?;
        if let Some(point) = der
            .strip_prefix(P256_SPKI_PREFIX)
            .filter(|p| p.len() == 65 && p[0] == 4)
        {
            json!({"kty": "EC", "crv": "P-256", "alg": "ES256",
                   "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
        } else if let Some(x) = der
            .strip_prefix(ED25519_SPKI_PREFIX)
            .filter(|x| x.len() == 32)
        {
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": URL_SAFE_NO_PAD.encode(x)})
        } else {
            let rsa = RsaPublicKey::from_der(&der)
                .map_err(|_| KeyError("the PEM key is not RSA, EC P-256 or Ed25519"))?;
            let parts = PublicKeyComponents::<Vec<u8>>::from(&rsa);
            json!({"kty": "RSA", "alg": "RS256",
                   "n": URL_SAFE_NO_PAD.encode(&parts.n), "e": URL_SAFE_NO_PAD.encode(&parts.e)})
        }
    };
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    Ok(jwk)
}

/// A JWK (RFC 7517 §4) the server can verify with: RSA, EC P-256 or OKP
/// Ed25519, its key members present as strings, no private members, and
/// the common members well typed; as the API document's `Jwk` schema says.
/// Returns the algorithm the key signs with.
pub fn check_public_jwk(jwk: &Value) -> Result<&'static str, KeyError> {
    // RFC 7517 §6.2.2, §6.3.2, §6.4: members only a private or symmetric
    // key has.
    if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|m| jwk.get(m).is_some())
    {
        return Err(KeyError(
            "the JWK holds private members: give the public key only",
        ));
    }
    if !common_members_well_typed(jwk) {
        return Err(KeyError(
            "use, kid, alg, x5u, x5t and x5t#S256 must be strings, key_ops and x5c arrays of strings",
        ));
    }
    let (alg, members): (_, &[&str]) = match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("RSA"), _) => ("RS256", &["n", "e"]),
        (Some("EC"), Some("P-256")) => ("ES256", &["x", "y"]),
        (Some("OKP"), Some("Ed25519")) => ("EdDSA", &["x"]),
        _ => return Err(KeyError("keys must be RSA, EC P-256 or OKP Ed25519")),
    };
    if !members.iter().all(|m| jwk[m].is_string()) {
        return Err(KeyError("the JWK is missing members"));
    }
    serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone())
        .map_err(|_| KeyError("the JWK is missing members"))?;
    Ok(alg)
}

/// RFC 7517 §4: the members every JWK may have are strings (`key_ops` and
/// `x5c`: arrays of strings). The JWK parser reads a mistyped one as absent,
/// so it is refused here, as the API document's `Jwk` schema says.
fn common_members_well_typed(key: &serde_json::Value) -> bool {
    let text = ["use", "kid", "alg", "x5u", "x5t", "x5t#S256"]
        .iter()
        .all(|m| key.get(m).is_none_or(serde_json::Value::is_string));
    let lists = ["key_ops", "x5c"].iter().all(|m| {
        key.get(m).is_none_or(|v| {
            v.as_array()
                .is_some_and(|items| items.iter().all(serde_json::Value::is_string))
        })
    });
    text && lists
}

/// Whether `x` encodes an Ed25519 point of large order, canonically. A
/// small-order point (the identity, say) lets a signature made without any
/// private key verify: RFC 8032 §5.1.7 does not exclude such keys, and the
/// verifier used does not either.
pub fn is_strong_ed25519(x: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 32]>::try_from(x) else {
        return false;
    };
    let compressed = curve25519_dalek::edwards::CompressedEdwardsY(bytes);
    compressed
        .decompress()
        .is_some_and(|point| !point.is_small_order() && point.compress() == compressed)
}

/// The key set without Ed25519 keys any signature would verify with (see
/// [`is_strong_ed25519`]). Applied wherever a set is loaded to verify with
/// (registered, fetched or configured), once per load, not per request.
pub fn without_weak_keys(mut set: JwkSet) -> JwkSet {
    set.keys.retain(|jwk| match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            URL_SAFE_NO_PAD
                .decode(&okp.x)
                .is_ok_and(|x| is_strong_ed25519(&x))
        }
        _ => true,
    });
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_ed25519_keys_are_left_out_of_a_set() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let strong = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": URL_SAFE_NO_PAD.encode(identity)},
            {"kty": "OKP", "crv": "Ed25519", "kid": "strong", "x": strong},
            {"kty": "EC", "crv": "P-256", "kid": "ec",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]}))
        .unwrap();
        let kids: Vec<_> = without_weak_keys(set)
            .keys
            .into_iter()
            .filter_map(|k| k.common.key_id)
            .collect();
        assert_eq!(kids, ["strong", "ec"]);
    }
}
