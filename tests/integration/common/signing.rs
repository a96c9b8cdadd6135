//! Keys a test signs assertions with, the way a client or service user
//! would: ES256, RS256 or EdDSA, with their public JWKs.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera::keys::{Alg, KeyMaterial};

pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub jwk: Value,
    encoding: EncodingKey,
    /// The public key's bytes, for the HMAC alg-confusion attack.
    pub public_bytes: Vec<u8>,
}

impl TestKey {
    pub fn es256(kid: &str) -> TestKey {
        let key = KeyMaterial::generate(Alg::ES256).unwrap();
        let jwk = key.public_jwk(kid);
        let der = key.to_pkcs8().unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            public_bytes: jwk.to_string().into_bytes(),
            jwk,
            encoding: EncodingKey::from_ec_der(&der),
        }
    }

    pub fn rs256(kid: &str) -> TestKey {
        let key = KeyMaterial::generate(Alg::RS256).unwrap();
        let jwk = key.public_jwk(kid);
        let der = key.to_pkcs8().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(&*der)
        );
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            public_bytes: jwk["n"].as_str().unwrap().as_bytes().to_vec(),
            jwk,
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        }
    }

    pub fn eddsa(kid: &str) -> TestKey {
        let pair = Ed25519KeyPair::generate().unwrap();
        let der = pair.to_pkcs8().unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&public), "kid": kid, "alg": "EdDSA", "use": "sig"});
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            public_bytes: public,
            jwk,
            encoding: EncodingKey::from_ed_der(der.as_ref()),
        }
    }

    /// The same key under the id a server assigned.
    pub fn with_kid(&self, kid: &str) -> TestKey {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        TestKey {
            kid: kid.into(),
            alg: self.alg,
            jwk,
            encoding: self.encoding.clone(),
            public_bytes: self.public_bytes.clone(),
        }
    }

    pub fn jwks(keys: &[&TestKey]) -> Value {
        json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// Signed without a `kid` (RFC 7523 does not ask for one).
    pub fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding).unwrap()
    }

    /// The HS256 attack: the public key used as an HMAC secret.
    pub fn sign_hs256_with_public_key(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(&self.public_bytes),
        )
        .unwrap()
    }
}

/// `alg: none` with no signature.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}
