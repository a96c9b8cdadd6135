//! Opaque tokens (personal, machine and bootstrap) as bearer checks and
//! introspection read them, by their public lookup prefix, for at most
//! `clients.cache_ttl` (one second by default; see `ttl_cache`).
//!
//! - The replica that changes a token (disable, enable, roll, revoke,
//!   transfer) drops its entry before answering, so it refuses the token
//!   at once.
//! - On PostgreSQL every change to `access_tokens` is announced
//!   (`token:<lookup>`, migration 2026-12-06-000120) and the other replicas
//!   drop the entry as the notification arrives, well within 100 ms; a
//!   lost notification is bounded by the TTL, and a reconnect of the
//!   listener drops every entry.
//! - On SQLite, one process serves; a second process on the same file
//!   sees a change within the TTL.

use std::sync::Arc;
use std::time::Duration;

use super::ttl_cache::TtlCache;
use crate::store::{AccessTokenRecord, CredentialStore, Store, StoreError};

pub struct TokenCache(TtlCache<AccessTokenRecord>);

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache(TtlCache::new(ttl))
    }

    pub async fn get(
        &self,
        store: &Store,
        lookup: &str,
    ) -> Result<Option<Arc<AccessTokenRecord>>, StoreError> {
        self.0
            .get(lookup, || async {
                Ok(store
                    .token_by_lookup(lookup.to_owned())
                    .await?
                    .map(|t| (t, None)))
            })
            .await
    }

    pub fn invalidate(&self, lookup: &str) {
        self.0.invalidate(lookup);
    }

    pub fn invalidate_all(&self) {
        self.0.invalidate_all();
    }
}
