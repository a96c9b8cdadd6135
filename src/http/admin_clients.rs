//! `/admin/v1/clients`: client registration and lifecycle.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::{Body, IfMatch, OptionalBody, Tagged, created_headers};
use super::extract::{Admin, Path};
use crate::oauth::OAuthError;
use crate::oauth::client::{Client, ClientSpec};
use crate::oauth::error::ErrorBody;
use crate::oauth::registry;
use crate::secret::Secret;
use crate::server::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredClient {
    #[serde(flatten)]
    pub client: Client,
    /// Shown once; only a digest is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Secret>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientList {
    pub clients: Vec<Client>,
}

/// Registers a client. Secret-based clients get a generated secret, shown
/// in this answer only.
#[utoipa::path(post, path = "/admin/v1/clients", tag = "clients", request_body = ClientSpec,
    responses((status = 201, body = RegisteredClient, headers(("ETag" = String), ("Location" = String))), (status = 400, body = ErrorBody)))]
pub(super) async fn create_client(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(spec): Body<ClientSpec>,
) -> Result<
    (
        StatusCode,
        [(HeaderName, String); 2],
        Json<RegisteredClient>,
    ),
    OAuthError,
> {
    let registered = registry::register(
        &state.store,
        &state.digest_key,
        spec,
        state.config.tokens.max_lifetime,
        admin.actor(),
    )
    .await?;
    let client_secret = registered.client_secret.map(|s| Secret::new(s.expose()));
    let headers = created_headers(
        &format!("/admin/v1/clients/{}", registered.client.client_id),
        &registered.client,
    );
    Ok((
        StatusCode::CREATED,
        headers,
        Json(RegisteredClient {
            client: registered.client,
            client_secret,
        }),
    ))
}

#[utoipa::path(get, path = "/admin/v1/clients", tag = "clients",
    responses((status = 200, body = ClientList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_clients(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<ClientList>, OAuthError> {
    Ok(Json(ClientList {
        clients: registry::list(&state.store).await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path)),
    responses((status = 200, body = Client, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub(super) async fn get_client(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(client_id): Path<String>,
) -> Result<Tagged<Client>, OAuthError> {
    let client = registry::get(&state.store, &client_id).await?;
    Ok(Tagged(StatusCode::OK, client))
}

/// Changes the fields present in the body. With `If-Match` (an `ETag`
/// from a previous read, RFC 9110 §13.1.1), only if the client has not
/// changed since: 412 otherwise.
#[utoipa::path(patch, path = "/admin/v1/clients/{client_id}", tag = "clients", request_body = ClientSpec,
    params(("client_id" = String, Path)),
    responses((status = 200, body = Client, headers(("ETag" = String))), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub(super) async fn update_client(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(client_id): Path<String>,
    IfMatch(if_match): IfMatch,
    Body(spec): Body<ClientSpec>,
) -> Result<Tagged<Client>, OAuthError> {
    let max = state.config.tokens.max_lifetime;
    let actor = admin.actor();
    let updated = registry::update(&state.store, &client_id, spec, max, actor, if_match).await;
    // This replica sees the change at once; others within clients.cache_ttl.
    state.client_cache.invalidate(&client_id);
    Ok(Tagged(StatusCode::OK, updated?))
}

/// Deletes the client. With `If-Match`, only if it has not changed since
/// it was read (RFC 9110 §13.1.1): 412 otherwise.
#[utoipa::path(delete, path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub(super) async fn delete_client(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(client_id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode, OAuthError> {
    let deleted = registry::delete(&state.store, &client_id, admin.actor(), if_match).await;
    state.client_cache.invalidate(&client_id);
    deleted?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// How long the previous secret keeps working, in seconds (default 0).
    #[serde(default, deserialize_with = "crate::oauth::client::whole_number")]
    #[schema(minimum = 0, maximum = 2592000)]
    pub grace_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewSecret {
    pub client_id: String,
    /// Shown once.
    #[schema(value_type = String)]
    pub client_secret: Secret,
}

const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

/// A new secret; the previous one stays valid for the grace period.
/// Honours `If-Match` like an update (412 on a mismatch).
#[utoipa::path(post, path = "/admin/v1/clients/{client_id}/secret", tag = "clients",
    params(("client_id" = String, Path)), request_body = RotateSecretRequest,
    responses((status = 200, body = NewSecret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub(super) async fn rotate_client_secret(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(client_id): Path<String>,
    IfMatch(if_match): IfMatch,
    Body(request): OptionalBody<RotateSecretRequest>,
) -> Result<Json<NewSecret>, OAuthError> {
    let grace = request.grace_seconds.unwrap_or(0);
    if grace > MAX_GRACE_SECONDS {
        return Err(OAuthError::invalid_request(
            "grace_seconds may be at most 30 days",
        ));
    }
    let secret = registry::rotate_secret(
        &state.store,
        &state.digest_key,
        &client_id,
        std::time::Duration::from_secs(grace),
        admin.actor(),
        if_match,
    )
    .await;
    state.client_cache.invalidate(&client_id);
    let secret = secret?;
    Ok(Json(NewSecret {
        client_id,
        client_secret: Secret::new(secret.expose()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_is_serialised_but_never_in_debug() {
        let answer = NewSecret {
            client_id: "svc".into(),
            client_secret: Secret::new("tsr_cs_shown-once-only"),
        };
        assert!(!format!("{answer:?}").contains("shown-once-only"));
        let body = serde_json::to_string(&answer).unwrap();
        assert!(body.contains("tsr_cs_shown-once-only"));
    }
}
