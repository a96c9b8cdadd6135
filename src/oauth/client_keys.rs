//! The public keys a client verifies with: its registered `jwks`, or its
//! `jwks_uri`, fetched and cached, refetched when an assertion names an
//! unknown `kid` (at most once per cooldown, so a flood of bogus kids
//! cannot turn Tessera into a request amplifier).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::OAuthError;
use super::client::Client;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 256 * 1024;

struct Cached {
    keys: Arc<JwkSet>,
    fetched: Instant,
}

pub struct ClientKeys {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
    cache_for: Duration,
    refetch_cooldown: Duration,
}

impl ClientKeys {
    pub fn new(cache_for: Duration, refetch_cooldown: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with static settings");
        ClientKeys {
            http,
            cache: Mutex::new(HashMap::new()),
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
        let cache_key = format!("{}\0{uri}", client.client_id);
        {
            let cache = self.cache.lock().expect("jwks cache");
            if let Some(cached) = cache.get(&cache_key) {
                let age = cached.fetched.elapsed();
                let fresh = age < self.cache_for;
                let may_refetch = refresh && age >= self.refetch_cooldown;
                if fresh && !may_refetch {
                    return Ok(Some(cached.keys.clone()));
                }
            }
        }
        let keys = Arc::new(self.fetch(uri).await?);
        self.cache.lock().expect("jwks cache").insert(
            cache_key,
            Cached {
                keys: keys.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(Some(keys))
    }

    async fn fetch(&self, uri: &str) -> Result<JwkSet, OAuthError> {
        let response = self
            .http
            .get(uri)
            .send()
            .await
            .map_err(|e| unusable(format!("{uri}: {e}")))?;
        if !response.status().is_success() {
            return Err(unusable(format!("{uri}: HTTP {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unusable(format!("{uri}: {e}")))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(unusable(format!("{uri}: the key set is too large")));
        }
        serde_json::from_slice(&body).map_err(|e| unusable(format!("{uri}: {e}")))
    }
}
