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

const MAX_TOKEN_CHARS: usize = 8192;
const MAX_POLICY_CHARS: usize = 64;

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustTestSpec {
    /// The CI job's OIDC token, as the job would present it (GitHub's and
    /// GitLab's are 1 to 2 KB).
    #[schema(min_length = 1, max_length = 8192)]
    pub token: String,
    /// Evaluate this policy only (by name); all of the issuer's otherwise.
    #[schema(max_length = 64)]
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
    responses((status = 200, body = TrustReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn test_trust(
    State(state): State<AppState>,
    Admin(_): Admin,
    JsonOrEmpty(spec): JsonOrEmpty<TrustTestSpec>,
) -> Result<Json<TrustReport>, OAuthError> {
    // Characters, as the document's maxLength counts them. The bounds keep
    // any body the document allows under server.max_body_bytes (64 KiB),
    // even with every character JSON-escaped.
    if spec.token.is_empty() || spec.token.chars().count() > MAX_TOKEN_CHARS {
        return Err(OAuthError::invalid_request(
            "token must be a JWT of 1 to 8192 characters",
        ));
    }
    if spec
        .policy
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_POLICY_CHARS)
    {
        return Err(OAuthError::invalid_request(
            "policy must be a policy name of at most 64 characters",
        ));
    }
    let report = exchange::dry_run(&state, &spec.token, spec.policy.as_deref()).await?;
    Ok(Json(report))
}
