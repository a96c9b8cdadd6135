//! The agent's Ed25519 key, made in memory, and the client assertions it
//! signs (RFC 7523 §2.2, RFC 8037).

use std::fmt;

use anyhow::anyhow;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::ASSERTION_LIFETIME;
use crate::random::random_base62;
use crate::secret::Secret;

/// The agent's Ed25519 key, generated in memory and never written anywhere.
/// It signs with the aws-lc key pair directly rather than through
/// jsonwebtoken, whose `EncodingKey` would keep a second copy of the private
/// key in a plain `Vec`: here the only copy is aws-lc's, which it cleanses
/// when the key is dropped.
pub(super) struct AgentKey {
    pub(super) pair: Ed25519KeyPair,
    pub(super) kid: String,
}

impl AgentKey {
    pub(super) fn generate() -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::generate().map_err(|_| anyhow!("cannot generate a key"))?;
        Ok(AgentKey {
            pair,
            kid: random_base62(16),
        })
    }

    /// RFC 8037 §2: the public half as an OKP JWK.
    pub(super) fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }

    /// RFC 7523 §3: a client assertion from `client_id` to `audience` (the
    /// issuer), valid for a minute, with a `jti` of its own so the server
    /// can refuse a replay.
    pub(super) fn assertion(&self, client_id: &str, audience: &str, now: i64) -> Secret {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": random_base62(22),
        });
        let signing_input = format!("{}.{}", base64_json(&header), base64_json(&claims));
        let signature = self.pair.sign(signing_input.as_bytes());
        Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("kid", &self.kid)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

pub(super) fn base64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::agent_run::{Registration, TokenResponse, unix_now};
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

    #[test]
    fn the_jwk_is_an_ed25519_public_key_and_nothing_more() {
        let key = AgentKey::generate().unwrap();
        let jwk = key.public_jwk();
        let fields: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 6, "{fields:?}");
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["kid"], key.kid.as_str());
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        assert_eq!(x, key.pair.public_key().as_ref());
        assert_eq!(x.len(), 32);
    }

    #[test]
    fn an_assertion_verifies_with_the_public_key() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let key = AgentKey::generate().unwrap();
        let public_key = |key: &AgentKey| {
            DecodingKey::from_ed_components(key.public_jwk()["x"].as_str().unwrap()).unwrap()
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["https://id.example.com"]);
        validation.set_issuer(&["client-1"]);
        let verify = |jwt: &Secret, key| decode::<Value>(jwt.expose(), key, &validation);
        let now = unix_now();
        let assertion = key.assertion("client-1", "https://id.example.com", now);

        let public = public_key(&key);
        let claims = verify(&assertion, &public).unwrap().claims;
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["exp"], now + 60);
        let header = decode_header(assertion.expose()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));

        let again = key.assertion("client-1", "https://id.example.com", now);
        let jti = verify(&again, &public).unwrap().claims["jti"].clone();
        assert_ne!(jti, claims["jti"], "each assertion has its own jti");
        let stranger = AgentKey::generate().unwrap();
        let stranger = public_key(&stranger);
        assert!(verify(&assertion, &stranger).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = AgentKey::generate().unwrap();
        assert_eq!(
            format!("{key:?}"),
            format!(
                "AgentKey {{ kid: {:?}, private_key: \"<redacted>\" }}",
                key.kid
            )
        );
        let registration: Registration = serde_json::from_value(json!({
            "client_id": "c1",
            "registration_access_token": "tsr_rat_s3cr3t",
            "registration_client_uri": "https://id.example.com/register/c1",
            "key_expires_at": 1_900_000_000,
        }))
        .unwrap();
        assert!(!format!("{registration:?}").contains("s3cr3t"));
        let token: TokenResponse =
            serde_json::from_value(json!({"access_token": "eyJs3cr3t", "expires_in": 900}))
                .unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"));
    }
}
