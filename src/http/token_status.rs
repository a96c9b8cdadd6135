//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::extract::RemoteAddr;
use super::token::{authorization, basic_credentials, read_form, render};
use crate::oauth::discovery::{INTROSPECTION_PATH, REVOCATION_PATH};
use crate::oauth::token_status::{self, Caller, Purpose};
use crate::oauth::{OAuthError, syntax};
use crate::server::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(INTROSPECTION_PATH, post(introspect))
        .route(REVOCATION_PATH, post(revoke))
}

/// Parses the form and authenticates the caller; returns the `token`.
async fn prepare(
    state: &AppState,
    remote: Option<String>,
    request: Request,
    purpose: Purpose,
) -> Result<(Caller, String), OAuthError> {
    let basic = basic_credentials(request.headers())?;
    let bearer = authorization(request.headers(), "bearer");
    if bearer
        .as_deref()
        .is_some_and(|token| !syntax::is_b64token(token))
    {
        return Err(OAuthError::invalid_token(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    let parsed = read_form(request).await?;
    let caller = token_status::authenticate_caller(
        state,
        bearer,
        parsed.credentials(basic),
        remote,
        purpose,
    )
    .await?;
    let token = parsed.require("token")?.to_owned();
    Ok((caller, token))
}

async fn introspect(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    let result = async {
        let (caller, token) = prepare(&state, remote, request, Purpose::Introspect).await?;
        Ok(Json(token_status::introspect(&state, &caller, &token).await?).into_response())
    }
    .await;
    render(result)
}

async fn revoke(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    let result = async {
        let (caller, token) = prepare(&state, remote.clone(), request, Purpose::Revoke).await?;
        token_status::revoke(&state, &caller, &token, remote).await?;
        Ok(StatusCode::OK.into_response())
    }
    .await;
    render(result)
}
