//! Service users (ZITADEL's machine users): named non-human identities
//! with allowed scopes and audiences, a responsible human owner, and
//! public keys they sign JWT-bearer assertions with (RFC 7523 §2.1).

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{ErrorCode, OAuthError, etag};
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::keys::public::public_jwk;
use crate::random::{new_id, random_base62};
use crate::store::{
    ServiceUserKeyRecord, ServiceUserRecord, ServiceUserStore, StoreError, UserStore,
};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceUser {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The responsible person: a user's username, or free text recorded
    /// before users existed (then `owner_linked` is false).
    pub owner: String,
    /// Whether `owner` is a user (`owner_id`), rather than free text.
    pub owner_linked: bool,
    /// The id of the user `owner` names, when linked.
    pub owner_id: Option<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub is_admin: bool,
    /// A disabled service user gets no token, by any grant or policy.
    pub enabled: bool,
    /// Seconds an access token issued to it may live at most; `null`: the
    /// server's limits only.
    pub max_token_lifetime: Option<u64>,
    pub created_at: i64,
}

impl ServiceUser {
    /// The lifetime of a token for this user: `wanted`, within the user's
    /// own cap.
    pub fn token_lifetime(&self, wanted: std::time::Duration) -> std::time::Duration {
        match self.max_token_lifetime {
            Some(cap) => wanted.min(std::time::Duration::from_secs(cap)),
            None => wanted,
        }
    }
}

impl From<ServiceUserRecord> for ServiceUser {
    fn from(r: ServiceUserRecord) -> Self {
        ServiceUser {
            id: r.id,
            name: r.name,
            description: r.description,
            owner: r.owner,
            owner_linked: r.owner_id.is_some(),
            owner_id: r.owner_id,
            scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
            audiences: r.audiences.split_whitespace().map(str::to_owned).collect(),
            is_admin: r.is_admin,
            enabled: r.enabled,
            max_token_lifetime: r.max_token_lifetime.and_then(|s| u64::try_from(s).ok()),
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceUserSpec {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\x00-\\x20\\x7f-\\xa0]"
    )]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The responsible person: a user's username (or id). Empty: none.
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^([A-Za-z0-9._@-]{1,64})?$")]
    pub owner: String,
    /// Space-separated scopes the user may ask for.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    #[schema(inline, value_type = Vec<super::client::Audience>)]
    pub audiences: Vec<String>,
}

/// `PATCH /admin/v1/service-users/{id}`: the fields present change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceUserPatch {
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\x00-\\x20\\x7f-\\xa0]"
    )]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The responsible person: a user's username (or id), which links an
    /// owner recorded as free text; empty removes the owner.
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^([A-Za-z0-9._@-]{1,64})?$")]
    pub owner: Option<String>,
    /// Space-separated scopes the user may ask for (replaces them all).
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    #[schema(inline, value_type = Option<Vec<super::client::Audience>>)]
    pub audiences: Option<Vec<String>>,
    /// `false`: the user gets no token by any grant or trust policy.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Seconds (60 to 86400) a token issued to it may live at most; `null`
    /// removes the cap.
    #[serde(default, deserialize_with = "nullable_whole_number")]
    #[schema(value_type = Option<u64>, minimum = 60, maximum = 86400)]
    pub max_token_lifetime: Option<Option<u64>>,
}

/// Absent: `None`; `null`: `Some(None)`; a whole number: `Some(Some(n))`.
fn nullable_whole_number<'de, D>(deserializer: D) -> Result<Option<Option<u64>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    super::client::whole_number(deserializer).map(Some)
}

/// The bounds of a service user's own token lifetime cap.
pub const MIN_MAX_TOKEN_LIFETIME: u64 = 60;
pub const MAX_MAX_TOKEN_LIFETIME: u64 = 24 * 60 * 60;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceUserKey {
    #[serde(rename = "keyId")]
    pub key_id: String,
    #[serde(rename = "userId")]
    pub user_id: String,
    pub public_jwk: serde_json::Value,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl From<ServiceUserKeyRecord> for ServiceUserKey {
    fn from(r: ServiceUserKeyRecord) -> Self {
        ServiceUserKey {
            key_id: r.id,
            user_id: r.user_id,
            public_jwk: serde_json::from_str(&r.public_jwk).unwrap_or_default(),
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The public key: a PEM SubjectPublicKeyInfo or a JWK (as a string or
    /// an object). Never a private key: it stays with its owner.
    pub public_key: serde_json::Value,
    /// Seconds from now until the key no longer verifies (at most ten
    /// years). Relative, so that the document can bound it: an absolute
    /// time in the past would be schema-valid yet refused.
    #[serde(default, deserialize_with = "super::client::whole_number")]
    #[schema(minimum = 1, maximum = 315360000)]
    pub expires_in: Option<i64>,
}

/// The longest `expires_in`: ten years.
const MAX_KEY_LIFETIME: i64 = 10 * 365 * 24 * 3600;

fn not_found(id: &str) -> OAuthError {
    OAuthError::not_found(format!("no service user `{id}`"))
}

fn map_missing(id: &str) -> impl Fn(StoreError) -> OAuthError + '_ {
    move |e| match e {
        StoreError::NotFound => not_found(id),
        StoreError::Conflict => {
            OAuthError::new(ErrorCode::Conflict, "a service user with that name exists")
        }
        StoreError::InUse(by) => OAuthError::new(
            ErrorCode::Conflict,
            format!("the service user is named by {by}: delete that policy first"),
        ),
        other => other.into(),
    }
}

/// The owner a request names: a user, by username (any case) or id, as
/// `(username, Some(id))`; empty for none. An unknown user is refused.
async fn resolve_owner<S: UserStore>(
    store: &S,
    owner: &str,
) -> Result<(String, Option<String>), OAuthError> {
    if owner.is_empty() {
        return Ok((String::new(), None));
    }
    match crate::accounts::users::resolve(store, owner).await {
        Ok(user) => Ok((user.username, Some(user.id))),
        Err(e) if e.code == ErrorCode::NotFound => Err(OAuthError::invalid_request(format!(
            "owner: no user `{}` (create the user first)",
            super::error::named(owner)
        ))),
        Err(e) => Err(e),
    }
}

pub async fn create<S: ServiceUserStore + UserStore>(
    store: &S,
    spec: ServiceUserSpec,
    actor: Actor,
) -> Result<ServiceUser, OAuthError> {
    if !super::client::is_name(&spec.name) {
        return Err(OAuthError::invalid_request(super::client::NAME_RULE));
    }
    let name = spec.name.trim();
    if !spec.audiences.iter().all(|a| super::client::is_audience(a)) {
        return Err(OAuthError::invalid_request(
            "audiences must be non-empty printable ASCII without spaces",
        ));
    }
    let (owner, owner_id) = resolve_owner(store, &spec.owner).await?;
    let record = ServiceUserRecord {
        id: format!("su_{}", random_base62(22)),
        name: name.to_owned(),
        description: spec.description,
        owner,
        is_admin: false,
        created_at: clock::now(),
        scopes: spec.scope.split_whitespace().collect::<Vec<_>>().join(" "),
        audiences: spec.audiences.join(" "),
        enabled: true,
        max_token_lifetime: None,
        owner_id,
    };
    let event = Event::new(actor, "service_user.created", Outcome::Success)
        .target(record.id.clone())
        .details(json!({ "name": record.name, "owner_id": record.owner_id }))
        .into_record(clock::now_ms());
    let id = record.id.clone();
    store
        .create_service_user(record.clone(), event)
        .await
        .map_err(map_missing(&id))?;
    Ok(record.into())
}

pub async fn list<S: ServiceUserStore>(store: &S) -> Result<Vec<ServiceUser>, OAuthError> {
    Ok(store
        .list_service_users()
        .await?
        .into_iter()
        .map(ServiceUser::from)
        .collect())
}

pub async fn get<S: ServiceUserStore>(store: &S, id: &str) -> Result<ServiceUser, OAuthError> {
    let (user, _) = store
        .service_user_with_keys(id.to_owned(), clock::now())
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(user.into())
}

/// Changes the fields present in `patch`, in one transaction that locks the
/// user; with `If-Match`, only if it has not changed since it was read
/// (RFC 9110 §13.1.1). The administrator cannot be disabled.
pub async fn update<S: ServiceUserStore + UserStore>(
    store: &S,
    id: &str,
    patch: ServiceUserPatch,
    actor: Actor,
    if_match: Option<String>,
) -> Result<ServiceUser, OAuthError> {
    if patch
        .name
        .as_deref()
        .is_some_and(|n| !super::client::is_name(n))
    {
        return Err(OAuthError::invalid_request(super::client::NAME_RULE));
    }
    if let Some(audiences) = &patch.audiences
        && !audiences.iter().all(|a| super::client::is_audience(a))
    {
        return Err(OAuthError::invalid_request(
            "audiences must be non-empty printable ASCII without spaces",
        ));
    }
    if let Some(Some(cap)) = patch.max_token_lifetime
        && !(MIN_MAX_TOKEN_LIFETIME..=MAX_MAX_TOKEN_LIFETIME).contains(&cap)
    {
        return Err(OAuthError::invalid_request(
            "max_token_lifetime must be between 60 and 86400 seconds, or null",
        ));
    }
    let owner = match &patch.owner {
        Some(owner) => Some(resolve_owner(store, owner).await?),
        None => None,
    };
    let change = move |mut record: ServiceUserRecord| {
        etag::check(
            if_match.as_deref(),
            &etag::of(&ServiceUser::from(record.clone())),
        )?;
        if record.is_admin && patch.enabled == Some(false) {
            return Err(OAuthError::new(
                ErrorCode::Conflict,
                "the administrator cannot be disabled",
            ));
        }
        if let Some(name) = patch.name {
            record.name = name.trim().to_owned();
        }
        if let Some(description) = patch.description {
            record.description = description;
        }
        if let Some((owner, owner_id)) = owner {
            record.owner = owner;
            record.owner_id = owner_id;
        }
        if let Some(scope) = patch.scope {
            record.scopes = scope.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        if let Some(audiences) = patch.audiences {
            record.audiences = audiences.join(" ");
        }
        if let Some(enabled) = patch.enabled {
            record.enabled = enabled;
        }
        if let Some(cap) = patch.max_token_lifetime {
            record.max_token_lifetime = cap.map(|c| c as i64);
        }
        let event = Event::new(actor, "service_user.updated", Outcome::Success)
            .target(record.id.clone())
            .details(json!({
                "enabled": record.enabled,
                "max_token_lifetime": record.max_token_lifetime,
                "owner_id": record.owner_id,
            }))
            .into_record(clock::now_ms());
        let user = ServiceUser::from(record.clone());
        Ok((record, event, user))
    };
    match store.change_service_user(id.to_owned(), change).await {
        Ok(result) => result,
        Err(e) => Err(map_missing(id)(e)),
    }
}

/// Deletes a service user with its keys and tokens. The administrator
/// cannot be deleted this way: that would lock everyone out.
pub async fn delete<S: ServiceUserStore>(
    store: &S,
    id: &str,
    actor: Actor,
) -> Result<(), OAuthError> {
    if get(store, id).await?.is_admin {
        return Err(OAuthError::new(
            ErrorCode::Conflict,
            "the administrator cannot be deleted",
        ));
    }
    let event = Event::new(actor, "service_user.deleted", Outcome::Success)
        .target(id.to_owned())
        .into_record(clock::now_ms());
    store
        .delete_service_user(id.to_owned(), event)
        .await
        .map_err(map_missing(id))
}

pub async fn add_key<S: ServiceUserStore>(
    store: &S,
    user_id: &str,
    spec: KeySpec,
    actor: Actor,
) -> Result<ServiceUserKey, OAuthError> {
    let text = match &spec.public_key {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Object(_) => spec.public_key.to_string(),
        _ => {
            return Err(OAuthError::invalid_request(
                "public_key must be a PEM string or a JWK",
            ));
        }
    };
    let now = clock::now();
    if spec
        .expires_in
        .is_some_and(|secs| !(1..=MAX_KEY_LIFETIME).contains(&secs))
    {
        return Err(OAuthError::invalid_request(
            "expires_in must be between 1 second and 10 years",
        ));
    }
    let expires_at = spec.expires_in.map(|secs| now + secs);
    let key_id = new_id();
    let jwk = public_jwk(&text, &key_id)
        .map_err(|e| OAuthError::invalid_request(format!("public_key: {}", e.0)))?;
    let record = ServiceUserKeyRecord {
        id: key_id.clone(),
        user_id: user_id.to_owned(),
        public_jwk: jwk.to_string(),
        created_at: now,
        expires_at,
    };
    let event = Event::new(actor, "service_user.key_added", Outcome::Success)
        .target(user_id.to_owned())
        .details(json!({ "key_id": key_id, "alg": jwk["alg"], "expires_at": expires_at }))
        .into_record(clock::now_ms());
    store
        .add_service_user_key(record.clone(), event)
        .await
        .map_err(map_missing(user_id))?;
    Ok(record.into())
}

pub async fn list_keys<S: ServiceUserStore>(
    store: &S,
    user_id: &str,
) -> Result<Vec<ServiceUserKey>, OAuthError> {
    get(store, user_id).await?;
    Ok(store
        .list_service_user_keys(user_id.to_owned())
        .await?
        .into_iter()
        .map(ServiceUserKey::from)
        .collect())
}

pub async fn remove_key<S: ServiceUserStore>(
    store: &S,
    user_id: &str,
    key_id: &str,
    actor: Actor,
) -> Result<(), OAuthError> {
    let event = Event::new(actor, "service_user.key_removed", Outcome::Success)
        .target(user_id.to_owned())
        .details(json!({ "key_id": key_id }))
        .into_record(clock::now_ms());
    store
        .delete_service_user_key(user_id.to_owned(), key_id.to_owned(), event)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                OAuthError::not_found(format!("no key `{key_id}` for `{user_id}`"))
            }
            other => other.into(),
        })
}
