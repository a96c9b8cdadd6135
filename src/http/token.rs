//! `POST /oauth/token` (RFC 6749 §3.2), and the form handling the other
//! token-hygiene endpoints share.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, RequestExt};
use bytes::Bytes;

use super::extract::{RemoteAddr, body_rejection};
use crate::oauth::OAuthError;
use crate::oauth::discovery::TOKEN_PATH;
use crate::oauth::syntax;
use crate::oauth::token::{self, RequestContext, TokenRequest};
use crate::secret::Secret;
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

/// The Basic credentials of the request, checked against the client
/// grammar (RFC 6749 §2.3.1) before anything looks them up.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Result<Option<Secret>, OAuthError> {
    let basic = authorization(headers, "basic");
    if let Some(credentials) = &basic {
        syntax::check_basic(credentials)?;
    }
    Ok(basic.map(Secret::new))
}

/// RFC 6749 §3.2: an `application/x-www-form-urlencoded` body. Media
/// types are case-insensitive (RFC 9110 §8.3.1), so the type is parsed.
pub(super) async fn read_form(request: Request) -> Result<TokenRequest, OAuthError> {
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == mime::APPLICATION_WWW_FORM_URLENCODED.essence_str());
    if !form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body: Bytes = request.extract().await.map_err(body_rejection)?;
    syntax::check_form_body(&body)?;
    TokenRequest::from_pairs(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// `Cache-Control: no-store` on every answer (RFC 6749 §5.1); errors carry
/// it, and their challenge, already.
pub(super) fn render(result: Result<Response, OAuthError>) -> Response {
    match result {
        Ok(mut response) => {
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn token_endpoint(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    form_to_json(request, remote, |parsed, context| {
        token::exchange(&state, parsed, context)
    })
    .await
}

/// An endpoint that takes the token endpoint's form and client
/// authentication and answers JSON (the token and device authorization
/// endpoints): the form read and checked, `answer` called, the result
/// rendered as [`render`] does.
pub(super) async fn form_to_json<T, F, Fut>(
    request: Request,
    remote: Option<String>,
    answer: F,
) -> Response
where
    T: serde::Serialize,
    F: FnOnce(TokenRequest, RequestContext) -> Fut,
    Fut: std::future::Future<Output = Result<T, OAuthError>>,
{
    let result = async {
        let basic = basic_credentials(request.headers())?;
        let parsed = read_form(request).await?;
        let answer = answer(parsed, RequestContext { basic, remote }).await?;
        Ok(Json(answer).into_response())
    }
    .await;
    render(result)
}
