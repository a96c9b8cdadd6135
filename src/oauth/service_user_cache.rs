//! Service users and their current keys as the JWT-bearer grant and
//! introspection read them, cached for at most `clients.cache_ttl` (see
//! `ttl_cache` for why that is safe). An entry never outlives the first of
//! its keys to expire, so an expired key is never used from the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};

use super::service_users::ServiceUser;
use super::ttl_cache::TtlCache;
use crate::clock;
use crate::keys::public::without_weak_keys;
use crate::store::{ServiceUserStore, Store, StoreError};

#[derive(Debug)]
pub struct CachedServiceUser {
    pub user: ServiceUser,
    /// The keys that had not expired when the entry was read, parsed once.
    pub jwks: JwkSet,
}

pub struct ServiceUserCache(TtlCache<CachedServiceUser>);

impl ServiceUserCache {
    pub fn new(ttl: Duration) -> Self {
        ServiceUserCache(TtlCache::new(ttl))
    }

    pub async fn get(
        &self,
        store: &Store,
        id: &str,
    ) -> Result<Option<Arc<CachedServiceUser>>, StoreError> {
        self.0
            .get(id, || async {
                let now_ms = clock::now_ms();
                let Some((user, keys)) = store
                    .service_user_with_keys(id.to_owned(), now_ms.div_euclid(1000))
                    .await?
                else {
                    return Ok(None);
                };
                // Milliseconds, not whole seconds: a key expiring at second
                // `t` must not be used from the cache during second `t`.
                let first_expiry = keys.iter().filter_map(|k| k.expires_at).min();
                let until = first_expiry.map(|at| {
                    let left = at.saturating_mul(1000).saturating_sub(now_ms).max(0);
                    Instant::now() + Duration::from_millis(left as u64)
                });
                // A stored key that does not parse is skipped, as if absent.
                let keys = keys
                    .iter()
                    .filter_map(|k| serde_json::from_str::<Jwk>(&k.public_jwk).ok())
                    .collect();
                let cached = CachedServiceUser {
                    user: ServiceUser::from(user),
                    jwks: without_weak_keys(JwkSet { keys }),
                };
                Ok(Some((cached, until)))
            })
            .await
    }

    /// Called by this replica after it changes the service user or its keys.
    pub fn invalidate(&self, id: &str) {
        self.0.invalidate(id);
    }

    /// Forgets every entry, for when changes may have been missed (a lost
    /// connection to the change feed).
    pub fn invalidate_all(&self) {
        self.0.invalidate_all();
    }
}
