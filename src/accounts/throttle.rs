//! Brute-force throttling of sign-in, per account and per client address,
//! counted in the database so that every replica sees the same attempts.
//!
//! Each bucket may fail `free_failures_*` times; every failure past that
//! blocks it for 2 s, 4 s, 8 s, ... up to `login.max_delay`. Every attempt
//! is counted before its password or code is checked (and taken back when
//! it turns out right), so a blocked bucket refuses an attempt before any
//! password is checked, however many arrive at once. An account bucket is
//! a keyed digest of the lowercased username, known or not, so an unknown
//! username is throttled exactly as a known one, and the table never holds
//! what someone typed as a username. Buckets idle for `failure_window` are
//! pruned, which bounds the table however many usernames are sprayed.
//!
//! Known browsers (OWASP's "device cookies"): a login that succeeds gives
//! the browser a cookie signed for that username and the time it was made,
//! good for [`DEVICE_COOKIE_LIFETIME_SECS`] (each login renews it, so a
//! stolen one does not serve for ever). Attempts from a browser
//! with a valid one count against a bucket of that browser's own instead of
//! the account's, so a stranger who fails on purpose until the account is
//! blocked does not lock its owner out; the stranger cannot make such a
//! cookie without the password. The address bucket applies to everyone.

use std::net::IpAddr;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::keys::hex;
use crate::oauth::Core;
use crate::store::{Admission, BucketPolicy, Settlement, StoreError, ThrottleStore};

/// The buckets one attempt counts against.
#[derive(Debug, Clone)]
pub struct Buckets {
    account: String,
    address: Option<String>,
}

impl Buckets {
    /// The buckets of an attempt on `username` from `remote`, by a browser
    /// that presents the device cookie `device` (if any).
    pub fn new(core: &Core, username: &str, remote: Option<&str>, device: Option<&str>) -> Self {
        let key = super::purpose_key(&core.digest_key, "tessera login throttle v1");
        let username = username.to_lowercase();
        // A known browser's bucket is keyed by its nonce too.
        let now = crate::clock::now();
        let (kind, subject) =
            match device.and_then(|d| device_nonce(&device_key(core), &username, d, now)) {
                Some(nonce) => ("d", format!("{username}\n{nonce}")),
                None => ("a", username),
            };
        let tag = hmac::sign(&key, subject.as_bytes());
        Buckets {
            account: format!("{kind}:{}", hex(&tag.as_ref()[..16])),
            address: remote
                .and_then(|r| r.parse::<IpAddr>().ok())
                .map(|ip| format!("ip:{}", crate::audit::host_of(ip))),
        }
    }

    fn all(&self) -> Vec<String> {
        std::iter::once(self.account.clone())
            .chain(self.address.clone())
            .collect()
    }
}

fn device_key(core: &Core) -> hmac::Key {
    super::purpose_key(&core.digest_key, "tessera login device v1")
}

/// How long a device cookie is good for after the login that made it
/// (half a year; the browser is told to keep it as long).
pub const DEVICE_COOKIE_LIFETIME_SECS: i64 = 180 * 24 * 3600;

/// A new device cookie value for a browser that just signed in as
/// `username`: `<nonce>.<issued at>.<HMAC(username, nonce, issued at)>`,
/// nonce and tag in base64url.
pub fn device_cookie(core: &Core, username: &str) -> String {
    let nonce = URL_SAFE_NO_PAD.encode(crate::random::random_bytes::<16>());
    let issued = crate::clock::now();
    let tag = device_tag(&device_key(core), &username.to_lowercase(), &nonce, issued);
    format!("{nonce}.{issued}.{tag}")
}

fn device_tag(key: &hmac::Key, username: &str, nonce: &str, issued: i64) -> String {
    let tag = hmac::sign(key, format!("{username}\n{nonce}\n{issued}").as_bytes());
    URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// The nonce of `cookie` when it is a device cookie signed for `username`
/// (lowercase) and still within its lifetime at `now`; the tag is compared
/// in constant time.
fn device_nonce<'a>(key: &hmac::Key, username: &str, cookie: &'a str, now: i64) -> Option<&'a str> {
    let mut parts = cookie.splitn(3, '.');
    let (nonce, issued, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if nonce.len() != 22
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || issued.is_empty()
        || issued.len() > 12
        || !issued.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let issued: i64 = issued.parse().ok()?;
    // A minute of leeway for replicas whose clocks differ.
    if issued > now + 60 || now - issued >= DEVICE_COOKIE_LIFETIME_SECS {
        return None;
    }
    let expected = device_tag(key, username, nonce, issued);
    bool::from(expected.as_bytes().ct_eq(tag.as_bytes())).then_some(nonce)
}

/// The block after `failures` failures in a bucket that allows `free`.
fn delay_after(failures: i64, free: u32, max_secs: i64) -> i64 {
    let over = failures - i64::from(free);
    if over <= 0 {
        return 0;
    }
    // 2^over seconds, without overflow.
    let doubled = 1i64.checked_shl(over.min(62) as u32).unwrap_or(i64::MAX);
    doubled.min(max_secs)
}

/// Admits one attempt before its credentials are checked: counts it in
/// every bucket, each past its free attempts blocking the bucket for a
/// growing delay, or answers the seconds until a blocked bucket frees up
/// (the attempt then counts nowhere). Counting first, atomically in the
/// store, is what bounds parallel guesses: with `free` attempts allowed,
/// at most `free + 1` of any number sent at once are ever checked.
pub async fn admit(core: &Core, buckets: &Buckets) -> Result<Option<u64>, StoreError> {
    let config = &core.config.login;
    let mut pairs = vec![(buckets.account.clone(), config.free_failures_per_account)];
    if let Some(address) = &buckets.address {
        pairs.push((address.clone(), config.free_failures_per_address));
    }
    admit_in(core, pairs).await
}

/// [`admit`] for any buckets, each with the failures it allows free
/// (the device page's guesses and requests use it too): the window and
/// the longest block are the login throttle's.
pub(crate) async fn admit_in(
    core: &Core,
    pairs: Vec<(String, u32)>,
) -> Result<Option<u64>, StoreError> {
    let config = &core.config.login;
    let now = crate::clock::now();
    let window_start = now - config.failure_window.as_secs() as i64;
    let max = config.max_delay.as_secs() as i64;
    let buckets: Vec<BucketPolicy> = pairs
        .into_iter()
        .map(|(bucket, free)| {
            let delay: Box<dyn Fn(i64) -> i64 + Send> =
                Box::new(move |attempts| delay_after(attempts, free, max));
            (bucket, delay)
        })
        .collect();
    match core
        .store
        .admit_attempts(buckets, now, window_start)
        .await?
    {
        Admission::Allowed => Ok(None),
        Admission::Blocked { until } => Ok(Some((until - now).max(1) as u64)),
    }
}

/// The admitted attempt was right but not yet a sign-in (the password of
/// a user who still owes a code): it is taken back from every bucket.
pub async fn not_a_failure(core: &Core, buckets: &Buckets) -> Result<(), StoreError> {
    for bucket in buckets.all() {
        core.store.refund_attempt(bucket).await?;
    }
    Ok(())
}

/// What a successful login settles in its sign-in transaction: its
/// account's attempts are cleared, and its own is taken back from its
/// address (whose other failures stay: one good password must not unlock a
/// spray from the same address).
pub fn settlement(buckets: &Buckets) -> Settlement {
    Settlement {
        clear: buckets.account.clone(),
        refund: buckets.address.clone(),
    }
}

/// Deletes idle buckets (the maintenance loop).
pub async fn purge(core: &Core) -> Result<usize, StoreError> {
    let window = core.config.login.failure_window.as_secs() as i64;
    core.store
        .purge_throttle(crate::clock::now() - window)
        .await
}

#[cfg(test)]
mod tests {
    use super::{DEVICE_COOKIE_LIFETIME_SECS, delay_after, device_nonce, device_tag};

    #[test]
    fn a_device_cookie_is_good_for_its_username_and_lifetime_only() {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[7; 32]);
        let nonce = "AAAAAAAAAAAAAAAAAAAAAA";
        let issued = 1_900_000_000;
        let cookie = format!(
            "{nonce}.{issued}.{}",
            device_tag(&key, "alice", nonce, issued)
        );
        assert_eq!(device_nonce(&key, "alice", &cookie, issued), Some(nonce));
        assert_eq!(device_nonce(&key, "mallory", &cookie, issued), None);
        let other_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[8; 32]);
        assert_eq!(device_nonce(&other_key, "alice", &cookie, issued), None);
        // Good until its lifetime ends; not before it was made.
        let last = issued + DEVICE_COOKIE_LIFETIME_SECS - 1;
        assert_eq!(device_nonce(&key, "alice", &cookie, last), Some(nonce));
        assert_eq!(device_nonce(&key, "alice", &cookie, last + 1), None);
        assert_eq!(device_nonce(&key, "alice", &cookie, issued - 61), None);
        // A changed issue time breaks the tag.
        let renewed = cookie.replace(&issued.to_string(), &(issued + 1000).to_string());
        assert_eq!(device_nonce(&key, "alice", &renewed, issued + 1000), None);
        for forged in [
            "",
            ".",
            "..",
            "AAAAAAAAAAAAAAAAAAAAAA..",
            "AAAAAAAAAAAAAAAAAAAAAA.-1.x",
            "AAAAAAAAAAAAAAAAAAAAAA.99999999999999999999.x",
            "x.y.z",
            &cookie[..cookie.len() - 1],
        ] {
            assert_eq!(
                device_nonce(&key, "alice", forged, issued),
                None,
                "{forged}"
            );
        }
    }

    #[test]
    fn delays_double_after_the_free_failures_and_are_capped() {
        assert_eq!(delay_after(5, 5, 900), 0);
        assert_eq!(delay_after(6, 5, 900), 2);
        assert_eq!(delay_after(7, 5, 900), 4);
        assert_eq!(delay_after(14, 5, 900), 512);
        assert_eq!(delay_after(15, 5, 900), 900);
        assert_eq!(delay_after(i64::MAX, 0, 900), 900);
    }
}
