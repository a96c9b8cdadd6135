//! The public keys of trusted issuers, from their OpenID discovery document
//! and key set (OIDC Discovery §4; RFC 8414 §3), cached.
//!
//! Only issuers an administrator configured are ever fetched: the caller
//! looks the issuer up in the trust configuration first, whatever a token
//! claims. Per issuer:
//!
//! - the keys are cached for `federation.keys_cache`;
//! - a token naming an unknown `kid` triggers one refetch, then none for
//!   [`UNKNOWN_KID_COOLDOWN`], so attacker-chosen `kid`s cannot cause a
//!   refetch storm (an issuer rotating its keys is seen at once);
//! - one fetch is in flight at a time; the others wait for its answer;
//! - a failed fetch is not retried before a backoff that doubles per
//!   failure, and the last good keys stay in use meanwhile;
//! - an empty key set is a failure, never cached: it would lock everyone
//!   out until the cache expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::issuers::may_fetch_keys_from;
use crate::keys::public::without_weak_keys;
use crate::outbound::{self, KeySetState};

/// At most one refetch per issuer for an unknown `kid` in this time
/// (issue 9: at least 60 s).
pub const UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Entry {
    state: KeySetState,
    /// When a token's unknown `kid` last caused a refetch.
    unknown_kid_refetch: Option<Instant>,
    /// When the last fetch ended, whatever its outcome.
    last_fetch: Option<Instant>,
    fetching: Arc<tokio::sync::Mutex<()>>,
}

/// What the cache can say without fetching.
enum Cached {
    Keys(Arc<JwkSet>),
    Failing(String),
    Fetch,
}

pub struct IssuerKeys {
    http: reqwest::Client,
    entries: Mutex<HashMap<String, Entry>>,
    cache_for: Duration,
}

/// Why no keys could be had for an issuer (for the audit log).
#[derive(Debug)]
pub struct KeysUnavailable(pub String);

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl IssuerKeys {
    pub fn new(cache_for: Duration) -> Self {
        IssuerKeys {
            http: outbound::client(),
            entries: Mutex::new(HashMap::new()),
            cache_for,
        }
    }

    /// The keys of `issuer` (a configured issuer's exact URL). With
    /// `unknown_kid`, a token named a `kid` the cached keys lack: refetch,
    /// if the cooldown allows.
    pub async fn get(
        &self,
        issuer: &str,
        unknown_kid: bool,
    ) -> Result<Arc<JwkSet>, KeysUnavailable> {
        let asked = Instant::now();
        let fetching = match self.cached(issuer, unknown_kid, asked) {
            Ok(cached) => return cached,
            Err(fetching) => fetching,
        };
        let _single_flight = fetching.lock().await;
        // A fetch that ended while this one waited answers for it too.
        if let Some(answer) = self.fetched_since(issuer, asked) {
            return answer;
        }
        let fetched = self.fetch(issuer).await;
        self.record(issuer, fetched)
    }

    /// What the last fetch left, if it ended after `asked`.
    fn fetched_since(
        &self,
        issuer: &str,
        asked: Instant,
    ) -> Option<Result<Arc<JwkSet>, KeysUnavailable>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(issuer)?;
        if entry.last_fetch.is_none_or(|at| at < asked) {
            return None;
        }
        Some(match &entry.state.good {
            Some((keys, _)) => Ok(keys.clone()),
            None => Err(KeysUnavailable(entry.state.last_error.clone())),
        })
    }

    fn cached(
        &self,
        issuer: &str,
        unknown_kid: bool,
        now: Instant,
    ) -> Result<Result<Arc<JwkSet>, KeysUnavailable>, Arc<tokio::sync::Mutex<()>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(issuer.to_owned()).or_default();
        match self.judge(entry, unknown_kid, now) {
            Cached::Keys(keys) => Ok(Ok(keys)),
            Cached::Failing(reason) => Ok(Err(KeysUnavailable(reason))),
            Cached::Fetch => {
                if unknown_kid {
                    entry.unknown_kid_refetch = Some(now);
                }
                Err(entry.fetching.clone())
            }
        }
    }

    fn judge(&self, entry: &Entry, unknown_kid: bool, now: Instant) -> Cached {
        let backing_off = entry.state.backing_off(now);
        match &entry.state.good {
            Some((keys, fetched)) => {
                let stale = now.saturating_duration_since(*fetched) >= self.cache_for;
                let may_refetch = unknown_kid
                    && entry
                        .unknown_kid_refetch
                        .is_none_or(|at| now.saturating_duration_since(at) >= UNKNOWN_KID_COOLDOWN);
                if backing_off || !(stale || may_refetch) {
                    Cached::Keys(keys.clone())
                } else {
                    Cached::Fetch
                }
            }
            None if backing_off => Cached::Failing(entry.state.last_error.clone()),
            None => Cached::Fetch,
        }
    }

    fn record(
        &self,
        issuer: &str,
        fetched: Result<JwkSet, String>,
    ) -> Result<Arc<JwkSet>, KeysUnavailable> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(issuer.to_owned()).or_default();
        let now = Instant::now();
        entry.last_fetch = Some(now);
        let failed = fetched.as_ref().err().cloned();
        let recorded = entry.state.record(fetched, now);
        if let Some(reason) = &failed {
            let kept_last_keys = recorded.is_ok();
            tracing::warn!(%issuer, %reason, kept_last_keys, "trusted issuer's keys could not be fetched");
        }
        recorded.map_err(KeysUnavailable)
    }

    /// Discovery, then the key set it names. The discovery document must
    /// name this issuer (OIDC Discovery §4.3), and its `jwks_uri` must pass
    /// [`may_fetch_keys_from`].
    async fn fetch(&self, issuer: &str) -> Result<JwkSet, String> {
        let discovery_url = format!("{issuer}/.well-known/openid-configuration");
        let discovery: Discovery = outbound::get_json(&self.http, &discovery_url)
            .await
            .map_err(|e| format!("discovery: {e}"))?;
        if discovery.issuer != issuer {
            return Err("discovery: the document names another issuer".into());
        }
        if !may_fetch_keys_from(issuer, &discovery.jwks_uri) {
            return Err(
                "discovery: jwks_uri must be https, and on a loopback or private address only \
                 when the issuer is on that host"
                    .into(),
            );
        }
        let keys: JwkSet = outbound::get_json(&self.http, &discovery.jwks_uri)
            .await
            .map_err(|e| format!("jwks: {e}"))
            .map(without_weak_keys)?;
        if keys.keys.is_empty() {
            return Err("jwks: the key set is empty".into());
        }
        Ok(keys)
    }
}
