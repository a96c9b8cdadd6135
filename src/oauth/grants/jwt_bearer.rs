//! RFC 7523 §2.1: the JWT-bearer grant, as ZITADEL's "JWT profile" uses it
//! for service users.
//!
//! Reads `assertion`, `scope`, `audience`/`resource`. The assertion's `iss`
//! and `sub` are the service user's id, its `aud` is the issuer (or the
//! token endpoint) alone, `exp` is at most an hour ahead and `iat` at most
//! an hour old, as ZITADEL allows, and it is single-use: by its `jti`, or
//! as a whole when it has none, as ZITADEL's SDKs send it. Client
//! authentication is optional (RFC 7523 §3.1); a client that does
//! authenticate must be registered for this grant.
//!
//! An assertion whose `iss` is a trusted CI issuer is a CI job's token
//! instead, judged by the trust policies (`federation::exchange`).

use std::time::Duration;

use crate::federation::exchange::{self, Carrier};
use crate::oauth::Core;
use crate::oauth::assertion::{self, AssertionError, Expectations, ReplayKey};
use crate::oauth::client::GrantType;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::{ErrorCode, OAuthError, scope};
use crate::tokens::access::AccessTokenRequest;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How old `iat`, and how far ahead `exp`, may be: ZITADEL's limits, which
/// its SDKs sign to (`exp` = `iat` + 1 hour).
const MAX_ASSERTION_AGE: Duration = Duration::from_secs(3600);
const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

fn invalid_grant(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

pub async fn grant(
    state: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let client = super::optional_client(state, request, &context, GrantType::JwtBearer).await?;
    let token = request.require("assertion")?;
    // Dispatch on the assertion's issuer: a CI platform an administrator
    // trusts, or a service user (whose id is its `iss`). Never one after
    // the other: a token is judged by one set of rules only.
    if let Some(issuer) = exchange::unverified_issuer(token)
        && state.trust.get(&state.store, &issuer).await?.is_some()
    {
        return exchange::exchange(
            state,
            token,
            Carrier::JwtBearer,
            client.as_ref(),
            request,
            context,
        )
        .await;
    }
    let subject = assertion::unverified_subject(token)
        .ok_or_else(|| invalid_grant("the assertion is not a well-formed signed JWT"))?;
    let cached = state
        .service_user_cache
        .get(&state.store, &subject)
        .await?
        .ok_or_else(|| invalid_grant("the assertion's subject is not a service user"))?;
    let audiences = assertion::audiences(&state.config);
    let expect = Expectations {
        subject: &subject,
        audiences: &audiences,
        max_lifetime: MAX_ASSERTION_LIFETIME,
        max_age: Some(MAX_ASSERTION_AGE),
        replay_key: ReplayKey::JtiOrAssertion,
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
    assertion::consume_once(&state.writer, token, &claims, &expect).await?;

    let user = &cached.user;
    if !user.enabled {
        return Err(invalid_grant("the service user is disabled"));
    }
    let issuer = state.config.issuer();
    let asked =
        scope::service_user_request(&user.scopes, &user.audiences, issuer, request.get("scope"))?;
    let default_audience = user
        .audiences
        .first()
        .cloned()
        .unwrap_or_else(|| issuer.to_owned());
    let mut audience =
        scope::grant_audience(&user.audiences, default_audience, &request.targets())?;
    for extra in asked.audiences {
        if !audience.contains(&extra) {
            audience.push(extra);
        }
    }
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
            scopes: &asked.scopes,
            identity_kind: "service",
            lifetime: user.token_lifetime(
                client.as_ref().map_or(tokens.access_token_lifetime, |c| {
                    c.lifetime(tokens.access_token_lifetime, tokens.max_lifetime)
                }),
            ),
            alg: client
                .as_ref()
                .map_or(crate::keys::Alg::ES256, |c| c.access_token_alg),
            delegation: None,
            source_token: None,
            named: None,
        },
        context.remote,
    )
    .await
}
