//! Clients as the token endpoint reads them, cached for at most
//! `clients.cache_ttl` (default one second); see `ttl_cache` for why that
//! is safe.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;

use super::client::Client;
use super::ttl_cache::TtlCache;
use crate::keys::public::without_weak_keys;
use crate::store::{AgentStore, ClientStore, Store, StoreError};

/// A client and its secrets' digests with their expiry (Unix seconds).
#[derive(Debug)]
pub struct CachedClient {
    pub client: Client,
    pub secrets: Vec<(Vec<u8>, Option<i64>)>,
    /// The registered `jwks`, parsed once per cache fill.
    pub jwks: Option<Arc<JwkSet>>,
}

pub struct ClientCache(TtlCache<CachedClient>);

impl ClientCache {
    pub fn new(ttl: Duration) -> Self {
        ClientCache(TtlCache::new(ttl))
    }

    pub async fn get(
        &self,
        store: &Store,
        id: &str,
    ) -> Result<Option<Arc<CachedClient>>, StoreError> {
        self.0
            .get(id, || async {
                if super::agents::is_agent_id(id) {
                    let agent = store.agent(id.to_owned()).await?;
                    return Ok(agent.map(|(client, agent)| super::agents::cached(client, agent)));
                }
                let fetched = store.client_with_secrets(id.to_owned()).await?;
                Ok(fetched.map(|(record, secrets)| {
                    let client = Client::from(record);
                    let jwks = client
                        .jwks
                        .as_ref()
                        .and_then(|j| serde_json::from_value::<JwkSet>(j.clone()).ok())
                        .map(without_weak_keys)
                        .map(Arc::new);
                    let cached = CachedClient {
                        client,
                        secrets,
                        jwks,
                    };
                    (cached, None)
                }))
            })
            .await
    }

    /// Called by this replica after it changes the client.
    pub fn invalidate(&self, id: &str) {
        self.0.invalidate(id);
    }

    /// Forgets every entry, for when changes may have been missed (a lost
    /// connection to the change feed).
    pub fn invalidate_all(&self) {
        self.0.invalidate_all();
    }
}
