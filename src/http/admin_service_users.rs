//! `/admin/v1/service-users`: machine identities and their public keys.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::admin::{Body, IfMatch, Tagged, created_headers};
// An empty body fails these specs' own checks, as a malformed one does.
use super::extract::{Admin, JsonOrEmpty, Path};
use crate::oauth::OAuthError;
use crate::oauth::error::ErrorBody;
use crate::oauth::service_users::{
    self, KeySpec, ServiceUser, ServiceUserKey, ServiceUserPatch, ServiceUserSpec,
};
use crate::server::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceUserList {
    pub service_users: Vec<ServiceUser>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceUserKeyList {
    pub keys: Vec<ServiceUserKey>,
}

#[utoipa::path(post, path = "/admin/v1/service-users", tag = "service-users", request_body = ServiceUserSpec,
    responses((status = 201, body = ServiceUser, headers(("ETag" = String), ("Location" = String))), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_service_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    JsonOrEmpty(spec): JsonOrEmpty<ServiceUserSpec>,
) -> Result<(StatusCode, [(HeaderName, String); 2], Json<ServiceUser>), OAuthError> {
    let user = service_users::create(&state.store, spec, admin.actor()).await?;
    let headers = created_headers(&format!("/admin/v1/service-users/{}", user.id), &user);
    Ok((StatusCode::CREATED, headers, Json(user)))
}

#[utoipa::path(get, path = "/admin/v1/service-users", tag = "service-users",
    responses((status = 200, body = ServiceUserList)))]
pub(super) async fn list_service_users(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<ServiceUserList>, OAuthError> {
    Ok(Json(ServiceUserList {
        service_users: service_users::list(&state.store).await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/service-users/{id}", tag = "service-users", params(("id" = String, Path)),
    responses((status = 200, body = ServiceUser, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub(super) async fn get_service_user(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Tagged<ServiceUser>, OAuthError> {
    let user = service_users::get(&state.store, &id).await?;
    Ok(Tagged(StatusCode::OK, user))
}

/// Changes the fields present in the body: name, description, owner,
/// scope, audiences, `enabled`, `max_token_lifetime`. With `If-Match`, only
/// if the user has not changed since it was read (RFC 9110 §13.1.1): 412
/// otherwise. The administrator cannot be disabled (409).
#[utoipa::path(patch, path = "/admin/v1/service-users/{id}", tag = "service-users", params(("id" = String, Path)),
    request_body = ServiceUserPatch,
    responses((status = 200, body = ServiceUser, headers(("ETag" = String))), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn update_service_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    Body(patch): Body<ServiceUserPatch>,
) -> Result<Tagged<ServiceUser>, OAuthError> {
    let updated = service_users::update(&state.store, &id, patch, admin.actor(), if_match).await;
    state.service_user_cache.invalidate(&id);
    Ok(Tagged(StatusCode::OK, updated?))
}

/// Deletes the user with its keys and tokens. The administrator cannot be
/// deleted, nor a user a trust policy names (409, naming the policy).
#[utoipa::path(delete, path = "/admin/v1/service-users/{id}", tag = "service-users", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_service_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, OAuthError> {
    service_users::delete(&state.store, &id, admin.actor()).await?;
    state.service_user_cache.invalidate(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// Registers a public key (PEM or JWK). Private keys never reach the server.
#[utoipa::path(post, path = "/admin/v1/service-users/{id}/keys", tag = "service-users", params(("id" = String, Path)),
    request_body = KeySpec, responses((status = 201, body = ServiceUserKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn add_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    JsonOrEmpty(spec): JsonOrEmpty<KeySpec>,
) -> Result<(StatusCode, Json<ServiceUserKey>), OAuthError> {
    let key = service_users::add_key(&state.store, &id, spec, admin.actor()).await?;
    state.service_user_cache.invalidate(&id);
    Ok((StatusCode::CREATED, Json(key)))
}

#[utoipa::path(get, path = "/admin/v1/service-users/{id}/keys", tag = "service-users", operation_id = "list_service_user_keys", params(("id" = String, Path)),
    responses((status = 200, body = ServiceUserKeyList), (status = 404, body = ErrorBody)))]
pub(super) async fn list_keys(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<ServiceUserKeyList>, OAuthError> {
    Ok(Json(ServiceUserKeyList {
        keys: service_users::list_keys(&state.store, &id).await?,
    }))
}

#[utoipa::path(delete, path = "/admin/v1/service-users/{id}/keys/{key_id}", tag = "service-users",
    params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn remove_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, OAuthError> {
    service_users::remove_key(&state.store, &id, &key_id, admin.actor()).await?;
    state.service_user_cache.invalidate(&id);
    Ok(StatusCode::NO_CONTENT)
}
