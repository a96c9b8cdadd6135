//! `POST /oauth/token` (RFC 6749 §3.2).

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

fn basic_credentials(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("basic")
        .then(|| credentials.trim().to_owned())
}

async fn token_endpoint(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    let basic = basic_credentials(request.headers());
    let tried_basic = basic.is_some();
    let result = async {
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
        let pairs = url::form_urlencoded::parse(&body).into_owned().collect();
        let parsed = TokenRequest::from_pairs(pairs)?;
        token::exchange(&state, parsed, RequestContext { basic, remote }).await
    }
    .await;
    match result {
        Ok(answer) => {
            let mut response = Json(answer).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => {
            // RFC 6749 §5.2: a failed Basic authentication answers with the
            // scheme the client used.
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
