//! `DELETE /admin/v1/users/{user}/mfa`: an administrator removes a user's
//! second factor (a lost phone and no recovery code left). Audited.

use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{Admin, Path};
use crate::oauth::OAuthError;
use crate::oauth::error::ErrorBody;
use crate::server::AppState;

/// Removes the user's TOTP secret and recovery codes; the next login asks
/// for the password only. `user` is the user's id or username.
#[utoipa::path(delete, path = "/admin/v1/users/{user}/mfa", tag = "users",
    operation_id = "reset_user_mfa",
    params(("user" = String, Path, description = "The user's id or username")),
    responses((status = 204, description = "The second factor is removed (or there was none)"),
        (status = 404, body = ErrorBody)))]
pub(super) async fn reset_mfa(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Result<StatusCode, OAuthError> {
    crate::accounts::totp::reset(&state, &user, admin.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
