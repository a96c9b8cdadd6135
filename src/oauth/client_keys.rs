//! The public keys a client verifies with: its registered `jwks`, or its
//! `jwks_uri`, fetched and cached, refetched when an assertion names an
//! unknown `kid` (at most once per cooldown, so a flood of bogus kids
//! cannot turn Tessera into a request amplifier).
//!
//! A `jwks_uri` is fetched by one request at a time (the others wait for
//! its answer), its body is read only up to the size cap, a failed fetch is
//! not retried before a backoff that doubles with each failure, and the
//! last keys fetched stay in use while fetches fail, so a brief outage of
//! the client's server (RFC 7591 §2 `jwks_uri`) does not lock it out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::OAuthError;
use super::client::Client;
use crate::keys::public::without_weak_keys;
use crate::outbound::KeySetState;

/// What is known about one `jwks_uri`.
#[derive(Default)]
struct Entry {
    state: KeySetState,
    /// Held while this URI is fetched.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

pub struct ClientKeys {
    http: reqwest::Client,
    entries: Mutex<HashMap<String, Entry>>,
    cache_for: Duration,
    refetch_cooldown: Duration,
}

/// What the cache can say about a URI without fetching it.
enum Cached {
    Keys(Arc<JwkSet>),
    Failing(String),
    Fetch,
}

impl ClientKeys {
    pub fn new(cache_for: Duration, refetch_cooldown: Duration) -> Self {
        ClientKeys {
            http: crate::outbound::client(),
            entries: Mutex::new(HashMap::new()),
            cache_for,
            refetch_cooldown,
        }
    }
}

fn unusable(detail: String) -> OAuthError {
    OAuthError::new(
        super::ErrorCode::InvalidClient,
        "the client's keys cannot be retrieved",
    )
    .with_detail(detail)
}

impl ClientKeys {
    /// The client's keys: `registered` (its parsed `jwks`), else its
    /// `jwks_uri`. `refresh` asks for a refetch of a `jwks_uri` (an unknown
    /// `kid`), honoured once per cooldown.
    pub async fn get(
        &self,
        client: &Client,
        registered: Option<&Arc<JwkSet>>,
        refresh: bool,
    ) -> Result<Option<Arc<JwkSet>>, OAuthError> {
        if let Some(jwks) = registered {
            return Ok(Some(jwks.clone()));
        }
        if client.jwks.is_some() {
            return Err(unusable("the registered jwks cannot be parsed".into()));
        }
        let Some(uri) = &client.jwks_uri else {
            return Ok(None);
        };
        let fetching = match self.cached(uri, refresh) {
            Ok(cached) => return cached.map(Some),
            Err(fetching) => fetching,
        };
        // Single flight: whoever waited here finds the fetch before it done.
        let _fetching = fetching.lock().await;
        if let Ok(cached) = self.cached(uri, refresh) {
            return cached.map(Some);
        }
        let fetched = self.fetch(uri).await;
        self.record(uri, fetched).map(Some)
    }

    /// The answer the cache holds for `uri`, or the lock to fetch it under.
    fn cached(
        &self,
        uri: &str,
        refresh: bool,
    ) -> Result<Result<Arc<JwkSet>, OAuthError>, Arc<tokio::sync::Mutex<()>>> {
        let mut entries = self.entries.lock().expect("jwks cache");
        let entry = entries.entry(uri.to_owned()).or_default();
        match self.judge(entry, refresh) {
            Cached::Keys(keys) => Ok(Ok(keys)),
            Cached::Failing(reason) => Ok(Err(unusable(format!("{uri}: {reason}")))),
            Cached::Fetch => Err(entry.fetching.clone()),
        }
    }

    fn judge(&self, entry: &Entry, refresh: bool) -> Cached {
        let now = Instant::now();
        let state = &entry.state;
        if let Some((keys, fetched)) = &state.good {
            let age = now.saturating_duration_since(*fetched);
            let wanted = age >= self.cache_for || (refresh && age >= self.refetch_cooldown);
            if !wanted {
                return Cached::Keys(keys.clone());
            }
        }
        match &state.good {
            Some((keys, _)) if state.backing_off(now) => Cached::Keys(keys.clone()),
            None if state.backing_off(now) => Cached::Failing(state.last_error.clone()),
            _ => Cached::Fetch,
        }
    }

    /// Stores a fetch's outcome; a failure falls back on the last good keys.
    fn record(
        &self,
        uri: &str,
        fetched: Result<JwkSet, String>,
    ) -> Result<Arc<JwkSet>, OAuthError> {
        let mut entries = self.entries.lock().expect("jwks cache");
        let entry = entries.entry(uri.to_owned()).or_default();
        let failed = fetched.as_ref().err().cloned();
        let recorded = entry.state.record(fetched, Instant::now());
        if let (Some(reason), Ok(_)) = (&failed, &recorded) {
            tracing::warn!(%uri, %reason, "jwks_uri fetch failed; keeping the last keys");
        }
        recorded.map_err(|reason| unusable(format!("{uri}: {reason}")))
    }

    /// Reads the key set, stopping as soon as it passes the size cap.
    async fn fetch(&self, uri: &str) -> Result<JwkSet, String> {
        crate::outbound::get_json(&self.http, uri)
            .await
            .map(without_weak_keys)
    }
}
