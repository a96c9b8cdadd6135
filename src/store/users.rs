//! People: the users who log in through the browser pages. A user's `id`
//! is the OIDC `sub` (a UUID v4 string, stable and opaque); the username
//! is unique case-insensitively through `username_key`, its lowercase form.

use std::future::Future;

use diesel::prelude::*;

use super::audit::{NewAuditRecord, append_in};
use super::authorization::{GrantsOf, revoke_grants_in};
use super::personal_tokens::owner_leaves_in;
use super::schema::{service_users, totp_credentials, users};
use super::{AnyConnection, Refusal, Store, StoreError};

#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRecord {
    /// UUID v4 string: the `sub` of every token and ID token issued to them.
    pub id: String,
    /// As the administrator typed it (case kept for display).
    pub username: String,
    /// `username` in lowercase: the unique key.
    pub username_key: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    /// argon2id PHC string; `None`: no password login.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub admin: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The hash is not a secret in the cryptographic sense, but an offline
/// guessing attack starts from it: it never reaches a log.
impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("disabled", &self.disabled)
            .field("admin", &self.admin)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// The unique key of a username: usernames are ASCII (`[A-Za-z0-9._@-]`),
/// so ASCII lowercase is the whole case folding.
pub fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

pub trait UserStore {
    /// Inserts the user and its audit event. `Conflict` when the username
    /// (case-insensitively) or the id is taken.
    fn create_user(
        &self,
        user: UserRecord,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn user_by_id(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// Case-insensitive.
    fn user_by_username(
        &self,
        username: String,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// What a login's password step reads, in one statement: the user
    /// (case-insensitive) and whether they confirmed a TOTP enrolment, so
    /// that the step knows whether to ask for a code.
    fn user_for_login(
        &self,
        username: String,
    ) -> impl Future<Output = Result<Option<(UserRecord, bool)>, StoreError>> + Send;

    /// Users ordered by `username_key`, those after `after` (a
    /// `username_key`, the paging cursor), at most `limit`.
    fn list_users(
        &self,
        after: Option<String>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<UserRecord>, StoreError>> + Send;

    /// Replaces the password hash (a rehash at login, or a new password).
    /// No audit event: callers that change a password use [`change_user`].
    /// `NotFound` if absent.
    ///
    /// [`change_user`]: UserStore::change_user
    fn set_password_hash(
        &self,
        id: String,
        hash: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads the user, lets `change` decide the whole new record and its
    /// audit event, and writes both, in one transaction that locks the row
    /// first. The id and the username cannot change. When the change
    /// disables the user or sets a new password, their browser sessions and
    /// grants end in the same transaction. `Ok(Err(_))`: `change` refused, nothing written.
    fn change_user<T, E, F>(
        &self,
        id: String,
        change: F,
    ) -> impl Future<Output = Result<Result<T, E>, StoreError>> + Send
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(UserRecord) -> Result<(UserRecord, NewAuditRecord, T), E> + Send + 'static;

    /// Deletes the user and their sessions, and unlinks the service users
    /// they owned (the owner's name stays, as free text). `NotFound` if
    /// absent.
    fn delete_user(
        &self,
        id: String,
        event: NewAuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl UserStore for Store {
    async fn create_user(&self, user: UserRecord, event: NewAuditRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::insert_into(users::table)
                    .values(&user)
                    .execute(conn)?;
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn user_by_id(&self, id: String) -> Result<Option<UserRecord>, StoreError> {
        self.run(move |conn| {
            users::table
                .find(id)
                .select(UserRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn user_by_username(&self, username: String) -> Result<Option<UserRecord>, StoreError> {
        let key = username_key(&username);
        self.run(move |conn| {
            users::table
                .filter(users::username_key.eq(key))
                .select(UserRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn user_for_login(
        &self,
        username: String,
    ) -> Result<Option<(UserRecord, bool)>, StoreError> {
        use totp_credentials::dsl as totp;
        let key = username_key(&username);
        self.run(move |conn| {
            let confirmed_totp = totp::totp_credentials
                .filter(totp::user_id.eq(users::id))
                .filter(totp::confirmed_at.is_not_null());
            users::table
                .filter(users::username_key.eq(key))
                .select((UserRecord::as_select(), diesel::dsl::exists(confirmed_totp)))
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn list_users(
        &self,
        after: Option<String>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError> {
        self.run(move |conn| {
            let mut query = users::table
                .select(UserRecord::as_select())
                .order(users::username_key.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = after {
                query = query.filter(users::username_key.gt(after));
            }
            query.load(conn).map_err(StoreError::from)
        })
        .await
    }

    async fn set_password_hash(&self, id: String, hash: String) -> Result<(), StoreError> {
        self.run(move |conn| {
            let updated = diesel::update(users::table.find(&id))
                .set(users::password_hash.eq(Some(hash)))
                .execute(conn)?;
            if updated == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn change_user<T, E, F>(&self, id: String, change: F) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(UserRecord) -> Result<(UserRecord, NewAuditRecord, T), E> + Send + 'static,
    {
        self.run(move |conn| {
            let outcome = conn.transaction(|conn| {
                // The lock first: on SQLite a transaction that starts with
                // its write waits for the lock instead of failing later.
                let locked = diesel::update(users::table.find(&id))
                    .set(users::id.eq(users::id))
                    .execute(conn)?;
                if locked == 0 {
                    return Err(Refusal::Database(diesel::result::Error::NotFound));
                }
                let current = users::table
                    .find(&id)
                    .select(UserRecord::as_select())
                    .get_result(conn)?;
                let was_disabled = current.disabled;
                let old_password = current.password_hash.clone();
                let (user, event, value) = change(current).map_err(Refusal::By)?;
                diesel::update(users::table.find(&id))
                    .set((
                        users::email.eq(&user.email),
                        users::email_verified.eq(user.email_verified),
                        users::display_name.eq(&user.display_name),
                        users::password_hash.eq(&user.password_hash),
                        users::disabled.eq(user.disabled),
                        users::admin.eq(user.admin),
                        users::updated_at.eq(user.updated_at),
                    ))
                    .execute(conn)?;
                // An administrator sets a new password when one leaked:
                // whoever used the old one is logged out too.
                let new_password = user.password_hash != old_password;
                let event = if (user.disabled && !was_disabled) || new_password {
                    end_sessions_in(conn, &id)?.recorded_in(event)
                } else {
                    event
                };
                let event = if user.disabled && !was_disabled {
                    owner_leaves_in(conn, &id, false, crate::clock::now(), event)?
                } else {
                    event
                };
                append_in(conn, &event)?;
                Ok(value)
            });
            Refusal::settle(outcome)
        })
        .await
    }

    async fn delete_user(&self, id: String, event: NewAuditRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                let event = end_sessions_in(conn, &id)?.recorded_in(event);
                let event = owner_leaves_in(conn, &id, true, crate::clock::now(), event)?;
                diesel::update(service_users::table.filter(service_users::owner_id.eq(&id)))
                    .set(service_users::owner_id.eq(None::<String>))
                    .execute(conn)?;
                if diesel::delete(users::table.find(&id)).execute(conn)? == 0 {
                    return Err(diesel::result::Error::NotFound);
                }
                append_in(conn, &event)
            })
            .map_err(StoreError::from)
        })
        .await
    }
}

/// Deletes every browser session of the user and ends what they were
/// granted (refresh tokens, access tokens, codes not yet redeemed), inside
/// the caller's transaction: a disabled or deleted user, or one given a new
/// password, is logged out everywhere at once, and enabling them again
/// brings none of it back. Resetting a user's second factor ends them too
/// (they were signed in with the factor no longer trusted).
pub(crate) fn end_sessions_in(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Ended> {
    use super::schema::sessions;
    let sessions =
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?;
    let refresh_tokens = revoke_grants_in(conn, GrantsOf::User(user_id), crate::clock::now())?;
    // Approvals on the device page not yet turned into tokens end too.
    super::device::end_approvals_in(conn, user_id)?;
    Ok(Ended {
        sessions,
        refresh_tokens,
    })
}

/// What [`end_sessions_in`] took away, for the audit event that caused it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    pub sessions: usize,
    pub refresh_tokens: usize,
}

impl Ended {
    /// `event` with `ended_sessions` and `revoked_refresh_tokens` added to
    /// its details (a JSON object).
    pub(crate) fn recorded_in(self, event: NewAuditRecord) -> NewAuditRecord {
        event.with_details([
            ("ended_sessions", self.sessions.into()),
            ("revoked_refresh_tokens", self.refresh_tokens.into()),
        ])
    }
}
