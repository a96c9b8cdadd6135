//! Signing keys: public JWK in clear, private key sealed by the master key.

use std::future::Future;

use diesel::prelude::*;

use super::audit::{NewAuditRecord, append_in};
use super::schema::signing_keys;
use super::{Store, StoreError};

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    pub generation: i64,
    pub public_jwk: String,
    /// AES-256-GCM nonce followed by the sealed PKCS#8 document.
    pub private_key: Vec<u8>,
    pub master_key_id: String,
    pub created_at: i64,
    pub activates_at: i64,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("generation", &self.generation)
            .field("activates_at", &self.activates_at)
            .finish_non_exhaustive()
    }
}

/// A signing key sealed anew, for [`KeyStore::reseal_signing_keys`].
pub struct ResealedKey {
    pub kid: String,
    /// The master key it was sealed under when it was read.
    pub sealed_with: String,
    pub private_key: Vec<u8>,
}

pub trait KeyStore {
    /// Every key, oldest generation first.
    fn list_signing_keys(
        &self,
    ) -> impl Future<Output = Result<Vec<SigningKeyRecord>, StoreError>> + Send;

    /// Inserts a key and its audit event in one transaction. `Conflict` when
    /// another replica already inserted that (alg, generation): the unique
    /// constraint is what makes concurrent rotations yield one key.
    fn insert_signing_key(
        &self,
        key: SigningKeyRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores every key of `keys` as sealed under `master_key_id`, with its
    /// audit event, in one transaction. `Conflict` (and nothing changed)
    /// when a key was re-sealed or added meanwhile, so that afterwards no
    /// key is left under another master key.
    fn reseal_signing_keys(
        &self,
        keys: Vec<ResealedKey>,
        master_key_id: String,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl KeyStore for Store {
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.run(|conn| {
            signing_keys::table
                .select(SigningKeyRecord::as_select())
                .order((signing_keys::alg.asc(), signing_keys::generation.asc()))
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn insert_signing_key(
        &self,
        key: SigningKeyRecord,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::insert_into(signing_keys::table)
                    .values(&key)
                    .execute(conn)?;
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn reseal_signing_keys(
        &self,
        keys: Vec<ResealedKey>,
        master_key_id: String,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                for key in &keys {
                    let updated = diesel::update(
                        signing_keys::table
                            .find(&key.kid)
                            .filter(signing_keys::master_key_id.eq(&key.sealed_with)),
                    )
                    .set((
                        signing_keys::private_key.eq(&key.private_key),
                        signing_keys::master_key_id.eq(&master_key_id),
                    ))
                    .execute(conn)?;
                    if updated != 1 {
                        return Err(StoreError::Conflict);
                    }
                }
                let left: i64 = signing_keys::table
                    .filter(signing_keys::master_key_id.ne(&master_key_id))
                    .count()
                    .get_result(conn)?;
                if left > 0 {
                    return Err(StoreError::Conflict);
                }
                append_in(conn, &event).map_err(StoreError::from)
            })
        })
        .await
    }
}
