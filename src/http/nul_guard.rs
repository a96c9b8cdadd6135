//! NUL is never part of an admin API value (ids, names, filters, JSON
//! strings), and PostgreSQL refuses it in `text`: a request holding one,
//! percent-encoded in its path or query or escaped in its JSON body, is
//! refused here as `invalid_request`, before any extractor or query.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::oauth::OAuthError;
use crate::server::AppState;

const REFUSAL: &str = "the request holds a NUL character";

fn has_encoded_nul(text: &str) -> bool {
    text.as_bytes().windows(3).any(|w| w == b"%00")
}

/// JSON can carry NUL only as the escape `\u0000` (a raw control character
/// is not JSON). An escaped backslash followed by `u0000` is refused too:
/// no admin value needs that text.
fn has_json_nul(body: &[u8]) -> bool {
    body.contains(&0) || body.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

fn is_too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

pub async fn refuse_nul(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if has_encoded_nul(request.uri().path()) || request.uri().query().is_some_and(has_encoded_nul) {
        return OAuthError::invalid_request(REFUSAL).into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, state.config.server.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) if is_too_large(&e) => {
            return OAuthError::invalid_request("the request body is too large")
                .with_status(413)
                .into_response();
        }
        Err(_) => return OAuthError::invalid_request("the request body is broken").into_response(),
    };
    if has_json_nul(&bytes) {
        return OAuthError::invalid_request(REFUSAL).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_in_each_form() {
        assert!(has_encoded_nul("/admin/v1/clients/%00"));
        assert!(!has_encoded_nul("/admin/v1/clients/%2F00"));
        assert!(has_json_nul(br#"{"name":"a\u0000b"}"#));
        assert!(has_json_nul(b"{\"name\":\"a\x00b\"}"));
        assert!(!has_json_nul(br#"{"name":"a\u0001b"}"#));
    }
}
