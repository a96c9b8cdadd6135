//! Bearer tokens presented to Tessera's own APIs (RFC 6750): opaque
//! `tsr_…` tokens checked against their stored digest, and a person's JWT
//! access tokens (RFC 9068) meant for Tessera itself.

use std::sync::Arc;

use serde::Serialize;

use super::api_scopes;
use super::error::{ErrorCode, OAuthError};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::Core;
use crate::oauth::token_status::live_jwt;
use crate::store::{AccessTokenRecord, CredentialStore};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

/// The identity behind a verified token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub kind: ActorKind,
    pub is_admin: bool,
    /// The credential used, so audits can name it.
    pub token_id: String,
    pub scopes: Vec<String>,
    /// `pat` or `machine` when the credential is a personal or machine
    /// token: such a token acts as itself in the audit, its owner beside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_kind: Option<ActorKind>,
    /// When the credential presented expires (a token cannot make one
    /// that outlives it).
    #[serde(skip)]
    pub expires_at: Option<i64>,
}

impl Principal {
    /// Who the audit names: the personal or machine token itself (with
    /// this principal as its owner), or the principal.
    pub fn actor(&self) -> Actor {
        match self.token_kind {
            Some(kind) => Actor::token(self.token_id.clone(), kind, self.id.clone()),
            None => Actor::new(self.id.clone(), self.kind),
        }
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The admin API needs an administrator holding a token with the
    /// `admin` scope (RFC 6750 §3.1 `insufficient_scope` otherwise).
    pub fn require_admin(&self) -> Result<(), OAuthError> {
        if self.is_admin && self.scopes.iter().any(|s| s == api_scopes::ADMIN) {
            Ok(())
        } else {
            Err(OAuthError::insufficient_scope(
                api_scopes::ADMIN,
                "this endpoint needs an administrator token with the admin scope",
            ))
        }
    }

    /// RFC 6750 §3.1: whether this token may make an admin API request
    /// (`read`: a GET or HEAD) to `path`, by the rules of
    /// [`api_scopes::permits`]; `insufficient_scope` naming what is needed
    /// otherwise.
    pub fn require_for(&self, read: bool, path: &str) -> Result<(), OAuthError> {
        if api_scopes::permits(self.is_admin, &self.scopes, read, path) {
            Ok(())
        } else {
            Err(OAuthError::insufficient_scope(
                api_scopes::needed_scope(read, path),
                api_scopes::needed(read, path),
            ))
        }
    }
}

const REJECTED: &str = "the access token is unknown, expired or revoked";

/// Verifies `presented` and returns its owner. Every use is audited (a
/// personal or machine token's, counted and aggregated), and
/// failures as far as `Core::auth_failures` lets each source: both through
/// the batch writer, so a loop of bad tokens costs no INSERT per request
/// and does not compete with issuance for the database.
pub async fn authenticate(
    state: &Core,
    presented: &OpaqueToken,
    remote: Option<String>,
) -> Result<Principal, OAuthError> {
    let verified = if presented.expose().starts_with("tsr_") {
        verify(state, presented, remote.as_deref()).await
    } else {
        verify_person(state, presented.expose()).await
    };
    match verified {
        // Personal and machine tokens' uses are counted and audited once
        // per flush interval instead (`personal_tokens::usage`).
        Ok(principal) if principal.token_kind.is_some() => Ok(principal),
        Ok(principal) => {
            Event::new(principal.actor(), "token.used", Outcome::Success)
                .target(principal.token_id.clone())
                .remote(remote)
                .record_via(&state.writer)
                .await;
            Ok(principal)
        }
        Err((error, token_id)) => {
            let details = (error.code != ErrorCode::TemporarilyUnavailable)
                .then(|| {
                    state
                        .auth_failures
                        .failure_details(remote.as_deref(), &error.description)
                })
                .flatten();
            if let Some(details) = details {
                let mut event = Event::new(Actor::anonymous(), "auth.failed", Outcome::Failure)
                    .remote(remote)
                    .details(details);
                if let Some(id) = token_id {
                    event = event.target(id);
                }
                event.record_via(&state.writer).await;
            }
            Err(error)
        }
    }
}

/// A person's JWT access token meant for Tessera's own API: valid as
/// introspection sees it (signature with Tessera's key ring, `typ`
/// `at+jwt`, `iss`, `exp`, not revoked, client enabled; RFC 9068 §4), its
/// `aud` holds the issuer URL (RFC 9068 §4 step 3: a resource server
/// accepts only tokens meant for it), `identity_kind` is `human`, and
/// `sub` is a user who exists and is not disabled.
async fn verify_person(
    state: &Core,
    token: &str,
) -> Result<Principal, (OAuthError, Option<String>)> {
    let claims = live_jwt(state, token)
        .await
        .map_err(|e| (e, None))?
        .ok_or((OAuthError::invalid_token(REJECTED), None))?;
    let token_id = Some(claims.jti.clone());
    let issuer = state.config.issuer();
    let for_us = match &claims.aud {
        serde_json::Value::String(one) => one == issuer,
        serde_json::Value::Array(many) => many.iter().any(|a| a.as_str() == Some(issuer)),
        _ => false,
    };
    if !for_us || claims.identity_kind != ActorKind::Human.as_str() {
        return Err((
            OAuthError::invalid_token("the access token is not meant for Tessera's API"),
            token_id,
        ));
    }
    // `live_jwt` has checked that the user exists and is enabled; this
    // reads the same (cached) record for the name and the role.
    let user = state
        .user_cache
        .get(&state.store, &claims.sub)
        .await
        .map_err(|e| (e.into(), token_id.clone()))?
        .filter(|u| !u.disabled)
        .ok_or((OAuthError::invalid_token(REJECTED), token_id))?;
    // A JWT exchanged for a personal access token acts as that token.
    let (token_id, token_kind) = match claims.token_id {
        Some(source) => (source, Some(ActorKind::Pat)),
        None => (claims.jti, None),
    };
    Ok(Principal {
        id: user.id.clone(),
        name: user.username.clone(),
        kind: ActorKind::Human,
        is_admin: user.admin,
        token_id,
        scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        token_kind,
        expires_at: Some(claims.exp),
    })
}

async fn verify(
    state: &Core,
    presented: &OpaqueToken,
    remote: Option<&str>,
) -> Result<Principal, (OAuthError, Option<String>)> {
    let inspected = inspect(state, presented).await?;
    if inspected.record.kind == TokenKind::Bootstrap.as_str() {
        // Best effort: a failed bookkeeping write must not refuse a valid token.
        if let Err(e) = state
            .store
            .mark_token_used(inspected.principal.token_id.clone(), clock::now())
            .await
        {
            tracing::warn!(error = %e, "could not record token use time");
        }
    } else {
        state.token_uses.count(&inspected, remote);
    }
    Ok(inspected.principal)
}

/// An opaque token that checked out, with its row.
pub struct Inspected {
    pub principal: Principal,
    pub record: Arc<AccessTokenRecord>,
}

/// Why a token whose digest matched is refused: the holder of the token
/// may learn which (RFC 6750 §3.1 lets the description say).
fn refusal(record: &AccessTokenRecord, now: i64) -> Option<OAuthError> {
    if record.revoked_at.is_some() {
        Some(OAuthError::invalid_token("the access token was revoked"))
    } else if record.expires_at.is_some_and(|exp| exp <= now) {
        Some(OAuthError::invalid_token("the access token expired"))
    } else if record.disabled_at.is_some() {
        // A brownout: 403, not the 401 of a revoked or unknown token, so
        // that an operator can tell the two apart (README; RFC 6750 §3.1
        // says SHOULD 401 for `invalid_token`).
        Some(OAuthError::invalid_token(DISABLED).with_status(403))
    } else {
        None
    }
}

/// The description of a disabled (browned-out) token's 403.
pub const DISABLED: &str = "token disabled";

/// Checks an opaque token without recording a use: what introspection
/// and revocation need. A personal token's user must exist and not be
/// disabled; a machine or bootstrap token's service user must exist and
/// be enabled.
pub async fn inspect(
    state: &Core,
    presented: &OpaqueToken,
) -> Result<Inspected, (OAuthError, Option<String>)> {
    // An agent bootstrap token is good for registration only (RFC 7591
    // §3), never as a bearer token of the API.
    let record = find(state, presented)
        .await?
        .filter(|r| r.kind != TokenKind::AgentBootstrap.as_str())
        .ok_or((OAuthError::invalid_token(REJECTED), None))?;
    let token_id = Some(record.id.clone());
    if let Some(refused) = refusal(&record, clock::now()) {
        return Err((refused, token_id));
    }
    let gone = || (OAuthError::invalid_token(OWNER_GONE), token_id.clone());
    let stored = record.scopes.split_whitespace();
    let principal = if record.owner_kind == ActorKind::Human.as_str() {
        let user = state
            .user_cache
            .get(&state.store, &record.owner_id)
            .await
            .map_err(|e| (e.into(), token_id.clone()))?
            .filter(|u| !u.disabled)
            .ok_or_else(gone)?;
        Principal {
            id: user.id.clone(),
            name: user.username.clone(),
            kind: ActorKind::Human,
            is_admin: user.admin,
            token_id: record.id.clone(),
            // What the person may have now: a former administrator's
            // token loses the admin scopes.
            scopes: stored
                .filter(|s| api_scopes::allowed_for_user(user.admin, s))
                .map(str::to_owned)
                .collect(),
            token_kind: Some(ActorKind::Pat),
            expires_at: record.expires_at,
        }
    } else {
        let user = state
            .service_user_cache
            .get(&state.store, &record.owner_id)
            .await
            .map_err(|e| (e.into(), token_id.clone()))?
            .filter(|u| u.user.enabled)
            .ok_or_else(gone)?;
        let machine = record.kind == TokenKind::Machine.as_str();
        Principal {
            id: user.user.id.clone(),
            name: user.user.name.clone(),
            kind: ActorKind::Service,
            is_admin: user.user.is_admin,
            token_id: record.id.clone(),
            // What the service user may have now (the bootstrap token's
            // `admin` is an administrator's API scope).
            scopes: stored
                .filter(|s| {
                    if api_scopes::is_api_scope(s) {
                        api_scopes::allowed_for_user(user.user.is_admin, s)
                    } else {
                        user.user.scopes.iter().any(|own| own == s)
                    }
                })
                .map(str::to_owned)
                .collect(),
            token_kind: machine.then_some(ActorKind::Machine),
            expires_at: record.expires_at,
        }
    };
    Ok(Inspected { principal, record })
}

/// The row of a well-formed opaque token whose digest matches, whatever
/// its state: what revocation needs (a disabled token is revoked too).
pub async fn find(
    state: &Core,
    presented: &OpaqueToken,
) -> Result<Option<Arc<AccessTokenRecord>>, (OAuthError, Option<String>)> {
    let parsed = presented
        .parse()
        .map_err(|e| (OAuthError::invalid_token(e.to_string()), None))?;
    Ok(state
        .token_cache
        .get(&state.store, &parsed.lookup)
        .await
        .map_err(|e| (e.into(), None))?
        .filter(|r| {
            r.kind == parsed.kind.as_str()
                && parsed.env.as_deref().is_none_or(|env| env == r.env)
                && presented.matches(&state.digest_key, &r.digest)
        }))
}

const OWNER_GONE: &str = "the access token's owner was disabled or deleted";
