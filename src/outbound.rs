//! Outbound fetches of small JSON documents: a client's `jwks_uri`, a
//! trusted issuer's discovery document and key set. Time-limited, never
//! redirected, and read only up to a size cap: the body is streamed and
//! the fetch stops as soon as it passes the cap, so a hostile or broken
//! server cannot make Tessera buffer an unbounded answer.

use std::time::Duration;

use serde::de::DeserializeOwned;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Far above any real key set or discovery document (GitHub's key set is
/// about 3 KiB, a discovery document a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// An HTTP client for [`get_json`]: short timeout, no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with static settings")
}

/// GETs `uri` and parses its body as JSON, reading at most
/// [`MAX_DOCUMENT_BYTES`]. The error says why, for the log.
pub async fn get_json<T: DeserializeOwned>(http: &reqwest::Client, uri: &str) -> Result<T, String> {
    let too_large = || format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes");
    let mut response = http.get(uri).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// No fetch for this long after a failed one, doubled per further failure.
const FIRST_FAILURE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(60);

/// What the fetches of one key set have left: the last good keys, and the
/// backoff after failures. Shared by a client's `jwks_uri` and a trusted
/// issuer's keys; each cache decides for itself when to fetch again.
#[derive(Default)]
pub struct KeySetState {
    /// The last keys fetched, and when.
    pub good: Option<(
        std::sync::Arc<jsonwebtoken::jwk::JwkSet>,
        std::time::Instant,
    )>,
    /// Consecutive failed fetches, and no fetch before this instant.
    failures: u32,
    retry_at: Option<std::time::Instant>,
    /// Why the last fetch failed (for the log and the refusal).
    pub last_error: String,
}

impl KeySetState {
    /// Whether a failed fetch forbids another one at `now`.
    pub fn backing_off(&self, now: std::time::Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }

    /// Stores a fetch's outcome: fresh keys, or on a failure the last good
    /// keys while the backoff doubles; `Err` (why) when there are none.
    pub fn record(
        &mut self,
        fetched: Result<jsonwebtoken::jwk::JwkSet, String>,
        now: std::time::Instant,
    ) -> Result<std::sync::Arc<jsonwebtoken::jwk::JwkSet>, String> {
        match fetched {
            Ok(keys) => {
                let keys = std::sync::Arc::new(keys);
                self.good = Some((keys.clone(), now));
                self.failures = 0;
                self.retry_at = None;
                Ok(keys)
            }
            Err(reason) => {
                let backoff = FIRST_FAILURE_BACKOFF
                    .saturating_mul(1 << self.failures.min(16))
                    .min(MAX_FAILURE_BACKOFF);
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Some(now + backoff);
                self.last_error.clone_from(&reason);
                match &self.good {
                    Some((keys, _)) => Ok(keys.clone()),
                    None => Err(reason),
                }
            }
        }
    }
}
