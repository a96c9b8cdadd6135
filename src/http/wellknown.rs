//! Discovery documents and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::clock;
use crate::oauth::OAuthError;
use crate::oauth::discovery::{self, JWKS_PATH};
use crate::server::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth_authorization_server),
        )
        .route(JWKS_PATH, get(jwks))
}

/// Relying parties may cache metadata and keys for this long. It stays well
/// under the publication lead of new keys (one maximum token lifetime).
fn cache_for(state: &AppState) -> HeaderValue {
    let secs = (state.config.tokens.max_lifetime.as_secs() / 4).clamp(1, 300);
    HeaderValue::from_str(&format!("public, max-age={secs}")).expect("ASCII header")
}

fn cached(state: &AppState, body: impl serde::Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, cache_for(state));
    response
}

async fn openid_configuration(State(state): State<AppState>) -> Response {
    cached(&state, discovery::openid_configuration(&state.config))
}

async fn oauth_authorization_server(State(state): State<AppState>) -> Response {
    cached(&state, discovery::oauth_authorization_server(&state.config))
}

/// RFC 7517 §5: public members only, of every key that is about to sign,
/// signs, or signed tokens that have not expired yet.
async fn jwks(State(state): State<AppState>) -> Result<Response, OAuthError> {
    let set = state
        .keys
        .ring()
        .get()
        .ok_or_else(|| OAuthError::unavailable("signing keys are not loaded yet"))?;
    Ok(cached(
        &state,
        set.jwks(clock::now(), state.keys.max_lifetime()),
    ))
}
