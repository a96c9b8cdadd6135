//! One file per grant type. Each authenticates and decides; `issue` then
//! mints, counts and audits the access token the same way for all.

pub mod client_credentials;
pub mod jwt_bearer;
pub mod token_exchange;

use serde::Serialize;

use super::OAuthError;
use super::client::{Client, GrantType};
use super::token::TokenResponse;
use super::token::{RequestContext, TokenRequest};
use super::{ErrorCode, client_auth};
use crate::audit::{Actor, Event, Outcome};
use crate::oauth::Core;
use crate::tokens::access::{self, AccessTokenRequest};

/// What `token.issued` records beside its actor and target.
#[derive(Serialize)]
struct IssuedDetails<'a> {
    grant_type: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    scope: &'a [String],
    aud: &'a [String],
    exp: i64,
    /// The CI job an exchanged token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<&'a serde_json::Value>,
}

/// Signs the access token a grant decided on, counts it in the metrics,
/// records `token.issued` as the identity it was issued to, and builds the
/// RFC 6749 §5.1 answer. No token leaves unaudited: when the audit queue
/// stays full, the answer is 503 `temporarily_unavailable` (an extension:
/// RFC 6749 §4.1.2.1 names that code for the authorization endpoint only).
pub async fn issue(
    state: &Core,
    grant_type: &'static str,
    request: AccessTokenRequest<'_>,
    remote: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let issued = access::mint(state.keys.ring(), &request)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let details = IssuedDetails {
        grant_type,
        scope: request.scopes,
        aud: request.audience,
        exp: issued.exp,
        workload: request.delegation.map(|d| &d.workload),
    };
    let actor = Actor::service(request.subject);
    Event::new(actor, "token.issued", Outcome::Success)
        .client(request.client_id)
        .target(issued.jti.clone())
        .remote(remote)
        .details(details)
        .record_before_answering(&state.writer)
        .await?;
    state.metrics.token_issued(grant_type);
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: Some(request.scopes.join(" ")).filter(|s| !s.is_empty()),
        issued_token_type: None,
    })
}

/// The client, for grants where client authentication is optional (RFC
/// 7523 §3.1, RFC 8693 §2.1): `None` when the request presents no client
/// credentials; a client that does authenticate must be registered for
/// `grant`.
pub async fn optional_client(
    state: &Core,
    request: &TokenRequest,
    context: &RequestContext,
    grant: GrantType,
) -> Result<Option<Client>, OAuthError> {
    let presented = request.credentials(context.basic.clone());
    if presented.methods_presented() == 0 {
        return Ok(None);
    }
    let client = client_auth::authenticate(state, &presented, context.remote.clone()).await?;
    if !client.may_use(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!(
                "the client is not allowed to use the {} grant",
                grant.as_str()
            ),
        ));
    }
    Ok(Some(client))
}
