//! Revoked JWT access tokens, by `jti`, until they would have expired.

use std::future::Future;

use diesel::prelude::*;

use super::schema::revoked_tokens;
use super::{Store, StoreError};

pub trait RevocationStore {
    /// Idempotent: revoking twice is not an error.
    fn revoke_jti(
        &self,
        jti: String,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn is_revoked(&self, jti: String) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn purge_revocations(&self, now: i64)
    -> impl Future<Output = Result<usize, StoreError>> + Send;
}

impl RevocationStore for Store {
    async fn revoke_jti(&self, jti: String, expires_at: i64) -> Result<(), StoreError> {
        let outcome = self
            .run(move |conn| {
                diesel::insert_into(revoked_tokens::table)
                    .values((
                        revoked_tokens::jti.eq(jti),
                        revoked_tokens::expires_at.eq(expires_at),
                    ))
                    .execute(conn)
                    .map_err(StoreError::from)
            })
            .await;
        match outcome {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn is_revoked(&self, jti: String) -> Result<bool, StoreError> {
        self.run(move |conn| {
            diesel::select(diesel::dsl::exists(revoked_tokens::table.find(jti)))
                .get_result::<bool>(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn purge_revocations(&self, now: i64) -> Result<usize, StoreError> {
        self.run(move |conn| {
            diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(now)))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
    }
}
