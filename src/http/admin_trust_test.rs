//! `POST /admin/v1/trust/test`: the dry run behind `tessera trust test`
//! (issue 9 item 5). It checks a CI token exactly as the exchange does and
//! reports each check and each policy; it issues nothing and consumes no
//! `jti`, so the same token can still be exchanged afterwards.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{Admin, JsonOrEmpty};
use crate::federation::exchange::{self, TrustReport};
use crate::oauth::OAuthError;
use crate::oauth::error::ErrorBody;
use crate::server::AppState;

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustTestSpec {
    /// The CI job's OIDC token, as the job would present it.
    #[schema(min_length = 1, max_length = 16384)]
    pub token: String,
    /// Evaluate this policy only (by name); all of the issuer's otherwise.
    pub policy: Option<String>,
}

/// The job's token is a credential: `Debug` leaves it out.
impl std::fmt::Debug for TrustTestSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustTestSpec")
            .field("token", &"<redacted>")
            .field("policy", &self.policy)
            .finish()
    }
}

#[utoipa::path(post, path = "/admin/v1/trust/test", tag = "trust", request_body = TrustTestSpec,
    responses((status = 200, body = TrustReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn test_trust(
    State(state): State<AppState>,
    Admin(_): Admin,
    JsonOrEmpty(spec): JsonOrEmpty<TrustTestSpec>,
) -> Result<Json<TrustReport>, OAuthError> {
    if spec.token.is_empty() || spec.token.len() > 16384 {
        return Err(OAuthError::invalid_request(
            "token must be a JWT of at most 16384 bytes",
        ));
    }
    let report = exchange::dry_run(&state, &spec.token, spec.policy.as_deref()).await?;
    Ok(Json(report))
}
