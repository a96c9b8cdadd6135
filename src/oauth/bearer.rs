//! Bearer tokens presented to Tessera's own APIs (RFC 6750): opaque
//! `tsr_…` tokens checked against their stored digest.

use aws_lc_rs::hmac;
use serde::Serialize;

use super::error::{ErrorCode, OAuthError};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::Core;
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
        if self.is_admin && self.scopes.iter().any(|s| s == "admin") {
            Ok(())
        } else {
            Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "this endpoint needs an administrator token with the admin scope",
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
    match verify(&state.store, &state.digest_key, presented).await {
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
