//! Issue 13: an agent's token request (client_credentials with an EdDSA
//! `private_key_jwt` assertion and the shared replay store), against the
//! ES256 `private_key_jwt` rate of the same run (an Ed25519 verification
//! is cheaper than a P-256 one), and how long a registration takes.

use std::time::Instant;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};

use super::{Server, admin};

/// Registrations timed for the latency figures.
const REGISTRATIONS: usize = 50;

pub struct Agent {
    pub client_id: String,
    pub kid: String,
    pub key: EncodingKey,
}

fn new_key(kid: &str) -> (Value, EncodingKey) {
    let pair = Ed25519KeyPair::generate().unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                     "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
    let der = pair.to_pkcs8().unwrap();
    (jwk, EncodingKey::from_ed_der(der.as_ref()))
}

fn register(
    http: &reqwest::blocking::Client,
    server: &Server,
    bootstrap: &str,
    jwk: &Value,
) -> Value {
    let response = http
        .post(format!("{}/oauth/register", server.base))
        .bearer_auth(bootstrap)
        .json(
            &json!({"client_name": "bench-agent", "token_endpoint_auth_method": "private_key_jwt",
                      "grant_types": ["client_credentials"], "jwks": {"keys": [jwk]}}),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "registration");
    response.json().unwrap()
}

/// Registers `REGISTRATIONS` agents one after another, prints the latency
/// of a registration, and returns the first agent for the token scenario.
pub fn setup(server: &Server, service_user: &str) -> Agent {
    let created = admin(
        server,
        "/admin/v1/agents/bootstrap-tokens",
        json!({"service_user": service_user, "uses": REGISTRATIONS}),
    );
    let bootstrap = created["token"].as_str().unwrap().to_owned();
    let http = reqwest::blocking::Client::new();
    let mut first = None;
    let mut latencies = Vec::with_capacity(REGISTRATIONS);
    for i in 0..REGISTRATIONS {
        let kid = format!("agent-{i}");
        let (jwk, key) = new_key(&kid);
        let started = Instant::now();
        let answer = register(&http, server, &bootstrap, &jwk);
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        first.get_or_insert(Agent {
            client_id: answer["client_id"].as_str().unwrap().to_owned(),
            kid,
            key,
        });
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "  agent registration (RFC 7591, one at a time, {REGISTRATIONS}): p50 {:.2} ms   p99 {:.2} ms",
        at(0.5),
        at(0.99)
    );
    first.unwrap()
}
