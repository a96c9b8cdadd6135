//! RFC 6749 §4.1.3, OIDC Core §3.1.3: the authorization code grant.
//!
//! Reads `code`, `redirect_uri`, `code_verifier` (RFC 7636 §4.5) and the
//! client authentication parameters; public clients authenticate with
//! `none` and their `client_id`. A code is used once: a second use revokes
//! every token issued from it (RFC 6749 §4.1.2) and is audited as
//! `code.reused`.

use serde_json::json;

use super::human::{self, Family, HumanGrant, invalid_grant};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::authorize::code_digest;
use crate::oauth::client::GrantType;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{Core, OAuthError, pkce};
use crate::store::{AuthorizationStore, CodeAccess, CodeClaim, Finish, Redemption};
use crate::tokens::access::{self, Named};

pub const GRANT_TYPE: &str = "authorization_code";

pub async fn grant(
    state: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let client = super::client_for(state, request, &context, GrantType::AuthorizationCode).await?;
    let code = request.require("code")?;
    let digest = code_digest(state, code);
    let now = clock::now();
    // The access token is named as the code is claimed, in the same
    // statement: a second use, a logout or a disabled user after that
    // finds it and revokes it. Without a refresh token, that is the
    // redemption's only write of its own (the audit event goes to the
    // batch writer too).
    let named = CodeAccess {
        jti: access::new_jti(),
        exp: now.saturating_add(human::access_lifetime(state, &client).as_secs() as i64),
    };
    // Fresh codes are claimed in the batch writer's rounds, one commit
    // for many; what a round did not claim (unknown, reused, its session
    // ended) the store's transaction tells apart.
    let claim = CodeClaim {
        digest: digest.clone(),
        access: named.clone(),
        now,
    };
    let redemption = match state.writer.claim_code(claim).await? {
        Some(record) => Redemption::Fresh(record),
        None => {
            state
                .store
                .redeem_code(digest.clone(), named.clone(), now)
                .await?
        }
    };
    let record = match redemption {
        Redemption::Unknown => return Err(invalid_grant("the code is unknown")),
        Redemption::SessionEnded => return Err(session_ended()),
        Redemption::Reused(record) => {
            Event::new(
                Actor {
                    id: Some(record.user_id.clone()),
                    kind: ActorKind::Human,
                    owner: None,
                },
                "code.reused",
                Outcome::Failure,
            )
            .client(client.client_id.clone())
            .remote(context.remote.clone())
            .details(json!({
                "revoked_access_token": record.access_jti,
                "revoked_refresh_family": record.refresh_family,
                "sid": record.session_id,
            }))
            .record(&state.store)
            .await;
            return Err(invalid_grant(
                "the code was used before; the tokens issued from it are revoked",
            ));
        }
        Redemption::Fresh(record) => record,
    };
    // RFC 6749 §4.1.3: bound to the client, short-lived, and to the same
    // redirect URI; RFC 7636 §4.6: to the verifier.
    if record.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if record.expires_at <= now {
        return Err(invalid_grant("the code has expired"));
    }
    if request.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
        return Err(invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    pkce::verify(
        record.code_challenge.as_deref(),
        request.get("code_verifier"),
    )?;
    let user = human::live_user(state, &record.user_id).await?;
    // The user's rights may have changed since the code was issued.
    let scopes =
        crate::oauth::authorize::granted_scopes(&client, &human::words(&record.scopes), user.admin);
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
            sid: Some(&record.session_id),
            nonce: record.nonce.as_deref(),
            named: Some(Named {
                jti: &named.jti,
                exp: named.exp,
            }),
        },
        context.remote,
    )
    .await?;
    let refresh = human::wants_refresh(&client, &scopes).then(|| {
        let family_id = crate::random::new_id();
        human::new_refresh(
            state,
            &client,
            &user.id,
            Some(&record.session_id),
            &scopes,
            record.auth_time,
            &amr,
            Family {
                id: &family_id,
                expires_at: now + state.config.tokens.refresh_absolute_lifetime.as_secs() as i64,
            },
            &access,
            now,
        )
    });
    let Some((token, row)) = refresh else {
        return Ok(response);
    };
    // The refresh token is stored, and its family named on the code, in a
    // second transaction that sees a reuse or a logout since the claim.
    let refresh_expires_at = row.idle_expires_at;
    let finish = state
        .store
        .finish_code(digest, access.jti.clone(), access.exp, row, now)
        .await?;
    if finish == Finish::SessionEnded {
        return Err(session_ended());
    }
    if finish == Finish::Reused {
        // RFC 6749 §4.1.2: the code was used again while these tokens were
        // minted; they are revoked already and are not handed out.
        Event::new(
            Actor {
                id: Some(record.user_id.clone()),
                kind: ActorKind::Human,
                owner: None,
            },
            "code.reused",
            Outcome::Failure,
        )
        .client(client.client_id.clone())
        .details(json!({
            "revoked_access_token": access.jti,
            "sid": record.session_id,
        }))
        .record(&state.store)
        .await;
        return Err(invalid_grant(
            "the code was used again meanwhile; the tokens issued from it are revoked",
        ));
    }
    human::hand_out(&mut response, &token, refresh_expires_at, now);
    Ok(response)
}

/// The user signed out, was disabled or got a new password after the code
/// was issued: it gives nothing, and what it would have given is revoked.
fn session_ended() -> OAuthError {
    invalid_grant("the sign-in this code came from has ended")
}
