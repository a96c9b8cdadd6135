//! The one error type of the protocol core: an RFC 6749 §5.2 code, the HTTP
//! status it maps to, a description safe to show the client, and an
//! internal detail that only reaches the log.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
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
    /// RFC 8628 §3.5: the user has not answered yet.
    AuthorizationPending,
    /// RFC 8628 §3.5: polling too fast; the interval grew by 5 s.
    SlowDown,
    /// RFC 8628 §3.5: the device code expired.
    ExpiredToken,
    /// RFC 7591 §3.2.2: a client metadata value is invalid.
    InvalidClientMetadata,
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
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
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
    /// The request carried no credentials at all: RFC 6750 §3.1 says the
    /// challenge then names no `error`.
    pub credentials_missing: bool,
    /// RFC 6750 §3: for `insufficient_scope`, the scope the request needs,
    /// named in the challenge's `scope` attribute.
    pub required_scope: Option<&'static str>,
    /// Seconds to wait before trying again (RFC 9110 §10.2.3 `Retry-After`),
    /// on a 429 or 503.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            detail: None,
            status: None,
            credentials_missing: false,
            required_scope: None,
            retry_after: None,
        }
    }

    /// RFC 6750 §3.1 `insufficient_scope`, naming the scope needed.
    pub fn insufficient_scope(
        scope: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        OAuthError {
            required_scope: Some(scope),
            ..Self::new(ErrorCode::InsufficientScope, description)
        }
    }

    /// RFC 6750 §3.1: a request without any credentials.
    pub fn credentials_required(
        code: ErrorCode,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        OAuthError {
            credentials_missing: true,
            ..Self::new(code, description)
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
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
        .with_detail(detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the server is temporarily unable to handle the request; retry later",
        )
        .with_detail(detail)
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
            StoreError::LimitReached(limit) => OAuthError::new(
                ErrorCode::Conflict,
                format!(
                    "the owner already holds {limit} live tokens, the most allowed \
                     (personal_tokens.max_active_per_owner): revoke one to free a slot"
                ),
            ),
            StoreError::InUse(by) => OAuthError::new(
                ErrorCode::Conflict,
                format!("still used by {by}: delete or change that first"),
            ),
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

/// What RFC 6749 §5.2 allows in `error_description` is %x20-21 / %x23-5B /
/// %x5D-7E; everything else is percent-encoded (non-ASCII always is).
const OUTSIDE_DESCRIPTION: &AsciiSet = &CONTROLS.add(b'"').add(b'\\');
/// A named value escapes `%` too, so that the escaping is unambiguous.
const OUTSIDE_NAMED: &AsciiSet = &OUTSIDE_DESCRIPTION.add(b'%');
/// How much of a named value a description repeats.
const NAMED_MAX_CHARS: usize = 64;

/// The longest description a client gets; a longer one was built from
/// something the request sent (a parser's message, say).
const DESCRIPTION_MAX_CHARS: usize = 256;

/// A description reduced to the RFC 6749 §5.2 characters and cut short:
/// what reaches the client, whatever a description was built from.
pub fn safe_description(description: &str) -> Cow<'_, str> {
    let description = match description.char_indices().nth(DESCRIPTION_MAX_CHARS) {
        Some((end, _)) => &description[..end],
        None => description,
    };
    utf8_percent_encode(description, OUTSIDE_DESCRIPTION).into()
}

/// A request value named in a description: escaped (RFC 6749 §5.2) and cut
/// short, never echoed raw.
pub fn named(value: &str) -> String {
    let mut cut: String = value.chars().take(NAMED_MAX_CHARS).collect();
    if cut.len() < value.len() {
        cut.push_str("...");
    }
    utf8_percent_encode(&cut, OUTSIDE_NAMED).to_string()
}

/// The RFC 6749 §5.2 body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub error_description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(c: char) -> bool {
        matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
    }

    #[test]
    fn descriptions_hold_only_rfc_6749_characters() {
        let raw = "bad `\u{0}\"\\\u{fffd}\u{7f}\n\t` value";
        let safe = safe_description(raw);
        assert!(safe.chars().all(allowed), "{safe}");
        assert_eq!(
            safe_description("the scope `a:b` is unknown"),
            "the scope `a:b` is unknown"
        );
        let long = safe_description(&"y".repeat(5000)).into_owned();
        assert_eq!(long.len(), DESCRIPTION_MAX_CHARS);
    }

    #[test]
    fn named_values_are_escaped_and_cut() {
        assert_eq!(named("a%ZZ\"b"), "a%25ZZ%22b");
        assert_eq!(named("\u{fffd}"), "%EF%BF%BD");
        let long = named(&"x".repeat(2000));
        assert_eq!(long.len(), NAMED_MAX_CHARS + 3);
        assert!(long.chars().all(allowed));
    }
}
