//! `/admin/v1/tokens`: personal access tokens and machine tokens. Anyone
//! with `tokens:self` manages their own; an administrator's `admin` scope
//! reaches all of them (`admin:read` reads all). Someone else's token is
//! 404, as if it did not exist.

use axum::Json;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderName, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::Body;
use super::extract::{Admin, JsonOrEmpty, Path, Query, RemoteAddr};
use crate::oauth::OAuthError;
use crate::oauth::error::ErrorBody;
use crate::oauth::personal_tokens::{
    self, CreatedToken, ListOptions, RollSpec, TokenSpec, TokenView, TransferSpec,
};
use crate::server::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Only machine tokens nobody answers for.
    #[param(nullable = false)]
    pub orphaned: Option<bool>,
    /// Revoked tokens too.
    #[param(nullable = false)]
    pub include_revoked: Option<bool>,
    /// Only tokens for this environment label.
    #[param(nullable = false, pattern = "^[a-z0-9]{1,16}$")]
    pub env: Option<String>,
}

/// Creates a token and shows its value, this once.
#[utoipa::path(post, path = "/admin/v1/tokens", tag = "tokens", request_body = TokenSpec,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    JsonOrEmpty(spec): JsonOrEmpty<TokenSpec>,
) -> Result<
    (
        StatusCode,
        [(HeaderName, &'static str); 2],
        Json<CreatedToken>,
    ),
    OAuthError,
> {
    let created = personal_tokens::create(&state, &caller, spec, remote).await?;
    Ok((StatusCode::CREATED, NO_STORE, Json(created)))
}

/// The answers that carry a token's value are never stored by a cache
/// (RFC 9111 §5.2.2.5), as a token response is not (RFC 6749 §5.1).
const NO_STORE: [(HeaderName, &str); 2] = [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")];

/// The tokens the caller may manage, newest first.
#[utoipa::path(get, path = "/admin/v1/tokens", tag = "tokens", params(TokenQuery),
    responses((status = 200, body = TokenList), (status = 400, body = ErrorBody)))]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(query): Query<TokenQuery>,
) -> Result<Json<TokenList>, OAuthError> {
    if query
        .env
        .as_deref()
        .is_some_and(|env| !crate::tokens::opaque::is_env_label(env))
    {
        return Err(OAuthError::invalid_request(
            "env must be 1 to 16 lowercase letters and digits",
        ));
    }
    let options = ListOptions {
        include_revoked: query.include_revoked.unwrap_or(false),
        orphaned: query.orphaned.unwrap_or(false),
        own_only: false,
        env: query.env,
    };
    Ok(Json(TokenList {
        tokens: personal_tokens::list(&state, &caller, options).await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, OAuthError> {
    Ok(Json(personal_tokens::show(&state, &caller, &id).await?))
}

/// A brownout: the token stays, and every use of it gets 403 until it is
/// enabled again.
#[utoipa::path(post, path = "/admin/v1/tokens/{id}/disable", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn disable_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, OAuthError> {
    Ok(Json(
        personal_tokens::disable(&state, &caller, &id, remote).await?,
    ))
}

#[utoipa::path(post, path = "/admin/v1/tokens/{id}/enable", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn enable_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, OAuthError> {
    Ok(Json(
        personal_tokens::enable(&state, &caller, &id, remote).await?,
    ))
}

/// Permanent; revoking a revoked token is no error.
#[utoipa::path(post, path = "/admin/v1/tokens/{id}/revoke", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, OAuthError> {
    Ok(Json(
        personal_tokens::revoke(&state, &caller, &id, remote).await?,
    ))
}

/// A new token with the same name, owner, environment, scopes and
/// lifetime (from now); the old one is revoked in the same transaction,
/// or with `grace` lives that much longer.
#[utoipa::path(post, path = "/admin/v1/tokens/{id}/roll", tag = "tokens", params(("id" = String, Path)),
    request_body = RollSpec,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn roll_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(id): Path<String>,
    Body(spec): Body<RollSpec>,
) -> Result<
    (
        StatusCode,
        [(HeaderName, &'static str); 2],
        Json<CreatedToken>,
    ),
    OAuthError,
> {
    let rolled = personal_tokens::roll(&state, &caller, &id, spec, remote).await?;
    Ok((StatusCode::CREATED, NO_STORE, Json(rolled)))
}

/// Gives a machine token another responsible person.
#[utoipa::path(post, path = "/admin/v1/tokens/{id}/transfer", tag = "tokens", params(("id" = String, Path)),
    request_body = TransferSpec,
    responses((status = 200, body = TokenView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn transfer_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(id): Path<String>,
    JsonOrEmpty(spec): JsonOrEmpty<TransferSpec>,
) -> Result<Json<TokenView>, OAuthError> {
    Ok(Json(
        personal_tokens::transfer(&state, &caller, &id, spec, remote).await?,
    ))
}
