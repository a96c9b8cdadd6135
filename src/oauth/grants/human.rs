//! What the two browser grants (authorization code, refresh token) share:
//! tokens for a person, an ID token beside the access token, and new
//! refresh tokens.

use super::{IssuedAccess, issue_as};
use crate::audit::{Actor, ActorKind};
use crate::oauth::client::{Client, GrantType};
use crate::oauth::token::TokenResponse;
use crate::oauth::{Core, ErrorCode, OAuthError, api_scopes};
use crate::store::{RefreshTokenRecord, UserRecord};
use crate::tokens::access::{AccessTokenRequest, Named};
use crate::tokens::id_token::{self, IdTokenRequest};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

/// What the tokens of one grant are about.
pub struct HumanGrant<'a> {
    pub client: &'a Client,
    pub user: &'a UserRecord,
    /// The scopes of this access token.
    pub scopes: &'a [String],
    pub auth_time: i64,
    pub amr: &'a [String],
    pub sid: Option<&'a str>,
    pub nonce: Option<&'a str>,
    /// The access token's `jti` and `exp`, when the grant stored them
    /// before minting (a redeemed code names its token as it is claimed).
    pub named: Option<Named<'a>>,
}

pub fn invalid_grant(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

/// The user a code or refresh token was issued for, if they may still get
/// tokens: deleted and disabled users may not.
///
/// Read through the user cache: a change reaches every grant within its
/// second (DESIGN.md's bound for revocation), and this replica's own admin
/// changes invalidate it at once.
pub async fn live_user(state: &Core, user_id: &str) -> Result<UserRecord, OAuthError> {
    match state.user_cache.get(&state.store, user_id).await? {
        Some(user) if !user.disabled => Ok(UserRecord::clone(&user)),
        _ => Err(invalid_grant("the user is disabled or no longer exists")),
    }
}

/// Mints the access token (RFC 9068, `identity_kind` human) and, when
/// `openid` is granted, the ID token (OIDC Core §3.1.3.3). Access tokens
/// that carry one of Tessera's API scopes name the issuer in `aud`.
pub async fn tokens(
    state: &Core,
    grant_type: &'static str,
    grant: &HumanGrant<'_>,
    remote: Option<String>,
) -> Result<(TokenResponse, IssuedAccess), OAuthError> {
    let client = grant.client;
    let mut audience = client.grant_audience(&[])?;
    let issuer = state.config.issuer();
    if grant
        .scopes
        .iter()
        .any(|s| api_scopes::ALL.contains(&s.as_str()))
        && !audience.iter().any(|a| a == issuer)
    {
        audience.push(issuer.to_owned());
    }
    let lifetime = access_lifetime(state, client);
    let actor = Actor {
        id: Some(grant.user.id.clone()),
        kind: ActorKind::Human,
        owner: None,
    };
    let (mut response, access) = issue_as(
        state,
        grant_type,
        AccessTokenRequest {
            issuer,
            subject: &grant.user.id,
            client_id: &client.client_id,
            audience: &audience,
            scopes: grant.scopes,
            identity_kind: "human",
            lifetime,
            alg: client.access_token_alg,
            delegation: None,
            source_token: None,
            named: grant.named,
        },
        actor,
        remote,
    )
    .await?;
    if grant.scopes.iter().any(|s| s == "openid") {
        let id_token = id_token::mint(
            state.keys.ring(),
            &IdTokenRequest {
                issuer,
                subject: &grant.user.id,
                client_id: &client.client_id,
                lifetime_secs: lifetime.as_secs() as i64,
                auth_time: grant.auth_time,
                nonce: grant.nonce,
                amr: grant.amr,
                sid: grant.sid,
                access_token: response.access_token.expose(),
                alg: client.id_token_signed_response_alg,
                now: crate::clock::now(),
            },
        )
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
        response.id_token = Some(crate::secret::Secret::new(id_token));
    }
    Ok((response, access))
}

/// How long the client's access tokens live.
pub fn access_lifetime(state: &Core, client: &Client) -> std::time::Duration {
    client.lifetime(
        state.config.tokens.access_token_lifetime,
        state.config.tokens.max_lifetime,
    )
}

/// Whether a grant with these scopes gets a refresh token: `offline_access`
/// granted (OIDC Core §11) to a client registered for `refresh_token`.
pub fn wants_refresh(client: &Client, scopes: &[String]) -> bool {
    client.may_use(GrantType::RefreshToken) && scopes.iter().any(|s| s == "offline_access")
}

/// The family a refresh token belongs to, and when the family ends.
pub struct Family<'a> {
    pub id: &'a str,
    pub expires_at: i64,
}

/// A new `tsr_rt_` token and the row that stores its digest.
#[allow(clippy::too_many_arguments)]
pub fn new_refresh(
    state: &Core,
    client: &Client,
    user_id: &str,
    session_id: Option<&str>,
    scopes: &[String],
    auth_time: i64,
    amr: &[String],
    family: Family<'_>,
    access: &IssuedAccess,
    now: i64,
) -> (OpaqueToken, RefreshTokenRecord) {
    let token = OpaqueToken::generate(TokenKind::Refresh);
    let lookup = token
        .parse()
        .map(|p| p.lookup)
        .expect("a generated token parses");
    let idle = state.config.tokens.refresh_idle_lifetime.as_secs() as i64;
    let record = RefreshTokenRecord {
        id: crate::random::new_id(),
        lookup,
        digest: token.digest(&state.digest_key),
        family_id: family.id.to_owned(),
        client_id: client.client_id.clone(),
        user_id: user_id.to_owned(),
        session_id: session_id.map(str::to_owned),
        scopes: scopes.join(" "),
        auth_time,
        amr: amr.join(" "),
        created_at: now,
        idle_expires_at: (now + idle).min(family.expires_at),
        family_expires_at: family.expires_at,
        used_at: None,
        revoked_at: None,
        access_jti: Some(access.jti.clone()),
        access_exp: Some(access.exp),
    };
    (token, record)
}

/// Puts a new refresh token into the answer, with the seconds until it
/// expires unused (`refresh_token_expires_in`).
pub fn hand_out(response: &mut TokenResponse, token: &OpaqueToken, expires_at: i64, now: i64) {
    response.refresh_token = Some(crate::secret::Secret::new(token.expose().to_owned()));
    response.refresh_token_expires_in = Some(expires_at.saturating_sub(now).max(0) as u64);
}

pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}
