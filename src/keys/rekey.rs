//! Re-keying: every signing key sealed under an older master key is opened
//! with it and sealed under the current one, in one transaction. Token
//! digests are not touched: the current key carries the same digest root
//! (see `master`), so issued secrets keep working.

use serde::Serialize;
use serde_json::json;

use super::KeysError;
use super::master::MasterKey;
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::store::{KeyStore, ResealedKey, StoreError};

#[derive(Debug, Serialize)]
pub struct Rekeyed {
    /// How many keys were sealed anew (0: all were sealed under it already).
    pub resealed: usize,
    pub master_key_id: String,
}

/// Seals every stored signing key under `master`, opening each with the
/// key that sealed it (`master` or its previous key).
pub async fn rekey<S: KeyStore>(store: &S, master: &MasterKey) -> Result<Rekeyed, KeysError> {
    let records = store.list_signing_keys().await?;
    let mut resealed = Vec::new();
    for record in records.iter().filter(|r| r.master_key_id != master.id()) {
        let opener =
            master
                .for_id(&record.master_key_id)
                .ok_or_else(|| KeysError::WrongMasterKey {
                    kid: record.kid.clone(),
                    sealed_with: record.master_key_id.clone(),
                    configured: master.id().to_owned(),
                })?;
        let der = opener
            .open(&record.private_key, record.kid.as_bytes())
            .map_err(|_| KeysError::Corrupt(record.kid.clone()))?;
        resealed.push(ResealedKey {
            kid: record.kid.clone(),
            sealed_with: record.master_key_id.clone(),
            private_key: master.seal(&der, record.kid.as_bytes()),
        });
    }
    let outcome = Rekeyed {
        resealed: resealed.len(),
        master_key_id: master.id().to_owned(),
    };
    if resealed.is_empty() {
        return Ok(outcome);
    }
    let event = Event::new(Actor::system(), "keys.rekeyed", Outcome::Success)
        .details(json!({ "resealed": outcome.resealed, "master_key_id": outcome.master_key_id }))
        .into_record(clock::now_ms());
    match store
        .reseal_signing_keys(resealed, master.id().to_owned(), event)
        .await
    {
        Ok(()) => Ok(outcome),
        // A key was added or re-sealed meanwhile: nothing was changed.
        Err(StoreError::Conflict) => Err(KeysError::Store(StoreError::Other(
            "the signing keys changed during the re-key; nothing was changed: run it again".into(),
        ))),
        Err(e) => Err(e.into()),
    }
}
