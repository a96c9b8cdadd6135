//! JWTs: a client's assertion (RFC 7523 §3) and Tessera's own access
//! tokens at introspection. Odd first bytes give a raw token; even first
//! bytes give a header and claims (split at the first newline) that are
//! signed with a registered key first, so the claim checks behind the
//! signature are reached too.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tessera::oauth::assertion;
use tessera::tokens::jwt::verify_own;
use tessera_fuzz::{MAX_LIFETIME, fixture};

fn signed(header: &[u8], claims: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = fixture().es256().sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 1 {
        match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        }
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        signed(&rest[..split], rest.get(split + 1..).unwrap_or_default())
    };
    let fixture = fixture();
    let _ = assertion::unverified_subject(&token);
    let _ = assertion::verify(&token, &fixture.jwks, &fixture.expectations());
    let now = tessera::clock::now();
    let _ = verify_own::<serde_json::Value>(&fixture.own, &token, now, MAX_LIFETIME);
});
