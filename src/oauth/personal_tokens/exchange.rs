//! RFC 8693 token exchange of a personal or machine token
//! (`subject_token_type=urn:ietf:params:oauth:token-type:access_token`)
//! for a short-lived JWT access token (RFC 9068), so that the services
//! behind a gateway never handle the long-lived token.
//!
//! - The JWT's subject is the token's owner (`identity_kind` `human` or
//!   `service`), its scopes a subset of the token's, its lifetime the
//!   access-token lifetime, never past the token's own expiry.
//! - It names the token it came from (`token_id`): introspection and the
//!   admin API take it only while that token is live and not disabled.
//! - A token that is revoked, expired or disabled is refused with
//!   `invalid_request`, as RFC 8693 §2.2.2 says for an invalid
//!   `subject_token`.

use std::time::Duration;

use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::federation::exchange::issued_token_type;
use crate::oauth::bearer;
use crate::oauth::client::Client;
use crate::oauth::error::ErrorCode;
use crate::oauth::scope;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{Core, OAuthError};
use crate::tokens::access::AccessTokenRequest;
use crate::tokens::opaque::{OpaqueToken, TokenKind};

/// The `client_id` of a JWT exchanged without client authentication:
/// the personal or machine token's id after this prefix.
pub const EXCHANGED_CLIENT_PREFIX: &str = "token:";

pub async fn exchange(
    core: &Core,
    token: &str,
    client: Option<&Client>,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let presented = OpaqueToken::from_presented(token);
    let personal = presented
        .parse()
        .is_ok_and(|p| matches!(p.kind, TokenKind::Pat | TokenKind::Machine));
    if !personal {
        return Err(OAuthError::invalid_request(
            "a subject_token of type access_token must be a personal access token or a \
             machine token (tsr_pat_… or tsr_mt_…)",
        ));
    }
    let remote = context.remote;
    let inspected = match bearer::inspect(core, &presented).await {
        Ok(inspected) => inspected,
        Err((error, _)) if error.code == ErrorCode::TemporarilyUnavailable => return Err(error),
        Err((error, token_id)) => {
            if let Some(details) = core
                .auth_failures
                .failure_details(remote.as_deref(), &error.description)
            {
                let mut event = Event::new(Actor::anonymous(), "auth.failed", Outcome::Failure)
                    .remote(remote)
                    .details(details);
                if let Some(id) = token_id {
                    event = event.target(id);
                }
                event.record_via(&core.writer).await;
            }
            return Err(OAuthError::invalid_request(format!(
                "the subject_token cannot be exchanged: {}",
                error.description
            )));
        }
    };
    let issued_type = issued_token_type(request)?;
    let principal = &inspected.principal;
    let record = &inspected.record;
    let scopes = scope::grant_scopes(&principal.scopes, request.get("scope"))?;
    let issuer = core.config.issuer();
    let mut audiences = vec![issuer.to_owned()];
    let mut lifetime = core.config.tokens.access_token_lifetime;
    if principal.kind == ActorKind::Service {
        let user = core
            .service_user_cache
            .get(&core.store, &principal.id)
            .await?
            .ok_or_else(|| OAuthError::invalid_request("the token's service user is gone"))?;
        audiences.extend(user.user.audiences.iter().cloned());
        lifetime = user.user.token_lifetime(lifetime);
    }
    let audience = scope::grant_audience(&audiences, issuer.to_owned(), &request.targets())?;
    if let Some(exp) = record.expires_at {
        let left = u64::try_from(exp.saturating_sub(clock::now())).unwrap_or(0);
        lifetime = lifetime.min(Duration::from_secs(left));
    }
    core.token_uses.count(&inspected, remote.as_deref());
    let client_id = client.map_or_else(
        || format!("{EXCHANGED_CLIENT_PREFIX}{}", record.id),
        |c| c.client_id.clone(),
    );
    let (mut response, _) = crate::oauth::grants::issue_as(
        core,
        crate::oauth::grants::token_exchange::GRANT_TYPE,
        AccessTokenRequest {
            issuer,
            subject: &principal.id,
            client_id: &client_id,
            audience: &audience,
            scopes: &scopes,
            identity_kind: principal.kind.as_str(),
            lifetime,
            alg: client.map_or(crate::keys::Alg::ES256, |c| c.access_token_alg),
            delegation: None,
            source_token: Some(&record.id),
            named: None,
        },
        principal.actor(),
        remote,
    )
    .await?;
    response.issued_token_type = Some(issued_type);
    Ok(response)
}
