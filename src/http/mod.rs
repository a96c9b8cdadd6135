//! The HTTP surface: axum routers, one file per endpoint family. Handlers
//! extract, call the core, and render; they hold no protocol logic.

mod admin;
mod admin_agents;
mod admin_clients;
mod admin_mfa;
mod admin_openapi;
mod admin_service_users;
mod admin_tokens;
mod admin_trust;
mod admin_trust_test;
mod admin_users;
mod admission;
mod authorize;
mod client_addr;
mod device;
mod end_session;
mod error;
mod extract;
mod health;
pub mod listener;
mod nul_guard;
pub mod pages;
mod register;
mod timeouts;
mod token;
mod token_status;
mod userinfo;
mod wellknown;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::UNMATCHED_ROUTE;
use crate::oauth::OAuthError;
use crate::server::AppState;

pub use admin::openapi;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    let metrics = middleware::from_fn_with_state(state.clone(), track_metrics);
    Router::new()
        .merge(wellknown::routes())
        .merge(health::routes())
        .merge(admin::routes().layer(middleware::from_fn(nul_guard::refuse_nul)))
        .merge(token::routes())
        .merge(token_status::routes())
        .merge(register::routes().layer(middleware::from_fn(nul_guard::refuse_nul)))
        .merge(pages::routes())
        .merge(authorize::routes())
        .merge(device::routes())
        .merge(userinfo::routes())
        .merge(end_session::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(metrics.clone())
        .fallback(not_found.layer(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| {
            OAuthError::server_error("a handler panicked").into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> OAuthError {
    OAuthError::not_found("no such endpoint")
}

/// A known path with a method it does not serve: JSON like every other
/// rejection (axum adds the `Allow` header).
async fn method_not_allowed() -> OAuthError {
    OAuthError::invalid_request("the endpoint does not serve this method").with_status(405)
}

async fn track_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, |p| p.as_str())
        .to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics.observe_request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
