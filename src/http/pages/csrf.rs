//! CSRF protection for every form: a signed double-submit token. The
//! browser holds a random value in a cookie (`HttpOnly`, `SameSite=Lax`,
//! `__Host-` on https); each form carries, in a hidden field `csrf`, an
//! HMAC of that value under a key derived from the master key. A POST is
//! accepted only when the field matches the cookie. No server-side state,
//! so any replica verifies what another issued; another site can neither
//! read the cookie nor compute the token.
//!
//! Use: `let csrf = csrf::issue(&state, &headers);`, put `(csrf.field())`
//! inside the form, and return `csrf.apply(response)`; on POST,
//! `csrf::verify(&state, &headers, &form.csrf)?`.

use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::{Markup, html};
use subtle::ConstantTimeEq;

use super::PageError;
use crate::server::AppState;

const COOKIE: &str = "tessera_csrf";
/// The cookie's value: 32 random bytes, base64url.
const VALUE_CHARS: usize = 43;

/// A token for one page's forms, and the cookie to set if the browser
/// had none.
pub struct Csrf {
    token: String,
    set_cookie: Option<axum::http::HeaderValue>,
}

fn key(state: &AppState) -> hmac::Key {
    crate::accounts::purpose_key(&state.digest_key, "tessera csrf v1")
}

fn token_for(state: &AppState, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac::sign(&key(state), value.as_bytes()).as_ref())
}

fn well_formed(value: &str) -> bool {
    value.len() == VALUE_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn current_value<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    super::cookie(headers, &super::cookie_name(state, COOKIE)).filter(|v| well_formed(v))
}

/// The token for this browser, making its cookie if it has none.
pub fn issue(state: &AppState, headers: &HeaderMap) -> Csrf {
    match current_value(state, headers) {
        Some(value) => Csrf {
            token: token_for(state, value),
            set_cookie: None,
        },
        None => {
            let value = URL_SAFE_NO_PAD.encode(crate::random::random_bytes::<32>());
            Csrf {
                token: token_for(state, &value),
                set_cookie: Some(super::set_cookie(state, COOKIE, &value, None)),
            }
        }
    }
}

impl Csrf {
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The hidden field to put in a form.
    pub fn field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.token); }
    }

    /// The response, with the cookie when one was made.
    pub fn apply(&self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        if let Some(cookie) = &self.set_cookie {
            response.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        response
    }
}

/// Checks a POST's `csrf` field against the browser's cookie, in constant
/// time. Missing cookie, missing or wrong token: 403, nothing changes.
pub fn verify(state: &AppState, headers: &HeaderMap, presented: &str) -> Result<(), PageError> {
    let Some(value) = current_value(state, headers) else {
        return Err(PageError::forbidden_form());
    };
    let expected = token_for(state, value);
    if presented.len() == expected.len()
        && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    {
        Ok(())
    } else {
        Err(PageError::forbidden_form())
    }
}
