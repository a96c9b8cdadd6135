//! An agent's `client_credentials` request (RFC 6749 §4.4), once its
//! `private_key_jwt` assertion checked out: the token is its service
//! user's (`sub`), with the agent as `client_id`, within the service
//! user's scopes and lifetime cap as they are now.

use std::time::Duration;

use quick_cache::sync::Cache;

use crate::audit::{Actor, ActorKind};
use crate::clock;
use crate::oauth::client::Client;
use crate::oauth::grants::{client_credentials::GRANT_TYPE, issue_as};
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{Core, ErrorCode, OAuthError, scope};
use crate::store::AgentStore;
use crate::tokens::access::AccessTokenRequest;

/// How often one replica writes an agent's last token time: `tessera agent
/// list` needs it to the minute, and a write per token would cost the
/// token endpoint a database round trip.
const TOUCH_EVERY: i64 = 60;
const TOUCHED_CAPACITY: usize = 10_000;

/// When this replica last wrote each agent's `last_token_at`.
pub struct LastTokenTimes(Cache<String, i64>);

impl Default for LastTokenTimes {
    fn default() -> Self {
        LastTokenTimes(Cache::new(TOUCHED_CAPACITY))
    }
}

impl LastTokenTimes {
    /// Whether `client_id`'s time is due for a write at `now`, marking it
    /// written if so.
    fn due(&self, client_id: &str, now: i64) -> bool {
        if self
            .0
            .get(client_id)
            .is_some_and(|at| now - at < TOUCH_EVERY)
        {
            return false;
        }
        self.0.insert(client_id.to_owned(), now);
        true
    }
}

pub async fn grant(
    state: &Core,
    client: &Client,
    service_user_id: &str,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    // The agent's key is its own: nothing transient explains a disabled
    // or deleted service user, so it is `invalid_client`, which the agent
    // treats as final.
    let cached = state
        .service_user_cache
        .get(&state.store, service_user_id)
        .await?
        .filter(|u| u.user.enabled)
        .ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "the agent's service user is disabled or deleted",
            )
        })?;
    let user = &cached.user;
    // What the agent registered for, and its service user may still have.
    let allowed: Vec<String> = client
        .scopes
        .iter()
        .filter(|s| user.scopes.contains(s))
        .cloned()
        .collect();
    let scopes = scope::grant_scopes(&allowed, request.get("scope"))?;
    let issuer = state.config.issuer();
    let default_audience = user
        .audiences
        .first()
        .cloned()
        .unwrap_or_else(|| issuer.to_owned());
    let audience = scope::grant_audience(&user.audiences, default_audience, &request.targets())?;
    let tokens = &state.config.tokens;
    let lifetime: Duration = user.token_lifetime(client.lifetime(
        state.config.agents.access_token_lifetime,
        tokens.max_lifetime,
    ));
    let actor = Actor::new(user.id.clone(), ActorKind::Service);
    let (response, _) = issue_as(
        state,
        GRANT_TYPE,
        AccessTokenRequest {
            issuer,
            subject: &user.id,
            client_id: &client.client_id,
            audience: &audience,
            scopes: &scopes,
            identity_kind: "service",
            lifetime,
            alg: client.access_token_alg,
            delegation: None,
            source_token: None,
            named: None,
        },
        actor,
        context.remote,
    )
    .await?;
    touch(state, &client.client_id);
    Ok(response)
}

/// Writes the agent's last token time in the background, at most once a
/// minute per replica; a failure only leaves the listing a little stale.
fn touch(state: &Core, client_id: &str) {
    let now = clock::now();
    if !state.agent_token_times.due(client_id, now) {
        return;
    }
    let store = state.store.clone();
    let client_id = client_id.to_owned();
    tokio::spawn(async move {
        if let Err(e) = store.touch_agent(client_id, now).await {
            tracing::warn!(error = %e, "could not record an agent's last token time");
        }
    });
}
