//! `POST /oauth/token` (RFC 6749 §3.2), and the form handling the other
//! token-hygiene endpoints share.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, RequestExt};
use bytes::Bytes;

use super::extract::{RemoteAddr, body_rejection};
use crate::oauth::discovery::TOKEN_PATH;
use crate::oauth::token::{self, RequestContext, TokenRequest};
use crate::oauth::{ErrorCode, OAuthError};
use crate::server::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(TOKEN_PATH, post(token_endpoint))
}

/// The credentials of an `Authorization` header with `scheme`.
pub(super) fn authorization(headers: &HeaderMap, scheme: &str) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credentials) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credentials.trim().to_owned())
}

/// RFC 6749 §3.2: an `application/x-www-form-urlencoded` body.
pub(super) async fn read_form(request: Request) -> Result<TokenRequest, OAuthError> {
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
    TokenRequest::from_pairs(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// `Cache-Control: no-store` on every answer (RFC 6749 §5.1), and on a
/// failed Basic authentication the challenge for the scheme the client used
/// (§5.2).
pub(super) fn render(result: Result<Response, OAuthError>, tried_basic: bool) -> Response {
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

async fn token_endpoint(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    let basic = authorization(request.headers(), "basic");
    let tried_basic = basic.is_some();
    let result = async {
        let parsed = read_form(request).await?;
        let answer = token::exchange(&state, parsed, RequestContext { basic, remote }).await?;
        Ok(Json(answer).into_response())
    }
    .await;
    render(result, tried_basic)
}
