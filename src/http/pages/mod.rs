//! Server-rendered pages (issue 10, items 2 and 11): sign-in, sign-out,
//! the account page and TOTP enrolment, with one layout, one stylesheet
//! served by Tessera itself, and an error page. Markup is maud
//! (compile-time checked, escaped by default). No page runs a script but
//! the one that shows a new personal access token once, whose copy button
//! loads `/assets/copy.js` (its CSP allows this server's scripts only).
//!
//! Every page goes through [`render`], which sets the security headers:
//! a CSP without any script (`default-src 'none'`), `frame-ancestors
//! 'none'` against clickjacking, `Cache-Control: no-store`, and
//! `Referrer-Policy: no-referrer` (a page URL may carry an authorization
//! request). Forms carry a CSRF token ([`csrf`]).

pub mod account;
pub mod csrf;
pub mod error;
pub mod login;
pub mod logout;
pub mod session;
pub mod tokens;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;

use crate::server::AppState;
pub use error::PageError;

/// The stylesheet, compiled in.
const CSS: &str = include_str!("tessera.css");

/// A version of the stylesheet for its URL, so that it can be cached for
/// a year and still change with a release.
fn css_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| format!("{:08x}", crc32fast::hash(CSS.as_bytes())))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/assets/tessera.css", get(stylesheet))
        .route("/login", get(login::show).post(login::submit))
        .route("/login/code", axum::routing::post(login::submit_code))
        .route("/logout", get(logout::show).post(logout::submit))
        .route("/account", get(account::show))
        .route(
            "/account/mfa",
            get(account::mfa_show).post(account::mfa_post),
        )
        .route("/account/tokens", get(tokens::show).post(tokens::create))
        .route("/account/tokens/{id}", axum::routing::post(tokens::act))
        .route("/assets/copy.js", get(copy_script))
}

/// The token page's copy button, the one script of these pages.
const COPY_JS: &str = include_str!("copy.js");

fn copy_script_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| format!("{:08x}", crc32fast::hash(COPY_JS.as_bytes())))
}

/// `GET /assets/copy.js`: cached for a year (the URL carries its version).
async fn copy_script() -> Response {
    asset(COPY_JS.into_response(), "text/javascript; charset=utf-8")
}

/// A compiled-in asset's headers: its type, cached for a year (its URL
/// carries its version), never sniffed as another type.
fn asset(mut response: Response, content_type: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The page's CSP, allowing this server's own scripts (`/assets/copy.js`)
/// and nothing else: no inline script, no other origin.
pub fn allow_own_script(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// The one page chrome: `lang`, viewport, the stylesheet, one `h1` (the
/// title), and `body` inside `main`.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Tessera" }
                link rel="stylesheet" href={ "/assets/tessera.css?v=" (css_version()) };
            }
            body {
                header.brand { span.logo aria-hidden="true" { "◆" } " Tessera" }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// What every page's response carries.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; \
         frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("pragma", "no-cache"),
];

/// Adds the security headers to a response (every page has them).
pub fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// A page as an HTML response with the security headers.
pub fn render(status: StatusCode, page: Markup) -> Response {
    let mut response = (status, page.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(response)
}

/// `303 See Other` to a local path (RFC 9110 §15.4.4: the browser follows
/// with GET), with the security headers.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secure(response)
}

/// `GET /assets/tessera.css`: cached for a year (the URL carries its
/// version), with an ETag for revalidation.
async fn stylesheet(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", css_version());
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        CSS.into_response()
    };
    let mut response = asset(response, "text/css; charset=utf-8");
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// A form body (`application/x-www-form-urlencoded`); a malformed or
/// oversized one is an error page, not axum's plain text.
pub struct PageForm<T>(pub T);

impl<S, T> FromRequest<S> for PageForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(PageForm(value)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "The form sent more than this server accepts.",
            )),
            Err(_) => Err(PageError::bad_request()),
        }
    }
}

/// Query parameters; malformed ones are an error page.
pub struct PageQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for PageQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| PageQuery(q.0))
            .map_err(|_| PageError::bad_request())
    }
}

/// Whether a form field is acceptable text: at most `max` bytes, no
/// control character (NUL included: PostgreSQL refuses it in text).
pub fn clean_field(value: &str, max: usize) -> bool {
    value.len() <= max && !value.chars().any(char::is_control)
}

/// A cookie's value from the request's `Cookie` headers (RFC 6265 §5.4).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether cookies get `Secure` and the `__Host-` prefix (RFC 6265bis
/// §4.1.3.2): when the issuer is https.
pub fn secure_cookies(state: &AppState) -> bool {
    state.config.server.issuer.scheme() == "https"
}

/// A cookie's name, with `__Host-` when cookies are secure.
pub fn cookie_name(state: &AppState, base: &str) -> String {
    if secure_cookies(state) {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value: host-only, `Path=/`, `HttpOnly`, `SameSite=Lax`,
/// and `Secure` when the issuer is https; `max_age` `Some(0)` deletes it.
pub fn set_cookie(state: &AppState, base: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut text = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax",
        cookie_name(state, base)
    );
    if secure_cookies(state) {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The client's address (the peer, or what a trusted proxy names).
pub fn remote_addr(state: &AppState, parts: &Parts) -> Option<String> {
    let server = &state.config.server;
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| {
            super::client_addr::client_address(
                c.0.ip(),
                &parts.headers,
                &server.trusted_proxies,
                server.forwarding_header,
            )
            .to_string()
        })
}
