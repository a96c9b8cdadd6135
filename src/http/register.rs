//! `POST /oauth/register` (RFC 7591 §3, agents with a bootstrap token) and
//! `GET`/`PUT`/`DELETE /oauth/register/{client_id}` (RFC 7592 §2, with the
//! registration access token). Answers carry tokens: never cached.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
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
            axum::routing::get(read)
                .head(head)
                .put(update)
                .delete(delete),
        )
}

/// `HEAD` is not `GET` here: a read replaces the registration access
/// token, and a `HEAD` answer would drop the new one (RFC 9110 §9.3.2 wants
/// `HEAD` safe).
async fn head() -> Response {
    let allow = [(axum::http::header::ALLOW, "GET, PUT, DELETE")];
    (StatusCode::METHOD_NOT_ALLOWED, allow).into_response()
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

/// What every configuration call carries: the client it names, its
/// registration access token, a repeated rotation's proof of possession,
/// and where it comes from.
struct Configuring {
    client_id: String,
    token: OpaqueToken,
    key_proof: Option<String>,
    remote: Option<String>,
}

impl FromRequestParts<AppState> for Configuring {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Path(client_id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| render(Err(e)))?;
        let Bearer(token) = Bearer::from_request_parts(parts, state).await?;
        let RemoteAddr(remote) = RemoteAddr::from_request_parts(parts, state)
            .await
            .unwrap_or(RemoteAddr(None));
        let key_proof = parts
            .headers
            .get(KEY_PROOF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Configuring {
            client_id,
            token,
            key_proof,
            remote,
        })
    }
}

impl Configuring {
    fn call(&self) -> Call<'_> {
        Call {
            client_id: &self.client_id,
            token: &self.token,
            key_proof: self.key_proof.as_deref(),
            remote: self.remote.clone(),
        }
    }
}

async fn read(State(state): State<AppState>, configuring: Configuring) -> Response {
    let read = configuration::read(&state, configuring.call()).await;
    render(read.map(|info| Json(info).into_response()))
}

async fn update(
    State(state): State<AppState>,
    configuring: Configuring,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let updated = async {
        let bytes = body(bytes)?;
        configuration::update(&state, configuring.call(), &bytes).await
    };
    render(updated.await.map(|info| Json(info).into_response()))
}

async fn delete(State(state): State<AppState>, configuring: Configuring) -> Response {
    let deleted = configuration::delete(&state, configuring.call()).await;
    render(deleted.map(|()| StatusCode::NO_CONTENT.into_response()))
}
