//! Opaque `tsr_…` tokens as a bearer presents them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::tokens::opaque::OpaqueToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = OpaqueToken::from_presented(text).parse() {
        assert!(text.starts_with("tsr_"), "{text:?} parsed");
        assert!(
            text.contains(&parsed.lookup),
            "the lookup comes from the token"
        );
    }
});
