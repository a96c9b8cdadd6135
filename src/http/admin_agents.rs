//! `/admin/v1/agents`: agents and their bootstrap tokens. An administrator
//! reaches all of them; the owner of a service user, with `tokens:self`,
//! those of that service user. Anything else is 404, as if absent.

use axum::Json;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderName, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::Body;
use super::extract::{Admin, Path, Query, RemoteAddr};
use crate::oauth::OAuthError;
use crate::oauth::agents::bootstrap::{self, BootstrapSpec, BootstrapView, CreatedBootstrap};
use crate::oauth::agents::{AgentView, manage};
use crate::oauth::error::ErrorBody;
use crate::server::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BootstrapList {
    pub bootstrap_tokens: Vec<BootstrapView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Only this service user's (required unless the caller is an
    /// administrator).
    #[param(nullable = false, pattern = "^[!-~]{1,128}$")]
    pub service_user: Option<String>,
    /// Agents whose key expired unrotated too (they cannot come back).
    #[param(nullable = false)]
    pub include_expired: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BootstrapQuery {
    /// Only this service user's (required unless the caller is an
    /// administrator).
    #[param(nullable = false, pattern = "^[!-~]{1,128}$")]
    pub service_user: Option<String>,
    /// Revoked tokens too.
    #[param(nullable = false)]
    pub include_revoked: Option<bool>,
}

/// Answers that carry a token's value are never stored by a cache.
const NO_STORE: [(HeaderName, &str); 2] = [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")];

/// Creates a bootstrap token (`tsr_ab_…`) and shows its value, this once.
#[utoipa::path(post, path = "/admin/v1/agents/bootstrap-tokens", tag = "agents",
    request_body = BootstrapSpec,
    responses((status = 201, body = CreatedBootstrap), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn create_bootstrap(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Body(spec): Body<BootstrapSpec>,
) -> Result<
    (
        StatusCode,
        [(HeaderName, &'static str); 2],
        Json<CreatedBootstrap>,
    ),
    OAuthError,
> {
    let created = bootstrap::create(&state, &caller, spec, remote).await?;
    Ok((StatusCode::CREATED, NO_STORE, Json(created)))
}

/// Bootstrap tokens, newest first (never their values).
#[utoipa::path(get, path = "/admin/v1/agents/bootstrap-tokens", tag = "agents", params(BootstrapQuery),
    responses((status = 200, body = BootstrapList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn list_bootstraps(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(query): Query<BootstrapQuery>,
) -> Result<Json<BootstrapList>, OAuthError> {
    let include_revoked = query.include_revoked.unwrap_or(false);
    let tokens = bootstrap::list(
        &state,
        &caller,
        query.service_user.as_deref(),
        include_revoked,
    )
    .await?;
    Ok(Json(BootstrapList {
        bootstrap_tokens: tokens,
    }))
}

/// Revokes a bootstrap token: no agent registers with it again. Revoking
/// a revoked one is no error.
#[utoipa::path(delete, path = "/admin/v1/agents/bootstrap-tokens/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_bootstrap(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, OAuthError> {
    bootstrap::revoke(&state, &caller, &id, remote).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Agents, newest first, with their last token time, key expiry and the
/// bootstrap token they registered with.
#[utoipa::path(get, path = "/admin/v1/agents", tag = "agents", params(AgentQuery),
    responses((status = 200, body = AgentList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn list_agents(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(query): Query<AgentQuery>,
) -> Result<Json<AgentList>, OAuthError> {
    Ok(Json(AgentList {
        agents: manage::list(
            &state,
            &caller,
            query.service_user.as_deref(),
            query.include_expired.unwrap_or(false),
        )
        .await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/agents/{client_id}", tag = "agents", params(("client_id" = String, Path)),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_agent(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(client_id): Path<String>,
) -> Result<Json<AgentView>, OAuthError> {
    Ok(Json(manage::show(&state, &caller, &client_id).await?))
}

/// The kill switch: the agent's next token request fails and its
/// outstanding tokens introspect inactive, on every replica.
#[utoipa::path(post, path = "/admin/v1/agents/{client_id}/disable", tag = "agents", params(("client_id" = String, Path)),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn disable_agent(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(client_id): Path<String>,
) -> Result<Json<AgentView>, OAuthError> {
    let view = manage::set_enabled(&state, &caller, &client_id, false, remote).await?;
    Ok(Json(view))
}

#[utoipa::path(post, path = "/admin/v1/agents/{client_id}/enable", tag = "agents", params(("client_id" = String, Path)),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub(super) async fn enable_agent(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(client_id): Path<String>,
) -> Result<Json<AgentView>, OAuthError> {
    let view = manage::set_enabled(&state, &caller, &client_id, true, remote).await?;
    Ok(Json(view))
}

/// Deletes the agent and its client for good.
#[utoipa::path(delete, path = "/admin/v1/agents/{client_id}", tag = "agents", params(("client_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_agent(
    State(state): State<AppState>,
    Admin(caller): Admin,
    RemoteAddr(remote): RemoteAddr,
    Path(client_id): Path<String>,
) -> Result<StatusCode, OAuthError> {
    manage::delete(&state, &caller, &client_id, remote).await?;
    Ok(StatusCode::NO_CONTENT)
}
