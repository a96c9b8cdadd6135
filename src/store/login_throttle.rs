//! Failed sign-in attempts per bucket (an account or a client address),
//! in the database so that every replica counts the same attempts. The
//! policy (how many failures are free, how long a block lasts) lives in
//! `accounts::throttle`; this only counts and stores.

use std::future::Future;

use diesel::prelude::*;

use super::schema::login_throttle;
use super::{Store, StoreError};

/// One bucket's state.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = login_throttle)]
pub struct ThrottleRecord {
    pub bucket: String,
    pub failures: i64,
    pub blocked_until: i64,
    pub updated_at: i64,
}

/// Whether an attempt may go ahead (`ThrottleStore::admit_attempt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted: this is the bucket's `attempts`-th attempt in its window.
    Allowed { attempts: i64 },
    /// The bucket is blocked until then; the attempt was not counted.
    Blocked { until: i64 },
}

pub trait ThrottleStore {
    /// Admits one attempt in `bucket` before its credentials are checked:
    /// in one transaction that holds the row's lock (PostgreSQL) or the
    /// database's write lock (SQLite), refuses it when the bucket is
    /// blocked, else counts it (a row not updated since before
    /// `window_start` starts again from one) and blocks the bucket for
    /// `delay(attempts)` seconds when that is positive. Counting before
    /// checking means parallel guesses cannot all pass a check made
    /// before any of them failed (check-then-act).
    fn admit_attempt(
        &self,
        bucket: String,
        now: i64,
        window_start: i64,
        delay: Box<dyn Fn(i64) -> i64 + Send>,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;

    /// Takes back one attempt counted by `admit_attempt` (an attempt that
    /// turned out not to be a failure). Never goes below zero.
    fn refund_attempt(&self, bucket: String)
    -> impl Future<Output = Result<(), StoreError>> + Send;

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

impl ThrottleStore for Store {
    async fn admit_attempt(
        &self,
        bucket: String,
        now: i64,
        window_start: i64,
        delay: Box<dyn Fn(i64) -> i64 + Send>,
    ) -> Result<Admission, StoreError> {
        self.run(move |conn| {
            use login_throttle::dsl as t;
            // Two replicas may insert a new bucket at once: the loser
            // finds the row on its second try.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let outcome = conn.transaction(|conn| {
                    // Writes first: on SQLite the first write takes the
                    // database's write lock (waiting out busy_timeout), so
                    // no read lock is ever upgraded; on PostgreSQL the
                    // UPDATE locks the row until commit, and the SELECT
                    // after it (a new snapshot under READ COMMITTED) sees
                    // the last committed count.
                    let locked = diesel::update(t::login_throttle.find(&bucket))
                        .set(t::updated_at.eq(t::updated_at))
                        .execute(conn)?;
                    if locked == 0 {
                        diesel::insert_into(t::login_throttle)
                            .values((
                                t::bucket.eq(&bucket),
                                t::failures.eq(0),
                                t::blocked_until.eq(0),
                                t::updated_at.eq(now),
                            ))
                            .execute(conn)?;
                    }
                    let row = t::login_throttle
                        .find(&bucket)
                        .select(ThrottleRecord::as_select())
                        .get_result(conn)?;
                    if row.blocked_until > now {
                        return Ok(Admission::Blocked {
                            until: row.blocked_until,
                        });
                    }
                    // A bucket idle for a whole window starts again; a block
                    // counts as activity until it ends, or a bucket that
                    // served a block as long as the window would start
                    // afresh the moment it ended.
                    let last_active = row.updated_at.max(row.blocked_until);
                    let attempts = if last_active < window_start {
                        1
                    } else {
                        row.failures + 1
                    };
                    let seconds = delay(attempts);
                    let blocked_until = if seconds > 0 {
                        now.saturating_add(seconds)
                    } else {
                        row.blocked_until
                    };
                    diesel::update(t::login_throttle.find(&bucket))
                        .set((
                            t::failures.eq(attempts),
                            t::blocked_until.eq(blocked_until),
                            t::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                    Ok(Admission::Allowed { attempts })
                });
                match outcome {
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) if attempt < 2 => continue,
                    other => return other.map_err(StoreError::from),
                }
            }
        })
        .await
    }

    async fn refund_attempt(&self, bucket: String) -> Result<(), StoreError> {
        self.run(move |conn| {
            use login_throttle::dsl as t;
            diesel::update(t::login_throttle.find(bucket))
                .filter(t::failures.gt(0))
                .set(t::failures.eq(t::failures - 1))
                .execute(conn)
                .map(drop)
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
            diesel::delete(
                t::login_throttle.filter(t::updated_at.lt(before).and(t::blocked_until.lt(before))),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await
    }
}
