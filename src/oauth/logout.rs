//! RP-initiated logout's core (OpenID Connect RP-Initiated Logout 1.0 §2,
//! §3): which client asks, where the browser may go afterwards, and what
//! ending a session revokes.

use std::collections::HashMap;

use serde_json::json;

use super::client::Client;
use super::{Core, OAuthError};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::store::AuthorizationStore;
use crate::tokens::id_token::{HintClaims, verify_hint};

/// A validated logout request.
#[derive(Debug)]
pub struct LogoutRequest {
    pub hint: Option<HintClaims>,
    pub client: Option<Client>,
    /// Registered for the client (§3), with `state` appended.
    pub redirect: Option<String>,
}

impl LogoutRequest {
    /// §2: with a hint naming the current session, no confirmation is
    /// needed: the relying party proved it holds the session's ID token.
    pub fn hint_matches(&self, sid: &str) -> bool {
        self.hint
            .as_ref()
            .and_then(|h| h.sid.as_deref())
            .is_some_and(|s| s == sid)
    }
}

/// §2-§3: `id_token_hint` is verified with our keys (an expired one is
/// accepted), `client_id` must agree with it, and
/// `post_logout_redirect_uri` must be registered for that client exactly.
pub async fn validate(
    state: &Core,
    params: &HashMap<String, String>,
) -> Result<LogoutRequest, OAuthError> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let hint = match get("id_token_hint") {
        None => None,
        Some(token) => {
            let set = state
                .keys
                .ring()
                .get()
                .ok_or_else(|| OAuthError::unavailable("signing keys are not loaded yet"))?;
            Some(
                verify_hint(
                    &set,
                    token,
                    state.config.issuer(),
                    clock::now(),
                    state.keys.max_lifetime(),
                )
                .map_err(|_| {
                    OAuthError::invalid_request("id_token_hint is not an ID token Tessera issued")
                })?,
            )
        }
    };
    let hinted_client = hint.as_ref().and_then(HintClaims::client_id);
    let client_id = match (get("client_id"), hinted_client) {
        (Some(given), Some(hinted)) if given != hinted => {
            return Err(OAuthError::invalid_request(
                "client_id is not the audience of id_token_hint",
            ));
        }
        (Some(given), _) => Some(given),
        (None, hinted) => hinted,
    };
    let client = match client_id {
        Some(id) if super::syntax::is_identifier(id) => state
            .client_cache
            .get(&state.store, id)
            .await?
            .map(|c| c.client.clone())
            .filter(|c| c.enabled),
        _ => None,
    };
    let redirect = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered = client
                .as_ref()
                .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri));
            if !registered {
                return Err(OAuthError::invalid_request(
                    "post_logout_redirect_uri is not registered for the client named by \
                     id_token_hint or client_id",
                ));
            }
            let mut url = url::Url::parse(uri).map_err(|_| {
                OAuthError::invalid_request("post_logout_redirect_uri is not a URI")
            })?;
            if let Some(s) = get("state") {
                url.query_pairs_mut().append_pair("state", s);
            }
            Some(url.to_string())
        }
    };
    Ok(LogoutRequest {
        hint,
        client,
        redirect,
    })
}

/// After the browser session `sid` ended: revokes the refresh tokens issued
/// in it (those of other sessions, a CLI's for one, live on) and audits
/// `logout`.
pub async fn session_ended(
    state: &Core,
    sid: &str,
    user_id: &str,
    client: Option<&Client>,
    remote: Option<String>,
) -> Result<(), OAuthError> {
    let revoked = state
        .store
        .revoke_session_refresh(sid.to_owned(), clock::now())
        .await?;
    let mut event = Event::new(
        Actor {
            id: Some(user_id.to_owned()),
            kind: ActorKind::Human,
            owner: None,
        },
        "logout",
        Outcome::Success,
    )
    .remote(remote)
    .details(
        json!({ "sid": sid, "refresh_tokens_revoked": revoked, "rp_initiated": client.is_some() }),
    );
    if let Some(client) = client {
        event = event.client(client.client_id.clone());
    }
    event.record(&state.store).await;
    Ok(())
}
