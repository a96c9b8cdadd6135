//! One file per grant type. Each authenticates and decides; `issue` then
//! mints, counts and audits the access token the same way for all.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub(crate) mod human;
pub mod jwt_bearer;
pub mod refresh_token;
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
    let actor = Actor::service(request.subject);
    issue_as(state, grant_type, request, actor, remote)
        .await
        .map(|(response, _)| response)
}

/// The access token's `jti` and `exp`, for grants that must be able to
/// revoke it later (a reused code).
pub struct IssuedAccess {
    pub jti: String,
    pub exp: i64,
}

/// As [`issue`], audited as `actor` (a human for the browser grants).
pub async fn issue_as(
    state: &Core,
    grant_type: &'static str,
    request: AccessTokenRequest<'_>,
    actor: Actor,
    remote: Option<String>,
) -> Result<(TokenResponse, IssuedAccess), OAuthError> {
    let issued = access::mint(state.keys.ring(), &request)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let details = IssuedDetails {
        grant_type,
        scope: request.scopes,
        aud: request.audience,
        exp: issued.exp,
        workload: request.delegation.map(|d| &d.workload),
    };
    Event::new(actor, "token.issued", Outcome::Success)
        .client(request.client_id)
        .target(issued.jti.clone())
        .remote(remote)
        .details(details)
        .record_before_answering(&state.writer)
        .await?;
    state.metrics.token_issued(grant_type);
    let access = IssuedAccess {
        jti: issued.jti,
        exp: issued.exp,
    };
    Ok((
        TokenResponse {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: Some(request.scopes.join(" ")).filter(|s| !s.is_empty()),
            issued_token_type: None,
            refresh_token: None,
            refresh_token_expires_in: None,
            id_token: None,
        },
        access,
    ))
}

/// The client the request authenticates (RFC 6749 §3.2.1), which must be
/// registered for `grant` (`unauthorized_client` otherwise, §5.2).
pub async fn client_for(
    state: &Core,
    request: &TokenRequest,
    context: &RequestContext,
    grant: GrantType,
) -> Result<Client, OAuthError> {
    let presented = request.credentials(context.basic.clone());
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
    Ok(client)
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
    if request
        .credentials(context.basic.clone())
        .methods_presented()
        == 0
    {
        return Ok(None);
    }
    client_for(state, request, context, grant).await.map(Some)
}
