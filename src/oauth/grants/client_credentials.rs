//! RFC 6749 §4.4: the client credentials grant.
//!
//! Reads `scope`, `audience`/`resource`; needs client authentication; only
//! confidential clients registered for it may use it.

use crate::oauth::Core;
use crate::oauth::OAuthError;
use crate::oauth::client::GrantType;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::tokens::access::AccessTokenRequest;

pub const GRANT_TYPE: &str = "client_credentials";

pub async fn grant(
    state: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let client = super::client_for(state, request, &context, GrantType::ClientCredentials).await?;
    if let Some(service_user) = client.agent_of.clone() {
        return crate::oauth::agents::grant::grant(state, &client, &service_user, request, context)
            .await;
    }
    let scopes = client.grant_scopes(request.get("scope"))?;
    let audience = client.grant_audience(&request.targets())?;
    super::issue(
        state,
        GRANT_TYPE,
        AccessTokenRequest {
            issuer: state.config.issuer(),
            subject: &client.client_id,
            client_id: &client.client_id,
            audience: &audience,
            scopes: &scopes,
            identity_kind: "service",
            lifetime: client.lifetime(
                state.config.tokens.access_token_lifetime,
                state.config.tokens.max_lifetime,
            ),
            alg: client.access_token_alg,
            delegation: None,
            source_token: None,
            named: None,
        },
        context.remote,
    )
    .await
}
