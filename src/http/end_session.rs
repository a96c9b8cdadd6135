//! `GET`/`POST /oauth/end_session`: RP-initiated logout (OpenID Connect
//! RP-Initiated Logout 1.0). With an `id_token_hint` for the current
//! session the session ends at once; otherwise the user confirms on a page
//! whose form carries a CSRF token.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;

use super::extract::RemoteAddr;
use super::pages::{self, csrf, session};
use crate::oauth::OAuthError;
use crate::oauth::discovery::END_SESSION_PATH;
use crate::oauth::logout::{self, LogoutRequest};
use crate::server::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(END_SESSION_PATH, get(show).post(submit))
}

/// The parameters §2 defines; a repeated one is refused.
const PARAMETERS: [&str; 4] = [
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
];

fn parameters(bytes: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut map = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(bytes).into_owned() {
        if map.insert(name.clone(), value).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "the parameter `{}` is repeated",
                crate::oauth::error::named(&name)
            )));
        }
    }
    Ok(map)
}

fn error_page(error: &OAuthError) -> Response {
    if error.code != crate::oauth::ErrorCode::InvalidRequest {
        return pages::PageError::from(error.clone()).into_response();
    }
    pages::error::page(
        StatusCode::BAD_REQUEST,
        "Sign-out request refused",
        &format!(
            "The application sent a sign-out request Tessera cannot accept: {}.",
            error.description
        ),
    )
}

async fn show(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match parameters(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    handle(&state, &headers, remote, params, false).await
}

/// §2: the request may be a POST; the confirmation form posts here too,
/// with `csrf` and `confirm`.
async fn submit(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = match parameters(&body) {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let confirmed = params.remove("confirm").is_some();
    let token = params.remove("csrf");
    if confirmed
        && let Err(refused) = csrf::verify(&state, &headers, token.as_deref().unwrap_or(""))
    {
        return refused.into_response();
    }
    handle(&state, &headers, remote, params, confirmed).await
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    remote: Option<String>,
    params: HashMap<String, String>,
    confirmed: bool,
) -> Response {
    let request = match logout::validate(state, &params).await {
        Ok(request) => request,
        Err(e) => return error_page(&e),
    };
    let current = match session::current(state, headers).await {
        Ok(current) => current,
        Err(e) => return error_page(&e),
    };
    let Some(current) = current else {
        // Nothing to end: the browser is signed out already.
        return finish(state, &request, false);
    };
    if !confirmed && !request.hint_matches(&current.sid) {
        return confirmation(state, headers, &request, &params);
    }
    session::end(state, &current.sid).await;
    if let Err(e) = logout::session_ended(
        state,
        &current.sid,
        &current.user_id,
        request.client.as_ref(),
        remote,
    )
    .await
    {
        return error_page(&e);
    }
    finish(state, &request, true)
}

/// §3: back to the registered `post_logout_redirect_uri` (with `state`),
/// or a page saying the user is signed out.
fn finish(state: &AppState, request: &LogoutRequest, ended: bool) -> Response {
    let mut response = match &request.redirect {
        Some(location) => pages::see_other(location),
        None => pages::render(
            StatusCode::OK,
            pages::layout(
                "You are signed out",
                html! {
                    p { "You are signed out of Tessera." }
                    @if let Some(client) = &request.client {
                        p { "You can close this window or go back to " (client.name) "." }
                    }
                },
            ),
        ),
    };
    if ended {
        response
            .headers_mut()
            .append(header::SET_COOKIE, session::clear_cookie(state));
    }
    response
}

/// §2: without a hint for this session, the user confirms.
fn confirmation(
    state: &AppState,
    headers: &HeaderMap,
    request: &LogoutRequest,
    params: &HashMap<String, String>,
) -> Response {
    let csrf = csrf::issue(state, headers);
    let body = html! {
        @if let Some(client) = &request.client {
            p { strong { (client.name) } " asks you to sign out of Tessera." }
        } @else {
            p { "An application asks you to sign out of Tessera." }
        }
        form method="post" action=(END_SESSION_PATH) {
            (csrf.field())
            @for name in PARAMETERS {
                @if let Some(value) = params.get(name) {
                    input type="hidden" name=(name) value=(value);
                }
            }
            div.actions {
                button type="submit" name="confirm" value="yes" { "Sign out" }
                " "
                a href="/account" { "Stay signed in" }
            }
        }
    };
    csrf.apply(pages::render(
        StatusCode::OK,
        pages::layout("Sign out?", body),
    ))
}
