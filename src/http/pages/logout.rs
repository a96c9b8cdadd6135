//! `GET /logout` asks for confirmation; `POST /logout` (with its CSRF
//! token) ends the session, so that a link on another site cannot sign
//! anyone out.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{PageError, PageForm, csrf, layout, render, session};
use crate::http::extract::RemoteAddr;
use crate::server::AppState;

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

fn signed_out() -> maud::Markup {
    layout(
        "Signed out",
        html! {
            p { "You are signed out." }
            p { a href="/login" { "Sign in again" } }
        },
    )
}

/// `GET /logout`.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if session::current(&state, &headers).await?.is_none() {
        return Ok(render(StatusCode::OK, signed_out()));
    }
    let csrf = csrf::issue(&state, &headers);
    Ok(csrf.apply(render(
        StatusCode::OK,
        layout(
            "Sign out",
            html! {
                p { "Do you want to sign out of Tessera?" }
                form method="post" action="/logout" {
                    (csrf.field())
                    button #submit type="submit" { "Sign out" }
                    " "
                    a.secondary href="/account" { "Cancel" }
                }
            },
        ),
    )))
}

/// `POST /logout`.
pub async fn submit(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<LogoutForm>,
) -> Result<Response, PageError> {
    if form.csrf.len() > 512 {
        return Err(PageError::bad_request());
    }
    csrf::verify(&state, &headers, &form.csrf)?;
    if let Some(current) = session::current(&state, &headers).await? {
        session::end(&state, &current.sid).await;
        // Issue 10 item 6: logging out revokes the refresh tokens issued
        // in this session (others, e.g. a CLI's, live on); audited.
        crate::oauth::logout::session_ended(&state, &current.sid, &current.user_id, None, remote)
            .await?;
    }
    let mut response = render(StatusCode::OK, signed_out());
    response
        .headers_mut()
        .append(SET_COOKIE, session::clear_cookie(&state));
    Ok(response)
}
