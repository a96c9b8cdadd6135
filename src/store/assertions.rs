//! Single-use assertion identifiers, shared by every replica.

use std::future::Future;

use diesel::prelude::*;

use super::schema::used_assertions;
use super::{Store, StoreError};

pub trait ReplayStore {
    /// Records `jti_key` until `expires_at`. `Ok(false)` when it was
    /// already recorded: the assertion is a replay.
    fn consume_jti(
        &self,
        jti_key: String,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets identifiers whose assertions have expired.
    fn purge_used_assertions(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

impl ReplayStore for Store {
    async fn consume_jti(&self, jti_key: String, expires_at: i64) -> Result<bool, StoreError> {
        let outcome = self
            .run(move |conn| {
                diesel::insert_into(used_assertions::table)
                    .values((
                        used_assertions::jti_key.eq(jti_key),
                        used_assertions::expires_at.eq(expires_at),
                    ))
                    .execute(conn)
                    .map_err(StoreError::from)
            })
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn purge_used_assertions(&self, now: i64) -> Result<usize, StoreError> {
        self.run(move |conn| {
            diesel::delete(used_assertions::table.filter(used_assertions::expires_at.lt(now)))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
    }
}
