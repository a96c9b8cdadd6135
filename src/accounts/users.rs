//! Administering users: create, list, show, update, disable, enable,
//! delete, set a password. The admin API's handlers call these; every
//! change is audited in the transaction that makes it.
//!
//! A user is addressed by id or by username (case-insensitively): the id
//! first, so that a username that happens to equal another user's id can
//! never take that user's place.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::passwords::{self, Passwords};
use super::syntax::{check_display_name, check_email, check_username};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::ttl_cache::TtlCache;
use crate::oauth::{ErrorCode, OAuthError, etag};
use crate::secret::Secret;
use crate::store::{NewAuditRecord, Store, StoreError, UserRecord, UserStore, username_key};

/// A user as the admin API shows them. Never the password hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Stable and opaque: the `sub` of their tokens (a UUID).
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    /// Whether the user has a password (the hash is never shown).
    pub has_password: bool,
    /// A disabled user cannot log in, and their tokens introspect inactive.
    pub disabled: bool,
    /// An administrator may be granted the `admin`, `admin:read` and
    /// `audit:read` scopes.
    pub admin: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&UserRecord> for User {
    fn from(r: &UserRecord) -> Self {
        User {
            id: r.id.clone(),
            username: r.username.clone(),
            email: r.email.clone(),
            email_verified: r.email_verified,
            display_name: r.display_name.clone(),
            has_password: r.password_hash.is_some(),
            disabled: r.disabled,
            admin: r.admin,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `POST /admin/v1/users`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$", min_length = 1, max_length = 64)]
    pub username: String,
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = r#"^[^@<>",\x00-\x20\x7f-\xa0]+@[^@<>",.\x00-\x20\x7f-\xa0]+(\.[^@<>",.\x00-\x20\x7f-\xa0]+)*$"#
    )]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\x00-\\x20\\x7f-\\xa0]"
    )]
    pub display_name: Option<String>,
    #[serde(default)]
    pub admin: bool,
    /// Absent: the user has no password until one is set.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password, min_length = 8, max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub password: Option<Secret>,
}

/// `PATCH /admin/v1/users/{user}`: the members present change; `null`
/// clears `email` or `display_name`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new address is unverified unless `email_verified` says otherwise.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 254, pattern = r#"^[^@<>",\x00-\x20\x7f-\xa0]+@[^@<>",.\x00-\x20\x7f-\xa0]+(\.[^@<>",.\x00-\x20\x7f-\xa0]+)*$"#)]
    pub email: Option<Option<String>>,
    /// `null` or absent: unchanged.
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, pattern = "[^\\x00-\\x20\\x7f-\\xa0]")]
    pub display_name: Option<Option<String>>,
    /// Grant (`true`) or revoke (`false`) the administrator role; `null`
    /// or absent: unchanged.
    #[serde(default)]
    pub admin: Option<bool>,
}

/// `PUT /admin/v1/users/{user}/password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSpec {
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub password: Secret,
}

/// Absent: `None`; `null`: `Some(None)`; a value: `Some(Some(v))`.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn invalid(message: String) -> OAuthError {
    OAuthError::invalid_request(message)
}

fn not_found(reference: &str) -> OAuthError {
    OAuthError::not_found(format!(
        "no user `{}`",
        crate::oauth::error::named(reference)
    ))
}

fn map_store(reference: &str) -> impl Fn(StoreError) -> OAuthError + '_ {
    move |e| match e {
        StoreError::NotFound => not_found(reference),
        StoreError::Conflict => OAuthError::new(
            ErrorCode::Conflict,
            "a user with that username exists (usernames are unique regardless of case)",
        ),
        other => other.into(),
    }
}

/// The user a reference names: an id, else a username. A reference that
/// is neither shape names nobody.
pub async fn resolve<S: UserStore>(store: &S, reference: &str) -> Result<UserRecord, OAuthError> {
    if !super::syntax::is_username(reference) {
        return Err(not_found(reference));
    }
    if let Some(user) = store.user_by_id(reference.to_owned()).await? {
        return Ok(user);
    }
    store
        .user_by_username(reference.to_owned())
        .await?
        .ok_or_else(|| not_found(reference))
}

fn password_checked(password: &Secret) -> Result<(), OAuthError> {
    passwords::check_password(password).map_err(invalid)
}

async fn hash(passwords: &Passwords, password: Secret) -> Result<String, OAuthError> {
    passwords
        .hash_blocking(password)
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))
}

pub async fn create<S: UserStore>(
    store: &S,
    passwords: &Passwords,
    spec: UserSpec,
    actor: Actor,
) -> Result<User, OAuthError> {
    check_username(&spec.username).map_err(invalid)?;
    if let Some(email) = &spec.email {
        check_email(email).map_err(invalid)?;
    }
    if let Some(name) = &spec.display_name {
        check_display_name(name).map_err(invalid)?;
    }
    let password_hash = match spec.password {
        Some(password) => {
            password_checked(&password)?;
            Some(hash(passwords, password).await?)
        }
        None => None,
    };
    let now = clock::now();
    let record = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username_key: username_key(&spec.username),
        username: spec.username,
        email: spec.email,
        email_verified: spec.email_verified,
        display_name: spec.display_name.map(|n| n.trim().to_owned()),
        password_hash,
        disabled: false,
        admin: spec.admin,
        created_at: now,
        updated_at: now,
    };
    let event = Event::new(actor, "user.created", Outcome::Success)
        .target(record.id.clone())
        .details(json!({
            "username": record.username,
            "admin": record.admin,
            "has_password": record.password_hash.is_some(),
        }))
        .into_record(clock::now_ms());
    let username = record.username.clone();
    store
        .create_user(record.clone(), event)
        .await
        .map_err(map_store(&username))?;
    Ok(User::from(&record))
}

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;
/// A cursor is the last page's last `username_key`.
pub const CURSOR_PATTERN: &str = "^[a-z0-9._@-]{1,64}$";

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Users in username order, `limit` at a time, after `cursor`.
pub async fn list<S: UserStore>(
    store: &S,
    limit: Option<i64>,
    cursor: Option<String>,
) -> Result<UserPage, OAuthError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(OAuthError::invalid_request(
            "limit must be between 1 and 500",
        ));
    }
    if let Some(cursor) = &cursor
        && !(super::syntax::is_username(cursor) && *cursor == username_key(cursor))
    {
        return Err(OAuthError::invalid_request("cursor is not valid"));
    }
    let mut records = store.list_users(cursor, limit + 1).await?;
    let more = records.len() as i64 > limit;
    records.truncate(limit as usize);
    let next_cursor = if more {
        records.last().map(|r| r.username_key.clone())
    } else {
        None
    };
    Ok(UserPage {
        users: records.iter().map(User::from).collect(),
        next_cursor,
    })
}

pub async fn get<S: UserStore>(store: &S, reference: &str) -> Result<User, OAuthError> {
    Ok(User::from(&resolve(store, reference).await?))
}

/// An administrator cannot lock themselves out: their own token cannot
/// disable, delete or demote the user it belongs to.
fn not_self(actor: &Actor, user: &UserRecord, what: &str) -> Result<(), OAuthError> {
    if actor.kind == ActorKind::Human && actor.id.as_deref() == Some(user.id.as_str()) {
        return Err(OAuthError::new(
            ErrorCode::Conflict,
            format!("you cannot {what} the user whose token you are using"),
        ));
    }
    Ok(())
}

/// Reads the user `reference` names, applies `change` to the record in
/// one locked transaction (see `UserStore::change_user`), and returns the
/// new view. `change` returns the audit event to record.
async fn change<S, F>(store: &S, reference: &str, change: F) -> Result<User, OAuthError>
where
    S: UserStore,
    F: FnOnce(&mut UserRecord) -> Result<Event, OAuthError> + Send + 'static,
{
    let id = resolve(store, reference).await?.id;
    let outcome = store
        .change_user(id, move |mut record| {
            let event = change(&mut record)?;
            record.updated_at = clock::now();
            let event: NewAuditRecord =
                event.target(record.id.clone()).into_record(clock::now_ms());
            let view = User::from(&record);
            Ok((record, event, view))
        })
        .await;
    match outcome {
        Ok(result) => result,
        Err(e) => Err(map_store(reference)(e)),
    }
}

/// Changes the members present in `patch`; with `If-Match`, only if the
/// user has not changed since it was read (RFC 9110 §13.1.1).
pub async fn update<S: UserStore>(
    store: &S,
    reference: &str,
    patch: UserPatch,
    actor: Actor,
    if_match: Option<String>,
) -> Result<User, OAuthError> {
    if let Some(Some(email)) = &patch.email {
        check_email(email).map_err(invalid)?;
    }
    if let Some(Some(name)) = &patch.display_name {
        check_display_name(name).map_err(invalid)?;
    }
    change(store, reference, move |record| {
        etag::check(if_match.as_deref(), &etag::of(&User::from(&*record)))?;
        let mut changed = Vec::new();
        if let Some(email) = patch.email
            && email != record.email
        {
            record.email = email;
            record.email_verified = false;
            changed.push("email");
        }
        if let Some(verified) = patch.email_verified
            && verified != record.email_verified
        {
            record.email_verified = verified;
            changed.push("email_verified");
        }
        if let Some(name) = patch.display_name {
            let name = name.map(|n| n.trim().to_owned());
            if name != record.display_name {
                record.display_name = name;
                changed.push("display_name");
            }
        }
        let mut admin = None;
        if let Some(grant) = patch.admin
            && grant != record.admin
        {
            if !grant {
                not_self(&actor, record, "revoke the administrator role of")?;
            }
            record.admin = grant;
            changed.push("admin");
            admin = Some(if grant { "granted" } else { "revoked" });
        }
        let mut details = json!({ "username": record.username, "changed": changed });
        if let Some(admin) = admin {
            details["admin"] = admin.into();
        }
        Ok(Event::new(actor, "user.updated", Outcome::Success).details(details))
    })
    .await
}

/// Disables the user: they cannot log in, their sessions end (in the same
/// transaction), and their access tokens introspect inactive (RFC 7662
/// §2.2) within the user cache's second.
pub async fn disable<S: UserStore>(
    store: &S,
    reference: &str,
    actor: Actor,
) -> Result<User, OAuthError> {
    change(store, reference, move |record| {
        not_self(&actor, record, "disable")?;
        record.disabled = true;
        Ok(Event::new(actor, "user.disabled", Outcome::Success)
            .details(json!({ "username": record.username })))
    })
    .await
}

pub async fn enable<S: UserStore>(
    store: &S,
    reference: &str,
    actor: Actor,
) -> Result<User, OAuthError> {
    change(store, reference, move |record| {
        record.disabled = false;
        Ok(Event::new(actor, "user.enabled", Outcome::Success)
            .details(json!({ "username": record.username })))
    })
    .await
}

/// Sets a new password (hashed on the blocking pool before the
/// transaction). The password is never logged or audited, only the fact.
pub async fn set_password<S: UserStore>(
    store: &S,
    passwords: &Passwords,
    reference: &str,
    password: Secret,
    actor: Actor,
) -> Result<User, OAuthError> {
    password_checked(&password)?;
    // The user must exist before the (costly) hash is computed.
    resolve(store, reference).await?;
    let hashed = hash(passwords, password).await?;
    change(store, reference, move |record| {
        record.password_hash = Some(hashed);
        Ok(Event::new(actor, "user.password_set", Outcome::Success)
            .details(json!({ "username": record.username })))
    })
    .await
}

/// Deletes the user and their sessions; service users they owned keep the
/// owner's name, unlinked.
pub async fn delete<S: UserStore>(
    store: &S,
    reference: &str,
    actor: Actor,
) -> Result<User, OAuthError> {
    let user = resolve(store, reference).await?;
    not_self(&actor, &user, "delete")?;
    let event = Event::new(actor, "user.deleted", Outcome::Success)
        .target(user.id.clone())
        .details(json!({ "username": user.username }))
        .into_record(clock::now_ms());
    store
        .delete_user(user.id.clone(), event)
        .await
        .map_err(map_store(reference))?;
    Ok(User::from(&user))
}

/// Users by id as token checks read them (introspection, the admin API's
/// bearer check), kept at most one second: DESIGN.md never caches
/// revocation past a second, and disabling a user revokes their tokens.
pub struct UserCache(TtlCache<UserRecord>);

/// The longest a cached user is used.
pub const USER_CACHE_TTL: Duration = Duration::from_secs(1);

impl UserCache {
    pub fn new(ttl: Duration) -> Self {
        UserCache(TtlCache::new(ttl.min(USER_CACHE_TTL)))
    }

    pub async fn get(
        &self,
        store: &Store,
        id: &str,
    ) -> Result<Option<Arc<UserRecord>>, StoreError> {
        self.0
            .get(id, || async {
                Ok(store.user_by_id(id.to_owned()).await?.map(|u| (u, None)))
            })
            .await
    }

    /// Whether `id` is a user who exists and is not disabled.
    pub async fn is_enabled(&self, store: &Store, id: &str) -> Result<bool, StoreError> {
        Ok(self.get(store, id).await?.is_some_and(|u| !u.disabled))
    }

    pub fn invalidate(&self, id: &str) {
        self.0.invalidate(id);
    }
}
