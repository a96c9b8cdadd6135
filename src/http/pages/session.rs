//! The browser session behind a request: the cookie, looked up in the
//! database (`accounts::sessions`), so any replica serves it.

use axum::http::{HeaderMap, HeaderValue};

use crate::accounts::sessions::{self, SessionInfo};
use crate::oauth::OAuthError;
use crate::secret::Secret;
use crate::server::AppState;

const COOKIE: &str = "tessera_session";

/// The signed-in session, if any: `None` when there is no cookie, or the
/// session is unknown, idle- or absolutely-expired, or its user is
/// disabled (or gone).
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionInfo>, OAuthError> {
    let Some(secret) = super::cookie(headers, &super::cookie_name(state, COOKIE)) else {
        return Ok(None);
    };
    Ok(sessions::resolve(state, secret).await?)
}

/// Ends a session (logout; RP-initiated logout). A database failure is
/// logged: the caller's answer does not depend on it.
pub async fn end(state: &AppState, sid: &str) {
    if let Err(e) = sessions::end(state, sid).await {
        tracing::warn!(error = %e, "could not end a session");
    }
}

/// The `Set-Cookie` that hands the browser a new session's secret.
pub fn cookie(state: &AppState, secret: &Secret) -> HeaderValue {
    super::set_cookie(state, COOKIE, secret.expose(), None)
}

/// The `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(state: &AppState) -> HeaderValue {
    super::set_cookie(state, COOKIE, "", Some(0))
}
