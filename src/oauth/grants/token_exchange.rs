//! RFC 8693 §2.1: token exchange, for a CI job's OIDC token
//! (`subject_token`, of type `id_token` or `jwt`) under a trust policy,
//! and for a personal or machine token (of type `access_token`,
//! `personal_tokens::exchange`).
//! Client authentication is optional; a client that authenticates must be
//! registered for this grant, and its id becomes the token's `client_id`.
//! `actor_token` (delegation by a second party) is not supported: the CI
//! job itself is the actor, recorded in the issued token's `act`.

use crate::federation::exchange::{
    self, ACCESS_TOKEN_TYPE, Carrier, ID_TOKEN_TYPE, JWT_TOKEN_TYPE,
};
use crate::oauth::client::GrantType;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{Core, OAuthError};

pub const GRANT_TYPE: &str = exchange::TOKEN_EXCHANGE;

pub async fn grant(
    state: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let client = super::optional_client(state, request, &context, GrantType::TokenExchange).await?;
    let token = request.require("subject_token")?;
    let subject_type = request.require("subject_token_type")?;
    if !matches!(
        subject_type,
        ID_TOKEN_TYPE | JWT_TOKEN_TYPE | ACCESS_TOKEN_TYPE
    ) {
        return Err(OAuthError::invalid_request(
            "subject_token_type must be urn:ietf:params:oauth:token-type:id_token, \
             urn:ietf:params:oauth:token-type:jwt or \
             urn:ietf:params:oauth:token-type:access_token",
        ));
    }
    if request.get("actor_token").is_some() || request.get("actor_token_type").is_some() {
        return Err(OAuthError::invalid_request(
            "actor_token is not supported: the subject token's holder is the actor",
        ));
    }
    if subject_type == ACCESS_TOKEN_TYPE {
        return crate::oauth::personal_tokens::exchange::exchange(
            state,
            token,
            client.as_ref(),
            request,
            context,
        )
        .await;
    }
    exchange::exchange(
        state,
        token,
        Carrier::TokenExchange,
        client.as_ref(),
        request,
        context,
    )
    .await
}
