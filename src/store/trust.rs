//! CI federation's configuration: trusted issuers and the trust policies
//! that name them (issue 9). Both references of a policy (its issuer, its
//! service user) RESTRICT deletion: removing either while a policy names it
//! is [`StoreError::InUse`] naming the policy.

use std::future::Future;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::audit::{NewAuditRecord, append_in};
use super::schema::{trust_policies, trusted_issuers};
use super::{AnyConnection, Store, StoreError};

/// One trusted issuer. `algorithms` is space-separated; `jwks` a static
/// JWK Set as JSON text (NULL: keys come from discovery).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = trusted_issuers)]
pub struct TrustedIssuerRecord {
    pub issuer: String,
    pub algorithms: String,
    pub max_token_age: i64,
    pub jwks: Option<String>,
    pub created_at: i64,
}

/// One trust policy. `scopes` and `refused_events` are space-separated;
/// `conditions` is the JSON array of `federation::model::Condition`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = trust_policies, treat_none_as_null = true)]
pub struct TrustPolicyRecord {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub allow_multiple_audiences: bool,
    pub service_user: String,
    pub scopes: String,
    pub lifetime: i64,
    pub conditions: String,
    pub refused_events: String,
    pub name_only: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An issuer and every policy that names it, by policy name.
pub type TrustForIssuer = (TrustedIssuerRecord, Vec<TrustPolicyRecord>);

/// What one change of a policy writes: the whole new record and its audit
/// event.
#[derive(Debug)]
pub struct TrustPolicyChange {
    pub policy: TrustPolicyRecord,
    pub event: NewAuditRecord,
}

pub trait TrustStore {
    /// `Conflict` if the issuer is already trusted.
    fn create_trusted_issuer(
        &self,
        issuer: TrustedIssuerRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn list_trusted_issuers(
        &self,
    ) -> impl Future<Output = Result<Vec<TrustedIssuerRecord>, StoreError>> + Send;

    fn trusted_issuer(
        &self,
        issuer: String,
    ) -> impl Future<Output = Result<Option<TrustedIssuerRecord>, StoreError>> + Send;

    /// Deletes the issuer if `precondition` accepts it as it is (read with
    /// the row locked, so an `If-Match` cannot race a change). `NotFound`
    /// if absent; `InUse` naming a policy that still names it.
    fn delete_trusted_issuer<E, F>(
        &self,
        issuer: String,
        event: NewAuditRecord,
        precondition: F,
    ) -> impl Future<Output = Result<Result<(), E>, StoreError>> + Send
    where
        E: Send + 'static,
        F: FnOnce(TrustedIssuerRecord) -> Result<(), E> + Send + 'static;

    /// `Conflict` if a policy has that name; `NotFound` if its issuer or its
    /// service user does not exist (any more).
    fn create_trust_policy(
        &self,
        policy: TrustPolicyRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn list_trust_policies(
        &self,
    ) -> impl Future<Output = Result<Vec<TrustPolicyRecord>, StoreError>> + Send;

    fn trust_policy(
        &self,
        name: String,
    ) -> impl Future<Output = Result<Option<TrustPolicyRecord>, StoreError>> + Send;

    /// Reads the policy, lets `change` decide what to write, and writes it,
    /// in one transaction that locks the policy's row before reading it (no
    /// lost update; an `If-Match` checked inside `change` cannot race).
    /// `Ok(Err(_))` when `change` refused (nothing written); `NotFound` when
    /// there is no such policy, or when the issuer or service user the new
    /// record names has gone. The name cannot change.
    fn change_trust_policy<T, E, F>(
        &self,
        name: String,
        change: F,
    ) -> impl Future<Output = Result<Result<T, E>, StoreError>> + Send
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(TrustPolicyRecord) -> Result<(TrustPolicyChange, T), E> + Send + 'static;

    /// Deletes the policy if `precondition` accepts it as it is, read with
    /// the row locked. `NotFound` if absent.
    fn delete_trust_policy<E, F>(
        &self,
        name: String,
        event: NewAuditRecord,
        precondition: F,
    ) -> impl Future<Output = Result<Result<(), E>, StoreError>> + Send
    where
        E: Send + 'static,
        F: FnOnce(TrustPolicyRecord) -> Result<(), E> + Send + 'static;

    /// What the exchange needs for a token claiming `issuer`: the issuer and
    /// its policies, read in one transaction. `None` if not trusted.
    fn trust_for_issuer(
        &self,
        issuer: String,
    ) -> impl Future<Output = Result<Option<TrustForIssuer>, StoreError>> + Send;
}

/// Either the caller's refusal or a database error, inside a transaction.
enum Refusal<E> {
    By(E),
    Database(DieselError),
    InUse(String),
}

impl<E> From<DieselError> for Refusal<E> {
    fn from(e: DieselError) -> Self {
        Refusal::Database(e)
    }
}

fn settle<T, E>(outcome: Result<T, Refusal<E>>) -> Result<Result<T, E>, StoreError> {
    match outcome {
        Ok(value) => Ok(Ok(value)),
        Err(Refusal::By(e)) => Ok(Err(e)),
        Err(Refusal::InUse(by)) => Err(StoreError::InUse(by)),
        Err(Refusal::Database(e)) => Err(missing_reference(e)),
    }
}

/// A foreign-key failure on a write here means a referenced row is absent
/// (insert, update) or a referencing one present (delete): the callers
/// checked first, so it is a concurrent change, reported as such rather
/// than as a server fault.
fn missing_reference(error: DieselError) -> StoreError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            StoreError::NotFound
        }
        other => other.into(),
    }
}

/// The first statement of a write transaction that reads: it takes the
/// row's lock on PostgreSQL and the write lock on SQLite (a deferred SQLite
/// transaction that reads first fails at once with "database is locked"
/// when another writer commits in between; one that writes first waits).
fn lock_policy(conn: &mut AnyConnection, name: &str) -> QueryResult<()> {
    let locked = diesel::update(trust_policies::table.find(name))
        .set(trust_policies::updated_at.eq(trust_policies::updated_at))
        .execute(conn)?;
    if locked == 0 {
        return Err(DieselError::NotFound);
    }
    Ok(())
}

fn lock_issuer(conn: &mut AnyConnection, issuer: &str) -> QueryResult<()> {
    let locked = diesel::update(trusted_issuers::table.find(issuer))
        .set(trusted_issuers::created_at.eq(trusted_issuers::created_at))
        .execute(conn)?;
    if locked == 0 {
        return Err(DieselError::NotFound);
    }
    Ok(())
}

/// The first policy (by name) naming `service_user`, if any: a service
/// user that a policy names cannot be deleted.
pub(super) fn policy_naming_service_user(
    conn: &mut AnyConnection,
    service_user: &str,
) -> QueryResult<Option<String>> {
    trust_policies::table
        .filter(trust_policies::service_user.eq(service_user))
        .select(trust_policies::name)
        .order(trust_policies::name.asc())
        .first(conn)
        .optional()
}

impl TrustStore for Store {
    async fn create_trusted_issuer(
        &self,
        issuer: TrustedIssuerRecord,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::insert_into(trusted_issuers::table)
                    .values(&issuer)
                    .execute(conn)?;
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn list_trusted_issuers(&self) -> Result<Vec<TrustedIssuerRecord>, StoreError> {
        self.run(|conn| {
            trusted_issuers::table
                .select(TrustedIssuerRecord::as_select())
                .order(trusted_issuers::issuer.asc())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn trusted_issuer(
        &self,
        issuer: String,
    ) -> Result<Option<TrustedIssuerRecord>, StoreError> {
        self.run(move |conn| {
            trusted_issuers::table
                .find(issuer)
                .select(TrustedIssuerRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn delete_trusted_issuer<E, F>(
        &self,
        issuer: String,
        event: NewAuditRecord,
        precondition: F,
    ) -> Result<Result<(), E>, StoreError>
    where
        E: Send + 'static,
        F: FnOnce(TrustedIssuerRecord) -> Result<(), E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                lock_issuer(conn, &issuer)?;
                let current = trusted_issuers::table
                    .find(&issuer)
                    .select(TrustedIssuerRecord::as_select())
                    .get_result(conn)?;
                precondition(current).map_err(Refusal::By)?;
                let user = trust_policies::table
                    .filter(trust_policies::issuer.eq(&issuer))
                    .select(trust_policies::name)
                    .order(trust_policies::name.asc())
                    .first::<String>(conn)
                    .optional()?;
                if let Some(name) = user {
                    return Err(Refusal::InUse(format!("trust policy `{name}`")));
                }
                match diesel::delete(trusted_issuers::table.find(&issuer)).execute(conn) {
                    Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                        return Err(Refusal::InUse("a trust policy".into()));
                    }
                    other => other?,
                };
                append_in(conn, &event)?;
                Ok(())
            });
            settle(outcome)
        })
        .await
    }

    async fn create_trust_policy(
        &self,
        policy: TrustPolicyRecord,
        event: NewAuditRecord,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::insert_into(trust_policies::table)
                    .values(&policy)
                    .execute(conn)?;
                append_in(conn, &event)
            })
            .map_err(missing_reference)
        })
        .await
    }

    async fn list_trust_policies(&self) -> Result<Vec<TrustPolicyRecord>, StoreError> {
        self.run(|conn| {
            trust_policies::table
                .select(TrustPolicyRecord::as_select())
                .order(trust_policies::name.asc())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn trust_policy(&self, name: String) -> Result<Option<TrustPolicyRecord>, StoreError> {
        self.run(move |conn| {
            trust_policies::table
                .find(name)
                .select(TrustPolicyRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn change_trust_policy<T, E, F>(
        &self,
        name: String,
        change: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(TrustPolicyRecord) -> Result<(TrustPolicyChange, T), E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                lock_policy(conn, &name)?;
                let current = trust_policies::table
                    .find(&name)
                    .select(TrustPolicyRecord::as_select())
                    .get_result(conn)?;
                let (mut change, value) = change(current).map_err(Refusal::By)?;
                change.policy.name.clone_from(&name);
                diesel::update(trust_policies::table.find(&name))
                    .set(&change.policy)
                    .execute(conn)?;
                append_in(conn, &change.event)?;
                Ok(value)
            });
            settle(outcome)
        })
        .await
    }

    async fn delete_trust_policy<E, F>(
        &self,
        name: String,
        event: NewAuditRecord,
        precondition: F,
    ) -> Result<Result<(), E>, StoreError>
    where
        E: Send + 'static,
        F: FnOnce(TrustPolicyRecord) -> Result<(), E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                lock_policy(conn, &name)?;
                let current = trust_policies::table
                    .find(&name)
                    .select(TrustPolicyRecord::as_select())
                    .get_result(conn)?;
                precondition(current).map_err(Refusal::By)?;
                diesel::delete(trust_policies::table.find(&name)).execute(conn)?;
                append_in(conn, &event)?;
                Ok(())
            });
            settle(outcome)
        })
        .await
    }

    async fn trust_for_issuer(&self, issuer: String) -> Result<Option<TrustForIssuer>, StoreError> {
        self.run(move |conn| {
            conn.transaction::<_, DieselError, _>(|conn| {
                let Some(found) = trusted_issuers::table
                    .find(&issuer)
                    .select(TrustedIssuerRecord::as_select())
                    .get_result(conn)
                    .optional()?
                else {
                    return Ok(None);
                };
                let policies = trust_policies::table
                    .filter(trust_policies::issuer.eq(&issuer))
                    .select(TrustPolicyRecord::as_select())
                    .order(trust_policies::name.asc())
                    .load(conn)?;
                Ok(Some((found, policies)))
            })
            .map_err(StoreError::from)
        })
        .await
    }
}
