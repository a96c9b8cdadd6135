//! Key sets and keys from outside: a `jwks_uri` body (as
//! `oauth/client_keys.rs` parses it), a client's registered `jwks` (RFC
//! 7517 §5, validated by the admin API and parsed by the client cache),
//! and a service user's public key (PEM or JWK). Each parsed set is then
//! used to verify an assertion that names no `kid`, so a one-key set
//! reaches algorithm pinning and signature checking.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use libfuzzer_sys::fuzz_target;
use tessera::keys::public::public_jwk;
use tessera::oauth::assertion;
use tessera::oauth::client::{Client, ClientSpec};
use tessera_fuzz::{CLIENT_ID, ISSUER, MAX_LIFETIME, fixture};

/// An ES256 assertion without `kid`, signed by the fixture's key.
fn assertion_without_kid() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let now = tessera::clock::now();
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT" });
        let claims = serde_json::json!({
            "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": ISSUER,
            "iat": now, "exp": now + 60, "jti": "fuzz",
        });
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut token);
        let signature = fixture().es256().sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    })
}

fn use_set(set: &JwkSet) {
    for jwk in &set.keys {
        let _ = DecodingKey::from_jwk(jwk);
    }
    let _ = assertion::verify(assertion_without_kid(), set, &fixture().expectations());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = serde_json::from_slice::<JwkSet>(data) {
        use_set(&set);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let spec = ClientSpec {
            token_endpoint_auth_method: Some("private_key_jwt".to_owned()),
            jwks: Some(value),
            ..ClientSpec::default()
        };
        let registered = Client::blank(CLIENT_ID.to_owned(), 0).apply(spec, MAX_LIFETIME);
        if let Ok(client) = registered {
            let jwks = client.jwks.expect("a registered jwks");
            if let Ok(set) = serde_json::from_value::<JwkSet>(jwks) {
                use_set(&set);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = public_jwk(text, "fuzz");
    }
});
