//! Rendering `OAuthError` as an HTTP response: the RFC 6749 §5.2 JSON body,
//! `Cache-Control: no-store`, and RFC 6750 §3 `WWW-Authenticate` for bearer
//! token failures. Server faults are logged with their detail; the client
//! gets none of it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oauth::error::ErrorBody;
use crate::oauth::{ErrorCode, OAuthError};

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
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
                description = %self.description,
                detail = detail.as_deref().unwrap_or(""),
                "request refused"
            ),
        }
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let challenge = match self.code {
            ErrorCode::InvalidToken => Some(format!(
                "Bearer realm=\"tessera\", error=\"invalid_token\", error_description=\"{}\"",
                self.description.replace('"', "'")
            )),
            ErrorCode::InsufficientScope => Some(
                "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"admin\""
                    .to_owned(),
            ),
            _ => None,
        };
        let body = ErrorBody {
            error: self.code,
            error_description: self.description.into_owned(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
