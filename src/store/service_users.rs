//! Service users (ZITADEL's machine users) and their public keys.

use std::future::Future;

use diesel::prelude::*;

use super::audit::{NewAuditRecord, append_in};
use super::credentials::ServiceUserRecord;
use super::schema::{access_tokens, agents, clients, service_user_keys, service_users};
use super::trust::policy_naming_service_user;
use super::{Refusal, Store, StoreError};

/// A transaction's failure: the store's error, or "still used by".
struct InUse(StoreError);

impl From<String> for InUse {
    fn from(by: String) -> Self {
        InUse(StoreError::InUse(by))
    }
}

impl From<diesel::result::Error> for InUse {
    fn from(e: diesel::result::Error) -> Self {
        InUse(e.into())
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_user_keys)]
pub struct ServiceUserKeyRecord {
    pub id: String,
    pub user_id: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A service user and its keys that have not expired.
pub type ServiceUserWithKeys = (ServiceUserRecord, Vec<ServiceUserKeyRecord>);

pub trait ServiceUserStore {
    fn create_service_user(
        &self,
        user: ServiceUserRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn list_service_users(
        &self,
    ) -> impl Future<Output = Result<Vec<ServiceUserRecord>, StoreError>> + Send;

    /// Deletes the user, its keys and its tokens. `NotFound` if absent;
    /// `InUse` if a trust policy names it (the policy goes first).
    fn delete_service_user(
        &self,
        id: String,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads the user, lets `change` decide what to write (the whole new
    /// record and its audit event), and writes it, in one transaction that
    /// locks the user's row first (no lost update; an `If-Match` checked in
    /// `change` cannot race). `Ok(Err(_))`: `change` refused, nothing
    /// written. `NotFound` if absent. The id cannot change.
    fn change_service_user<T, E, F>(
        &self,
        id: String,
        change: F,
    ) -> impl Future<Output = Result<Result<T, E>, StoreError>> + Send
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(ServiceUserRecord) -> Result<(ServiceUserRecord, NewAuditRecord, T), E>
            + Send
            + 'static;

    fn add_service_user_key(
        &self,
        key: ServiceUserKeyRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn list_service_user_keys(
        &self,
        user_id: String,
    ) -> impl Future<Output = Result<Vec<ServiceUserKeyRecord>, StoreError>> + Send;

    fn delete_service_user_key(
        &self,
        user_id: String,
        key_id: String,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn service_user_with_keys(
        &self,
        id: String,
        now: i64,
    ) -> impl Future<Output = Result<Option<ServiceUserWithKeys>, StoreError>> + Send;
}

impl ServiceUserStore for Store {
    async fn create_service_user(
        &self,
        user: ServiceUserRecord,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::insert_into(service_users::table)
                    .values(&user)
                    .execute(conn)?;
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn list_service_users(&self) -> Result<Vec<ServiceUserRecord>, StoreError> {
        self.run(|conn| {
            service_users::table
                .select(ServiceUserRecord::as_select())
                .order(service_users::created_at.asc())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn delete_service_user(
        &self,
        id: String,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::delete(service_user_keys::table.filter(service_user_keys::user_id.eq(&id)))
                    .execute(conn)?;
                // After a write: the SQLite write lock is held from here.
                if let Some(name) = policy_naming_service_user(conn, &id)? {
                    return Err(format!("trust policy `{name}`").into());
                }
                diesel::delete(access_tokens::table.filter(access_tokens::owner_id.eq(&id)))
                    .execute(conn)?;
                // Its agents are clients that act only for it: they go too.
                let agent_clients = agents::table
                    .filter(agents::service_user_id.eq(&id))
                    .select(agents::client_id);
                diesel::delete(clients::table.filter(clients::id.eq_any(agent_clients)))
                    .execute(conn)?;
                match diesel::delete(service_users::table.find(&id)).execute(conn) {
                    Ok(0) => return Err(diesel::result::Error::NotFound.into()),
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                        _,
                    )) => return Err(String::from("a trust policy").into()),
                    other => other?,
                };
                append_in(conn, &event)?;
                Ok(())
            })
            .map_err(|e: InUse| e.0)
        })
        .await
    }

    async fn change_service_user<T, E, F>(
        &self,
        id: String,
        change: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(ServiceUserRecord) -> Result<(ServiceUserRecord, NewAuditRecord, T), E>
            + Send
            + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                // The lock first (see `add_service_user_key`).
                let locked = diesel::update(service_users::table.find(&id))
                    .set(service_users::name.eq(service_users::name))
                    .execute(conn)?;
                if locked == 0 {
                    return Err(Refusal::Database(diesel::result::Error::NotFound));
                }
                let current = service_users::table
                    .find(&id)
                    .select(ServiceUserRecord::as_select())
                    .get_result(conn)?;
                let (mut user, event, value) = change(current).map_err(Refusal::By)?;
                user.id.clone_from(&id);
                diesel::update(service_users::table.find(&id))
                    .set((
                        service_users::name.eq(&user.name),
                        service_users::description.eq(&user.description),
                        service_users::owner.eq(&user.owner),
                        service_users::owner_id.eq(&user.owner_id),
                        service_users::scopes.eq(&user.scopes),
                        service_users::audiences.eq(&user.audiences),
                        service_users::enabled.eq(user.enabled),
                        service_users::max_token_lifetime.eq(user.max_token_lifetime),
                    ))
                    .execute(conn)?;
                append_in(conn, &event)?;
                Ok(value)
            });
            Refusal::settle(outcome)
        })
        .await
    }

    async fn add_service_user_key(
        &self,
        key: ServiceUserKeyRecord,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                // Write first: on SQLite a deferred transaction that reads
                // and then writes fails at once with "database is locked"
                // when the audit writer commits in between; one that starts
                // with its write waits for the lock (busy_timeout) instead.
                append_in(conn, &event)?;
                let exists =
                    diesel::select(diesel::dsl::exists(service_users::table.find(&key.user_id)))
                        .get_result::<bool>(conn)?;
                if !exists {
                    return Err(diesel::result::Error::NotFound);
                }
                diesel::insert_into(service_user_keys::table)
                    .values(&key)
                    .execute(conn)?;
                Ok(())
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn list_service_user_keys(
        &self,
        user_id: String,
    ) -> Result<Vec<ServiceUserKeyRecord>, StoreError> {
        self.run(move |conn| {
            service_user_keys::table
                .filter(service_user_keys::user_id.eq(user_id))
                .select(ServiceUserKeyRecord::as_select())
                .order(service_user_keys::created_at.asc())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn delete_service_user_key(
        &self,
        user_id: String,
        key_id: String,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                let deleted = diesel::delete(
                    service_user_keys::table
                        .filter(service_user_keys::id.eq(&key_id))
                        .filter(service_user_keys::user_id.eq(&user_id)),
                )
                .execute(conn)?;
                if deleted == 0 {
                    return Err(diesel::result::Error::NotFound);
                }
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn service_user_with_keys(
        &self,
        id: String,
        now: i64,
    ) -> Result<Option<ServiceUserWithKeys>, StoreError> {
        self.run(move |conn| {
            let Some(user) = service_users::table
                .find(&id)
                .select(ServiceUserRecord::as_select())
                .get_result(conn)
                .optional()?
            else {
                return Ok(None);
            };
            let keys = service_user_keys::table
                .filter(service_user_keys::user_id.eq(&id))
                .filter(
                    service_user_keys::expires_at
                        .is_null()
                        .or(service_user_keys::expires_at.gt(now)),
                )
                .select(ServiceUserKeyRecord::as_select())
                .load(conn)?;
            Ok(Some((user, keys)))
        })
        .await
    }
}
