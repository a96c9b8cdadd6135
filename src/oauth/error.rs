//! The one error type of the protocol core: an RFC 6749 §5.2 code, the HTTP
//! status it maps to, a description safe to show the client, and an
//! internal detail that only reaches the log.

use std::borrow::Cow;

use serde::Serialize;

use crate::store::StoreError;

/// RFC 6749 §5.2 and §4.1.2.1 codes, RFC 6750 §3.1 codes, and the few the
/// admin API adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    /// RFC 8707 §2: the requested resource or audience is not allowed.
    InvalidTarget,
    AccessDenied,
    /// RFC 6750 §3.1: the bearer token is missing, expired, revoked or malformed.
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks the privileges the request needs.
    InsufficientScope,
    NotFound,
    /// RFC 9110 §15.5.10: the request conflicts with the resource's state.
    Conflict,
    /// RFC 9110 §15.5.13: an `If-Match` precondition did not hold.
    PreconditionFailed,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// RFC 6749 §5.2: 400 by default, 401 for a failed client
    /// authentication; RFC 6750 §3.1: 401 and 403 for bearer tokens.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope | ErrorCode::AccessDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Shown to the client: says what to fix, never echoes a secret.
    pub description: Cow<'static, str>,
    /// Logged only.
    pub detail: Option<String>,
    /// Overrides the code's default status (413 for an oversized body).
    pub status: Option<u16>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            detail: None,
            status: None,
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidToken, description)
    }

    pub fn not_found(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::NotFound, description)
    }

    /// A fault of ours: the client learns nothing but that it happened.
    pub fn server_error(detail: impl Into<String>) -> Self {
        OAuthError {
            code: ErrorCode::ServerError,
            description: "the server could not complete the request".into(),
            detail: Some(detail.into()),
            status: None,
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        OAuthError {
            code: ErrorCode::TemporarilyUnavailable,
            description: "the server is temporarily unable to handle the request; retry later"
                .into(),
            detail: Some(detail.into()),
            status: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.status())
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => OAuthError::unavailable(detail),
            StoreError::NotFound => OAuthError::not_found("no such resource"),
            other => OAuthError::server_error(other.to_string()),
        }
    }
}

impl From<crate::keys::KeysError> for OAuthError {
    fn from(error: crate::keys::KeysError) -> Self {
        match error {
            crate::keys::KeysError::Store(e) => e.into(),
            other => OAuthError::server_error(other.to_string()),
        }
    }
}

/// The RFC 6749 §5.2 body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub error_description: String,
}
