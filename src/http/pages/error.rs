//! The error page: a status, a title and a sentence saying what to do.
//! Server faults say nothing more than that they happened; the detail goes
//! to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::oauth::{ErrorCode, OAuthError};
use crate::store::StoreError;

/// An error page as a response.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    super::render(
        status,
        super::layout(
            title,
            html! {
                p.alert role="alert" { (message) }
                p { a href="/account" { "Go to your account" } }
            },
        ),
    )
}

/// A failure a page handler returns; rendered with [`page`].
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    title: &'static str,
    message: &'static str,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: &'static str) -> Self {
        PageError {
            status,
            title,
            message,
        }
    }

    pub fn bad_request() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The request could not be understood. Go back and try again.",
        )
    }

    /// A CSRF token was missing or wrong: nothing was changed.
    pub fn forbidden_form() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form has expired or did not come from this site, so nothing was changed. \
             Go back, reload the page and try again.",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        page(self.status, self.title, self.message)
    }
}

impl From<OAuthError> for PageError {
    fn from(error: OAuthError) -> Self {
        match error.code {
            ErrorCode::TemporarilyUnavailable => {
                tracing::warn!(
                    detail = error.detail.as_deref().unwrap_or(""),
                    "page: unavailable"
                );
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "The service is temporarily unavailable. Try again in a moment.",
                )
            }
            ErrorCode::ServerError => {
                tracing::error!(
                    detail = error.detail.as_deref().unwrap_or(""),
                    "page: server error"
                );
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete the request. Try again later.",
                )
            }
            ErrorCode::NotFound => Self::new(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address.",
            ),
            _ => Self::bad_request(),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        OAuthError::from(error).into()
    }
}
