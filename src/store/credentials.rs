//! Service users and the opaque bearer tokens they hold.

use std::future::Future;

use diesel::prelude::*;

use super::schema::{access_tokens, service_users};
use super::{Store, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_users)]
pub struct ServiceUserRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub owner: String,
    pub is_admin: bool,
    pub created_at: i64,
    /// Space-separated scopes the user may ask for.
    pub scopes: String,
    /// Space-separated audiences the user may ask for.
    pub audiences: String,
    /// A disabled service user gets no token.
    pub enabled: bool,
    /// Seconds an access token issued to it may live at most.
    pub max_token_lifetime: Option<i64>,
    /// The user `owner` names, when linked; `None` for an owner recorded
    /// as free text before users existed (or whose user was deleted).
    pub owner_id: Option<String>,
}

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = access_tokens)]
pub struct AccessTokenRecord {
    pub id: String,
    /// `bt` (bootstrap) or `pat`: the token's prefix kind.
    pub kind: String,
    /// The public part of the token used to find its row.
    pub lookup: String,
    /// Keyed HMAC-SHA256 of the whole token.
    pub digest: Vec<u8>,
    pub owner_id: String,
    pub owner_kind: String,
    pub name: String,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub disabled_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The environment label of a personal or machine token; '' otherwise.
    pub env: String,
    /// A machine token's responsible human (a user id); `None`: orphaned.
    pub responsible_id: Option<String>,
    /// The lifetime chosen at creation (a roll gives it again); `None`:
    /// the token does not expire.
    pub lifetime_secs: Option<i64>,
    pub last_used_ip: Option<String>,
    pub use_count: i64,
    /// The token a roll replaced this one with.
    pub replaced_by: Option<String>,
    /// The last four characters of the token, for lists.
    pub last_four: String,
    /// An agent bootstrap token's registrations allowed (`use_count` counts
    /// them); `None` for other kinds.
    pub max_uses: Option<i64>,
    /// When an agent bootstrap token's expiry was audited.
    pub expiry_audited_at: Option<i64>,
}

/// Inserts a token row and the audit event that records its making, in
/// the caller's transaction.
pub(super) fn insert_token(
    conn: &mut super::AnyConnection,
    token: &AccessTokenRecord,
    event: &super::audit::NewAuditRecord,
) -> QueryResult<()> {
    diesel::insert_into(access_tokens::table)
        .values(token)
        .execute(conn)?;
    super::audit::append_in(conn, event)
}

impl AccessTokenRecord {
    /// Whether the token is accepted at `now` as far as its own row says:
    /// not revoked, not expired (a disabled token is live but refused).
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| exp > now)
    }
}

impl std::fmt::Debug for AccessTokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("owner_id", &self.owner_id)
            .field("digest", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Only touch `last_used_at` once a minute, so that reads stay reads.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

pub trait CredentialStore {
    fn token_by_lookup(
        &self,
        lookup: String,
    ) -> impl Future<Output = Result<Option<AccessTokenRecord>, StoreError>> + Send;

    fn service_user(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<ServiceUserRecord>, StoreError>> + Send;

    /// Sets `revoked_at` (idempotent).
    fn revoke_access_token(
        &self,
        id: String,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn mark_token_used(
        &self,
        id: String,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl CredentialStore for Store {
    async fn token_by_lookup(
        &self,
        lookup: String,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        self.run(move |conn| {
            access_tokens::table
                .filter(access_tokens::lookup.eq(lookup))
                .select(AccessTokenRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn service_user(&self, id: String) -> Result<Option<ServiceUserRecord>, StoreError> {
        self.run(move |conn| {
            service_users::table
                .find(id)
                .select(ServiceUserRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn revoke_access_token(&self, id: String, now: i64) -> Result<(), StoreError> {
        self.run(move |conn| {
            use access_tokens::dsl as t;
            diesel::update(t::access_tokens.find(id).filter(t::revoked_at.is_null()))
                .set(t::revoked_at.eq(now))
                .execute(conn)
                .map(drop)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn mark_token_used(&self, id: String, now: i64) -> Result<(), StoreError> {
        self.run(move |conn| {
            use access_tokens::dsl as t;
            diesel::update(t::access_tokens.find(id))
                .filter(
                    t::last_used_at
                        .is_null()
                        .or(t::last_used_at.lt(now - LAST_USED_GRANULARITY_SECS)),
                )
                .set(t::last_used_at.eq(now))
                .execute(conn)
                .map(drop)
                .map_err(StoreError::from)
        })
        .await
    }
}
