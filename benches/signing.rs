//! What one ES256 (and RS256) access-token signature costs with each
//! backend we could use. `cargo bench --bench signing` prints µs per token.
//!
//! Each row does the whole job: serialise header and claims, base64url,
//! sign, assemble the compact JWS. The jsonwebtoken rows call the provider's
//! signer factory per token, which is exactly what `jsonwebtoken::encode`
//! does inside (it re-parses the key on every call).

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::{CryptoProvider, aws_lc, rust_crypto};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::DecodePrivateKey;
use serde_json::json;
use tessera::keys::material::{Alg, KeyMaterial};

const RUN_FOR: Duration = Duration::from_secs(2);

fn measure(name: &str, mut sign: impl FnMut() -> String) {
    for _ in 0..50 {
        black_box(sign());
    }
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < RUN_FOR {
        for _ in 0..50 {
            black_box(sign());
        }
        count += 50;
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    println!(
        "{name:<58} {micros:>8.1} µs/token {:>9.0} tokens/s/core",
        1e6 / micros
    );
}

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://id.example.com", "sub": "svc-deploy", "aud": "https://api.example.com",
        "exp": 1_900_000_000, "iat": 1_899_999_100, "jti": "b3f6a8a4-59c1-4f4e-9d9c-6f0d1d1e2a7b",
        "client_id": "svc-deploy", "scope": "deploy:write",
    })
}

fn jsonwebtoken_row(
    provider: &'static CryptoProvider,
    alg: Algorithm,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some("kid".into());
    let signer = (provider.signer_factory)(&alg, key).unwrap();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap())
    );
    let signature = signer.try_sign(message.as_bytes()).unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn main() {
    let _ = aws_lc::DEFAULT_PROVIDER.install_default();
    let es = KeyMaterial::generate(Alg::ES256).unwrap();
    let rs = KeyMaterial::generate(Alg::RS256).unwrap();
    let es_der = es.to_pkcs8().unwrap();

    // Tessera's path: the aws-lc-rs key pair parsed once, held in the ring.
    let records = vec![
        tessera::store::SigningKeyRecord::seal(&es, 1, &master(), 0, 0).unwrap(),
        tessera::store::SigningKeyRecord::seal(&rs, 1, &master(), 0, 0).unwrap(),
    ];
    let set = tessera::keys::KeySet::from_records(records, &master(), 1).unwrap();
    let es_key = set.signer(Alg::ES256, 1).unwrap();
    let rs_key = set.signer(Alg::RS256, 1).unwrap();

    println!("ES256 access token, one core:");
    measure("tessera (aws-lc-rs EcdsaKeyPair, parsed once)", || {
        tessera::tokens::jwt::sign(es_key, "at+jwt", &claims()).unwrap()
    });
    let es_encoding = EncodingKey::from_ec_der(&es_der);
    measure(
        "jsonwebtoken 11, aws_lc_rs provider, cached EncodingKey",
        || jsonwebtoken_row(&aws_lc::DEFAULT_PROVIDER, Algorithm::ES256, &es_encoding),
    );
    let p256_key = p256::ecdsa::SigningKey::from_pkcs8_der(&es_der).unwrap();
    measure("p256 0.14 SigningKey, parsed once", || {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "kid"});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap())
        );
        let signature: p256::ecdsa::Signature =
            p256::ecdsa::signature::Signer::sign(&p256_key, message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    });
    measure(
        "jsonwebtoken 11, rust_crypto provider, cached EncodingKey",
        || {
            jsonwebtoken_row(
                &rust_crypto::DEFAULT_PROVIDER,
                Algorithm::ES256,
                &es_encoding,
            )
        },
    );

    verification();

    println!("RS256 (RSA-2048) ID token, one core:");
    measure("tessera (aws-lc-rs RsaKeyPair, parsed once)", || {
        tessera::tokens::jwt::sign(rs_key, "JWT", &claims()).unwrap()
    });
}

/// What checking one ES256 client assertion costs (`private_key_jwt`).
fn verification() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey, UnparsedPublicKey};
    use tessera::oauth::assertion::{self, Expectations, ReplayKey};

    let client = KeyMaterial::generate(Alg::ES256).unwrap();
    let now = tessera::clock::now();
    let claims = json!({"iss": "svc", "sub": "svc", "aud": "https://id.example.com/oauth/token",
                        "exp": now + 240, "jti": "b3f6a8a4-59c1-4f4e-9d9c-6f0d1d1e2a7b"});
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"c1"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let signature = client.sign(message.as_bytes());
    let token = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&signature));
    let jwk = client.public_jwk("c1");
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(json!({"keys": [jwk.clone()]})).unwrap();
    let audiences = ["https://id.example.com/oauth/token".to_owned()];
    let expect = Expectations {
        subject: "svc",
        audiences: &audiences,
        max_lifetime: Duration::from_secs(300),
        max_age: None,
        replay_key: ReplayKey::Jti,
        error: tessera::oauth::ErrorCode::InvalidClient,
    };
    println!("ES256 client assertion, one core:");
    measure(
        "tessera assertion::verify (header, key, signature, claims)",
        || {
            assertion::verify(&token, &jwks, &expect)
                .unwrap()
                .jti
                .unwrap()
        },
    );
    let mut point = vec![4u8];
    for coordinate in ["x", "y"] {
        point.extend(
            URL_SAFE_NO_PAD
                .decode(jwk[coordinate].as_str().unwrap())
                .unwrap(),
        );
    }
    measure("aws-lc-rs signature only, key parsed per call", || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(message.as_bytes(), &signature)
            .unwrap();
        String::new()
    });
    let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).unwrap();
    measure("aws-lc-rs signature only, key parsed once", || {
        parsed.verify_sig(message.as_bytes(), &signature).unwrap();
        String::new()
    });
}

fn master() -> tessera::keys::MasterKey {
    tessera::keys::MasterKey::from_bytes([1; 32])
}
