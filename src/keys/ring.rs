//! The signing keys as every replica holds them in memory, and the rules
//! that say which key signs and which are published.
//!
//! Per algorithm, keys form generations. Generation g+1 is published from
//! the moment it is stored, signs from `activates_at` (at least one maximum
//! token lifetime later, so relying parties have fetched it), and generation
//! g stays published until one maximum token lifetime after g+1 took over.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::KeysError;
use super::master::MasterKey;
use super::material::{Alg, KeyMaterial};
use crate::store::SigningKeyRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Published, not signing yet.
    Next,
    /// Published and signing.
    Active,
    /// Published so that tokens it signed still verify; signs nothing.
    Retired,
    /// No longer published.
    Expired,
}

#[derive(Debug)]
pub struct LoadedKey {
    pub kid: String,
    pub alg: Alg,
    pub generation: i64,
    pub created_at: i64,
    pub activates_at: i64,
    pub public_jwk: Value,
    /// Only keys that may still sign are decrypted.
    material: Option<KeyMaterial>,
}

impl LoadedKey {
    pub fn material(&self) -> Option<&KeyMaterial> {
        self.material.as_ref()
    }
}

#[derive(Debug)]
pub struct KeySet {
    keys: Vec<LoadedKey>,
}

impl KeySet {
    /// Builds the set from stored records, opening the private keys that
    /// may still sign, each with the master key (current or previous) that
    /// sealed it. A key sealed under an unknown master key is an error,
    /// never a reason to generate new keys.
    pub fn from_records(
        records: Vec<SigningKeyRecord>,
        master: &MasterKey,
        now: i64,
    ) -> Result<KeySet, KeysError> {
        let mut keys = Vec::with_capacity(records.len());
        for record in &records {
            let Some(opener) = master.for_id(&record.master_key_id) else {
                return Err(KeysError::WrongMasterKey {
                    kid: record.kid.clone(),
                    sealed_with: record.master_key_id.clone(),
                    configured: master.id().to_owned(),
                });
            };
            let alg =
                Alg::parse(&record.alg).ok_or_else(|| KeysError::Corrupt(record.kid.clone()))?;
            let public_jwk: Value = serde_json::from_str(&record.public_jwk)
                .map_err(|_| KeysError::Corrupt(record.kid.clone()))?;
            let superseded = records.iter().any(|other| {
                other.alg == record.alg
                    && other.generation > record.generation
                    && other.activates_at <= now
            });
            let material = if superseded {
                None
            } else {
                let der = opener
                    .open(&record.private_key, record.kid.as_bytes())
                    .map_err(|_| KeysError::Corrupt(record.kid.clone()))?;
                Some(
                    KeyMaterial::from_pkcs8(alg, &der)
                        .map_err(|_| KeysError::Corrupt(record.kid.clone()))?,
                )
            };
            keys.push(LoadedKey {
                kid: record.kid.clone(),
                alg,
                generation: record.generation,
                created_at: record.created_at,
                activates_at: record.activates_at,
                public_jwk,
                material,
            });
        }
        keys.sort_by_key(|k| (k.alg.as_str(), k.generation));
        Ok(KeySet { keys })
    }

    pub fn keys(&self) -> &[LoadedKey] {
        &self.keys
    }

    /// The key that signs for `alg` at `now`: the newest generation already
    /// active.
    pub fn signer(&self, alg: Alg, now: i64) -> Option<&LoadedKey> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.activates_at <= now && k.material.is_some())
            .max_by_key(|k| k.generation)
    }

    /// When `key` stopped (or will stop) signing: the activation of the
    /// first later generation.
    fn signs_until(&self, key: &LoadedKey) -> Option<i64> {
        self.keys
            .iter()
            .filter(|k| k.alg == key.alg && k.generation > key.generation)
            .map(|k| k.activates_at)
            .min()
    }

    pub fn status(&self, key: &LoadedKey, now: i64, max_lifetime: Duration) -> KeyStatus {
        if key.activates_at > now {
            return KeyStatus::Next;
        }
        match self.signs_until(key) {
            Some(until) if until <= now => {
                if until + max_lifetime.as_secs() as i64 > now {
                    KeyStatus::Retired
                } else {
                    KeyStatus::Expired
                }
            }
            _ => KeyStatus::Active,
        }
    }

    /// The JWKS document (RFC 7517 §5): public members of every key that is
    /// next, active or retired.
    pub fn jwks(&self, now: i64, max_lifetime: Duration) -> Value {
        let keys: Vec<&Value> = self
            .keys
            .iter()
            .filter(|k| self.status(k, now, max_lifetime) != KeyStatus::Expired)
            .map(|k| &k.public_jwk)
            .collect();
        json!({ "keys": keys })
    }
}

/// The current key set, swapped atomically when keys are reloaded.
#[derive(Default)]
pub struct KeyRing {
    current: ArcSwapOption<KeySet>,
}

impl KeyRing {
    pub fn get(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    pub fn replace(&self, set: KeySet) {
        self.current.store(Some(Arc::new(set)));
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

impl SigningKeyRecord {
    /// Seals a freshly generated key for storage.
    pub fn seal(
        material: &KeyMaterial,
        generation: i64,
        master: &MasterKey,
        created_at: i64,
        activates_at: i64,
    ) -> Result<SigningKeyRecord, KeysError> {
        let kid = material.thumbprint();
        let der = material.to_pkcs8().map_err(|e| KeysError::Crypto(e.0))?;
        Ok(SigningKeyRecord {
            public_jwk: material.public_jwk(&kid).to_string(),
            private_key: master.seal(&der, kid.as_bytes()),
            master_key_id: master.id().to_owned(),
            alg: material.alg().as_str().to_owned(),
            kid,
            generation,
            created_at,
            activates_at,
        })
    }
}
