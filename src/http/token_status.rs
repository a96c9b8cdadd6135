//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, RequestExt};
use bytes::Bytes;

use super::extract::{RemoteAddr, body_rejection};
use crate::oauth::discovery::{INTROSPECTION_PATH, REVOCATION_PATH};
use crate::oauth::token::TokenRequest;
use crate::oauth::token_status::{self, Caller};
use crate::oauth::{ErrorCode, OAuthError};
use crate::server::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(INTROSPECTION_PATH, post(introspect))
        .route(REVOCATION_PATH, post(revoke))
}

fn credentials(headers: &HeaderMap, scheme: &str) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credentials) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credentials.trim().to_owned())
}

/// Parses the form and authenticates the caller; returns the `token`.
async fn prepare(
    state: &AppState,
    remote: Option<String>,
    request: Request,
) -> Result<(Caller, String), OAuthError> {
    let basic = credentials(request.headers(), "basic");
    let bearer = credentials(request.headers(), "bearer");
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body: Bytes = request.extract().await.map_err(body_rejection)?;
    let parsed =
        TokenRequest::from_pairs(url::form_urlencoded::parse(&body).into_owned().collect())?;
    let caller =
        token_status::authenticate_caller(state, bearer, parsed.credentials(basic.clone()), remote)
            .await?;
    let token = parsed.require("token")?.to_owned();
    Ok((caller, token))
}

fn render(result: Result<Response, OAuthError>, tried_basic: bool) -> Response {
    match result {
        Ok(mut response) => {
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => {
            let challenge = tried_basic && error.code == ErrorCode::InvalidClient;
            let mut response = error.into_response();
            if challenge {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tessera\""),
                );
            }
            response
        }
    }
}

async fn introspect(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    let tried_basic = credentials(request.headers(), "basic").is_some();
    let result = async {
        let (_, token) = prepare(&state, remote, request).await?;
        let answer = token_status::introspect(&state, &token).await?;
        Ok(Json(answer).into_response())
    }
    .await;
    render(result, tried_basic)
}

async fn revoke(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    let tried_basic = credentials(request.headers(), "basic").is_some();
    let result = async {
        let (caller, token) = prepare(&state, remote.clone(), request).await?;
        token_status::revoke(&state, &caller, &token, remote).await?;
        Ok(StatusCode::OK.into_response())
    }
    .await;
    render(result, tried_basic)
}
