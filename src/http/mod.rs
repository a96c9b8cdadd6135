//! The HTTP surface: axum routers, one file per endpoint family. Handlers
//! extract, call the core, and render; they hold no protocol logic.

mod admin;
mod admin_clients;
mod admin_service_users;
mod error;
mod extract;
mod health;
pub mod listener;
mod timeouts;
mod token;
mod token_status;
mod wellknown;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::oauth::OAuthError;
use crate::server::AppState;

pub use admin::openapi;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    Router::new()
        .merge(wellknown::routes())
        .merge(health::routes())
        .merge(admin::routes())
        .merge(token::routes())
        .merge(token_status::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), track_metrics))
        .fallback(not_found)
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

async fn track_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    state.metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
