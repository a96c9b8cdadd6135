//! RFC 7523 §2.1: the JWT-bearer grant, as ZITADEL's "JWT profile" uses it
//! for service users.
//!
//! Reads `assertion`, `scope`, `audience`/`resource`. The assertion's `iss`
//! and `sub` are the service user's id, its `aud` contains the issuer, `exp`
//! is required, `iat` is at most an hour old, and its `jti` is single-use.
//! Client authentication is optional (RFC 7523 §3.1); a client that does
//! authenticate must be registered for this grant.

use std::time::Duration;

use crate::oauth::Core;
use crate::oauth::assertion::{self, AssertionError, Expectations};
use crate::oauth::client::GrantType;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{ErrorCode, OAuthError, client_auth, scope};
use crate::tokens::access::AccessTokenRequest;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const MAX_ASSERTION_AGE: Duration = Duration::from_secs(3600);

fn invalid_grant(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

pub async fn grant(
    state: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let presented = request.credentials(context.basic);
    let client = if presented.methods_presented() > 0 {
        let client = client_auth::authenticate(state, &presented, context.remote.clone()).await?;
        if !client.may_use(GrantType::JwtBearer) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not allowed to use the jwt-bearer grant",
            ));
        }
        Some(client)
    } else {
        None
    };

    let token = request.require("assertion")?;
    let subject = assertion::unverified_subject(token)
        .ok_or_else(|| invalid_grant("the assertion is not a well-formed signed JWT"))?;
    let cached = state
        .service_user_cache
        .get(&state.store, &subject)
        .await?
        .ok_or_else(|| invalid_grant("the assertion's subject is not a service user"))?;
    let audiences = [state.config.issuer().to_owned()];
    let expect = Expectations {
        subject: &subject,
        audiences: &audiences,
        max_lifetime: None,
        max_age: Some(MAX_ASSERTION_AGE),
        error: ErrorCode::InvalidGrant,
    };
    let claims = match assertion::verify(token, &cached.jwks, &expect) {
        Ok(claims) => claims,
        Err(AssertionError::UnknownKey) => {
            return Err(invalid_grant(
                "no current key of the service user matches the assertion's kid",
            ));
        }
        Err(AssertionError::Invalid(e)) => return Err(e),
    };
    assertion::consume_once(&state.writer, &claims, ErrorCode::InvalidGrant).await?;

    let user = &cached.user;
    let scopes = scope::grant_scopes(&user.scopes, request.get("scope"))?;
    let default_audience = user
        .audiences
        .first()
        .cloned()
        .unwrap_or_else(|| state.config.issuer().to_owned());
    let audience = scope::grant_audience(&user.audiences, default_audience, &request.targets())?;
    let client_id = client
        .as_ref()
        .map_or(user.id.as_str(), |c| c.client_id.as_str());
    let tokens = &state.config.tokens;
    super::issue(
        state,
        GRANT_TYPE,
        AccessTokenRequest {
            issuer: state.config.issuer(),
            subject: &user.id,
            client_id,
            audience: &audience,
            scopes: &scopes,
            identity_kind: "service",
            lifetime: client.as_ref().map_or(tokens.access_token_lifetime, |c| {
                c.lifetime(tokens.access_token_lifetime, tokens.max_lifetime)
            }),
            alg: client
                .as_ref()
                .map_or(crate::keys::Alg::ES256, |c| c.access_token_alg),
        },
        context.remote,
    )
    .await
}
