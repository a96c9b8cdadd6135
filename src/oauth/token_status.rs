//! Token introspection (RFC 7662) and revocation (RFC 7009).
//!
//! One lookup serves every token kind: a JWT access token is checked
//! against Tessera's own keys, its `jti` against the shared revocation
//! list, and its client and service user against the store (so disabling
//! or deleting them makes outstanding tokens inactive at once, on every
//! replica); an opaque `tsr_…` token is looked up by digest; a refresh
//! token (`tsr_rt_…`) is shown to the client it was issued to and to
//! administrators only. Personal access tokens join the opaque branch later.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::bearer::{self, Principal};
use super::client::{Client, GrantType};
use super::client_auth::{self, PresentedCredentials};
use super::{ErrorCode, OAuthError};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::Core;
use crate::oauth::personal_tokens::exchange::EXCHANGED_CLIENT_PREFIX;
use crate::store::{CredentialStore, PERSONAL_KINDS, PersonalTokenStore, RevocationStore};
use crate::tokens::jwt::verify_own;
use crate::tokens::opaque::OpaqueToken;

/// Who is asking: an authenticated client, or an administrator.
pub enum Caller {
    Client(Client),
    Admin(Principal),
}

impl Caller {
    fn actor(&self) -> Actor {
        match self {
            Caller::Client(c) => Actor::service(c.client_id.clone()),
            Caller::Admin(p) => p.actor(),
        }
    }
}

/// What the caller asks for: which decides whether a public client may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Introspect,
    Revoke,
}

/// RFC 7662 §2.1 / RFC 7009 §2.1: the caller must authenticate, with its
/// client credentials or an administrator's bearer token. RFC 7009 §2.1
/// lets a public client revoke the tokens issued to it (it identifies
/// itself with `client_id`, auth method `none`); introspection stays with
/// confidential clients (RFC 7662 §4: it reveals token contents).
pub async fn authenticate_caller(
    state: &Core,
    bearer_token: Option<String>,
    presented: PresentedCredentials,
    remote: Option<String>,
    purpose: Purpose,
) -> Result<Caller, OAuthError> {
    if let Some(token) = bearer_token {
        let principal =
            bearer::authenticate(state, &OpaqueToken::from_presented(&token), remote).await?;
        principal.require_admin()?;
        return Ok(Caller::Admin(principal));
    }
    let client = client_auth::authenticate(state, &presented, remote).await?;
    if client.public && purpose == Purpose::Introspect {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "a public client cannot introspect tokens",
        ));
    }
    Ok(Caller::Client(client))
}

/// RFC 7662 §2.2.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `human`, `service` or `workload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_kind: Option<String>,
    /// `pat` or `machine`, for a personal or machine token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_kind: Option<&'static str>,
    /// The username of the person who owns (a personal token) or answers
    /// for (a machine token) the token; absent for an orphaned one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A personal or machine token's environment label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A personal or machine token's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
}

/// The claims of Tessera's own JWT access tokens that are checked here.
#[derive(Debug, Deserialize)]
pub(crate) struct OwnClaims {
    pub iss: String,
    pub sub: String,
    pub aud: serde_json::Value,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    pub identity_kind: String,
    /// Set on a token exchanged under a trust policy.
    #[serde(default)]
    workload: Option<Workload>,
    /// Set on a token exchanged for a personal or machine token.
    #[serde(default)]
    pub token_id: Option<String>,
}

/// The trust policy an exchanged token was issued under.
#[derive(Debug, Deserialize)]
struct Workload {
    issuer: String,
    policy: String,
}

const SERVICE_USER_PREFIX: &str = "su_";
/// The `client_id` of a token exchanged without client authentication.
pub const TRUST_CLIENT_PREFIX: &str = "trust:";

/// A JWT access token of ours that is still valid: signature, type,
/// issuer, expiry, not revoked, and its client and subject still exist and
/// are enabled. A person's token (`identity_kind` `human`) is valid only
/// while its `sub` is a user who is not disabled (RFC 7662 §2.2: a token
/// whose authorization was withdrawn is not active).
pub(crate) async fn live_jwt(state: &Core, token: &str) -> Result<Option<OwnClaims>, OAuthError> {
    let Some(set) = state.keys.ring().get() else {
        return Err(OAuthError::unavailable("signing keys are not loaded yet"));
    };
    let now = clock::now();
    let Ok((typ, claims)) = verify_own::<OwnClaims>(&set, token, now, state.keys.max_lifetime())
    else {
        return Ok(None);
    };
    if typ.as_deref() != Some("at+jwt") || claims.iss != state.config.issuer() || claims.exp <= now
    {
        return Ok(None);
    }
    if state.store.is_revoked(claims.jti.clone()).await? {
        return Ok(None);
    }
    if claims.sub.starts_with(SERVICE_USER_PREFIX)
        && !state
            .service_user_cache
            .get(&state.store, &claims.sub)
            .await?
            .is_some_and(|u| u.user.enabled)
    {
        return Ok(None);
    }
    if claims.identity_kind == ActorKind::Human.as_str()
        && !state
            .user_cache
            .is_enabled(&state.store, &claims.sub)
            .await?
    {
        return Ok(None);
    }
    // A token exchanged under a trust policy lives only as long as the
    // policy: deleting it (or its issuer) ends the tokens it issued.
    if let Some(workload) = &claims.workload {
        let trust = state.trust.get(&state.store, &workload.issuer).await?;
        if !trust.is_some_and(|t| t.policies.iter().any(|p| p.policy.name == workload.policy)) {
            return Ok(None);
        }
    }
    // A token exchanged for a personal or machine token lives only while
    // that token does, enabled.
    if let Some(id) = &claims.token_id {
        let source = state.store.token_by_id(id.clone()).await?;
        if !source.is_some_and(|s| s.is_live(now) && s.disabled_at.is_none()) {
            return Ok(None);
        }
    }
    // Without client authentication, such a token names the policy, not a
    // registered client (`trust:<policy>`), or the token it was exchanged
    // for (`token:<id>`).
    let clientless = claims.client_id.starts_with(SERVICE_USER_PREFIX)
        || claims.client_id.starts_with(TRUST_CLIENT_PREFIX)
        || claims.client_id.starts_with(EXCHANGED_CLIENT_PREFIX);
    if !clientless {
        let client = state
            .client_cache
            .get(&state.store, &claims.client_id)
            .await?;
        if !client.is_some_and(|c| c.client.enabled) {
            return Ok(None);
        }
    }
    Ok(Some(claims))
}

/// RFC 7662 §2.2: `active: false` for anything expired, revoked, unknown
/// or malformed, with no further detail.
pub async fn introspect(
    state: &Core,
    caller: &Caller,
    token: &str,
) -> Result<Introspection, OAuthError> {
    if token.starts_with("tsr_rt_") {
        return introspect_refresh(state, caller, token).await;
    }
    introspect_access(state, token).await
}

/// [`introspect`] for an access token: a JWT of ours or an opaque `tsr_`
/// token (any authenticated caller may ask: resource servers do).
pub async fn introspect_access(state: &Core, token: &str) -> Result<Introspection, OAuthError> {
    if token.starts_with("tsr_") {
        let presented = OpaqueToken::from_presented(token);
        return match bearer::inspect(state, &presented).await {
            Ok(found) => Ok(opaque_introspection(state, found).await?),
            Err((error, _)) if error.code == ErrorCode::TemporarilyUnavailable => Err(error),
            Err(_) => Ok(Introspection::default()),
        };
    }
    Ok(match live_jwt(state, token).await? {
        Some(claims) => Introspection {
            active: true,
            sub: Some(claims.sub),
            client_id: Some(claims.client_id),
            scope: Some(claims.scope).filter(|s| !s.is_empty()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            token_type: Some("Bearer"),
            aud: Some(claims.aud),
            iss: Some(claims.iss),
            jti: Some(claims.jti),
            identity_kind: Some(claims.identity_kind),
            ..Default::default()
        },
        None => Introspection::default(),
    })
}

/// An opaque token that checked out: a personal or machine token says
/// which it is, its owner, environment and name, so that a resource server
/// can decide on them; the bootstrap token is a service user's.
async fn opaque_introspection(
    state: &Core,
    found: bearer::Inspected,
) -> Result<Introspection, OAuthError> {
    let bearer::Inspected { principal, record } = found;
    let personal = principal.token_kind.is_some();
    // A person owns a personal token; a machine token names the person
    // who answers for it (none: orphaned).
    let owner = match principal.token_kind {
        Some(ActorKind::Pat) => Some(principal.name.clone()),
        Some(_) => match &record.responsible_id {
            Some(id) => state
                .user_cache
                .get(&state.store, id)
                .await?
                .map(|u| u.username.clone()),
            None => None,
        },
        None => None,
    };
    Ok(Introspection {
        active: true,
        sub: Some(principal.id.clone()),
        // A personal or machine token is no client's: no `client_id`.
        client_id: (!personal).then(|| principal.id.clone()),
        scope: Some(principal.scopes.join(" ")).filter(|s| !s.is_empty()),
        exp: record.expires_at,
        iat: Some(record.created_at),
        token_type: Some("Bearer"),
        iss: Some(state.config.issuer().to_owned()),
        identity_kind: Some(principal.kind.as_str().to_owned()),
        token_kind: principal.token_kind.map(|k| k.as_str()),
        owner,
        env: personal.then(|| record.env.clone()),
        token_name: personal.then(|| record.name.clone()),
        ..Default::default()
    })
}

/// A refresh token is active while it is the newest of a family that is
/// neither revoked nor past either lifetime, and its user and client are
/// enabled: exactly when the refresh grant would take it. RFC 7662 §4 lets
/// the server answer callers differently: a refresh token is meant for the
/// client it was issued to alone, so any other client learns only
/// `active: false`.
async fn introspect_refresh(
    state: &Core,
    caller: &Caller,
    token: &str,
) -> Result<Introspection, OAuthError> {
    let Some(record) = super::grants::refresh_token::find(state, token).await? else {
        return Ok(Introspection::default());
    };
    let now = clock::now();
    let exp = record.expires_at();
    let usable = record.revoked_at.is_none() && record.used_at.is_none() && exp > now;
    let own = match caller {
        Caller::Client(client) => client.client_id == record.client_id,
        Caller::Admin(_) => true,
    };
    if !usable || !own {
        return Ok(Introspection::default());
    }
    let user = state.user_cache.get(&state.store, &record.user_id).await?;
    let client = state
        .client_cache
        .get(&state.store, &record.client_id)
        .await?;
    let (Some(user), Some(client)) = (user, client) else {
        return Ok(Introspection::default());
    };
    let client = &client.client;
    if user.disabled || !client.enabled || !client.may_use(GrantType::RefreshToken) {
        return Ok(Introspection::default());
    }
    // What a refresh would grant now: an administrator who no longer is
    // one has lost the API scopes.
    let scopes = super::authorize::granted_scopes(
        client,
        &super::grants::human::words(&record.scopes),
        user.admin,
    );
    Ok(Introspection {
        active: true,
        sub: Some(record.user_id),
        client_id: Some(record.client_id),
        scope: Some(scopes.join(" ")).filter(|s| !s.is_empty()),
        exp: Some(exp),
        iat: Some(record.created_at),
        iss: Some(state.config.issuer().to_owned()),
        identity_kind: Some(ActorKind::Human.as_str().to_owned()),
        ..Default::default()
    })
}

/// RFC 7009 §2.1. A client may revoke only tokens issued to it; an
/// administrator any. Unknown and invalid tokens are not an error (§2.2).
pub async fn revoke(
    state: &Core,
    caller: &Caller,
    token: &str,
    remote: Option<String>,
) -> Result<(), OAuthError> {
    let event = |target: String| {
        Event::new(caller.actor(), "token.revoked", Outcome::Success)
            .target(target)
            .remote(remote.clone())
    };
    if token.starts_with("tsr_rt_") {
        return revoke_refresh(state, caller, token, remote).await;
    }
    if token.starts_with("tsr_") {
        // Personal, machine and bootstrap tokens are no client's: an
        // administrator revokes them here, whatever their state (a
        // disabled token too), and their owners with `tessera token`.
        let Caller::Admin(admin) = caller else {
            return Ok(());
        };
        let found = match bearer::find(state, &OpaqueToken::from_presented(token)).await {
            Ok(Some(found)) if found.revoked_at.is_none() => found,
            Err((error, _)) if error.code == ErrorCode::TemporarilyUnavailable => {
                return Err(error);
            }
            _ => return Ok(()),
        };
        if PERSONAL_KINDS.contains(&found.kind.as_str()) {
            return crate::oauth::personal_tokens::revoke(state, admin, &found.id, remote)
                .await
                .map(drop);
        }
        state
            .store
            .revoke_access_token(found.id.clone(), clock::now())
            .await?;
        state.token_cache.invalidate(&found.lookup);
        event(found.id.clone())
            .details(json!({ "kind": "opaque" }))
            .record_via(&state.writer)
            .await;
        return Ok(());
    }
    let Some(set) = state.keys.ring().get() else {
        return Err(OAuthError::unavailable("signing keys are not loaded yet"));
    };
    let Ok((_, claims)) =
        verify_own::<OwnClaims>(&set, token, clock::now(), state.keys.max_lifetime())
    else {
        return Ok(());
    };
    if let Caller::Client(client) = caller
        && client.client_id != claims.client_id
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        ));
    }
    state
        .store
        .revoke_jti(claims.jti.clone(), claims.exp)
        .await?;
    event(claims.jti)
        .client(claims.client_id)
        .details(json!({ "kind": "jwt" }))
        .record_via(&state.writer)
        .await;
    Ok(())
}

/// RFC 7009 §2.1 for a refresh token: only the client it was issued to (or
/// an administrator) may revoke it, and revoking it revokes its whole
/// family and the access tokens issued with it (§2.1: "SHOULD also
/// invalidate all access tokens based on the same authorization grant").
async fn revoke_refresh(
    state: &Core,
    caller: &Caller,
    token: &str,
    remote: Option<String>,
) -> Result<(), OAuthError> {
    use crate::store::AuthorizationStore;
    let Some(record) = super::grants::refresh_token::find(state, token).await? else {
        return Ok(());
    };
    if let Caller::Client(client) = caller
        && client.client_id != record.client_id
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        ));
    }
    state
        .store
        .revoke_refresh_family(record.family_id.clone(), clock::now())
        .await?;
    Event::new(caller.actor(), "token.revoked", Outcome::Success)
        .target(record.family_id)
        .client(record.client_id)
        .remote(remote)
        .details(json!({ "kind": "refresh" }))
        .record_via(&state.writer)
        .await;
    Ok(())
}
