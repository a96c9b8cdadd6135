//! `GET`/`POST /oauth/userinfo` (OIDC Core §5.3) with a bearer access
//! token in the `Authorization` header (RFC 6750 §2.1); errors carry the
//! RFC 6750 §3 challenge.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::token::{authorization, render};
use crate::oauth::discovery::USERINFO_PATH;
use crate::oauth::{ErrorCode, OAuthError, userinfo};
use crate::server::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(USERINFO_PATH, get(endpoint).post(endpoint))
}

async fn endpoint(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        let token = authorization(&headers, "bearer").ok_or_else(|| {
            OAuthError::credentials_required(
                ErrorCode::InvalidToken,
                "a bearer access token is required (RFC 6750 section 2.1)",
            )
        })?;
        let claims = userinfo::claims(&state, &token).await?;
        Ok(Json(claims).into_response())
    }
    .await;
    render(result)
}
