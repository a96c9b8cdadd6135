//! `POST /oauth/register` (RFC 7591 §3, agents with a bootstrap token) and
//! `GET`/`PUT`/`DELETE /oauth/register/{client_id}` (RFC 7592 §2, with the
//! registration access token). Answers carry tokens: never cached.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::extract::{Path, RemoteAddr, bearer_token, body_rejection};
use super::token::render;
use crate::oauth::OAuthError;
use crate::oauth::agents::configuration::{self, Call, KEY_PROOF_HEADER};
use crate::oauth::agents::registration::{self, REGISTRATION_PATH};
use crate::server::AppState;
use crate::tokens::opaque::OpaqueToken;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(REGISTRATION_PATH, post(register))
        .route(
            &format!("{REGISTRATION_PATH}/{{client_id}}"),
            axum::routing::get(read).put(update).delete(delete),
        )
}

/// The `Authorization: Bearer` token (RFC 6750 §2.1).
struct Bearer(OpaqueToken);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        bearer_token(parts).map(Bearer).map_err(|e| render(Err(e)))
    }
}

fn body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, OAuthError> {
    bytes.map_err(body_rejection)
}

async fn register(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    Bearer(token): Bearer,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let registered = async {
        let bytes = body(bytes)?;
        registration::register(&state, &token, &bytes, remote).await
    };
    render(
        registered
            .await
            .map(|info| (StatusCode::CREATED, Json(info)).into_response()),
    )
}

/// The repeated rotation's proof of possession, if the request has one.
fn key_proof(headers: &HeaderMap) -> Option<&str> {
    headers.get(KEY_PROOF_HEADER)?.to_str().ok()
}

async fn read(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    Path(client_id): Path<String>,
    Bearer(token): Bearer,
    headers: HeaderMap,
) -> Response {
    let call = Call {
        client_id: &client_id,
        token: &token,
        key_proof: key_proof(&headers),
        remote,
    };
    render(
        configuration::read(&state, call)
            .await
            .map(|info| Json(info).into_response()),
    )
}

async fn update(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    Path(client_id): Path<String>,
    Bearer(token): Bearer,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let call = Call {
        client_id: &client_id,
        token: &token,
        key_proof: key_proof(&headers),
        remote,
    };
    let updated = async {
        let bytes = body(bytes)?;
        configuration::update(&state, call, &bytes).await
    };
    render(updated.await.map(|info| Json(info).into_response()))
}

async fn delete(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    Path(client_id): Path<String>,
    Bearer(token): Bearer,
    headers: HeaderMap,
) -> Response {
    let call = Call {
        client_id: &client_id,
        token: &token,
        key_proof: key_proof(&headers),
        remote,
    };
    render(
        configuration::delete(&state, call)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
    )
}
