//! Bearer tokens presented to Tessera's own APIs (RFC 6750): opaque
//! `tsr_…` tokens checked against their stored digest, and a person's JWT
//! access tokens (RFC 9068) meant for Tessera itself.

use aws_lc_rs::hmac;
use serde::Serialize;

use super::api_scopes;
use super::error::{ErrorCode, OAuthError};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::Core;
use crate::oauth::token_status::live_jwt;
use crate::store::CredentialStore;
use crate::tokens::opaque::OpaqueToken;

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
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            id: Some(self.id.clone()),
            kind: self.kind,
        }
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

/// Verifies `presented` and returns its owner. Every use is audited, and
/// failures as far as `Core::auth_failures` lets each source: both through
/// the batch writer, so a loop of bad tokens costs no INSERT per request
/// and does not compete with issuance for the database.
pub async fn authenticate(
    state: &Core,
    presented: &OpaqueToken,
    remote: Option<String>,
) -> Result<Principal, OAuthError> {
    let verified = if presented.expose().starts_with("tsr_") {
        verify(&state.store, &state.digest_key, presented).await
    } else {
        verify_person(state, presented.expose()).await
    };
    match verified {
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
    Ok(Principal {
        id: user.id.clone(),
        name: user.username.clone(),
        kind: ActorKind::Human,
        is_admin: user.admin,
        token_id: claims.jti,
        scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
    })
}

async fn verify<S: CredentialStore + Sync>(
    store: &S,
    digest_key: &hmac::Key,
    presented: &OpaqueToken,
) -> Result<Principal, (OAuthError, Option<String>)> {
    let inspected = inspect(store, digest_key, presented).await?;
    // Best effort: a failed bookkeeping write must not refuse a valid token.
    if let Err(e) = store
        .mark_token_used(inspected.principal.token_id.clone(), clock::now())
        .await
    {
        tracing::warn!(error = %e, "could not record token use time");
    }
    Ok(inspected.principal)
}

/// An opaque token that checked out, with its lifetime.
pub struct Inspected {
    pub principal: Principal,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
}

/// Checks an opaque token without recording a use: what introspection
/// and revocation need.
pub async fn inspect<S: CredentialStore + Sync>(
    store: &S,
    digest_key: &hmac::Key,
    presented: &OpaqueToken,
) -> Result<Inspected, (OAuthError, Option<String>)> {
    let parsed = presented
        .parse()
        .map_err(|e| (OAuthError::invalid_token(e.to_string()), None))?;
    let record = store
        .token_by_lookup(parsed.lookup)
        .await
        .map_err(|e| (e.into(), None))?
        .filter(|r| r.kind == parsed.kind.as_str() && presented.matches(digest_key, &r.digest))
        .ok_or((OAuthError::invalid_token(REJECTED), None))?;
    let token_id = Some(record.id.clone());
    let now = clock::now();
    if record.revoked_at.is_some() || record.expires_at.is_some_and(|exp| exp <= now) {
        return Err((OAuthError::invalid_token(REJECTED), token_id));
    }
    if record.disabled_at.is_some() {
        return Err((
            OAuthError::new(ErrorCode::AccessDenied, "the access token is disabled"),
            token_id,
        ));
    }
    let user = store
        .service_user(record.owner_id.clone())
        .await
        .map_err(|e| (e.into(), token_id.clone()))?
        .ok_or((OAuthError::invalid_token(REJECTED), token_id.clone()))?;
    let principal = Principal {
        id: user.id,
        name: user.name,
        kind: ActorKind::Service,
        is_admin: user.is_admin,
        token_id: record.id,
        scopes: record
            .scopes
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    Ok(Inspected {
        principal,
        issued_at: record.created_at,
        expires_at: record.expires_at,
    })
}
