//! The form bodies of the token, introspection and revocation endpoints
//! (RFC 6749 §3.2, read as `http/token.rs` reads them) and the Basic
//! credentials of RFC 6749 §2.3.1.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::oauth::client_auth::decode_basic;
use tessera::oauth::token::TokenRequest;

const PARAMETERS: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
    "assertion",
    "token",
    "token_type_hint",
];

fuzz_target!(|data: &[u8]| {
    let pairs = url::form_urlencoded::parse(data).into_owned().collect();
    match TokenRequest::from_pairs(pairs) {
        Ok(request) => {
            for name in PARAMETERS {
                let _ = request.get(name);
            }
            let _ = request.require("grant_type");
            let _ = request.credentials(None).methods_presented();
            let _ = request.targets();
        }
        Err(error) => assert!((400..500).contains(&error.status()), "{error}"),
    }
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = decode_basic(header);
    }
});
