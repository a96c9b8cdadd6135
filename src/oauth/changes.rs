//! What this replica forgets when a change is heard from the database
//! (`store::Change`): the cached client or service user, or the key ring.

use super::Core;
use crate::keys::KeysError;
use crate::store::{Change, ClientStore, ServiceUserStore, StoreError};

impl Core {
    /// Drops what `change` made stale. After [`Change::Missed`] every cached
    /// client and service user is dropped and the keys are reloaded. An entry
    /// for a record deleted while changes went unheard is not listed, so it
    /// lives out its TTL, as it would without notifications.
    pub async fn apply_change(&self, change: Change) -> Result<(), KeysError> {
        match change {
            Change::Client(id) => self.client_cache.invalidate(&id),
            Change::ServiceUser(id) => self.service_user_cache.invalidate(&id),
            Change::AllClients => self.forget_clients().await?,
            Change::AllServiceUsers => self.forget_service_users().await?,
            Change::Keys => self.keys.reload().await?,
            Change::Missed => {
                self.forget_clients().await?;
                self.forget_service_users().await?;
                self.keys.reload().await?;
            }
        }
        Ok(())
    }

    async fn forget_clients(&self) -> Result<(), StoreError> {
        for client in self.store.list_clients().await? {
            self.client_cache.invalidate(&client.id);
        }
        Ok(())
    }

    async fn forget_service_users(&self) -> Result<(), StoreError> {
        for user in self.store.list_service_users().await? {
            self.service_user_cache.invalidate(&user.id);
        }
        Ok(())
    }
}
