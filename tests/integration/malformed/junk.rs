//! The pieces of malformed requests: values, form bodies, JSON, JWTs and
//! credentials that are wrong in the ways clients and attackers get them
//! wrong (control characters, invalid UTF-8, bad percent-encoding,
//! truncation, sizes past the limits, nesting past the parser's depth).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

pub fn random_bytes(rng: &mut StdRng, length: std::ops::Range<usize>) -> Vec<u8> {
    let n = rng.gen_range(length);
    (0..n).map(|_| rng.r#gen::<u8>()).collect()
}

pub fn base62(rng: &mut StdRng, length: std::ops::Range<usize>) -> String {
    let n = rng.gen_range(length);
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| char::from(*ALPHABET.choose(rng).expect("alphabet")))
        .collect()
}

/// A path segment for `{id}`: plausible, percent-encoded junk, or long.
pub fn path_id(rng: &mut StdRng) -> Vec<u8> {
    match rng.gen_range(0..6) {
        0 => b"%00".to_vec(),
        1 => b"%FF%FE".to_vec(),
        2 => b"..%2F..%2Fetc".to_vec(),
        3 => base62(rng, 2000..6000).into_bytes(),
        4 => b"%".to_vec(),
        _ => base62(rng, 1..40).into_bytes(),
    }
}

/// A JWT-looking string, cut or bent somewhere.
pub fn truncated_jwt(rng: &mut StdRng) -> String {
    let alg = ["ES256", "RS256", "EdDSA", "none", "HS256", ""].choose(rng);
    let header = serde_json::json!({ "alg": alg, "kid": base62(rng, 8..9), "typ": "JWT" });
    let id = base62(rng, 12..13);
    let claims = serde_json::json!({
        "iss": id, "sub": id, "aud": "http://127.0.0.1",
        "exp": rng.gen_range(-1i64..i64::MAX), "iat": 0, "jti": base62(rng, 10..11),
    });
    let signature = random_bytes(rng, 0..300);
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    );
    match rng.gen_range(0..6) {
        0 => token[..rng.gen_range(0..token.len())].to_owned(),
        1 => token.replacen('.', "", 1),
        2 => format!("{token}.{}", base62(rng, 5..6)),
        3 => token.replace('.', ".."),
        4 => format!("{token}==/+"),
        _ => token,
    }
}

/// A form value as it appears on the wire.
pub fn junk_value(rng: &mut StdRng) -> Vec<u8> {
    let text = match rng.gen_range(0..16) {
        0 => format!("%{:02X}", rng.gen_range(0u8..0x20)),
        1 => "%7F%00%0D%0A".to_owned(),
        2 => ["%FF%FE", "%C3%28", "%ED%A0%80", "%F4%90%80%80", "%C0%AF"]
            .choose(rng)
            .expect("encodings")
            .to_string(),
        3 => ["%", "%G1", "%2", "%%", "%u0041"]
            .choose(rng)
            .expect("escapes")
            .to_string(),
        4 => return random_bytes(rng, 1..64),
        // Now and then past the 64 KB body limit (413).
        5 if rng.gen_ratio(1, 10) => "A".repeat(rng.gen_range(66_000..70_000)),
        5 => "A".repeat(rng.gen_range(1000..8000)),
        6 => "%E2%80%AE%F0%9F%94%91%22%5C".to_owned(),
        7 | 8 => truncated_jwt(rng),
        9 => format!("tsr_bt_{}", base62(rng, 0..60)),
        10 => "+++&&==;;".to_owned(),
        11 => [
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "openid",
            "access_token",
        ]
        .choose(rng)
        .expect("values")
        .to_string(),
        12 => format!(
            "scope%20with%09tab%20{}",
            "x ".repeat(rng.gen_range(0..500))
        ),
        13 => String::new(),
        _ => base62(rng, 1..80),
    };
    text.into_bytes()
}

const FORM_NAMES: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
    "assertion",
    "audience",
    "resource",
    "token",
    "token_type_hint",
    "response_type",
    "redirect_uri",
];

pub fn junk_form(rng: &mut StdRng) -> Vec<u8> {
    if rng.gen_ratio(1, 10) {
        // The issue's case: a NUL client_id beside an assertion.
        let assertion = truncated_jwt(rng);
        return format!(
            "grant_type=client_credentials&client_id=%00&client_assertion_type=\
             urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion={assertion}"
        )
        .into_bytes();
    }
    let mut body = Vec::new();
    for i in 0..rng.gen_range(0..8) {
        if i > 0 {
            body.push(b'&');
        }
        if rng.gen_ratio(1, 8) {
            body.extend(junk_value(rng));
        } else {
            body.extend(FORM_NAMES.choose(rng).expect("names").as_bytes());
        }
        if !rng.gen_ratio(1, 12) {
            body.push(b'=');
            body.extend(junk_value(rng));
        }
    }
    body.truncate(80_000);
    body
}

/// JSON that is malformed, or well-formed with the wrong shape.
pub fn junk_json(rng: &mut StdRng) -> Vec<u8> {
    match rng.gen_range(0..8) {
        0 => br#"{"name": 5, "grant_types": {}, "jwks": "x"}"#.to_vec(),
        1 => br#"{"access_token_lifetime": 1e999999, "name": "a", "name": "b"}"#.to_vec(),
        2 => br#"{"zzz": [1, 2, 3], "alg": "none"}"#.to_vec(),
        3 => br#"{"alg": "HS256"}"#.to_vec(),
        4 => br#"  "#.to_vec(),
        5 => format!(
            r#"{{"name": "{}"}}"#,
            "n".repeat(rng.gen_range(300..20_000))
        )
        .into_bytes(),
        _ => invalid_json(rng),
    }
}

/// A body that is never a valid JSON document.
pub fn invalid_json(rng: &mut StdRng) -> Vec<u8> {
    let document = br#"{"name": "x", "alg": "ES256", "scope": "a b", "jwks": {"keys": []}}"#;
    match rng.gen_range(0..7) {
        0 => document[..rng.gen_range(1..document.len())].to_vec(),
        1 => {
            let depth = rng.gen_range(129..5000);
            let mut nested = b"[".repeat(depth);
            nested.extend(b"]".repeat(depth));
            nested
        }
        2 => br#"{"a":"#.repeat(rng.gen_range(129..2000)),
        3 => [
            &br#"{"name": ""#[..],
            &random_bytes(rng, 1..64),
            b"\xff\xfe\"}",
        ]
        .concat(),
        4 => b"{\"name\": \"a\x01\x00b\"}".to_vec(),
        5 => br#"{"name": "\uD800\x"}"#.to_vec(),
        _ => [&document[..], b"}garbage"].concat(),
    }
}

pub fn junk_authorization(rng: &mut StdRng) -> Vec<u8> {
    let text = match rng.gen_range(0..10) {
        0 => format!("Basic {}", STANDARD.encode(random_bytes(rng, 0..64))),
        1 => format!("Basic {}", base62(rng, 1..30)),
        2 => "Basic".to_owned(),
        3 => format!("Bearer {}", truncated_jwt(rng)),
        4 => format!("Bearer tsr_bt_{}", base62(rng, 49..50)),
        5 => format!("bEaReR   {}", base62(rng, 20..21)),
        6 => format!("Bearer {}", "A".repeat(rng.gen_range(1000..10_000))),
        7 => "Negotiate YII=".to_owned(),
        8 => {
            let mut value = b"Bearer ".to_vec();
            value.extend((0..20).map(|_| rng.gen_range(0x80u8..=0xff)));
            return value;
        }
        _ => format!(
            "Basic {}",
            STANDARD.encode(format!("%00:{}", base62(rng, 8..9)))
        ),
    };
    text.into_bytes()
}
