//! Device authorizations (RFC 8628): what a CLI asked for, what the user
//! answered on the verification page, and the pace of the CLI's polling.
//! A poll and a decision are each one statement, so two replicas sharing
//! one database enforce one interval and let one poll redeem an approval.

use std::future::Future;

use diesel::prelude::*;

use super::device_poll::PollStatement;
use super::schema::{device_authorizations, refresh_tokens};
use super::{AnyConnection, PURGE_BATCH, RefreshTokenRecord, Store, StoreError};

/// A device authorization's row. `Debug` shows no digest. Bound whole, as
/// [`CodeRecord`](super::CodeRecord) is.
#[derive(Clone, Queryable, Selectable, Insertable, QueryableByName)]
#[diesel(table_name = device_authorizations, treat_none_as_default_value = false)]
pub struct DeviceRecord {
    /// Hex of the keyed digest of the device code.
    pub device_digest: String,
    /// Hex of the keyed digest of the normalised user code.
    pub user_code_digest: String,
    pub client_id: String,
    pub scopes: String,
    pub requested_at: i64,
    pub requested_from: Option<String>,
    pub expires_at: i64,
    pub interval_secs: i64,
    pub last_polled_ms: Option<i64>,
    /// Whether the latest poll came too soon (and was told `slow_down`).
    pub slowed: bool,
    pub status: String,
    /// The nonce of the poll that redeemed the approval.
    pub claim: Option<String>,
    pub user_id: Option<String>,
    pub auth_time: Option<i64>,
    pub amr: Option<String>,
    pub decided_at: Option<i64>,
    pub decided_from: Option<String>,
    pub access_jti: Option<String>,
    pub access_exp: Option<i64>,
}

impl std::fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("client_id", &self.client_id)
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .field("interval_secs", &self.interval_secs)
            .finish_non_exhaustive()
    }
}

const PENDING: &str = "pending";
const APPROVED: &str = "approved";
const DENIED: &str = "denied";
const REDEEMED: &str = "redeemed";
/// Approved, then the user's sessions ended (a new password, a disabled
/// user) before the tokens were handed out.
const ENDED: &str = "ended";

/// Where an authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Pending,
    Approved,
    Denied,
    Redeemed,
    /// The user's sessions ended between the approval and the tokens.
    Ended,
}

impl DeviceState {
    fn of(status: &str) -> DeviceState {
        match status {
            PENDING => DeviceState::Pending,
            APPROVED => DeviceState::Approved,
            REDEEMED => DeviceState::Redeemed,
            ENDED => DeviceState::Ended,
            // Fail safe: anything else is a refusal.
            _ => DeviceState::Denied,
        }
    }
}

/// What a poll's statement returns: the few columns every answer needs.
/// Decoding the whole row on every poll cost more than the poll's own
/// work on PostgreSQL (diesel finds each column by name).
#[derive(QueryableByName)]
#[diesel(table_name = device_authorizations)]
struct PollRow {
    status: String,
    expires_at: i64,
    slowed: bool,
    claim: Option<String>,
}

/// A poll's outcome: where the authorization stands, and, when this poll
/// redeemed the approval, the whole row (what the tokens are made from).
#[derive(Debug)]
pub struct Polled {
    pub state: DeviceState,
    pub expires_at: i64,
    /// The poll came too soon (and was told `slow_down`).
    pub slowed: bool,
    pub redeemed: Option<Box<DeviceRecord>>,
}

impl DeviceRecord {
    pub fn state(&self) -> DeviceState {
        DeviceState::of(&self.status)
    }

    /// A new authorization's row, pending.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        device_digest: String,
        user_code_digest: String,
        client_id: String,
        scopes: String,
        requested_at: i64,
        requested_from: Option<String>,
        expires_at: i64,
        interval_secs: i64,
    ) -> Self {
        DeviceRecord {
            device_digest,
            user_code_digest,
            client_id,
            scopes,
            requested_at,
            requested_from,
            expires_at,
            interval_secs,
            last_polled_ms: None,
            slowed: false,
            status: PENDING.to_owned(),
            claim: None,
            user_id: None,
            auth_time: None,
            amr: None,
            decided_at: None,
            decided_from: None,
            access_jti: None,
            access_exp: None,
        }
    }
}

/// A user's answer on the verification page.
#[derive(Debug, Clone)]
pub struct DeviceDecision {
    pub approve: bool,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: String,
    pub remote: Option<String>,
}

/// How a decision ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Recorded,
    /// No authorization has that user code (or it was purged).
    Unknown,
    Expired,
    /// Approved, denied or redeemed already.
    AlreadyAnswered,
}

/// How long an ended authorization is kept after it expired, so that a
/// late poll is told `expired_token` rather than `invalid_grant`.
const EXPIRED_KEPT_SECS: i64 = 3600;

/// How much sooner than the interval a poll may arrive before it is too
/// fast: network jitter, not a client's choice.
pub const POLL_LEEWAY_MS: i64 = 500;

pub trait DeviceStore {
    /// Stores a new authorization. [`StoreError::Conflict`] when its user
    /// code's digest is taken (the caller draws another).
    fn create_device(
        &self,
        record: DeviceRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The authorization with this user code, whatever its state.
    fn device_by_user_code(
        &self,
        user_code_digest: String,
    ) -> impl Future<Output = Result<Option<DeviceRecord>, StoreError>> + Send;

    /// Approves or denies a pending, unexpired authorization, once.
    fn decide_device(
        &self,
        user_code_digest: String,
        decision: DeviceDecision,
        now: i64,
    ) -> impl Future<Output = Result<Decided, StoreError>> + Send;

    /// One poll by `client_id` (RFC 8628 §3.4), in one statement: a poll
    /// of a pending authorization sooner than its interval (less
    /// [`POLL_LEEWAY_MS`]) after the previous one sets `slowed` and adds
    /// 5 s to the interval (§3.5); a poll of an unexpired approval
    /// redeems it, writing `claim` (the caller's nonce: it won when the row
    /// comes back with it). `None` when the client has no authorization
    /// with this device code.
    fn poll_device(
        &self,
        device_digest: String,
        client_id: String,
        claim: String,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<Polled>, StoreError>> + Send;

    /// Hands out what the poll holding `claim` minted: stores the first
    /// refresh token of its family, in one transaction with a check that
    /// the approval was not ended meanwhile. `false` when it was: the
    /// access token is then put on the revocation list and nothing is
    /// stored.
    fn finish_device(
        &self,
        device_digest: String,
        claim: String,
        access: (String, i64),
        refresh: Option<RefreshTokenRecord>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives an approval back when the poll that redeemed it could not
    /// hand out the tokens (the database went away mid-way): the next poll
    /// tries again.
    fn unclaim_device(
        &self,
        device_digest: String,
        claim: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes authorizations that expired an hour ago or more, unless the
    /// access token one gave still lives (a new password must still find
    /// its `jti`): the maintenance loop. Returns how many rows went.
    fn purge_devices(&self, now: i64) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// The database's clock in milliseconds: every replica's polls are paced
/// by one clock, whatever the skew between the replicas' own.
fn database_now_ms(conn: &AnyConnection) -> &'static str {
    match conn {
        AnyConnection::Postgresql(_) => {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        }
        AnyConnection::Sqlite(_) => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
    }
}

/// The poll, as SQL both backends run, with `parameter` where the bound
/// values go ([`PollStatement`] says which): every right-hand side reads
/// the row as it was before the update.
fn poll_sql(conn: &AnyConnection, parameter: char) -> String {
    let now_ms = database_now_ms(conn);
    let too_soon = format!(
        "(status = '{PENDING}' AND last_polled_ms IS NOT NULL \
          AND {now_ms} - last_polled_ms < interval_secs * 1000 - {POLL_LEEWAY_MS})"
    );
    let p = parameter;
    format!(
        "UPDATE device_authorizations SET \
           slowed = CASE WHEN {too_soon} THEN TRUE ELSE FALSE END, \
           interval_secs = CASE WHEN {too_soon} THEN interval_secs + 5 ELSE interval_secs END, \
           last_polled_ms = {now_ms}, \
           claim = CASE WHEN (status = '{APPROVED}' AND expires_at * 1000 > {p}) \
             THEN {p} ELSE claim END, \
           status = CASE WHEN (status = '{APPROVED}' AND expires_at * 1000 > {p}) \
             THEN '{REDEEMED}' ELSE status END \
         WHERE device_digest = {p} AND client_id = {p} \
         RETURNING status, expires_at, slowed, claim"
    )
}

/// Ends what a user approved on the device page and has not had tokens
/// for, or is having them minted right now (a new password, a disabled or
/// deleted user, an MFA reset), inside the caller's transaction.
/// [`DeviceStore::finish_device`] then refuses to store what it minted.
pub(crate) fn end_approvals_in(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
    use device_authorizations::dsl as d;
    // The access tokens handed out still living go on the revocation list
    // (the refresh tokens' are revoked with them by the caller).
    let live = d::device_authorizations
        .filter(d::user_id.eq(user_id))
        .filter(d::access_exp.gt(crate::clock::now()))
        .select((d::access_jti, d::access_exp))
        .load::<(Option<String>, Option<i64>)>(conn)?;
    super::authorization::revoke_jtis_in(
        conn,
        live.into_iter()
            .filter_map(|(jti, exp)| Some((jti?, exp?)))
            .collect(),
    )?;
    diesel::update(
        d::device_authorizations
            .filter(d::user_id.eq(user_id))
            .filter(d::status.eq_any([APPROVED, REDEEMED])),
    )
    .set(d::status.eq(ENDED))
    .execute(conn)
}

impl DeviceStore for Store {
    async fn create_device(&self, record: DeviceRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            use device_authorizations::dsl as d;
            // A taken user code is a unique violation: `Conflict`.
            diesel::insert_into(d::device_authorizations)
                .values(&record)
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn device_by_user_code(
        &self,
        user_code_digest: String,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        self.run(move |conn| {
            use device_authorizations::dsl as d;
            Ok(d::device_authorizations
                .filter(d::user_code_digest.eq(user_code_digest))
                .select(DeviceRecord::as_select())
                .get_result(conn)
                .optional()?)
        })
        .await
    }

    async fn decide_device(
        &self,
        user_code_digest: String,
        decision: DeviceDecision,
        now: i64,
    ) -> Result<Decided, StoreError> {
        self.run(move |conn| {
            use device_authorizations::dsl as d;
            let status = if decision.approve { APPROVED } else { DENIED };
            // One statement: of two answers at once, one is recorded.
            let recorded = diesel::update(
                d::device_authorizations
                    .filter(d::user_code_digest.eq(&user_code_digest))
                    .filter(d::status.eq(PENDING))
                    .filter(d::expires_at.gt(now)),
            )
            .set((
                d::status.eq(status),
                d::user_id.eq(&decision.user_id),
                d::auth_time.eq(decision.auth_time),
                d::amr.eq(&decision.amr),
                d::decided_at.eq(now),
                d::decided_from.eq(&decision.remote),
            ))
            .execute(conn)?;
            if recorded == 1 {
                return Ok(Decided::Recorded);
            }
            let found = d::device_authorizations
                .filter(d::user_code_digest.eq(&user_code_digest))
                .select((d::status, d::expires_at))
                .get_result::<(String, i64)>(conn)
                .optional()?;
            Ok(match found {
                None => Decided::Unknown,
                Some((status, _)) if status != PENDING => Decided::AlreadyAnswered,
                Some(_) => Decided::Expired,
            })
        })
        .await
    }

    async fn poll_device(
        &self,
        device_digest: String,
        client_id: String,
        claim: String,
        now_ms: i64,
    ) -> Result<Option<Polled>, StoreError> {
        self.run(move |conn| {
            use device_authorizations::dsl as d;
            // `now_ms` is this replica's clock, for the expiry (as the page
            // that approves checks it); the pace reads the database's.
            let statement =
                PollStatement::new(conn, poll_sql, now_ms, &claim, &device_digest, &client_id);
            let Some(row) = statement.load::<PollRow>(conn)?.pop() else {
                return Ok(None);
            };
            let state = DeviceState::of(&row.status);
            // This poll redeemed the approval: the rest of the row, now
            // its own (no other poll can claim it any more).
            let redeemed = if state == DeviceState::Redeemed && row.claim.as_deref() == Some(&claim)
            {
                let record = d::device_authorizations
                    .find(&device_digest)
                    .select(DeviceRecord::as_select())
                    .get_result(conn)?;
                Some(Box::new(record))
            } else {
                None
            };
            Ok(Some(Polled {
                state,
                expires_at: row.expires_at,
                slowed: row.slowed,
                redeemed,
            }))
        })
        .await
    }

    async fn finish_device(
        &self,
        device_digest: String,
        claim: String,
        access: (String, i64),
        refresh: Option<RefreshTokenRecord>,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| {
            use device_authorizations::dsl as d;
            Ok(conn.transaction(|conn| {
                // Writes first: the row stays locked (PostgreSQL) until the
                // refresh token is stored, so an ending of the user's
                // sessions either comes first and is seen here, or waits
                // and then revokes what is stored here.
                let still = diesel::update(
                    d::device_authorizations
                        .filter(d::device_digest.eq(&device_digest))
                        .filter(d::claim.eq(&claim))
                        .filter(d::status.eq(REDEEMED)),
                )
                .set((d::access_jti.eq(&access.0), d::access_exp.eq(access.1)))
                .execute(conn)?;
                if still == 0 {
                    super::authorization::revoke_jtis_in(conn, vec![access])?;
                    return Ok::<_, diesel::result::Error>(false);
                }
                if let Some(refresh) = &refresh {
                    diesel::insert_into(refresh_tokens::table)
                        .values(refresh)
                        .execute(conn)?;
                }
                Ok(true)
            })?)
        })
        .await
    }

    async fn unclaim_device(&self, device_digest: String, claim: String) -> Result<(), StoreError> {
        self.run(move |conn| {
            use device_authorizations::dsl as d;
            diesel::update(
                d::device_authorizations
                    .filter(d::device_digest.eq(&device_digest))
                    .filter(d::claim.eq(&claim))
                    .filter(d::status.eq(REDEEMED)),
            )
            .set((d::status.eq(APPROVED), d::claim.eq(None::<String>)))
            .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn purge_devices(&self, now: i64) -> Result<usize, StoreError> {
        // In batches: a polling fleet makes thousands an hour.
        self.purge_until_done(move |conn| {
            use device_authorizations::dsl as d;
            let dead = d::expires_at
                .lt(now - EXPIRED_KEPT_SECS)
                .and(d::access_exp.is_null().or(d::access_exp.lt(now)));
            let digests: Vec<String> = d::device_authorizations
                .filter(dead)
                .select(d::device_digest)
                .order(d::expires_at)
                .limit(PURGE_BATCH)
                .load(conn)?;
            if digests.is_empty() {
                return Ok(0);
            }
            // The filter again: a row approved meanwhile stays.
            Ok(diesel::delete(
                d::device_authorizations
                    .filter(d::device_digest.eq_any(digests))
                    .filter(dead),
            )
            .execute(conn)?)
        })
        .await
    }
}
