//! Key pairs Tessera signs with, held parsed in memory (aws-lc-rs), and
//! their public JWKs (RFC 7517 §4, RFC 7518 §6).
//!
//! Keys are parsed once at load: re-parsing per signature is what makes
//! jsonwebtoken's `encode` slower (see `docs/architecture.md`).

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The algorithms Tessera signs with (RFC 7518 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Alg {
    ES256,
    RS256,
}

impl Alg {
    pub const ALL: [Alg; 2] = [Alg::ES256, Alg::RS256];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
        }
    }

    pub fn parse(text: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.as_str() == text)
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid key material: {0}")]
pub struct KeyError(pub &'static str);

pub enum KeyMaterial {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({})", self.alg())
    }
}

impl KeyMaterial {
    /// A fresh P-256 or RSA-2048 key pair.
    pub fn generate(alg: Alg) -> Result<Self, KeyError> {
        match alg {
            Alg::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map(KeyMaterial::Es256)
                .map_err(|_| KeyError("P-256 key generation failed")),
            Alg::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map(KeyMaterial::Rs256)
                .map_err(|_| KeyError("RSA key generation failed")),
        }
    }

    pub fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<Self, KeyError> {
        match alg {
            Alg::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(KeyMaterial::Es256)
                .map_err(|_| KeyError("not a P-256 PKCS#8 key")),
            Alg::RS256 => RsaKeyPair::from_pkcs8(der)
                .map(KeyMaterial::Rs256)
                .map_err(|_| KeyError("not an RSA PKCS#8 key")),
        }
    }

    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let der = match self {
            KeyMaterial::Es256(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            KeyMaterial::Rs256(k) => k.as_der().map(|d| d.as_ref().to_vec()),
        };
        der.map(Zeroizing::new)
            .map_err(|_| KeyError("cannot serialise key"))
    }

    pub fn alg(&self) -> Alg {
        match self {
            KeyMaterial::Es256(_) => Alg::ES256,
            KeyMaterial::Rs256(_) => Alg::RS256,
        }
    }

    /// The JWS signature over `message` (RFC 7515 §5.1): for ES256 the
    /// fixed-width R || S form RFC 7518 §3.4 requires.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            KeyMaterial::Es256(k) => k
                .sign(&rng, message)
                .expect("ECDSA signing with a valid key cannot fail")
                .as_ref()
                .to_vec(),
            KeyMaterial::Rs256(k) => {
                let mut signature = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .expect("RSA signing with a valid key cannot fail");
                signature
            }
        }
    }

    /// The public members only (RFC 7517 §4, RFC 7518 §6.2.1 / §6.3.1).
    fn public_members(&self) -> Value {
        match self {
            KeyMaterial::Es256(k) => {
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = k.public_key().as_ref();
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                })
            }
            KeyMaterial::Rs256(k) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(&components.n),
                    "e": URL_SAFE_NO_PAD.encode(&components.e),
                })
            }
        }
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in
    /// lexicographic order, base64url. Used as the `kid`.
    pub fn thumbprint(&self) -> String {
        let members = self.public_members();
        let canonical = match self {
            KeyMaterial::Es256(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                members["x"].as_str().unwrap_or_default(),
                members["y"].as_str().unwrap_or_default()
            ),
            KeyMaterial::Rs256(_) => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                members["e"].as_str().unwrap_or_default(),
                members["n"].as_str().unwrap_or_default()
            ),
        };
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }

    /// The JWK as published in the JWKS document.
    pub fn public_jwk(&self, kid: &str) -> Value {
        let mut jwk = self.public_members();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg().as_str());
        jwk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_round_trip_keeps_the_key() {
        for alg in Alg::ALL {
            let key = KeyMaterial::generate(alg).unwrap();
            let again = KeyMaterial::from_pkcs8(alg, &key.to_pkcs8().unwrap()).unwrap();
            assert_eq!(key.thumbprint(), again.thumbprint());
            let jwk = key.public_jwk("k");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(jwk.get(private).is_none(), "{alg}: {private} published");
            }
        }
    }
}
