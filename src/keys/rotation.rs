//! Creating and rotating signing keys, once across all replicas.
//!
//! Each algorithm rotates on its own. A new key of generation g+1 activates
//! no sooner than one maximum token lifetime after it is stored, so that
//! every relying party that caches JWKS for at most that long has it before
//! it signs. Concurrent rotations race on the unique (alg, generation)
//! constraint: one insert wins, the others see `Conflict` and reload.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::KeysError;
use super::master::MasterKey;
use super::material::{Alg, KeyMaterial};
use super::ring::{KeyRing, KeySet};
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::store::{KeyStore, SigningKeyRecord, StoreError};

/// The result of one rotation request for one algorithm.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rotated {
    pub alg: Alg,
    /// The key that will sign next.
    pub kid: String,
    pub activates_at: i64,
    /// False when another replica rotated at the same moment and its key
    /// was kept instead.
    pub created: bool,
}

/// Owns the key ring and the rules for changing it.
pub struct KeyManager<S> {
    store: S,
    master: Arc<MasterKey>,
    ring: KeyRing,
    /// Publication lead and retirement tail: the longest token lifetime.
    max_lifetime: Duration,
    rotation_period: Duration,
}

impl<S: KeyStore + Send + Sync> KeyManager<S> {
    pub fn new(
        store: S,
        master: Arc<MasterKey>,
        max_lifetime: Duration,
        rotation_period: Duration,
    ) -> Self {
        KeyManager {
            store,
            master,
            ring: KeyRing::default(),
            max_lifetime,
            rotation_period,
        }
    }

    /// The master key, for other secrets sealed at rest (TOTP secrets).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    /// Creates the first key of every algorithm that has none (signing at
    /// once: nothing was signed before it), then loads the ring.
    pub async fn ensure_keys(&self) -> Result<(), KeysError> {
        let records = self.store.list_signing_keys().await?;
        let now = clock::now();
        for alg in Alg::ALL {
            if !records.iter().any(|r| r.alg == alg.as_str()) {
                self.insert(alg, 1, now, Actor::system(), "key.created")
                    .await?;
            }
        }
        self.reload().await
    }

    /// Re-reads every key, so rotations by other replicas show up here.
    pub async fn reload(&self) -> Result<(), KeysError> {
        let records = self.store.list_signing_keys().await?;
        let master = self.master.clone();
        // Opening RSA keys costs milliseconds: keep it off the async workers.
        let set = tokio::task::spawn_blocking(move || {
            KeySet::from_records(records, &master, clock::now())
        })
        .await
        .map_err(|_| KeysError::Crypto("key loading task failed"))??;
        self.ring.replace(set);
        Ok(())
    }

    /// An explicit rotation (`tessera keys rotate`): the next generation of
    /// `alg`, activating one maximum token lifetime from now.
    pub async fn rotate(&self, alg: Alg, actor: Actor) -> Result<Rotated, KeysError> {
        let records = self.store.list_signing_keys().await?;
        let next = next_generation(&records, alg);
        let activates_at = clock::now() + self.lead();
        let rotated = self
            .insert(alg, next, activates_at, actor, "key.rotated")
            .await?;
        self.reload().await?;
        Ok(rotated)
    }

    /// The scheduled rotation: for each algorithm whose newest key reaches
    /// the end of its period within one lead time, store its successor so
    /// that it activates when the period ends.
    pub async fn rotate_due(&self) -> Result<Vec<Rotated>, KeysError> {
        let records = self.store.list_signing_keys().await?;
        let now = clock::now();
        let period = self.rotation_period.as_secs() as i64;
        let mut rotated = Vec::new();
        for alg in Alg::ALL {
            let Some(newest) = records
                .iter()
                .filter(|r| r.alg == alg.as_str())
                .max_by_key(|r| r.generation)
            else {
                continue;
            };
            if newest.activates_at + period - self.lead() > now {
                continue;
            }
            let activates_at = (newest.activates_at + period).max(now + self.lead());
            let outcome = self
                .insert(
                    alg,
                    newest.generation + 1,
                    activates_at,
                    Actor::system(),
                    "key.rotated",
                )
                .await?;
            rotated.push(outcome);
        }
        self.reload().await?;
        Ok(rotated)
    }

    fn lead(&self) -> i64 {
        self.max_lifetime.as_secs() as i64
    }

    async fn insert(
        &self,
        alg: Alg,
        generation: i64,
        activates_at: i64,
        actor: Actor,
        action: &'static str,
    ) -> Result<Rotated, KeysError> {
        let master = self.master.clone();
        let now = clock::now();
        let record = tokio::task::spawn_blocking(move || {
            let material = KeyMaterial::generate(alg).map_err(|e| KeysError::Crypto(e.0))?;
            SigningKeyRecord::seal(&material, generation, &master, now, activates_at)
        })
        .await
        .map_err(|_| KeysError::Crypto("key generation task failed"))??;
        let kid = record.kid.clone();
        let event = Event::new(actor, action, Outcome::Success)
            .target(kid.clone())
            .details(json!({ "alg": alg, "generation": generation, "activates_at": activates_at }))
            .into_record(clock::now_ms());
        match self.store.insert_signing_key(record, event).await {
            Ok(()) => {
                tracing::info!(%alg, %kid, generation, activates_at, "stored a new signing key");
                Ok(Rotated {
                    alg,
                    kid,
                    activates_at,
                    created: true,
                })
            }
            Err(StoreError::Conflict) => {
                // Another replica stored this generation first: keep theirs.
                let records = self.store.list_signing_keys().await?;
                let theirs = records
                    .into_iter()
                    .find(|r| r.alg == alg.as_str() && r.generation == generation)
                    .ok_or(KeysError::Store(StoreError::Conflict))?;
                Ok(Rotated {
                    alg,
                    kid: theirs.kid,
                    activates_at: theirs.activates_at,
                    created: false,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn next_generation(records: &[SigningKeyRecord], alg: Alg) -> i64 {
    records
        .iter()
        .filter(|r| r.alg == alg.as_str())
        .map(|r| r.generation)
        .max()
        .unwrap_or(0)
        + 1
}
