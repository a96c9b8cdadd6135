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
    /// The buckets must be distinct: a bucket named twice is refused with
    /// an error.
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

/// `INSERT INTO login_throttle VALUES $rows ON CONFLICT (bucket) DO
/// UPDATE SET $changes [WHERE $filter] RETURNING $returning`, kept
/// prepared. A row the `WHERE` skips is locked but not written, and
/// returns nothing.
macro_rules! upsert {
    ($rows:expr, $changes:expr, $(where $filter:expr,)? $returning:expr) => {{
        let statement = diesel::insert_into(login_throttle::table)
            .values($rows)
            .on_conflict(login_throttle::bucket)
            .do_update()
            .set($changes);
        // The `WHERE` of `DO UPDATE`: diesel has it as `FilterDsl`, which
        // `QueryDsl` does not bring in.
        $(let statement = diesel::query_dsl::methods::FilterDsl::filter(statement, $filter);)?
        Prepared(statement.returning($returning))
    }};
}

/// Runs `upsert!` for every bucket of `$buckets` (sorted, distinct), a
/// row made by `$row`, inside the caller's transaction, and collects what
/// it returns. On PostgreSQL one statement upserts each pair of buckets (a
/// login's account and address: a round trip less a login). Admissions
/// and settlements all sort their buckets before building the `VALUES`
/// list, so what keeps two of them from locking a pair crosswise is that
/// PostgreSQL locks one list's rows in one order; its executor takes them
/// in the list's order (observed, not documented). Each length is a
/// statement of its own.
/// SQLite runs in the process, where a statement costs no round trip, and
/// diesel cannot keep its multi-row upsert prepared (its batch insert is
/// not a query `Prepared` can wrap), so it would be parsed on every login:
/// one statement a bucket there. A macro, not a function: each backend
/// and length has its own statement type.
macro_rules! upsert_each {
    (
        $conn:expr, $buckets:expr, $row:expr, $changes:expr, $(where $filter:expr,)?
        $returning:expr => $returned:ty
    ) => {{
        let mut returned: Vec<$returned> = Vec::with_capacity($buckets.len());
        match $conn {
            AnyConnection::Postgresql(pg) => {
                let mut pairs = $buckets.chunks_exact(2);
                for pair in &mut pairs {
                    let rows = [$row(&pair[0]), $row(&pair[1])];
                    let statement = upsert!(rows, $changes(), $(where $filter(),)? $returning);
                    returned.extend(statement.get_results::<$returned>(pg)?);
                }
                for one in pairs.remainder() {
                    let statement = upsert!($row(one), $changes(), $(where $filter(),)? $returning);
                    returned.extend(statement.get_results::<$returned>(pg)?);
                }
            }
            AnyConnection::Sqlite(sqlite) => {
                for one in $buckets.iter() {
                    let statement = upsert!($row(one), $changes(), $(where $filter(),)? $returning);
                    returned.extend(statement.get_results::<$returned>(sqlite)?);
                }
            }
        }
        returned
    }};
}

/// Counts one attempt in every bucket of `buckets` (sorted, distinct)
/// inside the caller's transaction; `Err` with the latest end of a block
/// when a bucket is blocked (the caller then rolls back what was counted).
///
/// An upsert counts the attempt ([`upsert_counts`]): a new bucket starts
/// at one, a bucket idle for a whole window starts again at one (a block
/// counts as activity until it ends, or a bucket that served a block as
/// long as the window would start afresh the moment it ended), any other
/// counts one more. A blocked bucket's row is locked but not updated (the
/// `WHERE` of `DO UPDATE`), and returns nothing: any bucket missing from
/// what the upserts return counts as blocked, its block's end read back.
/// On SQLite the upsert takes the database's write lock (waiting out
/// busy_timeout), so no read lock is ever upgraded; on PostgreSQL a
/// replica inserting the same new bucket at once makes this one wait,
/// then update the row it inserted. A second statement sets a block when
/// one starts.
///
/// The address bucket, shared by every login from one address, is
/// written once here and once by a right attempt's settlement, and only
/// `bucket` is indexed, so on PostgreSQL each write can be a heap-only
/// update (migration `login_throttle_updates_in_place`).
fn count_attempts(
    conn: &mut AnyConnection,
    buckets: &[BucketPolicy],
    now: i64,
    window_start: i64,
) -> QueryResult<Result<(), i64>> {
    use login_throttle::dsl as t;
    let counted = upsert_counts(conn, buckets, now, window_start)?;
    let attempts_in = |bucket: &str| {
        counted
            .iter()
            .find(|(name, _)| name == bucket)
            .map(|&(_, attempts)| attempts)
    };
    let mut blocked: Option<i64> = None;
    for (bucket, _) in buckets {
        if attempts_in(bucket).is_none() {
            // The upsert inserted or locked the row, so it is there; an
            // error (not a "not found") if that ever stops being so.
            let until: i64 = Prepared(t::login_throttle.find(bucket).select(t::blocked_until))
                .get_result(conn)
                .optional()?
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        "a throttle bucket was neither counted nor found".into(),
                    )
                })?;
            blocked = Some(blocked.map_or(until, |latest| latest.max(until)));
        }
    }
    if let Some(until) = blocked {
        return Ok(Err(until));
    }
    for (bucket, delay) in buckets {
        let seconds = attempts_in(bucket).map_or(0, delay);
        if seconds > 0 {
            Prepared(
                diesel::update(t::login_throttle.find(bucket))
                    .set(t::blocked_until.eq(now.saturating_add(seconds)))
                    .returning(t::blocked_until),
            )
            .get_result::<i64>(conn)?;
        }
    }
    Ok(Ok(()))
}

/// The upserts of [`count_attempts`] (`upsert_each`): the name and
/// attempts of each bucket that counted this one (a blocked bucket's row
/// returns nothing).
fn upsert_counts(
    conn: &mut AnyConnection,
    buckets: &[BucketPolicy],
    now: i64,
    window_start: i64,
) -> QueryResult<Vec<(String, i64)>> {
    use diesel::dsl::case_when;
    use login_throttle::dsl as t;
    let row = |(bucket, _): &BucketPolicy| unblocked_row(bucket, 1, now);
    let count = || {
        let idle = t::updated_at
            .lt(window_start)
            .and(t::blocked_until.lt(window_start));
        (
            t::failures.eq(case_when(idle, 1i64.into_sql::<BigInt>()).otherwise(t::failures + 1)),
            t::updated_at.eq(now),
        )
    };
    let unblocked = || t::blocked_until.le(now);
    let returning = (t::bucket, t::failures);
    let counted =
        upsert_each!(conn, buckets, row, count, where unblocked, returning => (String, i64));
    Ok(counted)
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

/// The `VALUES` of a throttle upsert: a bucket's row, not blocked.
fn unblocked_row(bucket: &str, failures: i64, updated_at: i64) -> UnblockedRow {
    use login_throttle::dsl as t;
    (
        t::bucket.eq(bucket.to_owned()),
        t::failures.eq(failures),
        t::blocked_until.eq(0),
        t::updated_at.eq(updated_at),
    )
}

type UnblockedRow = (
    diesel::dsl::Eq<login_throttle::bucket, String>,
    diesel::dsl::Eq<login_throttle::failures, i64>,
    diesel::dsl::Eq<login_throttle::blocked_until, i64>,
    diesel::dsl::Eq<login_throttle::updated_at, i64>,
);

/// Settles inside the caller's transaction: the `clear` bucket is zeroed
/// (not deleted: the account's next attempt updates its row in place
/// instead of inserting it again; the purge deletes it once idle), and the
/// `refund` bucket counts one attempt less, never below zero.
///
/// An upsert, one statement for both buckets on PostgreSQL (one each on
/// SQLite: `upsert_each`). Not an `UPDATE … WHERE bucket IN`: that locks
/// the rows in whatever order its plan finds them, and these are locked
/// in the order `admit_attempts` locks them (by bucket), so a settlement
/// and an admission sharing both buckets cannot each hold the row the
/// other waits for. A bucket with no row gets a zeroed row idle since the
/// epoch, which the next purge deletes. That happens only when its row
/// went between the attempt's admission and its settlement (an
/// administrator cleared it, or the purge took it after a window's
/// wait); an attempt admitted meanwhile then has its count taken back
/// with the zeroed row, one attempt at most.
pub(crate) fn settle_in(conn: &mut AnyConnection, settlement: &Settlement) -> QueryResult<()> {
    use diesel::dsl::case_when;
    use login_throttle::dsl as t;
    let clear = settlement.clear.as_str();
    let mut buckets = vec![clear];
    buckets.extend(
        settlement
            .refund
            .as_deref()
            .filter(|&refund| refund != clear),
    );
    buckets.sort_unstable();
    let row = |bucket: &&str| unblocked_row(bucket, 0, 0);
    let settle = || {
        (
            t::failures.eq(case_when(t::bucket.eq(clear), 0i64.into_sql::<BigInt>())
                .when(t::failures.gt(0), t::failures - 1)
                .otherwise(0i64.into_sql::<BigInt>())),
            t::blocked_until.eq(case_when(t::bucket.eq(clear), 0i64.into_sql::<BigInt>())
                .otherwise(t::blocked_until)),
        )
    };
    upsert_each!(conn, buckets, row, settle, t::failures => i64);
    Ok(())
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
        // A bucket named twice is a caller's mistake: one upsert cannot
        // update a row twice, and counting it once would apply only one
        // of its policies.
        if buckets.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(StoreError::Other("a throttle bucket named twice".into()));
        }
        self.run(move |conn| {
            // Every bucket is looked at, so that a refusal names the latest
            // end of a block; whatever was counted is rolled back then.
            let mut blocked: Option<i64> = None;
            let counted = conn.transaction(|conn| {
                if let Err(until) = count_attempts(conn, &buckets, now, window_start)? {
                    blocked = Some(until);
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                Ok(())
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{InstrumentationEvent, SimpleConnection};
    use diesel::prelude::*;

    use super::{AnyConnection, BucketPolicy, Settlement, count_attempts, settle_in};

    type Cached = Arc<Mutex<Vec<String>>>;

    /// A PostgreSQL schema of the test's own, dropped with it (a failed
    /// assertion included).
    struct Schema {
        name: String,
        admin: PgConnection,
    }

    impl Schema {
        fn create(url: &str) -> Schema {
            let random = crate::random::random_bytes::<8>();
            let name = format!("unit_throttle_{}", crate::keys::hex(&random));
            let mut admin = PgConnection::establish(url).unwrap();
            admin
                .batch_execute(&format!("CREATE SCHEMA {name}"))
                .unwrap();
            Schema { name, admin }
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let drop = format!("DROP SCHEMA {} CASCADE", self.name);
            if let Err(e) = self.admin.batch_execute(&drop) {
                eprintln!("{drop}: {e}");
            }
        }
    }

    /// The statements `conn` puts in its cache from now on.
    fn cached_statements(conn: &mut impl Connection) -> Cached {
        let cached = Cached::default();
        let seen = cached.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                seen.lock().unwrap().push(sql.to_owned());
            }
        });
        cached
    }

    /// Runs a login's throttle statements three times (counts in two
    /// buckets and in one, settlements of two and of one); how many
    /// statements were cached.
    fn cached_by_three_logins(mut conn: AnyConnection, cached: &Cached) -> Vec<String> {
        super::super::connection::run_migrations(&mut conn).unwrap();
        cached.lock().unwrap().clear();
        let free = |name: &str| -> BucketPolicy { (name.into(), Box::new(|_| 0)) };
        let settlement = |refund: Option<&str>| Settlement {
            clear: "a:account".into(),
            refund: refund.map(str::to_owned),
        };
        for now in 1_000..1_003 {
            let both = [free("a:account"), free("ip:address")];
            assert_eq!(count_attempts(&mut conn, &both, now, 0), Ok(Ok(())));
            assert_eq!(count_attempts(&mut conn, &both[..1], now, 0), Ok(Ok(())));
            settle_in(&mut conn, &settlement(Some("ip:address"))).unwrap();
            settle_in(&mut conn, &settlement(None)).unwrap();
        }
        cached.lock().unwrap().clone()
    }

    /// Every login runs the throttle's upserts: each is prepared once per
    /// connection, then found in its cache. On PostgreSQL (when
    /// `TESSERA_TEST_DATABASE_URL` names one, in a schema of its own) a
    /// pair of buckets is one statement and a single bucket another; on
    /// SQLite every bucket has a statement of its own.
    #[test]
    fn a_logins_throttle_upserts_stay_prepared() {
        let mut sqlite = SqliteConnection::establish(":memory:").unwrap();
        let cached = cached_statements(&mut sqlite);
        let found = cached_by_three_logins(AnyConnection::Sqlite(sqlite), &cached);
        assert_eq!(found.len(), 2, "a count, a settlement: {found:#?}");

        let Some(url) = std::env::var("TESSERA_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            eprintln!("PostgreSQL skipped: TESSERA_TEST_DATABASE_URL is not set");
            return;
        };
        let schema = Schema::create(&url);
        let mut pg = PgConnection::establish(&url).unwrap();
        pg.batch_execute(&format!("SET search_path TO {}", schema.name))
            .unwrap();
        let cached = cached_statements(&mut pg);
        let found = cached_by_three_logins(AnyConnection::Postgresql(pg), &cached);
        assert_eq!(found.len(), 4, "two counts, two settlements: {found:#?}");
    }
}
