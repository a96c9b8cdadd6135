//! The trust configuration of each issuer (the issuer, its static keys if
//! any, and its policies compiled once) as the exchange reads it, cached
//! like clients: at most `clients.cache_ttl`, dropped at once when any
//! replica changes the trust configuration (`Change::Trust`), and misses
//! cached apart from hits, so tokens naming random issuers cannot evict
//! the real ones.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;

use super::model::TrustedIssuer;
use super::policy::CompiledPolicy;
use crate::keys::public::without_weak_keys;
use crate::oauth::ttl_cache::TtlCache;
use crate::store::{Store, StoreError};

#[derive(Debug)]
pub struct IssuerTrust {
    pub issuer: TrustedIssuer,
    /// The issuer's static key set, parsed, when it has one.
    pub static_keys: Option<Arc<JwkSet>>,
    pub policies: Vec<CompiledPolicy>,
}

pub struct TrustCache(TtlCache<IssuerTrust>);

impl TrustCache {
    pub fn new(ttl: Duration) -> Self {
        TrustCache(TtlCache::new(ttl))
    }

    /// The trust configured for `issuer` (an exact URL), or `None` if it is
    /// not a trusted issuer.
    pub async fn get(
        &self,
        store: &Store,
        issuer: &str,
    ) -> Result<Option<Arc<IssuerTrust>>, StoreError> {
        self.0
            .get(issuer, || async {
                let Some((issuer, policies)) = super::admin::load(store, issuer).await? else {
                    return Ok(None);
                };
                let static_keys = issuer
                    .jwks
                    .clone()
                    .and_then(|jwks| serde_json::from_value::<JwkSet>(jwks).ok())
                    .map(without_weak_keys)
                    .map(Arc::new);
                // A stored policy that no longer compiles (stored by an
                // older version) matches nothing; it is logged, not fatal.
                let policies = policies
                    .into_iter()
                    .filter_map(|policy| {
                        let name = policy.name.clone();
                        CompiledPolicy::compile(policy)
                            .map_err(|e| tracing::warn!(policy = %name, error = %e, "trust policy skipped"))
                            .ok()
                    })
                    .collect();
                let trust = IssuerTrust {
                    issuer,
                    static_keys,
                    policies,
                };
                Ok(Some((trust, None)))
            })
            .await
    }

    pub fn invalidate_all(&self) {
        self.0.invalidate_all();
    }
}
