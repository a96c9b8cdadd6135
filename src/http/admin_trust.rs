//! `/admin/v1/trust`: trusted issuers and trust policies for CI federation
//! (issue 9). Thin handlers over `federation::admin`. An issuer's URL is
//! one path segment, percent-encoded (`https%3A%2F%2Fgitlab.com`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::admin::{Body, IfMatch, Tagged, created_headers};
use super::extract::{Admin, Path};
use crate::federation::admin;
use crate::federation::model::{
    TrustPolicy, TrustPolicyPatch, TrustPolicySpec, TrustedIssuer, TrustedIssuerSpec,
};
use crate::oauth::OAuthError;
use crate::oauth::error::ErrorBody;
use crate::server::AppState;
use crate::store::Change;

#[derive(Debug, Serialize, ToSchema)]
pub struct TrustedIssuerList {
    pub issuers: Vec<TrustedIssuer>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrustPolicyList {
    pub policies: Vec<TrustPolicy>,
}

/// This replica forgets its cached trusts at once; the others hear the
/// change from the database (PostgreSQL) or serve one process (SQLite).
async fn forget_cached_trusts(state: &AppState) {
    // Only a key reload can fail, and a trust change reloads no key.
    let _ = state.apply_change(Change::Trust).await;
}

/// The issuer's path: its URL as one percent-encoded segment.
fn issuer_location(issuer: &str) -> String {
    let segment: String =
        percent_encoding::utf8_percent_encode(issuer, percent_encoding::NON_ALPHANUMERIC).collect();
    format!("/admin/v1/trust/issuers/{segment}")
}

/// Trusts an issuer: its exact URL, the algorithms its tokens may use, the
/// longest lifetime its tokens may have, and optionally a static JWK Set.
#[utoipa::path(post, path = "/admin/v1/trust/issuers", tag = "trust", request_body = TrustedIssuerSpec,
    responses((status = 201, body = TrustedIssuer, headers(("ETag" = String), ("Location" = String))), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn create_trusted_issuer(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(spec): Body<TrustedIssuerSpec>,
) -> Result<(StatusCode, [(HeaderName, String); 2], Json<TrustedIssuer>), OAuthError> {
    let issuer = admin::create_issuer(&state.store, spec, admin.actor()).await?;
    forget_cached_trusts(&state).await;
    let headers = created_headers(&issuer_location(&issuer.issuer), &issuer);
    Ok((StatusCode::CREATED, headers, Json(issuer)))
}

#[utoipa::path(get, path = "/admin/v1/trust/issuers", tag = "trust",
    responses((status = 200, body = TrustedIssuerList)))]
pub(super) async fn list_trusted_issuers(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<TrustedIssuerList>, OAuthError> {
    Ok(Json(TrustedIssuerList {
        issuers: admin::list_issuers(&state.store).await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/trust/issuers/{issuer}", tag = "trust",
    params(("issuer" = String, Path, description = "The issuer URL, percent-encoded as one path segment", example = "https://token.actions.githubusercontent.com")),
    responses((status = 200, body = TrustedIssuer, headers(("ETag" = String))), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_trusted_issuer(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(issuer): Path<String>,
) -> Result<Tagged<TrustedIssuer>, OAuthError> {
    let issuer = admin::get_issuer(&state.store, &issuer).await?;
    Ok(Tagged(StatusCode::OK, issuer))
}

/// Stops trusting the issuer. Refused (409) while a policy names it; with
/// `If-Match`, only if it has not changed since it was read (412).
#[utoipa::path(delete, path = "/admin/v1/trust/issuers/{issuer}", tag = "trust",
    params(("issuer" = String, Path, description = "The issuer URL, percent-encoded as one path segment", example = "https://token.actions.githubusercontent.com")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub(super) async fn delete_trusted_issuer(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(issuer): Path<String>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode, OAuthError> {
    admin::delete_issuer(&state.store, &issuer, admin.actor(), if_match).await?;
    forget_cached_trusts(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a trust policy: which tokens of a trusted issuer (conditions on
/// their claims) act as which service user, with which scopes, for how
/// long.
#[utoipa::path(post, path = "/admin/v1/trust/policies", tag = "trust", request_body = TrustPolicySpec,
    responses((status = 201, body = TrustPolicy, headers(("ETag" = String), ("Location" = String))), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn create_trust_policy(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(spec): Body<TrustPolicySpec>,
) -> Result<(StatusCode, [(HeaderName, String); 2], Json<TrustPolicy>), OAuthError> {
    let audience = state.config.issuer().to_owned();
    let policy = admin::create_policy(&state.store, spec, &audience, admin.actor()).await?;
    forget_cached_trusts(&state).await;
    let headers = created_headers(
        &format!("/admin/v1/trust/policies/{}", policy.name),
        &policy,
    );
    Ok((StatusCode::CREATED, headers, Json(policy)))
}

#[utoipa::path(get, path = "/admin/v1/trust/policies", tag = "trust",
    responses((status = 200, body = TrustPolicyList)))]
pub(super) async fn list_trust_policies(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<TrustPolicyList>, OAuthError> {
    Ok(Json(TrustPolicyList {
        policies: admin::list_policies(&state.store).await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/trust/policies/{name}", tag = "trust",
    params(("name" = String, Path)),
    responses((status = 200, body = TrustPolicy, headers(("ETag" = String))), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_trust_policy(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> Result<Tagged<TrustPolicy>, OAuthError> {
    let policy = admin::get_policy(&state.store, &name).await?;
    Ok(Tagged(StatusCode::OK, policy))
}

/// Changes the fields present in the body (`conditions` replaced whole).
/// With `If-Match`, only if the policy has not changed since it was read
/// (RFC 9110 §13.1.1): 412 otherwise.
#[utoipa::path(patch, path = "/admin/v1/trust/policies/{name}", tag = "trust", request_body = TrustPolicyPatch,
    params(("name" = String, Path)),
    responses((status = 200, body = TrustPolicy, headers(("ETag" = String))), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn update_trust_policy(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    IfMatch(if_match): IfMatch,
    Body(patch): Body<TrustPolicyPatch>,
) -> Result<Tagged<TrustPolicy>, OAuthError> {
    let updated = admin::update_policy(&state.store, &name, patch, admin.actor(), if_match).await;
    forget_cached_trusts(&state).await;
    Ok(Tagged(StatusCode::OK, updated?))
}

/// Deletes the policy. With `If-Match`, only if it has not changed since it
/// was read (412 otherwise).
#[utoipa::path(delete, path = "/admin/v1/trust/policies/{name}", tag = "trust",
    params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub(super) async fn delete_trust_policy(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode, OAuthError> {
    admin::delete_policy(&state.store, &name, admin.actor(), if_match).await?;
    forget_cached_trusts(&state).await;
    Ok(StatusCode::NO_CONTENT)
}
