//! What this replica forgets when a change is heard from the database
//! (`store::Change`): the cached client or service user, the trust
//! configuration, or the key ring.

use super::Core;
use crate::keys::KeysError;
use crate::store::Change;

impl Core {
    /// Drops what `change` made stale. After [`Change::Missed`] (the
    /// listener reconnected, so changes may have gone unheard) every cached
    /// client and service user is dropped, including entries for records
    /// deleted meanwhile, and the keys are reloaded.
    pub async fn apply_change(&self, change: Change) -> Result<(), KeysError> {
        match change {
            Change::Client(id) => self.client_cache.invalidate(&id),
            Change::ServiceUser(id) => self.service_user_cache.invalidate(&id),
            Change::AllClients => self.client_cache.invalidate_all(),
            Change::AllServiceUsers => self.service_user_cache.invalidate_all(),
            Change::Token(lookup) => self.token_cache.invalidate(&lookup),
            Change::AllTokens => self.token_cache.invalidate_all(),
            Change::Keys => self.keys.reload().await?,
            Change::Trust => self.trust.invalidate_all(),
            Change::Missed => {
                self.client_cache.invalidate_all();
                self.service_user_cache.invalidate_all();
                self.trust.invalidate_all();
                self.token_cache.invalidate_all();
                self.keys.reload().await?;
            }
        }
        Ok(())
    }
}
