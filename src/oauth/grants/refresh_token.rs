//! RFC 6749 §6: the refresh token grant, with rotation.
//!
//! Reads `refresh_token`, `scope` and the client authentication
//! parameters. Every use returns a new refresh token and retires the old
//! one; presenting a retired one means it leaked, so the whole family is
//! revoked (OAuth 2.0 Security BCP §4.14.2) and `refresh.reused` audited.
//! A token expires when unused for `tokens.refresh_idle_lifetime`, and its
//! family `tokens.refresh_absolute_lifetime` after the sign-in.

use serde_json::json;

use super::human::{self, Family, HumanGrant, invalid_grant};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::client::GrantType;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{Core, ErrorCode, OAuthError};
use crate::store::{AuthorizationStore, RefreshTokenRecord, RevocationStore, Rotation};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

pub const GRANT_TYPE: &str = "refresh_token";

const UNKNOWN: &str = "the refresh token is unknown, expired or revoked";

/// A presented `tsr_rt_` token's row, if the digest matches.
pub async fn find(state: &Core, presented: &str) -> Result<Option<RefreshTokenRecord>, OAuthError> {
    let token = OpaqueToken::from_presented(presented);
    let Ok(parsed) = token.parse() else {
        return Ok(None);
    };
    if parsed.kind != TokenKind::Refresh {
        return Ok(None);
    }
    Ok(state
        .store
        .refresh_by_lookup(parsed.lookup)
        .await?
        .filter(|r| token.matches(&state.digest_key, &r.digest)))
}

async fn audit_reuse(state: &Core, record: &RefreshTokenRecord, remote: Option<String>) {
    Event::new(
        Actor {
            id: Some(record.user_id.clone()),
            kind: ActorKind::Human,
            owner: None,
        },
        "refresh.reused",
        Outcome::Failure,
    )
    .client(record.client_id.clone())
    .target(record.family_id.clone())
    .remote(remote)
    .details(json!({ "family": record.family_id, "token": record.id }))
    .record(&state.store)
    .await;
}

pub async fn grant(
    state: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let client = super::client_for(state, request, &context, GrantType::RefreshToken).await?;
    let record = find(state, request.require("refresh_token")?)
        .await?
        .ok_or_else(|| invalid_grant(UNKNOWN))?;
    // RFC 6749 §6: bound to the client it was issued to.
    if record.client_id != client.client_id {
        return Err(invalid_grant(UNKNOWN));
    }
    let now = clock::now();
    if record.revoked_at.is_some() {
        return Err(invalid_grant(UNKNOWN));
    }
    if record.used_at.is_some() {
        state
            .store
            .revoke_refresh_family(record.family_id.clone(), now)
            .await?;
        audit_reuse(state, &record, context.remote).await;
        return Err(invalid_grant(
            "the refresh token was used before; every token of its family is revoked",
        ));
    }
    if record.expires_at() <= now {
        return Err(invalid_grant(UNKNOWN));
    }
    let user = human::live_user(state, &record.user_id).await?;
    // RFC 6749 §6: the scope may only narrow. The user's rights are
    // checked again: an administrator who no longer is one loses the API
    // scopes.
    let held =
        crate::oauth::authorize::granted_scopes(&client, &human::words(&record.scopes), user.admin);
    let scopes = match request.get("scope") {
        None => held.clone(),
        Some(asked) => {
            let asked = human::words(asked);
            if let Some(extra) = asked.iter().find(|s| !held.contains(s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!(
                        "the scope `{}` was not granted to this refresh token",
                        crate::oauth::error::named(extra)
                    ),
                ));
            }
            asked
        }
    };
    let amr = human::words(&record.amr);
    let (mut response, access) = human::tokens(
        state,
        GRANT_TYPE,
        &HumanGrant {
            client: &client,
            user: &user,
            scopes: &scopes,
            auth_time: record.auth_time,
            amr: &amr,
            sid: record.session_id.as_deref(),
            nonce: None,
            named: None,
        },
        context.remote.clone(),
    )
    .await?;
    let (token, successor) = human::new_refresh(
        state,
        &client,
        &user.id,
        record.session_id.as_deref(),
        &held,
        record.auth_time,
        &amr,
        Family {
            id: &record.family_id,
            expires_at: record.family_expires_at,
        },
        &access,
        now,
    );
    let refresh_expires_at = successor.idle_expires_at;
    match state
        .store
        .rotate_refresh(record.id.clone(), record.family_id.clone(), successor, now)
        .await?
    {
        Rotation::Rotated => {}
        Rotation::Revoked => {
            // Revoked (a logout, a new password) while this request ran.
            state.store.revoke_jti(access.jti, access.exp).await?;
            return Err(invalid_grant(UNKNOWN));
        }
        Rotation::Reused => {
            // Another request rotated it first: the same token twice. The
            // access token just signed never leaves.
            state.store.revoke_jti(access.jti, access.exp).await?;
            audit_reuse(state, &record, context.remote).await;
            return Err(invalid_grant(
                "the refresh token was used before; every token of its family is revoked",
            ));
        }
    }
    human::hand_out(&mut response, &token, refresh_expires_at, now);
    Ok(response)
}
