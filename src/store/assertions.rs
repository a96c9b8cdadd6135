//! Single-use assertion identifiers, shared by every replica.

use std::future::Future;

use diesel::prelude::*;

use diesel::sql_types::{BigInt, Text};

use super::schema::used_assertion_ids;
use super::{AnyConnection, Store, StoreError};

/// An insert that reports a duplicate as 0 rows instead of an error, so one
/// replay does not abort the batch's transaction (PostgreSQL would).
fn insert_if_absent(conn: &mut AnyConnection, key: &str, expires_at: i64) -> QueryResult<usize> {
    let sql = match conn {
        AnyConnection::Postgresql(_) => {
            "INSERT INTO used_assertion_ids (jti_key, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
        AnyConnection::Sqlite(_) => {
            "INSERT OR IGNORE INTO used_assertion_ids (jti_key, expires_at) VALUES (?, ?)"
        }
    };
    diesel::sql_query(sql)
        .bind::<Text, _>(key)
        .bind::<BigInt, _>(expires_at)
        .execute(conn)
}

/// Records many identifiers inside the caller's transaction; for each,
/// whether it was new (`false`: a replay).
pub(crate) fn insert_all(
    conn: &mut AnyConnection,
    batch: &[(String, i64)],
) -> QueryResult<Vec<bool>> {
    batch
        .iter()
        .map(|(key, expires_at)| insert_if_absent(conn, key, *expires_at).map(|rows| rows == 1))
        .collect()
}

pub trait ReplayStore {
    /// Forgets identifiers whose assertions have expired.
    fn purge_used_assertions(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

impl ReplayStore for Store {
    async fn purge_used_assertions(&self, now: i64) -> Result<usize, StoreError> {
        self.run(move |conn| {
            diesel::delete(used_assertion_ids::table.filter(used_assertion_ids::expires_at.lt(now)))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
    }
}
