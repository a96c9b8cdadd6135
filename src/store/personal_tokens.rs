//! Personal access tokens (`pat`) and machine tokens (`mt`): the rows of
//! `access_tokens` their owners manage. Every change locks what it changes
//! first, so that the per-owner limit, a roll and a revocation racing on
//! two replicas each see the other's result.

use std::collections::HashMap;
use std::future::Future;

use diesel::prelude::*;

use super::audit::{NewAuditRecord, append_in};
use super::credentials::{AccessTokenRecord, insert_token};
use super::schema::{access_tokens, service_users, users};
use super::{AnyConnection, Refusal, Store, StoreError};

/// The most tokens one listing returns. Each owner holds at most
/// `personal_tokens.max_active_per_owner` live ones; revoked ones are
/// listed only on request.
pub const MAX_LISTED: i64 = 1000;

/// The kinds this module manages (the bootstrap token is not one).
pub const PERSONAL_KINDS: [&str; 2] = ["pat", "mt"];

/// A token with what a listing shows beside it.
#[derive(Debug, Clone)]
pub struct TokenListing {
    pub token: AccessTokenRecord,
    /// The owner's username (a user) or name (a service user); `None` when
    /// the owner is gone.
    pub owner_name: Option<String>,
    /// A machine token's responsible user, when it still exists.
    pub responsible: Option<Responsible>,
}

#[derive(Debug, Clone)]
pub struct Responsible {
    pub id: String,
    pub username: String,
    pub disabled: bool,
}

impl TokenListing {
    /// A machine token nobody answers for: no responsible user, or one who
    /// was disabled or deleted.
    pub fn is_orphaned(&self) -> bool {
        self.token.kind == "mt" && self.responsible.as_ref().is_none_or(|r| r.disabled)
    }
}

/// Which tokens a listing covers: all, or those owned by any of `owners`
/// or answered for by `responsible`.
#[derive(Debug, Clone, Default)]
pub struct TokenScope {
    pub all: bool,
    pub owners: Vec<String>,
    pub responsible: Option<String>,
    /// Only tokens for this environment.
    pub env: Option<String>,
}

/// One token's uses since they were last written.
#[derive(Debug, Clone)]
pub struct TokenUses {
    pub id: String,
    pub count: i64,
    pub last_at: i64,
    pub last_ip: Option<String>,
}

/// A refusal to create: the owner already holds `limit` live tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReached {
    pub limit: u32,
}

pub trait PersonalTokenStore {
    /// Inserts `token` and its audit `event` in one transaction, unless its
    /// owner (locked first) already holds `limit` live tokens: then
    /// `Ok(Err(LimitReached))` and nothing is written. `NotFound` if the
    /// owner does not exist.
    fn create_personal_token(
        &self,
        token: AccessTokenRecord,
        limit: u32,
        now: i64,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<Result<(), LimitReached>, StoreError>> + Send;

    fn personal_token(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<TokenListing>, StoreError>> + Send;

    /// Newest first. Revoked tokens only with `include_revoked`.
    fn list_personal_tokens(
        &self,
        scope: TokenScope,
        include_revoked: bool,
    ) -> impl Future<Output = Result<Vec<TokenListing>, StoreError>> + Send;

    /// Locks the token, lets `change` decide the new row (and a token to
    /// insert beside it, for a roll) and the audit event, and writes them
    /// in one transaction. `Ok(Err(_))`: `change` refused, nothing written.
    /// `NotFound` if absent. Only the state columns change: `disabled_at`,
    /// `revoked_at`, `expires_at`, `responsible_id`, `replaced_by`.
    fn change_personal_token<T, E, F>(
        &self,
        id: String,
        change: F,
    ) -> impl Future<Output = Result<Result<T, E>, StoreError>> + Send
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(TokenListing) -> Result<Changed<T>, E> + Send + 'static;

    /// A personal or machine token's row by id, alone (no names).
    fn token_by_id(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<AccessTokenRecord>, StoreError>> + Send;

    /// The ids of the service users `user_id` owns.
    fn service_users_owned_by(
        &self,
        user_id: String,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Adds counted uses, keeping the latest time and address.
    fn record_token_uses(
        &self,
        uses: Vec<TokenUses>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Why a change's transaction stopped.
enum Stop<E> {
    By(E),
    Limit(u32),
    Database(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Stop<E> {
    fn from(e: diesel::result::Error) -> Self {
        Stop::Database(e)
    }
}

/// What a change writes.
pub struct Changed<T> {
    pub token: AccessTokenRecord,
    /// A token to insert beside the change (a roll's new token), with its
    /// own audit event; the owner's limit applies to it.
    pub inserted: Option<(AccessTokenRecord, NewAuditRecord)>,
    pub event: NewAuditRecord,
    pub value: T,
    /// The most live tokens the owner may hold once `inserted` is in.
    pub limit: u32,
}

/// Takes the write lock on the owner's row (a no-op update), so that two
/// creations for one owner take turns; `false` if the owner is absent.
pub(super) fn lock_owner(
    conn: &mut AnyConnection,
    owner_id: &str,
    owner_kind: &str,
) -> QueryResult<bool> {
    let locked = if owner_kind == "human" {
        diesel::update(users::table.find(owner_id))
            .set(users::username.eq(users::username))
            .execute(conn)?
    } else {
        diesel::update(service_users::table.find(owner_id))
            .set(service_users::name.eq(service_users::name))
            .execute(conn)?
    };
    Ok(locked == 1)
}

/// Live tokens of the owner that count towards the limit: not revoked, not
/// expired, and not in a roll's grace (those are already replaced).
fn live_count(conn: &mut AnyConnection, owner_id: &str, now: i64) -> QueryResult<i64> {
    use access_tokens::dsl as t;
    t::access_tokens
        .filter(t::owner_id.eq(owner_id))
        .filter(t::kind.eq_any(PERSONAL_KINDS))
        .filter(t::revoked_at.is_null())
        .filter(t::replaced_by.is_null())
        .filter(t::expires_at.is_null().or(t::expires_at.gt(now)))
        .count()
        .get_result(conn)
}

/// The owners' and responsible users' names for `tokens`, in two reads.
fn with_names(
    conn: &mut AnyConnection,
    tokens: Vec<AccessTokenRecord>,
) -> QueryResult<Vec<TokenListing>> {
    let user_ids: Vec<&str> = tokens
        .iter()
        .flat_map(|t| {
            let owner = (t.owner_kind == "human").then_some(t.owner_id.as_str());
            owner.into_iter().chain(t.responsible_id.as_deref())
        })
        .collect();
    let people: HashMap<String, (String, bool)> = users::table
        .filter(users::id.eq_any(&user_ids))
        .select((users::id, users::username, users::disabled))
        .load::<(String, String, bool)>(conn)?
        .into_iter()
        .map(|(id, name, disabled)| (id, (name, disabled)))
        .collect();
    let service_ids: Vec<&str> = tokens
        .iter()
        .filter(|t| t.owner_kind != "human")
        .map(|t| t.owner_id.as_str())
        .collect();
    let services: HashMap<String, String> = service_users::table
        .filter(service_users::id.eq_any(&service_ids))
        .select((service_users::id, service_users::name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    Ok(tokens
        .into_iter()
        .map(|token| {
            let owner_name = if token.owner_kind == "human" {
                people.get(&token.owner_id).map(|(name, _)| name.clone())
            } else {
                services.get(&token.owner_id).cloned()
            };
            let responsible = token.responsible_id.as_ref().and_then(|id| {
                people.get(id).map(|(username, disabled)| Responsible {
                    id: id.clone(),
                    username: username.clone(),
                    disabled: *disabled,
                })
            });
            TokenListing {
                token,
                owner_name,
                responsible,
            }
        })
        .collect())
}

/// A user is disabled (`deleted` false) or deleted: their personal
/// tokens stop (checked at each use while disabled; revoked for good when
/// deleted) and the machine tokens they answer for become orphaned (the
/// link is cleared when deleted). `event`'s details gain the counts, and
/// the ids of the orphaned tokens, so the audit shows what someone must
/// take over.
pub(crate) fn owner_leaves_in(
    conn: &mut AnyConnection,
    user_id: &str,
    deleted: bool,
    now: i64,
    event: NewAuditRecord,
) -> QueryResult<NewAuditRecord> {
    use access_tokens::dsl as t;
    let live = t::revoked_at
        .is_null()
        .and(t::expires_at.is_null().or(t::expires_at.gt(now)));
    let personal = if deleted {
        diesel::update(
            t::access_tokens
                .filter(t::owner_id.eq(user_id))
                .filter(t::kind.eq("pat"))
                .filter(live),
        )
        .set(t::revoked_at.eq(now))
        .execute(conn)?
    } else {
        t::access_tokens
            .filter(t::owner_id.eq(user_id))
            .filter(t::kind.eq("pat"))
            .filter(live)
            .count()
            .get_result::<i64>(conn)? as usize
    };
    let orphaned: Vec<String> = t::access_tokens
        .filter(t::responsible_id.eq(user_id))
        .filter(t::kind.eq("mt"))
        .filter(live)
        .select(t::id)
        .load(conn)?;
    if deleted {
        diesel::update(t::access_tokens.filter(t::responsible_id.eq(user_id)))
            .set(t::responsible_id.eq(None::<String>))
            .execute(conn)?;
    }
    Ok(event.with_details([
        ("stopped_personal_tokens", personal.into()),
        ("orphaned_machine_tokens", orphaned.into()),
    ]))
}

fn read_one(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<TokenListing>> {
    let token = access_tokens::table
        .find(id)
        .filter(access_tokens::kind.eq_any(PERSONAL_KINDS))
        .select(AccessTokenRecord::as_select())
        .get_result(conn)
        .optional()?;
    Ok(with_names(conn, token.into_iter().collect())?.pop())
}

impl PersonalTokenStore for Store {
    async fn create_personal_token(
        &self,
        token: AccessTokenRecord,
        limit: u32,
        now: i64,
        event: NewAuditRecord,
    ) -> Result<Result<(), LimitReached>, StoreError> {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                if !lock_owner(conn, &token.owner_id, &token.owner_kind)? {
                    return Err(Refusal::Database(diesel::result::Error::NotFound));
                }
                if live_count(conn, &token.owner_id, now)? >= i64::from(limit) {
                    return Err(Refusal::By(LimitReached { limit }));
                }
                insert_token(conn, &token, &event)?;
                Ok(())
            });
            Refusal::settle(outcome)
        })
        .await
    }

    async fn personal_token(&self, id: String) -> Result<Option<TokenListing>, StoreError> {
        self.run(move |conn| read_one(conn, &id).map_err(StoreError::from))
            .await
    }

    async fn list_personal_tokens(
        &self,
        scope: TokenScope,
        include_revoked: bool,
    ) -> Result<Vec<TokenListing>, StoreError> {
        self.run(move |conn| {
            use access_tokens::dsl as t;
            let mut query = t::access_tokens
                .filter(t::kind.eq_any(PERSONAL_KINDS))
                .select(AccessTokenRecord::as_select())
                .into_boxed();
            if !scope.all {
                let responsible = scope.responsible.unwrap_or_default();
                query = query.filter(
                    t::owner_id
                        .eq_any(scope.owners)
                        .or(t::responsible_id.eq(responsible)),
                );
            }
            if let Some(env) = scope.env {
                query = query.filter(t::env.eq(env));
            }
            if !include_revoked {
                query = query.filter(t::revoked_at.is_null());
            }
            let tokens = query
                .order((t::created_at.desc(), t::id.desc()))
                .limit(MAX_LISTED)
                .load(conn)?;
            with_names(conn, tokens).map_err(StoreError::from)
        })
        .await
    }

    async fn change_personal_token<T, E, F>(
        &self,
        id: String,
        change: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(TokenListing) -> Result<Changed<T>, E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                use access_tokens::dsl as t;
                // The lock first (see `ServiceUserStore::change_service_user`).
                let locked = diesel::update(
                    t::access_tokens
                        .find(&id)
                        .filter(t::kind.eq_any(PERSONAL_KINDS)),
                )
                .set(t::name.eq(t::name))
                .execute(conn)?;
                let current = match read_one(conn, &id)? {
                    Some(current) if locked == 1 => current,
                    _ => return Err(Stop::Database(diesel::result::Error::NotFound)),
                };
                let changed = change(current).map_err(Stop::By)?;
                let token = &changed.token;
                diesel::update(t::access_tokens.find(&id))
                    .set((
                        t::disabled_at.eq(token.disabled_at),
                        t::revoked_at.eq(token.revoked_at),
                        t::expires_at.eq(token.expires_at),
                        t::responsible_id.eq(&token.responsible_id),
                        t::replaced_by.eq(&token.replaced_by),
                    ))
                    .execute(conn)?;
                append_in(conn, &changed.event)?;
                if let Some((inserted, created)) = &changed.inserted {
                    // After the old row's change: a token in its grace no
                    // longer counts.
                    if !lock_owner(conn, &inserted.owner_id, &inserted.owner_kind)? {
                        return Err(Stop::Database(diesel::result::Error::NotFound));
                    }
                    let now = inserted.created_at;
                    if live_count(conn, &inserted.owner_id, now)? >= i64::from(changed.limit) {
                        return Err(Stop::Limit(changed.limit));
                    }
                    diesel::insert_into(t::access_tokens)
                        .values(inserted)
                        .execute(conn)?;
                    append_in(conn, created)?;
                }
                Ok(changed.value)
            });
            match outcome {
                Ok(value) => Ok(Ok(value)),
                Err(Stop::By(refusal)) => Ok(Err(refusal)),
                Err(Stop::Limit(limit)) => Err(StoreError::LimitReached(limit)),
                Err(Stop::Database(e)) => Err(e.into()),
            }
        })
        .await
    }

    async fn token_by_id(&self, id: String) -> Result<Option<AccessTokenRecord>, StoreError> {
        self.run(move |conn| {
            access_tokens::table
                .find(id)
                .select(AccessTokenRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn service_users_owned_by(&self, user_id: String) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| {
            service_users::table
                .filter(service_users::owner_id.eq(user_id))
                .select(service_users::id)
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn record_token_uses(&self, mut uses: Vec<TokenUses>) -> Result<(), StoreError> {
        // One order on every replica, so that two flushes never wait on
        // each other's row locks in a cycle.
        uses.sort_by(|a, b| a.id.cmp(&b.id));
        self.run(move |conn| {
            conn.transaction(|conn| {
                use access_tokens::dsl as t;
                for used in &uses {
                    diesel::update(t::access_tokens.find(&used.id))
                        .set(t::use_count.eq(t::use_count + used.count))
                        .execute(conn)?;
                    // Another replica may have written a later use already.
                    diesel::update(
                        t::access_tokens.find(&used.id).filter(
                            t::last_used_at
                                .is_null()
                                .or(t::last_used_at.le(used.last_at)),
                        ),
                    )
                    .set((
                        t::last_used_at.eq(used.last_at),
                        t::last_used_ip.eq(&used.last_ip),
                    ))
                    .execute(conn)?;
                }
                Ok(())
            })
            .map_err(|e: diesel::result::Error| StoreError::from(e))
        })
        .await
    }
}
