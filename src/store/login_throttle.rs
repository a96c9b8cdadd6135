//! Failed sign-in attempts per bucket (an account or a client address),
//! in the database so that every replica counts the same attempts. The
//! policy (how many failures are free, how long a block lasts) lives in
//! `accounts::throttle`; this only counts and stores.

use std::future::Future;

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::prepared::Prepared;
use super::schema::login_throttle;
use super::{AnyConnection, Store, StoreError};

/// One bucket's state.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = login_throttle)]
pub struct ThrottleRecord {
    pub bucket: String,
    pub failures: i64,
    pub blocked_until: i64,
    pub updated_at: i64,
}

/// Whether an attempt may go ahead (`ThrottleStore::admit_attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted in every bucket.
    Allowed,
    /// A bucket is blocked until then; the attempt was counted nowhere.
    Blocked { until: i64 },
}

/// A bucket to count an attempt in, and the block in seconds its
/// `attempts`-th attempt in a window earns (zero: none).
pub type BucketPolicy = (String, Box<dyn Fn(i64) -> i64 + Send>);

pub trait ThrottleStore {
    /// Admits one attempt in every bucket of `buckets` before its
    /// credentials are checked, in one transaction that holds each row's
    /// lock (PostgreSQL) or the database's write lock (SQLite): when a
    /// bucket is blocked, nothing is counted anywhere; else each bucket
    /// counts it (a row not updated since before `window_start` starts
    /// again from one) and is blocked for its policy's delay when that is
    /// positive. Counting before checking means parallel guesses cannot
    /// all pass a check made before any of them failed (check-then-act).
    fn admit_attempts(
        &self,
        buckets: Vec<BucketPolicy>,
        now: i64,
        window_start: i64,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;

    /// Takes back one attempt counted by `admit_attempts` (an attempt that
    /// turned out not to be a failure). Never goes below zero.
    fn refund_attempt(&self, bucket: String)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A right attempt, settled in one transaction of its own.
    fn settle_attempt(
        &self,
        settlement: Settlement,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The rows of these buckets that exist.
    fn throttle_records(
        &self,
        buckets: Vec<String>,
    ) -> impl Future<Output = Result<Vec<ThrottleRecord>, StoreError>> + Send;

    fn clear_bucket(&self, bucket: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes buckets untouched since `before` and no longer blocked: what
    /// keeps a spray of made-up usernames from growing the table.
    fn purge_throttle(&self, before: i64)
    -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Counts one attempt in `bucket` inside the caller's transaction; `Err`
/// with the block's end when the bucket is blocked.
///
/// One upsert counts it: a new bucket starts at one, a bucket idle for a
/// whole window starts again at one (a block counts as activity until it
/// ends, or a bucket that served a block as long as the window would start
/// afresh the moment it ended), any other counts one more. A blocked
/// bucket's row is locked but not updated (the `WHERE` of `DO UPDATE`),
/// and the upsert returns nothing. On SQLite the upsert takes the
/// database's write lock (waiting out busy_timeout), so no read lock is
/// ever upgraded; on PostgreSQL a replica inserting the same new bucket at
/// once makes this one wait, then update the row it inserted.
///
/// One statement counts the attempt (a second sets a block when one
/// starts): the address bucket, shared by every login from one address,
/// is written once here and once by a right attempt's settlement, and only
/// `bucket` is indexed, so on PostgreSQL each write can be a heap-only
/// update (migration `login_throttle_updates_in_place`).
fn count_attempt(
    conn: &mut AnyConnection,
    (bucket, delay): &BucketPolicy,
    now: i64,
    window_start: i64,
) -> QueryResult<Result<(), i64>> {
    use diesel::dsl::case_when;
    use login_throttle::dsl as t;
    let idle = t::updated_at
        .lt(window_start)
        .and(t::blocked_until.lt(window_start));
    // A macro, not a value: `returning` names the backend.
    macro_rules! count {
        () => {
            Prepared(
                // The `WHERE` of `DO UPDATE`: diesel has it as `FilterDsl`,
                // which `QueryDsl` does not bring in.
                diesel::query_dsl::methods::FilterDsl::filter(
                    diesel::insert_into(t::login_throttle)
                        .values((
                            t::bucket.eq(bucket),
                            t::failures.eq(1),
                            t::blocked_until.eq(0),
                            t::updated_at.eq(now),
                        ))
                        .on_conflict(t::bucket)
                        .do_update()
                        .set((
                            t::failures.eq(case_when(idle, 1i64.into_sql::<BigInt>())
                                .otherwise(t::failures + 1)),
                            t::updated_at.eq(now),
                        )),
                    t::blocked_until.le(now),
                )
                .returning(t::failures),
            )
        };
    }
    let counted: Option<i64> = match conn {
        AnyConnection::Postgresql(pg) => count!().get_result(pg).optional()?,
        AnyConnection::Sqlite(sqlite) => count!().get_result(sqlite).optional()?,
    };
    let Some(attempts) = counted else {
        // Blocked: the upsert locked the row; its block's end is read back.
        let until =
            Prepared(t::login_throttle.find(bucket).select(t::blocked_until)).get_result(conn)?;
        return Ok(Err(until));
    };
    let seconds = delay(attempts);
    if seconds > 0 {
        Prepared(
            diesel::update(t::login_throttle.find(bucket))
                .set(t::blocked_until.eq(now.saturating_add(seconds)))
                .returning(t::blocked_until),
        )
        .get_result::<i64>(conn)?;
    }
    Ok(Ok(()))
}

/// `purge_throttle` on PostgreSQL (diesel cannot name the table twice).
const PURGE_SKIPPING_LOCKED: &str = "\
DELETE FROM login_throttle WHERE bucket IN (
    SELECT bucket FROM login_throttle WHERE updated_at < $1 AND blocked_until < $1
    FOR UPDATE SKIP LOCKED)";

/// What a right attempt settles: the bucket that starts over (its failures
/// and block zeroed), and the one that only takes its attempt back.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub clear: String,
    pub refund: Option<String>,
}

/// Settles inside the caller's transaction. The rows are locked in the
/// order `admit_attempts` locks them (by bucket), so a settlement and an
/// admission sharing both buckets cannot each hold the row the other
/// waits for.
pub(crate) fn settle_in(conn: &mut AnyConnection, settlement: &Settlement) -> QueryResult<()> {
    use login_throttle::dsl as t;
    // Zeroed, not deleted: the account's next attempt updates its row in
    // place instead of inserting it again; the purge deletes it once idle.
    let clear = |conn: &mut AnyConnection| {
        Prepared(
            diesel::update(t::login_throttle.find(&settlement.clear))
                .set((t::failures.eq(0), t::blocked_until.eq(0)))
                .returning(t::failures),
        )
        .get_results::<i64>(conn)
        .map(drop)
    };
    match settlement.refund.as_deref() {
        None => clear(conn),
        Some(refund) if refund < settlement.clear.as_str() => {
            refund_in(conn, refund)?;
            clear(conn)
        }
        Some(refund) => {
            clear(conn)?;
            refund_in(conn, refund)
        }
    }
}

/// Takes one counted attempt back from `bucket`, never below zero.
fn refund_in(conn: &mut AnyConnection, bucket: &str) -> QueryResult<()> {
    use login_throttle::dsl as t;
    Prepared(
        diesel::update(t::login_throttle.find(bucket))
            .filter(t::failures.gt(0))
            .set(t::failures.eq(t::failures - 1))
            .returning(t::failures),
    )
    .get_results::<i64>(conn)
    .map(drop)
}

impl ThrottleStore for Store {
    async fn admit_attempts(
        &self,
        mut buckets: Vec<BucketPolicy>,
        now: i64,
        window_start: i64,
    ) -> Result<Admission, StoreError> {
        // Rows are locked in one order, whatever the caller's, so two
        // attempts sharing buckets (an address) cannot deadlock.
        buckets.sort_by(|a, b| a.0.cmp(&b.0));
        self.run(move |conn| {
            // Every bucket is looked at, so that a refusal names the latest
            // end of a block; whatever was counted is rolled back then.
            let mut blocked: Option<i64> = None;
            let counted = conn.transaction(|conn| {
                for policy in &buckets {
                    if let Err(until) = count_attempt(conn, policy, now, window_start)? {
                        blocked = Some(blocked.map_or(until, |b| b.max(until)));
                    }
                }
                match blocked {
                    Some(_) => Err(diesel::result::Error::RollbackTransaction),
                    None => Ok(()),
                }
            });
            match (counted, blocked) {
                (Ok(()), _) => Ok(Admission::Allowed),
                (Err(e), Some(until)) => {
                    if !matches!(e, diesel::result::Error::RollbackTransaction) {
                        // Refused either way; the connection is not pooled again.
                        tracing::warn!(error = %e, "a refused login attempt was not rolled back");
                    }
                    Ok(Admission::Blocked { until })
                }
                (Err(e), None) => Err(StoreError::from(e)),
            }
        })
        .await
    }

    async fn refund_attempt(&self, bucket: String) -> Result<(), StoreError> {
        self.run(move |conn| refund_in(conn, &bucket).map_err(StoreError::from))
            .await
    }

    async fn settle_attempt(&self, settlement: Settlement) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| settle_in(conn, &settlement))
                .map_err(StoreError::from)
        })
        .await
    }

    async fn throttle_records(
        &self,
        buckets: Vec<String>,
    ) -> Result<Vec<ThrottleRecord>, StoreError> {
        self.run(move |conn| {
            login_throttle::table
                .filter(login_throttle::bucket.eq_any(buckets))
                .select(ThrottleRecord::as_select())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn clear_bucket(&self, bucket: String) -> Result<(), StoreError> {
        self.run(move |conn| {
            diesel::delete(login_throttle::table.find(bucket))
                .execute(conn)
                .map(drop)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn purge_throttle(&self, before: i64) -> Result<usize, StoreError> {
        self.run(move |conn| {
            use login_throttle::dsl as t;
            let idle = t::updated_at.lt(before).and(t::blocked_until.lt(before));
            match conn {
                // A row an attempt holds is skipped, never waited for: the
                // purge locks many rows in no particular order, and an
                // attempt holds one bucket's row while it locks the next.
                AnyConnection::Postgresql(pg) => diesel::sql_query(PURGE_SKIPPING_LOCKED)
                    .bind::<diesel::sql_types::BigInt, _>(before)
                    .execute(pg),
                AnyConnection::Sqlite(sqlite) => {
                    diesel::delete(t::login_throttle.filter(idle)).execute(sqlite)
                }
            }
            .map_err(StoreError::from)
        })
        .await
    }
}
