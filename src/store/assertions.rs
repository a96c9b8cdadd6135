//! Single-use assertion identifiers, shared by every replica.

use std::future::Future;

use diesel::prelude::*;

use diesel::sql_types::{BigInt, Text};

use super::schema::used_assertions;
use super::{AnyConnection, Store, StoreError};

/// An insert that reports a duplicate as 0 rows instead of an error, so one
/// replay does not abort the batch's transaction (PostgreSQL would).
fn insert_if_absent(conn: &mut AnyConnection, key: &str, expires_at: i64) -> QueryResult<usize> {
    let sql = match conn {
        AnyConnection::Postgresql(_) => {
            "INSERT INTO used_assertions (jti_key, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
        AnyConnection::Sqlite(_) => {
            "INSERT OR IGNORE INTO used_assertions (jti_key, expires_at) VALUES (?, ?)"
        }
    };
    diesel::sql_query(sql)
        .bind::<Text, _>(key)
        .bind::<BigInt, _>(expires_at)
        .execute(conn)
}

pub trait ReplayStore {
    /// Records many identifiers in one transaction; for each, whether it
    /// was new (`false`: a replay, including of an earlier one in the batch).
    fn consume_jtis(
        &self,
        batch: Vec<(String, i64)>,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Forgets identifiers whose assertions have expired.
    fn purge_used_assertions(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

impl ReplayStore for Store {
    async fn consume_jtis(&self, batch: Vec<(String, i64)>) -> Result<Vec<bool>, StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                batch
                    .iter()
                    .map(|(key, expires_at)| {
                        insert_if_absent(conn, key, *expires_at).map(|rows| rows == 1)
                    })
                    .collect::<QueryResult<Vec<bool>>>()
            })
            .map_err(StoreError::from)
        })
        .await
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
