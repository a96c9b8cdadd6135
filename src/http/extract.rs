//! Extractors that turn malformed input into `invalid_request` (RFC 6749
//! §5.2) instead of axum's plain-text rejections, and the bearer-token
//! extractor for the admin API.

use std::net::SocketAddr;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::client_addr::client_address;
use crate::oauth::bearer::{self, Principal};
use crate::oauth::{ErrorCode, OAuthError, syntax};
use crate::server::AppState;
use crate::tokens::opaque::OpaqueToken;

/// The body and header rejections as `invalid_request`; an oversized body
/// keeps its 413 status.
pub fn body_rejection(rejection: BytesRejection) -> OAuthError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        OAuthError::invalid_request("the request body is too large").with_status(413)
    } else {
        OAuthError::invalid_request("the request body could not be read")
    }
}

/// A JSON body, or an empty body meaning `T::default()`.
pub struct JsonOrEmpty<T>(pub T);

impl<S, T> FromRequest<S> for JsonOrEmpty<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        json_body(&bytes).map(JsonOrEmpty)
    }
}

/// A JSON request body as `T`. serde would read a struct from an array as
/// well (`["x"]` fills its first field); every body the API document
/// describes is an object, so an array is refused.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, OAuthError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(OAuthError::invalid_request(
            "malformed JSON body: expected an object, not an array",
        ));
    }
    // Typed first: serde refuses a member given twice, which a generic
    // `Value` would silently resolve to the last one.
    let typed = serde_json::from_slice(bytes)
        .map_err(|e| OAuthError::invalid_request(format!("malformed JSON body: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| OAuthError::invalid_request(format!("malformed JSON body: {e}")))?;
    if carries_nul(&value) {
        return Err(OAuthError::invalid_request(
            "malformed JSON body: text must not contain NUL (U+0000)",
        ));
    }
    Ok(typed)
}

/// Members whose values are stored as JSON documents (escaped), not as
/// text columns: a NUL inside them is the key owner's business.
pub(super) const JSON_DOCUMENT_MEMBERS: &[&str] = &["jwks", "jwk", "public_key"];

/// Whether a string or member name holds NUL, which PostgreSQL's `text`
/// refuses (so SQLite and PostgreSQL would disagree) and no field the API
/// stores as text has a use for. The API document says so for each field
/// (`admin_openapi::forbid_nul`).
fn carries_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(carries_nul),
        Value::Object(members) => members.iter().any(|(name, value)| {
            name.contains('\0')
                || (!JSON_DOCUMENT_MEMBERS.contains(&name.as_str()) && carries_nul(value))
        }),
        _ => false,
    }
}

/// Query parameters, with a description of what was wrong.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| OAuthError::invalid_request(e.body_text()))
    }
}

/// Path parameters; one that does not decode (a bad percent-encoding,
/// invalid UTF-8) is `invalid_request` in JSON like every other rejection,
/// without echoing it.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| {
                OAuthError::invalid_request("a path parameter is malformed")
                    .with_detail(e.body_text())
            })
    }
}

/// The client's address, when the server knows it: the peer, or the
/// client a trusted proxy names (`client_addr`).
pub struct RemoteAddr(pub Option<String>);

impl FromRequestParts<AppState> for RemoteAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let server = &state.config.server;
        Ok(RemoteAddr(
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| {
                client_address(
                    c.0.ip(),
                    &parts.headers,
                    &server.trusted_proxies,
                    server.forwarding_header,
                )
                .to_string()
            }),
        ))
    }
}

/// A caller of the admin API authenticated by a bearer token (RFC 6750
/// §2.1): an opaque `tsr_…` token, or a person's JWT access token for
/// Tessera's API. The token's scopes must permit the request's method and
/// path (`api_scopes::permits`: `whoami` takes any valid token).
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = OAuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = bearer_token(parts)?;
        let RemoteAddr(remote) = RemoteAddr::from_request_parts(parts, state)
            .await
            .unwrap_or(RemoteAddr(None));
        let principal = bearer::authenticate(state, &presented, remote).await?;
        let read = matches!(parts.method, Method::GET | Method::HEAD);
        // The route's template, so that no spelling of a path can pass for
        // another (axum routes on the path as sent).
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        principal.require_for(read, path)?;
        Ok(Admin(principal))
    }
}

pub(super) fn bearer_token(parts: &Parts) -> Result<OpaqueToken, OAuthError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        OAuthError::credentials_required(ErrorCode::InvalidToken, "a bearer token is required")
    })?;
    let value = header
        .to_str()
        .map_err(|_| OAuthError::invalid_token("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            if syntax::is_b64token(token.trim()) {
                Ok(OpaqueToken::from_presented(token.trim()))
            } else {
                Err(OAuthError::invalid_token(
                    "the Authorization header must be `Bearer <token>`",
                ))
            }
        }
        // RFC 6750 §3.1: another scheme is no bearer credential at all, so
        // the challenge carries no error code.
        _ => Err(OAuthError::credentials_required(
            ErrorCode::InvalidToken,
            "a bearer token is required",
        )),
    }
}
