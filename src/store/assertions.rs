//! Single-use assertion identifiers, shared by every replica.
//!
//! A row is keyed by the digest of issuer and `jti` alone (migration 20), so
//! a `jti` used once is refused whatever `exp` comes with it, also when two
//! replicas race: the primary key decides. `expires_at` is only an index,
//! for the purge. Rows cannot pile up: an accepted assertion expires at most
//! an hour (plus leeway) ahead.

use std::collections::HashSet;
use std::future::Future;

use diesel::SqliteConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::schema::used_assertion_ids;
use super::{AnyConnection, PURGE_BATCH, Store, StoreError};

/// SQLite's single-row insert that reports a duplicate as 0 rows instead
/// of an error. Built with the DSL, so the connection prepares it once and
/// reuses it (diesel never caches a `sql_query`).
fn insert_if_absent(conn: &mut SqliteConnection, key: &str, expires_at: i64) -> QueryResult<usize> {
    diesel::insert_or_ignore_into(used_assertion_ids::table)
        .values(UsedId {
            expires_at,
            jti_key: key,
        })
        .execute(conn)
}

#[derive(Insertable)]
#[diesel(table_name = used_assertion_ids)]
pub(crate) struct UsedId<'a> {
    pub expires_at: i64,
    pub jti_key: &'a str,
}

/// Records many identifiers inside the caller's transaction; for each,
/// whether it was new (`false`: a replay).
///
/// SQLite, in process, runs one cached single-row statement per id: a
/// multi-row statement measured slower there (`cargo bench --bench store`).
/// PostgreSQL gets one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`
/// per chunk, one round trip instead of one per id. The same id twice in
/// one batch, whatever its expiry, is new only the first time.
pub(crate) fn insert_all(
    conn: &mut AnyConnection,
    batch: &[(String, i64)],
) -> QueryResult<Vec<bool>> {
    let pg = match conn {
        AnyConnection::Postgresql(pg) => pg,
        AnyConnection::Sqlite(lite) => {
            return batch
                .iter()
                .map(|(key, exp)| insert_if_absent(lite, key, *exp).map(|rows| rows == 1))
                .collect();
        }
    };
    let (rows, firsts) = first_of_each(batch);
    let mut inserted = HashSet::new();
    for chunk in rows.chunks(500) {
        let stored: Vec<String> = diesel::insert_into(used_assertion_ids::table)
            .values(chunk)
            .on_conflict_do_nothing()
            .returning(used_assertion_ids::jti_key)
            .get_results(pg)?;
        inserted.extend(stored);
    }
    Ok(verdicts(batch, &firsts, &inserted))
}

/// The batch's rows without repeats, sorted by key, and for each entry
/// whether it is the first of its key: the same id twice in one batch,
/// whatever its expiry, is new only the first time. Sorted, so two
/// replicas' batches lock shared keys in one order (no deadlock).
pub(crate) fn first_of_each(batch: &[(String, i64)]) -> (Vec<UsedId<'_>>, Vec<bool>) {
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    let firsts = batch
        .iter()
        .map(|(key, exp)| {
            let first = seen.insert(key.as_str());
            if first {
                rows.push(UsedId {
                    expires_at: *exp,
                    jti_key: key,
                });
            }
            first
        })
        .collect();
    rows.sort_unstable_by_key(|row| row.jti_key);
    (rows, firsts)
}

/// Each entry's verdict: new when it was the first of its key and its row
/// went in (`inserted` holds the keys the database took).
pub(crate) fn verdicts(
    batch: &[(String, i64)],
    firsts: &[bool],
    inserted: &HashSet<String>,
) -> Vec<bool> {
    batch
        .iter()
        .zip(firsts)
        .map(|((key, _), first)| *first && inserted.contains(key))
        .collect()
}

pub trait ReplayStore {
    /// Whether a single-use key has been consumed (and not yet purged),
    /// read only: what `tessera trust test` reports.
    fn is_used(&self, key: String) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets identifiers whose assertions have expired.
    fn purge_used_assertions(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Up to `$2` of the ids expired before `$1`, oldest first, through the
/// expiry index; one text on both backends.
const PURGE_SOME: &str = "\
DELETE FROM used_assertion_ids WHERE jti_key IN (
    SELECT jti_key FROM used_assertion_ids WHERE expires_at < $1
    ORDER BY expires_at LIMIT $2)";

impl ReplayStore for Store {
    async fn is_used(&self, key: String) -> Result<bool, StoreError> {
        self.run(move |conn| {
            diesel::select(diesel::dsl::exists(
                used_assertion_ids::table.filter(used_assertion_ids::jti_key.eq(key)),
            ))
            .get_result(conn)
            .map_err(StoreError::from)
        })
        .await
    }

    async fn purge_used_assertions(&self, now: i64) -> Result<usize, StoreError> {
        // Ids arrive at thousands a second.
        self.purge_until_done(move |conn| {
            diesel::sql_query(PURGE_SOME)
                .bind::<BigInt, _>(now)
                .bind::<BigInt, _>(PURGE_BATCH)
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
    }
}
