//! NUL is never part of an admin API id or filter, and PostgreSQL refuses
//! it in `text`: a request with a percent-encoded NUL in its path or query
//! is refused here as `invalid_request`, before any extractor or query.
//! (JSON bodies are not checked here: their free-form members, such as a
//! JWK's, may carry any text, and are stored as JSON.)

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::oauth::OAuthError;

fn has_encoded_nul(text: &str) -> bool {
    text.as_bytes().windows(3).any(|w| w == b"%00")
}

pub async fn refuse_nul(request: Request, next: Next) -> Response {
    if has_encoded_nul(request.uri().path()) || request.uri().query().is_some_and(has_encoded_nul) {
        return OAuthError::invalid_request("the request holds a NUL character").into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_encoded_nul() {
        assert!(has_encoded_nul("/admin/v1/clients/%00"));
        assert!(!has_encoded_nul("/admin/v1/clients/%2F00"));
    }
}
