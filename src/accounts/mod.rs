//! People: users and their passwords (argon2id), sessions, sign-in
//! throttling, TOTP second factors, and the password and second-factor
//! steps of a login. Like `oauth/`, nothing here knows about HTTP: the
//! pages in `http::pages` call these and render what they return.

mod hashers;
pub mod login;
mod password_memory;
pub mod passwords;
pub mod sessions;
pub mod syntax;
pub mod throttle;
pub mod totp;
pub mod users;

use aws_lc_rs::hmac;

/// A key for one purpose, derived from the token digest key, so that a
/// digest or signature made for one purpose never verifies for another.
pub fn purpose_key(digest_key: &hmac::Key, purpose: &str) -> hmac::Key {
    let derived = hmac::sign(digest_key, purpose.as_bytes());
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}
