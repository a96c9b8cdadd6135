//! Randomness from the operating system, for secrets and identifiers.

use rand_core::{OsRng, RngCore};

/// The alphabet of identifiers, token bodies and token checksums.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A random string over `[0-9A-Za-z]`, for identifiers and token bodies.
/// Rejection sampling keeps every character equally likely.
pub fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in random_bytes::<64>() {
            // 248 = 4 * 62: bytes above it would bias the first characters.
            if byte < 248 && out.len() < len {
                out.push(BASE62[(byte % 62) as usize] as char);
            }
        }
    }
    out
}

/// A new record identifier.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
