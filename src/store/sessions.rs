//! Browser sessions (issue 10, item 2). A row is found by the keyed digest
//! of the secret the cookie carries; its `id` is the public session id
//! (the ID token's `sid`), never put in a cookie.

use std::future::Future;

use diesel::prelude::*;

use super::audit::append_in;
use super::login_throttle::{Settlement, settle_in};
use super::schema::sessions;
use super::{NewAuditRecord, PURGE_BATCH, Store, StoreError};

/// `treat_none_as_default_value = false`: every insert then has one shape,
/// which diesel keeps prepared (on PostgreSQL it would otherwise parse the
/// `INSERT` anew on every login). No field is optional, so no value
/// changes; an optional field added later is bound as NULL, not DEFAULT.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, treat_none_as_default_value = false)]
pub struct SessionRecord {
    pub id: String,
    /// Keyed HMAC-SHA256 of the cookie's secret.
    pub secret_digest: Vec<u8>,
    pub user_id: String,
    pub auth_time: i64,
    /// Space-separated authentication methods (RFC 8176): `pwd`, `pwd otp`.
    pub amr: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("secret_digest", &"<redacted>")
            .finish_non_exhaustive()
    }
}

pub trait SessionStore {
    fn create_session(
        &self,
        record: SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A login's writes in one transaction: the session stored, the
    /// login's audit event appended, the throttle settled. The throttle
    /// rows (an address's is shared by everyone behind it) are locked
    /// last, for the shortest time.
    fn create_login_session(
        &self,
        record: SessionRecord,
        event: NewAuditRecord,
        settlement: Settlement,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn session_by_digest(
        &self,
        digest: Vec<u8>,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;

    /// Sets `last_seen_at` when it is older than `now - granularity`, so
    /// that most reads stay reads.
    fn touch_session(
        &self,
        id: String,
        now: i64,
        granularity: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Idempotent: ending an unknown session is not an error.
    fn delete_session(&self, id: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends every session of a user (when the user is disabled); how many.
    fn delete_user_sessions(
        &self,
        user_id: String,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Deletes sessions idle since before `idle_before` or created before
    /// `created_before`.
    fn purge_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

impl SessionStore for Store {
    async fn create_session(&self, record: SessionRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            diesel::insert_into(sessions::table)
                .values(&record)
                .execute(conn)
                .map(drop)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn create_login_session(
        &self,
        record: SessionRecord,
        event: NewAuditRecord,
        settlement: Settlement,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::insert_into(sessions::table)
                    .values(&record)
                    .execute(conn)?;
                append_in(conn, &event)?;
                settle_in(conn, &settlement)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn session_by_digest(
        &self,
        digest: Vec<u8>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.run(move |conn| {
            sessions::table
                .filter(sessions::secret_digest.eq(digest))
                .select(SessionRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn touch_session(
        &self,
        id: String,
        now: i64,
        granularity: i64,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            diesel::update(
                sessions::table
                    .find(id)
                    .filter(sessions::last_seen_at.lt(now - granularity)),
            )
            .set(sessions::last_seen_at.eq(now))
            .execute(conn)
            .map(drop)
            .map_err(StoreError::from)
        })
        .await
    }

    async fn delete_session(&self, id: String) -> Result<(), StoreError> {
        self.run(move |conn| {
            diesel::delete(sessions::table.find(id))
                .execute(conn)
                .map(drop)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn delete_user_sessions(&self, user_id: String) -> Result<usize, StoreError> {
        self.run(move |conn| {
            diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id)))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn purge_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<usize, StoreError> {
        // In batches: sign-ins come by the hundred a second at peak.
        self.purge_until_done(move |conn| {
            let ended = sessions::last_seen_at
                .lt(idle_before)
                .or(sessions::created_at.lt(created_before));
            // In no order: with no index on `created_at`, an order would
            // walk the whole `last_seen_at` index for the last batch, a
            // heap read a live session; unordered, it is one scan.
            let ids: Vec<String> = sessions::table
                .filter(ended)
                .select(sessions::id)
                .limit(PURGE_BATCH)
                .load(conn)?;
            if ids.is_empty() {
                return Ok(0);
            }
            // The filter again: a session seen meanwhile stays.
            diesel::delete(
                sessions::table
                    .filter(sessions::id.eq_any(ids))
                    .filter(ended),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await
    }
}
