//! `/admin/v1/users`: people. A user is addressed by id or by username
//! (case-insensitively). Responses never carry a password or its hash.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;

use super::admin::{Body, IfMatch, Tagged, created_headers};
use super::extract::{Admin, JsonOrEmpty, Path, Query};
use crate::accounts::users::{self, PasswordSpec, User, UserPage, UserPatch, UserSpec};
use crate::oauth::OAuthError;
use crate::oauth::error::ErrorBody;
use crate::server::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 500, nullable = false)]
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    #[param(pattern = "^[a-z0-9._@-]{1,64}$", nullable = false)]
    pub cursor: Option<String>,
}

/// Creates a user. The password, when given, is hashed with argon2id; a
/// user without one cannot log in until one is set.
#[utoipa::path(post, path = "/admin/v1/users", tag = "users", request_body = UserSpec,
    responses((status = 201, body = User, headers(("ETag" = String), ("Location" = String))), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    JsonOrEmpty(spec): JsonOrEmpty<UserSpec>,
) -> Result<(StatusCode, [(HeaderName, String); 2], Json<User>), OAuthError> {
    let user = users::create(&state.store, &state.passwords, spec, admin.actor()).await?;
    let headers = created_headers(&format!("/admin/v1/users/{}", user.id), &user);
    Ok((StatusCode::CREATED, headers, Json(user)))
}

/// Users in username order, with cursor paging.
#[utoipa::path(get, path = "/admin/v1/users", tag = "users", params(UserQuery),
    responses((status = 200, body = UserPage), (status = 400, body = ErrorBody)))]
pub(super) async fn list_users(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(query): Query<UserQuery>,
) -> Result<Json<UserPage>, OAuthError> {
    Ok(Json(
        users::list(&state.store, query.limit, query.cursor).await?,
    ))
}

#[utoipa::path(get, path = "/admin/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "The user's id or username (any case)", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    responses((status = 200, body = User, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub(super) async fn get_user(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(reference): Path<String>,
) -> Result<Tagged<User>, OAuthError> {
    Ok(Tagged(
        StatusCode::OK,
        users::get(&state.store, &reference).await?,
    ))
}

/// Changes the members present: `email`, `email_verified`,
/// `display_name`, `admin` (granting or revoking the administrator role is
/// audited by name). With `If-Match`, only if the user has not changed
/// since it was read (RFC 9110 §13.1.1): 412 otherwise. An administrator
/// cannot revoke their own role (409).
#[utoipa::path(patch, path = "/admin/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "The user's id or username (any case)", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    request_body = UserPatch,
    responses((status = 200, body = User, headers(("ETag" = String))), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn update_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(reference): Path<String>,
    IfMatch(if_match): IfMatch,
    Body(patch): Body<UserPatch>,
) -> Result<Tagged<User>, OAuthError> {
    let user = users::update(&state.store, &reference, patch, admin.actor(), if_match).await?;
    state.user_cache.invalidate(&user.id);
    Ok(Tagged(StatusCode::OK, user))
}

/// Deletes the user and ends their sessions; their tokens introspect
/// inactive. Service users they owned keep the name, unlinked. An
/// administrator cannot delete themselves (409).
#[utoipa::path(delete, path = "/admin/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "The user's id or username (any case)", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(reference): Path<String>,
) -> Result<StatusCode, OAuthError> {
    let user = users::delete(&state.store, &reference, admin.actor()).await?;
    state.user_cache.invalidate(&user.id);
    // Their personal tokens were revoked with them.
    state.token_cache.invalidate_all();
    Ok(StatusCode::NO_CONTENT)
}

/// Disables the user: no login, their sessions end at once and their
/// access tokens introspect inactive (RFC 7662) within a second. An
/// administrator cannot disable themselves (409).
#[utoipa::path(post, path = "/admin/v1/users/{user}/disable", tag = "users",
    params(("user" = String, Path, description = "The user's id or username (any case)", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    responses((status = 200, body = User, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn disable_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(reference): Path<String>,
) -> Result<Tagged<User>, OAuthError> {
    let user = users::disable(&state.store, &reference, admin.actor()).await?;
    state.user_cache.invalidate(&user.id);
    Ok(Tagged(StatusCode::OK, user))
}

#[utoipa::path(post, path = "/admin/v1/users/{user}/enable", tag = "users",
    params(("user" = String, Path, description = "The user's id or username (any case)", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    responses((status = 200, body = User, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub(super) async fn enable_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(reference): Path<String>,
) -> Result<Tagged<User>, OAuthError> {
    let user = users::enable(&state.store, &reference, admin.actor()).await?;
    state.user_cache.invalidate(&user.id);
    Ok(Tagged(StatusCode::OK, user))
}

/// Sets the user's password (8 to 1024 characters, no control
/// characters), hashed with argon2id at the configured parameters.
#[utoipa::path(put, path = "/admin/v1/users/{user}/password", tag = "users",
    params(("user" = String, Path, description = "The user's id or username (any case)", pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    request_body = PasswordSpec,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn set_password(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(reference): Path<String>,
    Body(spec): Body<PasswordSpec>,
) -> Result<StatusCode, OAuthError> {
    users::set_password(
        &state.store,
        &state.passwords,
        &reference,
        spec.password,
        admin.actor(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
