//! RFC 8628 §3.4–3.5: the device access token request. The client polls
//! with its `device_code` until the user answers on the verification page:
//! `authorization_pending` meanwhile, `slow_down` (and 5 s more interval)
//! when it polls sooner than its interval, then `access_denied` or
//! `expired_token`, or the tokens, once (§5.2: the one poll that redeems an
//! approval; any later one is `invalid_grant`).

use super::human::{self, Family, HumanGrant, invalid_grant};
use crate::clock;
use crate::oauth::client::GrantType;
use crate::oauth::device::{device_code_digest, poll_error};
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{Core, ErrorCode, OAuthError};
use crate::store::{DeviceState, DeviceStore};

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The most characters a device code can have: Tessera's are 44.
const MAX_DEVICE_CODE_LEN: usize = 128;

pub async fn grant(
    state: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let client = super::client_for(state, request, &context, GrantType::DeviceCode).await?;
    let device_code = request.require("device_code")?;
    if device_code.len() > MAX_DEVICE_CODE_LEN {
        return Err(invalid_grant("the device code is unknown"));
    }
    let claim = crate::random::random_base62(22);
    let now_ms = clock::now_ms();
    let now = now_ms.div_euclid(1000);
    let polled = state
        .store
        .poll_device(
            device_code_digest(state, device_code),
            client.client_id.clone(),
            claim.clone(),
            now_ms,
        )
        .await?;
    // A device code of another client is unknown to this one: its poll
    // changed nothing.
    let Some(polled) = polled else {
        return Err(invalid_grant("the device code is unknown"));
    };
    match (polled.state, polled.redeemed) {
        (DeviceState::Pending, _) if polled.expires_at <= now => Err(expired()),
        (DeviceState::Pending, _) if polled.slowed => Err(poll_error(
            ErrorCode::SlowDown,
            "polling faster than the interval: wait 5 seconds longer between polls from now on",
        )),
        (DeviceState::Pending, _) => Err(poll_error(
            ErrorCode::AuthorizationPending,
            "the user has not answered yet",
        )),
        (DeviceState::Denied, _) => Err(poll_error(
            ErrorCode::AccessDenied,
            "the user denied the request",
        )),
        // Approved but not redeemed by this poll: it expired first.
        (DeviceState::Approved, _) => Err(expired()),
        (DeviceState::Ended, _) => Err(ended()),
        // Redeemed, by another poll.
        (DeviceState::Redeemed, None) => Err(invalid_grant("the device code was redeemed already")),
        (DeviceState::Redeemed, Some(record)) => {
            let issued = issue(state, &client, &record, &claim, context.remote, now).await;
            if let Err(error) = &issued
                && error.code != ErrorCode::InvalidGrant
            {
                // Not the user's refusal but a failure on the way (the
                // database went away): the next poll tries again.
                let _ = state
                    .store
                    .unclaim_device(record.device_digest.clone(), claim)
                    .await;
            }
            issued
        }
    }
}

fn ended() -> OAuthError {
    invalid_grant("the approval ended with the user's sessions (a new password or a disabled user)")
}

fn expired() -> OAuthError {
    poll_error(
        ErrorCode::ExpiredToken,
        "the device code expired: start the login again",
    )
}

/// The tokens of a redeemed approval: as the authorization code grant's,
/// without a browser session (the CLI's login outlives it; a new password
/// or a disabled user still ends it).
async fn issue(
    state: &Core,
    client: &crate::oauth::client::Client,
    record: &crate::store::DeviceRecord,
    claim: &str,
    remote: Option<String>,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let user_id = record
        .user_id
        .as_deref()
        .ok_or_else(|| OAuthError::server_error("an approval without its user"))?;
    let user = human::live_user(state, user_id).await?;
    // The user's rights may have changed since the approval.
    let scopes =
        crate::oauth::authorize::granted_scopes(client, &human::words(&record.scopes), user.admin);
    let amr = human::words(record.amr.as_deref().unwrap_or(""));
    let auth_time = record.auth_time.unwrap_or(now);
    let (mut response, access) = human::tokens(
        state,
        GRANT_TYPE,
        &HumanGrant {
            client,
            user: &user,
            scopes: &scopes,
            auth_time,
            amr: &amr,
            sid: None,
            nonce: None,
            named: None,
        },
        remote,
    )
    .await?;
    let (token, row) = human::wants_refresh(client, &scopes)
        .then(|| {
            let family_id = crate::random::new_id();
            human::new_refresh(
                state,
                client,
                &user.id,
                None,
                &scopes,
                auth_time,
                &amr,
                Family {
                    id: &family_id,
                    expires_at: now
                        + state.config.tokens.refresh_absolute_lifetime.as_secs() as i64,
                },
                &access,
                now,
            )
        })
        .unzip();
    let refresh_expires_at = row.as_ref().map(|r| r.idle_expires_at);
    let handed_out = state
        .store
        .finish_device(
            record.device_digest.clone(),
            claim.to_owned(),
            (access.jti.clone(), access.exp),
            row,
        )
        .await?;
    if !handed_out {
        return Err(ended());
    }
    if let (Some(token), Some(expires_at)) = (token, refresh_expires_at) {
        human::hand_out(&mut response, &token, expires_at, now);
    }
    Ok(response)
}
