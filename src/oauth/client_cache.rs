//! Clients as the token endpoint reads them, cached for at most
//! `clients.cache_ttl` (default one second).
//!
//! DESIGN.md allows a short bounded TTL where staleness is harmless and
//! never caches revocation past a second: a client disabled, deleted or
//! given a new secret on another replica is seen here within the TTL, and
//! at once on the replica that made the change (it invalidates the entry).
//! Unknown ids are cached too, so a flood of made-up client ids does not
//! reach the database once per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::client::Client;
use crate::store::{ClientStore, Store, StoreError};

const MAX_ENTRIES: usize = 10_000;

/// A client and its secrets' digests with their expiry (Unix seconds).
#[derive(Debug)]
pub struct CachedClient {
    pub client: Client,
    pub secrets: Vec<(Vec<u8>, Option<i64>)>,
    /// The registered `jwks`, parsed once per cache fill.
    pub jwks: Option<Arc<JwkSet>>,
}

/// When an entry was read, and the client (`None`: no such client).
type Entry = (Instant, Option<Arc<CachedClient>>);

pub struct ClientCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl ClientCache {
    pub fn new(ttl: Duration) -> Self {
        ClientCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn get(
        &self,
        store: &Store,
        id: &str,
    ) -> Result<Option<Arc<CachedClient>>, StoreError> {
        if let Some((at, entry)) = self.entries.lock().expect("client cache").get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(entry.clone());
        }
        let fetched = store
            .client_with_secrets(id.to_owned())
            .await?
            .map(|(record, secrets)| {
                let client = Client::from(record);
                let jwks = client
                    .jwks
                    .as_ref()
                    .and_then(|j| serde_json::from_value::<JwkSet>(j.clone()).ok())
                    .map(Arc::new);
                Arc::new(CachedClient {
                    client,
                    secrets,
                    jwks,
                })
            });
        let mut entries = self.entries.lock().expect("client cache");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id.to_owned(), (Instant::now(), fetched.clone()));
        Ok(fetched)
    }

    /// Called by this replica after it changes the client.
    pub fn invalidate(&self, id: &str) {
        self.entries.lock().expect("client cache").remove(id);
    }
}
