//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::server::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up and serving.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

const READINESS_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Ready once preparation (migrations, keys, bootstrap) has finished, while
/// the database answers, the signing keys are loaded and the audit queue
/// has room (a backlogged replica would refuse issuance with 503).
async fn readyz(State(state): State<AppState>) -> Response {
    let prepared = state.prepared.load(std::sync::atomic::Ordering::Acquire);
    let keys_loaded = state.keys.ring().is_loaded();
    let database_up = matches!(
        tokio::time::timeout(READINESS_PING_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    let audit_ok = !state.writer.is_backlogged();
    let status = if prepared && keys_loaded && database_up && audit_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not ready" },
        "database": if database_up { "ok" } else { "unavailable" },
        "keys": if keys_loaded { "loaded" } else { "not loaded" },
        "audit": if audit_ok { "ok" } else { "backlogged" },
    });
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
