//! Rendering `OAuthError` as an HTTP response: the RFC 6749 §5.2 JSON body,
//! `Cache-Control: no-store`, and a `WWW-Authenticate` challenge on every
//! 401 (RFC 9110 §15.5.2). Server faults are logged with their detail; the
//! client gets none of it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oauth::error::{ErrorBody, safe_description};
use crate::oauth::{ErrorCode, OAuthError};

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let description = safe_description(&self.description).into_owned();
        match (self.code, &self.detail) {
            (ErrorCode::ServerError, detail) => {
                tracing::error!(detail = detail.as_deref().unwrap_or(""), "server error")
            }
            (ErrorCode::TemporarilyUnavailable, detail) => {
                tracing::warn!(
                    detail = detail.as_deref().unwrap_or(""),
                    "temporarily unavailable"
                )
            }
            (code, detail) => tracing::debug!(
                error = code.as_str(),
                description = %description,
                detail = detail.as_deref().unwrap_or(""),
                "request refused"
            ),
        }
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let challenge = challenge(&self, &description);
        let body = ErrorBody {
            error: self.code,
            error_description: description,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// RFC 6750 §3: the bearer challenge; without any credentials in the
/// request it names no `error` (§3.1). RFC 6749 §5.2 and RFC 9110
/// §15.5.2: every 401 `invalid_client` challenges with the one HTTP scheme
/// the token endpoints accept, Basic. `description` is already reduced to
/// characters a quoted string may hold.
fn challenge(error: &OAuthError, description: &str) -> Option<String> {
    match error.code {
        ErrorCode::InvalidToken if error.credentials_missing => {
            Some("Bearer realm=\"tessera\"".to_owned())
        }
        ErrorCode::InvalidToken => Some(format!(
            "Bearer realm=\"tessera\", error=\"invalid_token\", error_description=\"{description}\""
        )),
        ErrorCode::InsufficientScope => Some(match error.required_scope {
            Some(scope) => {
                format!("Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"{scope}\"")
            }
            None => "Bearer realm=\"tessera\", error=\"insufficient_scope\"".to_owned(),
        }),
        ErrorCode::InvalidClient if error.status() == 401 => {
            Some("Basic realm=\"tessera\"".to_owned())
        }
        _ => None,
    }
}
