//! Agents (issue 13): bootstrap tokens (`ab` rows of `access_tokens`) and
//! the clients workloads register with them, each bound to a service user
//! by a row of `agents`.

use std::future::Future;

use diesel::prelude::*;

use super::audit::{NewAuditRecord, append_in};
use super::clients::lock_client;
use super::credentials::{AccessTokenRecord, insert_token};
use super::schema::{access_tokens, agents, clients, service_users};
use super::{ClientRecord, Refusal, Store, StoreError};

/// The `access_tokens.kind` of an agent bootstrap token.
pub const BOOTSTRAP_KIND: &str = "ab";

/// The most rows one listing returns.
pub const MAX_LISTED: i64 = 1000;

#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = agents, treat_none_as_null = true)]
pub struct AgentRecord {
    pub client_id: String,
    pub service_user_id: String,
    /// The bootstrap token the agent registered with.
    pub bootstrap_id: Option<String>,
    pub registered_ip: Option<String>,
    pub key_expires_at: i64,
    /// The key a rotation replaced, usable until `previous_key_expires_at`.
    pub previous_jwks: Option<String>,
    pub previous_key_expires_at: Option<i64>,
    /// Keyed digest of the current registration access token.
    pub registration_digest: Vec<u8>,
    /// The token the last configuration call used: it may repeat that
    /// call's rotation (the answer was lost) during the overlap, no more.
    pub previous_registration_digest: Option<Vec<u8>>,
    pub rotated_at: Option<i64>,
    pub last_token_at: Option<i64>,
    pub created_at: i64,
}

impl std::fmt::Debug for AgentRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRecord")
            .field("client_id", &self.client_id)
            .field("service_user_id", &self.service_user_id)
            .field("key_expires_at", &self.key_expires_at)
            .finish_non_exhaustive()
    }
}

/// An agent and the client it is.
pub type AgentWithClient = (ClientRecord, AgentRecord);

/// Why a bootstrap token did not register an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapRefused {
    Unknown,
    Revoked,
    Expired,
    UsedUp,
    /// Its service user is disabled or gone.
    ServiceUserUnavailable,
}

pub trait AgentStore {
    /// Inserts a bootstrap token and its audit event, if its service user
    /// exists (`NotFound` otherwise) and holds fewer than `limit` usable
    /// bootstrap tokens (`LimitReached` otherwise; the service user's row
    /// is locked first, so two creations take turns).
    fn create_bootstrap(
        &self,
        token: AccessTokenRecord,
        limit: u32,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn bootstrap(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<AccessTokenRecord>, StoreError>> + Send;

    /// Newest first; revoked ones only with `include_revoked`.
    fn list_bootstraps(
        &self,
        service_user_id: Option<String>,
        include_revoked: bool,
    ) -> impl Future<Output = Result<Vec<AccessTokenRecord>, StoreError>> + Send;

    /// Revokes a live bootstrap token; `NotFound` if there is none.
    fn revoke_bootstrap(
        &self,
        id: String,
        now: i64,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes one use of the bootstrap token and stores the agent, its
    /// client, `registered` and `used` (with the `uses_left` the
    /// transaction leaves), all in one transaction. The use is taken by a
    /// conditional update (below `max_uses`, live), so of two replicas
    /// racing for the last use exactly one wins.
    fn register_agent(
        &self,
        bootstrap_id: String,
        now: i64,
        agent: AgentWithClient,
        registered: NewAuditRecord,
        used: NewAuditRecord,
    ) -> impl Future<Output = Result<Result<(), BootstrapRefused>, StoreError>> + Send;

    fn agent(
        &self,
        client_id: String,
    ) -> impl Future<Output = Result<Option<AgentWithClient>, StoreError>> + Send;

    /// Newest first, with their clients. Without `live_at`, every agent;
    /// with it, only those whose key still works then: an agent whose key
    /// expired unrotated (a restarted container's old self) can never
    /// come back, and would crowd the live ones out of the listing.
    fn list_agents(
        &self,
        service_user_id: Option<String>,
        live_at: Option<i64>,
    ) -> impl Future<Output = Result<Vec<AgentWithClient>, StoreError>> + Send;

    /// Locks the agent's client, lets `change` decide the new rows and the
    /// audit event, and writes them in one transaction. `change` returning
    /// `None` for the rows deletes the agent (and its client).
    /// `Ok(Err(_))`: `change` refused and nothing was written; `NotFound`
    /// if there is no such agent.
    fn change_agent<T, E, F>(
        &self,
        client_id: String,
        change: F,
    ) -> impl Future<Output = Result<Result<T, E>, StoreError>> + Send
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(AgentWithClient) -> Result<AgentChange<T>, E> + Send + 'static;

    /// Marks up to `limit` bootstrap tokens that expired by `now` (and were
    /// not revoked) as audited, appending `event(token)` for each one this
    /// call marked: of two replicas sweeping at once, each token's event is
    /// written once. Returns how many were marked.
    fn record_bootstrap_expiries<F>(
        &self,
        now: i64,
        limit: i64,
        event: F,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send
    where
        F: Fn(&AccessTokenRecord) -> NewAuditRecord + Send + 'static;

    /// Deletes up to `limit` agents (with their clients) whose key, and
    /// previous key, expired by `expired_by`: they can never work again.
    /// Appends `event(client, agent)` for each. Returns how many went.
    fn purge_expired_agents<F>(
        &self,
        expired_by: i64,
        limit: i64,
        event: F,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send
    where
        F: Fn(&ClientRecord, &AgentRecord) -> NewAuditRecord + Send + 'static;

    /// Records when the agent last got a token (best effort bookkeeping).
    fn touch_agent(
        &self,
        client_id: String,
        at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What [`AgentStore::change_agent`] writes.
pub struct AgentChange<T> {
    /// The new rows; `None` deletes the agent and its client.
    pub rows: Option<AgentWithClient>,
    pub event: NewAuditRecord,
    pub value: T,
}

fn read_agent(conn: &mut super::AnyConnection, id: &str) -> QueryResult<Option<AgentWithClient>> {
    clients::table
        .inner_join(agents::table)
        .filter(clients::id.eq(id))
        .select((ClientRecord::as_select(), AgentRecord::as_select()))
        .get_result(conn)
        .optional()
}

/// Why the bootstrap token `id` cannot be used at `now`.
fn refusal(conn: &mut super::AnyConnection, id: &str, now: i64) -> QueryResult<BootstrapRefused> {
    let Some(token) = access_tokens::table
        .find(id)
        .filter(access_tokens::kind.eq(BOOTSTRAP_KIND))
        .select(AccessTokenRecord::as_select())
        .get_result(conn)
        .optional()?
    else {
        return Ok(BootstrapRefused::Unknown);
    };
    Ok(if token.revoked_at.is_some() {
        BootstrapRefused::Revoked
    } else if token.expires_at.is_none_or(|at| at <= now) {
        BootstrapRefused::Expired
    } else {
        BootstrapRefused::UsedUp
    })
}

impl AgentStore for Store {
    async fn create_bootstrap(
        &self,
        token: AccessTokenRecord,
        limit: u32,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        let outcome = self
            .run(move |conn| {
                let outcome = conn.transaction(|conn| {
                    if !super::personal_tokens::lock_owner(conn, &token.owner_id, "service")? {
                        return Err(Refusal::Database(diesel::result::Error::NotFound));
                    }
                    use access_tokens::dsl as t;
                    let now = token.created_at;
                    let usable: i64 = t::access_tokens
                        .filter(t::kind.eq(BOOTSTRAP_KIND))
                        .filter(t::owner_id.eq(&token.owner_id))
                        .filter(t::revoked_at.is_null())
                        .filter(t::expires_at.gt(now))
                        .filter(t::max_uses.gt(t::use_count.nullable()))
                        .count()
                        .get_result(conn)?;
                    if usable >= i64::from(limit) {
                        return Err(Refusal::By(limit));
                    }
                    insert_token(conn, &token, &event)?;
                    Ok(())
                });
                Refusal::settle(outcome)
            })
            .await?;
        outcome.map_err(StoreError::LimitReached)
    }

    async fn bootstrap(&self, id: String) -> Result<Option<AccessTokenRecord>, StoreError> {
        self.run(move |conn| {
            access_tokens::table
                .find(id)
                .filter(access_tokens::kind.eq(BOOTSTRAP_KIND))
                .select(AccessTokenRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn list_bootstraps(
        &self,
        service_user_id: Option<String>,
        include_revoked: bool,
    ) -> Result<Vec<AccessTokenRecord>, StoreError> {
        self.run(move |conn| {
            use access_tokens::dsl as t;
            let mut query = t::access_tokens
                .filter(t::kind.eq(BOOTSTRAP_KIND))
                .select(AccessTokenRecord::as_select())
                .into_boxed();
            if let Some(owner) = service_user_id {
                query = query.filter(t::owner_id.eq(owner));
            }
            if !include_revoked {
                query = query.filter(t::revoked_at.is_null());
            }
            query
                .order((t::created_at.desc(), t::id.desc()))
                .limit(MAX_LISTED)
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn revoke_bootstrap(
        &self,
        id: String,
        now: i64,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                use access_tokens::dsl as t;
                let revoked = diesel::update(
                    t::access_tokens
                        .find(&id)
                        .filter(t::kind.eq(BOOTSTRAP_KIND))
                        .filter(t::revoked_at.is_null()),
                )
                .set(t::revoked_at.eq(now))
                .execute(conn)?;
                if revoked == 0 {
                    return Err(diesel::result::Error::NotFound);
                }
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn register_agent(
        &self,
        bootstrap_id: String,
        now: i64,
        (client, agent): AgentWithClient,
        registered: NewAuditRecord,
        used: NewAuditRecord,
    ) -> Result<Result<(), BootstrapRefused>, StoreError> {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                use access_tokens::dsl as t;
                let taken = diesel::update(
                    t::access_tokens
                        .find(&bootstrap_id)
                        .filter(t::kind.eq(BOOTSTRAP_KIND))
                        .filter(t::revoked_at.is_null())
                        .filter(t::expires_at.gt(now))
                        .filter(t::max_uses.gt(t::use_count.nullable())),
                )
                .set((t::use_count.eq(t::use_count + 1), t::last_used_at.eq(now)))
                .execute(conn)?;
                if taken == 0 {
                    return Err(Refusal::By(refusal(conn, &bootstrap_id, now)?));
                }
                let enabled = service_users::table
                    .find(&agent.service_user_id)
                    .select(service_users::enabled)
                    .get_result::<bool>(conn)
                    .optional()?;
                if enabled != Some(true) {
                    return Err(Refusal::By(BootstrapRefused::ServiceUserUnavailable));
                }
                diesel::insert_into(clients::table)
                    .values(&client)
                    .execute(conn)?;
                diesel::insert_into(agents::table)
                    .values(&agent)
                    .execute(conn)?;
                let (count, max): (i64, Option<i64>) = t::access_tokens
                    .find(&bootstrap_id)
                    .select((t::use_count, t::max_uses))
                    .get_result(conn)?;
                let left = (max.unwrap_or(0) - count).max(0);
                append_in(conn, &registered)?;
                append_in(conn, &used.with_details([("uses_left", left.into())]))?;
                Ok(())
            });
            Refusal::settle(outcome)
        })
        .await
    }

    async fn agent(&self, client_id: String) -> Result<Option<AgentWithClient>, StoreError> {
        self.run(move |conn| read_agent(conn, &client_id).map_err(StoreError::from))
            .await
    }

    async fn list_agents(
        &self,
        service_user_id: Option<String>,
        live_at: Option<i64>,
    ) -> Result<Vec<AgentWithClient>, StoreError> {
        self.run(move |conn| {
            let mut query = clients::table
                .inner_join(agents::table)
                .select((ClientRecord::as_select(), AgentRecord::as_select()))
                .into_boxed();
            if let Some(owner) = service_user_id {
                query = query.filter(agents::service_user_id.eq(owner));
            }
            if let Some(now) = live_at {
                query = query.filter(agents::key_expires_at.gt(now));
            }
            query
                .order((agents::created_at.desc(), agents::client_id.desc()))
                .limit(MAX_LISTED)
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn change_agent<T, E, F>(
        &self,
        client_id: String,
        change: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(AgentWithClient) -> Result<AgentChange<T>, E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                lock_client(conn, &client_id)?;
                let current =
                    read_agent(conn, &client_id)?.ok_or(diesel::result::Error::NotFound)?;
                let changed = change(current).map_err(Refusal::By)?;
                match changed.rows {
                    Some((client, agent)) => {
                        diesel::update(clients::table.find(&client_id))
                            .set(&client)
                            .execute(conn)?;
                        diesel::update(agents::table.find(&client_id))
                            .set(&agent)
                            .execute(conn)?;
                    }
                    None => {
                        diesel::delete(agents::table.find(&client_id)).execute(conn)?;
                        diesel::delete(clients::table.find(&client_id)).execute(conn)?;
                    }
                }
                append_in(conn, &changed.event)?;
                Ok(changed.value)
            });
            Refusal::settle(outcome)
        })
        .await
    }

    async fn record_bootstrap_expiries<F>(
        &self,
        now: i64,
        limit: i64,
        event: F,
    ) -> Result<usize, StoreError>
    where
        F: Fn(&AccessTokenRecord) -> NewAuditRecord + Send + 'static,
    {
        self.run(move |conn| {
            conn.transaction(|conn| {
                use access_tokens::dsl as t;
                let expired: Vec<AccessTokenRecord> = t::access_tokens
                    .filter(t::kind.eq(BOOTSTRAP_KIND))
                    .filter(t::expiry_audited_at.is_null())
                    .filter(t::revoked_at.is_null())
                    .filter(t::expires_at.le(now))
                    .select(AccessTokenRecord::as_select())
                    .limit(limit)
                    .load(conn)?;
                let mut marked = 0;
                for token in &expired {
                    let claimed = diesel::update(
                        t::access_tokens
                            .find(&token.id)
                            .filter(t::expiry_audited_at.is_null()),
                    )
                    .set(t::expiry_audited_at.eq(now))
                    .execute(conn)?;
                    if claimed == 1 {
                        append_in(conn, &event(token))?;
                        marked += 1;
                    }
                }
                Ok::<_, diesel::result::Error>(marked)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn purge_expired_agents<F>(
        &self,
        expired_by: i64,
        limit: i64,
        event: F,
    ) -> Result<usize, StoreError>
    where
        F: Fn(&ClientRecord, &AgentRecord) -> NewAuditRecord + Send + 'static,
    {
        self.run(move |conn| {
            conn.transaction(|conn| {
                let dead: Vec<AgentWithClient> = clients::table
                    .inner_join(agents::table)
                    .filter(agents::key_expires_at.le(expired_by))
                    .filter(
                        agents::previous_key_expires_at
                            .is_null()
                            .or(agents::previous_key_expires_at.le(expired_by)),
                    )
                    .select((ClientRecord::as_select(), AgentRecord::as_select()))
                    // One order on every replica: two sweeps at once wait
                    // for each other instead of deadlocking.
                    .order(agents::client_id.asc())
                    .limit(limit)
                    .load(conn)?;
                let mut purged = 0;
                for (client, agent) in &dead {
                    // Another replica's sweep may have taken it first.
                    let deleted = diesel::delete(clients::table.find(&client.id)).execute(conn)?;
                    if deleted == 1 {
                        append_in(conn, &event(client, agent))?;
                        purged += 1;
                    }
                }
                Ok::<_, diesel::result::Error>(purged)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn touch_agent(&self, client_id: String, at: i64) -> Result<(), StoreError> {
        self.run(move |conn| {
            diesel::update(agents::table.find(client_id))
                .set(agents::last_token_at.eq(at))
                .execute(conn)
                .map(drop)
                .map_err(StoreError::from)
        })
        .await
    }
}
