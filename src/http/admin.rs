//! The admin API under `/admin/v1`. Every route takes an administrator's
//! bearer token. The OpenAPI document is generated from these handlers
//! (utoipa), so it cannot drift from the code.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin_agents as agents;
use super::admin_clients;
use super::admin_mfa;
use super::admin_service_users as svc;
use super::admin_tokens as tokens;
use super::admin_trust as trust;
use super::admin_trust_test;
use super::admin_users as users;
use super::extract::{Admin, Query, body_rejection, json_body};
use crate::audit::ActorKind;
use crate::clock;
use crate::keys::{Alg, KeyStatus, Rotated};
use crate::oauth::bearer::Principal;
use crate::oauth::error::ErrorBody;
use crate::oauth::{OAuthError, etag};
use crate::server::AppState;
use crate::store::{AuditFilter, AuditStore};

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera admin API", version = "1"),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ActorKind, Alg, KeyStatus, AuditOutcome))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(SCOPES_DESCRIPTION.to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The bearer scheme's description: which tokens the API takes and what
/// each of its scopes reaches (`oauth::api_scopes`).
const SCOPES_DESCRIPTION: &str = "An opaque `tsr_` token (the bootstrap administrator's, a \
service user's), or an administrator's access token from Tessera whose `aud` holds Tessera's \
issuer URL. Scopes: `admin` reaches every operation (administrators only); `admin:read` every \
GET (administrators only); `audit:read` GET /admin/v1/audit (administrators only); \
`tokens:self` a person's or service user's own tokens. A token with none of these reaches \
GET /admin/v1/whoami only; anything else is 403 `insufficient_scope` (RFC 6750 section 3.1).";

/// What an operation with path or query parameters can answer before its
/// handler runs: `nul_guard` refuses a NUL, the extractors a value that does
/// not decode (`admin_openapi::parameters_without_nul` says the first in
/// each parameter's schema).
const MALFORMED_URL_PARAMETER: &str =
    "invalid_request: a path or query parameter holds a NUL character or does not decode";

/// Answers every operation can give, whatever its parameters: a missing or
/// bad token (RFC 6750 §3.1), a token without the admin scope, and the
/// database being unreachable; and a malformed parameter where it has any.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let common = [
            (
                "401",
                "invalid_token: the bearer token is missing, unknown, expired or revoked",
            ),
            (
                "403",
                "insufficient_scope: the token is not an administrator's, or lacks the scope \
                 (`admin`; for a GET `admin:read`; for the audit log `audit:read`)",
            ),
            (
                "503",
                "temporarily_unavailable: the database cannot be reached; retry",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
                let in_url = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query));
                if in_url {
                    operation
                        .responses
                        .responses
                        .entry("400".to_owned())
                        .or_insert_with(|| error(MALFORMED_URL_PARAMETER).into());
                }
            }
        }
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(whoami))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
        .routes(routes!(list_audit))
        .routes(routes!(
            admin_clients::create_client,
            admin_clients::list_clients
        ))
        .routes(routes!(
            admin_clients::get_client,
            admin_clients::update_client,
            admin_clients::delete_client
        ))
        .routes(routes!(admin_clients::rotate_client_secret))
        .routes(routes!(svc::create_service_user, svc::list_service_users))
        .routes(routes!(
            svc::get_service_user,
            svc::update_service_user,
            svc::delete_service_user
        ))
        .routes(routes!(svc::add_key, svc::list_keys))
        .routes(routes!(svc::remove_key))
        .routes(routes!(
            trust::create_trusted_issuer,
            trust::list_trusted_issuers
        ))
        .routes(routes!(
            trust::get_trusted_issuer,
            trust::delete_trusted_issuer
        ))
        .routes(routes!(
            trust::create_trust_policy,
            trust::list_trust_policies
        ))
        .routes(routes!(
            trust::get_trust_policy,
            trust::update_trust_policy,
            trust::delete_trust_policy
        ))
        .routes(routes!(admin_trust_test::test_trust))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(users::disable_user))
        .routes(routes!(users::enable_user))
        .routes(routes!(users::set_password))
        .routes(routes!(admin_mfa::reset_mfa))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::get_token))
        .routes(routes!(tokens::disable_token))
        .routes(routes!(tokens::enable_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(tokens::roll_token))
        .routes(routes!(tokens::transfer_token))
        .routes(routes!(agents::create_bootstrap, agents::list_bootstraps))
        .routes(routes!(agents::revoke_bootstrap))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::get_agent, agents::delete_agent))
        .routes(routes!(agents::disable_agent))
        .routes(routes!(agents::enable_agent))
}

/// `If-Match` (RFC 9110 §13.1.1), for safe read-modify-write of a resource.
pub(super) struct IfMatch(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // RFC 9110 §5.3: several field lines are one comma-separated list.
        let mut lines = Vec::new();
        for value in parts.headers.get_all(IF_MATCH) {
            let text = value
                .to_str()
                .map_err(|_| OAuthError::invalid_request("If-Match is not valid text"))?;
            lines.push(text);
        }
        Ok(IfMatch((!lines.is_empty()).then(|| lines.join(","))))
    }
}

/// A resource with its `ETag` (RFC 9110 §8.8.3).
pub(super) struct Tagged<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        let tag = etag::of(&self.1);
        (self.0, [(ETAG, tag)], Json(self.1)).into_response()
    }
}

/// `Location` and `ETag` of a resource just created (RFC 9110 §15.3.2).
pub(super) fn created_headers(
    location: &str,
    resource: &impl Serialize,
) -> [(HeaderName, String); 2] {
    [(LOCATION, location.to_owned()), (ETAG, etag::of(resource))]
}

/// Each operation's security requirement names the scopes that reach it
/// (OpenAPI 3.1 §4.8.30: role names for a non-OAuth scheme), one
/// alternative per scope, by the rules of `api_scopes::permits`.
struct OperationScopes;

impl Modify for OperationScopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use crate::oauth::api_scopes::{self, ADMIN, ADMIN_READ, AUDIT_READ, TOKENS_SELF};
        use utoipa::openapi::security::SecurityRequirement;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (true, &mut item.get),
                (false, &mut item.post),
                (false, &mut item.patch),
                (false, &mut item.put),
                (false, &mut item.delete),
            ];
            for (read, operation) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let scopes: &[&str] = if path == api_scopes::WHOAMI_PATH {
                    &[]
                } else if api_scopes::is_tokens_path(path) && read {
                    &[TOKENS_SELF, ADMIN, ADMIN_READ]
                } else if api_scopes::is_tokens_path(path) {
                    &[TOKENS_SELF, ADMIN]
                } else if read && path == api_scopes::AUDIT_PATH {
                    &[ADMIN, ADMIN_READ, AUDIT_READ]
                } else if read {
                    &[ADMIN, ADMIN_READ]
                } else {
                    &[ADMIN]
                };
                operation.security = Some(if scopes.is_empty() {
                    vec![SecurityRequirement::new("bearer", Vec::<String>::new())]
                } else {
                    scopes
                        .iter()
                        .map(|scope| SecurityRequirement::new("bearer", [*scope]))
                        .collect()
                });
            }
        }
    }
}

/// A registration needs a name, an update does not: `POST /clients`
/// takes `ClientSpec` with `name` required.
struct NewClientSchema;

impl Modify for NewClientSchema {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(RefOr::T(Schema::Object(spec))) = components.schemas.get("ClientSpec") else {
            return;
        };
        let mut registration = spec.clone();
        registration.required.push("name".to_owned());
        registration.properties.insert(
            "name".to_owned(),
            crate::oauth::client::name_schema().into(),
        );
        components
            .schemas
            .insert("ClientRegistration".to_owned(), registration.into());
        let body = openapi
            .paths
            .paths
            .get_mut("/admin/v1/clients")
            .and_then(|item| item.post.as_mut())
            .and_then(|post| post.request_body.as_mut())
            .and_then(|body| body.content.get_mut("application/json"));
        if let Some(content) = body {
            content.schema = Some(Ref::from_schema_name("ClientRegistration").into());
        }
    }
}

/// A JSON request body, strictly: anything but one JSON value of `T` is
/// `invalid_request`. With `OPTIONAL`, no body at all means `T::default()`.
pub(super) struct Body<T, const OPTIONAL: bool = false>(pub T);

pub(super) type OptionalBody<T> = Body<T, true>;

impl<S, T, const OPTIONAL: bool> FromRequest<S> for Body<T, OPTIONAL>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if bytes.is_empty() && OPTIONAL {
            return Ok(Body(T::default()));
        }
        json_body(&bytes).map(Body)
    }
}

/// The generated OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut spec = api().split_for_parts().1;
    // After the routes are in: modifiers on `ApiDoc` see no operations.
    CommonResponses.modify(&mut spec);
    OperationScopes.modify(&mut spec);
    NewClientSchema.modify(&mut spec);
    spec
}

pub fn routes() -> axum::Router<AppState> {
    let (router, _) = api().split_for_parts();
    let spec = Arc::new(serde_json::to_value(openapi()).unwrap_or_default());
    router.route(
        "/admin/v1/openapi.json",
        get(move |State(state): State<AppState>| {
            let mut document = (*spec).clone();
            let max_lifetime = state.config.tokens.max_lifetime.as_secs();
            super::admin_openapi::refine(&mut document, max_lifetime);
            super::admin_openapi::refine_tokens(&mut document, &state.config.personal_tokens);
            super::admin_openapi::refine_agents(&mut document, &state.config);
            async move { Json(document) }
        }),
    )
}

/// The identity behind the presented token.
#[utoipa::path(get, path = "/admin/v1/whoami", tag = "admin",
    responses((status = 200, body = Principal), (status = 401, body = ErrorBody)))]
async fn whoami(Admin(principal): Admin) -> Json<Principal> {
    Json(principal)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: Alg,
    pub generation: i64,
    pub status: KeyStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when it signs (or signed) its first token.
    pub activates_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// Every signing key with its status.
#[utoipa::path(get, path = "/admin/v1/keys", tag = "keys",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<KeyList>, OAuthError> {
    let set = state
        .keys
        .ring()
        .get()
        .ok_or_else(|| OAuthError::unavailable("signing keys are not loaded yet"))?;
    let now = clock::now();
    let keys = set
        .keys()
        .iter()
        .map(|k| KeyView {
            kid: k.kid.clone(),
            alg: k.alg,
            generation: k.generation,
            status: set.status(k, now, state.keys.max_lifetime()),
            created_at: clock::rfc3339(k.created_at),
            activates_at: clock::rfc3339(k.activates_at),
        })
        .collect();
    Ok(Json(KeyList { keys }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Rotate only this algorithm; both when absent.
    pub alg: Option<Alg>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotateResponse {
    pub rotated: Vec<Rotated>,
}

/// Stores the next key of each (or one) algorithm. It is published at once
/// and signs one maximum token lifetime later.
#[utoipa::path(post, path = "/admin/v1/keys/rotate", tag = "keys",
    request_body(content = Option<RotateRequest>, description = "empty body rotates both algorithms"),
    responses((status = 200, body = RotateResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn rotate_keys(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Body(request): OptionalBody<Option<RotateRequest>>,
) -> Result<Json<RotateResponse>, OAuthError> {
    let algs = match request.and_then(|r| r.alg) {
        Some(alg) => vec![alg],
        None => Alg::ALL.to_vec(),
    };
    let mut rotated = Vec::new();
    for alg in algs {
        rotated.push(state.keys.rotate(alg, principal.actor()).await?);
    }
    Ok(Json(RotateResponse { rotated }))
}

const DEFAULT_AUDIT_PAGE: i64 = 50;
const MAX_AUDIT_PAGE: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
// A query parameter is absent or a string, never `null`.
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[param(nullable = false)]
    pub action: Option<String>,
    #[param(nullable = false)]
    pub actor_id: Option<String>,
    #[param(nullable = false)]
    pub actor_kind: Option<ActorKind>,
    /// A personal or machine token's id: its lifecycle, its uses (it is
    /// the actor) and uses refused after expiry, revocation or disabling.
    #[param(nullable = false, max_length = 64, pattern = "^[A-Za-z0-9-]{1,64}$")]
    pub token: Option<String>,
    #[param(nullable = false)]
    pub outcome: Option<AuditOutcome>,
    /// RFC 3339; events at or after it.
    #[param(format = DateTime, nullable = false)]
    pub since: Option<String>,
    /// RFC 3339; events before it.
    #[param(format = DateTime, nullable = false)]
    pub until: Option<String>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 500, nullable = false)]
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    #[param(pattern = "^[0-9]{1,18}$", nullable = false)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Success,
    Failure,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub actor_id: Option<String>,
    pub actor_kind: String,
    pub action: String,
    pub target: Option<String>,
    pub client_id: Option<String>,
    pub remote_addr: Option<String>,
    pub outcome: String,
    pub details: serde_json::Value,
    /// When the actor is a personal or machine token: its owner's id.
    pub actor_owner: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Audit events, newest first, with filters and cursor paging.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, OAuthError> {
    if query.token.as_deref().is_some_and(|t| {
        t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        return Err(OAuthError::invalid_request("token must be a token id"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(OAuthError::invalid_request(
            "limit must be between 1 and 500",
        ));
    }
    let before_id = query
        .cursor
        .as_deref()
        .map(|c| match c.len() {
            // Exactly the documented pattern, ^[0-9]{1,18}$: no sign, no overflow.
            1..=18 if c.bytes().all(|b| b.is_ascii_digit()) => Ok(c.parse::<i64>().unwrap_or(0)),
            _ => Err(OAuthError::invalid_request("cursor is not valid")),
        })
        .transpose()?;
    let filter = AuditFilter {
        action: query.action,
        actor_id: query.actor_id,
        actor_kind: query.actor_kind.map(|k| k.as_str().to_owned()),
        token: query.token,
        outcome: query.outcome.map(|o| {
            match o {
                AuditOutcome::Success => "success",
                AuditOutcome::Failure => "failure",
            }
            .to_owned()
        }),
        since_ms: query
            .since
            .as_deref()
            .map(|t| parse_time(t, "since"))
            .transpose()?,
        until_ms: query
            .until
            .as_deref()
            .map(|t| parse_time(t, "until"))
            .transpose()?,
        before_id,
        limit: limit + 1,
    };
    // Read-your-writes: events queued on this replica are stored first.
    state.writer.flush().await;
    let mut records = state.store.list_audit(filter).await?;
    let more = records.len() as i64 > limit;
    records.truncate(limit as usize);
    let next_cursor = if more {
        records.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let events = records
        .into_iter()
        .map(|r| AuditEventView {
            id: r.id,
            time: clock::rfc3339_ms(r.occurred_at_ms),
            actor_id: r.actor_id,
            actor_kind: r.actor_kind,
            action: r.action,
            target: r.target,
            client_id: r.client_id,
            remote_addr: r.remote_addr,
            outcome: r.outcome,
            details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
            actor_owner: r.actor_owner,
        })
        .collect();
    Ok(Json(AuditPage {
        events,
        next_cursor,
    }))
}

/// RFC 3339 §5.6 `date-time`, as the document's `format: date-time` says.
fn parse_time(text: &str, name: &str) -> Result<i64, OAuthError> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| OAuthError::invalid_request(format!("{name} must be an RFC 3339 time")))?;
    Ok((time.unix_timestamp_nanos() / 1_000_000) as i64)
}
