//! One file per grant type. Each authenticates and decides; `issue` then
//! mints, counts and audits the access token the same way for all.

pub mod client_credentials;
pub mod jwt_bearer;

use serde_json::json;

use super::OAuthError;
use super::token::TokenResponse;
use crate::audit::{Actor, Event, Outcome};
use crate::server::Shared;
use crate::tokens::access::{self, AccessTokenRequest};

/// Signs the access token a grant decided on, counts it in the metrics,
/// records `token.issued` as the identity it was issued to, and builds the
/// RFC 6749 §5.1 answer.
pub async fn issue(
    state: &Shared,
    grant_type: &'static str,
    request: AccessTokenRequest<'_>,
    remote: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let issued = access::mint(state.keys.ring(), &request)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    state.metrics.token_issued(grant_type);
    Event::new(Actor::service(request.subject), "token.issued", Outcome::Success)
        .client(request.client_id)
        .target(issued.jti.clone())
        .remote(remote)
        .details(json!({ "grant_type": grant_type, "scope": request.scopes, "aud": request.audience, "exp": issued.exp }))
        .record_via(&state.writer)
        .await;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: Some(request.scopes.join(" ")).filter(|s| !s.is_empty()),
    })
}
