//! Dynamic client registration for agents: RFC 7591 with the bootstrap
//! token as the initial access token (§3), and RFC 7592's client
//! configuration endpoint for reading, updating (the key rotation) and
//! deleting the registration with its registration access token.
//!
//! There is no open registration: without a valid bootstrap token the
//! answer is RFC 6750's `invalid_token`. The registration access token
//! (`tsr_ra_…`) is replaced on every use and dies with the key it came
//! with, so a stale or stolen copy stops working as soon as the agent
//! uses its own.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::CLIENT_ID_PREFIX;
use super::metadata::{self, AUTH_METHOD, AgentMetadata, invalid};
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::oauth::client::{Client, GrantType};
use crate::oauth::error::named;
use crate::oauth::{Core, OAuthError, bearer};
use crate::random::random_base62;
use crate::store::{AgentRecord, AgentStore, AgentWithClient, BootstrapRefused};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

/// Where the registration endpoint is served (RFC 7591 §3), and under it
/// each agent's client configuration endpoint (RFC 7592 §2).
pub const REGISTRATION_PATH: &str = "/oauth/register";

/// RFC 7591 §3.2.1 and RFC 7592 §3: the client information response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientInformation {
    pub client_id: String,
    pub client_id_issued_at: i64,
    pub client_name: String,
    pub grant_types: Vec<&'static str>,
    pub token_endpoint_auth_method: &'static str,
    /// Agents use no redirects and no authorization endpoint.
    pub redirect_uris: Vec<String>,
    pub response_types: Vec<String>,
    #[schema(value_type = Object)]
    pub jwks: Value,
    pub scope: String,
    #[schema(value_type = String)]
    pub registration_access_token: RegistrationToken,
    pub registration_client_uri: String,
    /// Tessera's: when the key expires (Unix seconds). Send the next one
    /// before then (a `PUT` on `registration_client_uri`).
    pub key_expires_at: i64,
}

/// The registration access token, serialised for its one showing.
pub struct RegistrationToken(OpaqueToken);

impl Serialize for RegistrationToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

impl std::fmt::Debug for RegistrationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

pub(super) fn information(
    core: &Core,
    rows: &AgentWithClient,
    token: OpaqueToken,
) -> ClientInformation {
    let (client, agent) = rows;
    ClientInformation {
        client_id: client.id.clone(),
        client_id_issued_at: agent.created_at,
        client_name: client.name.clone(),
        grant_types: vec![GrantType::ClientCredentials.as_str()],
        token_endpoint_auth_method: AUTH_METHOD,
        redirect_uris: Vec::new(),
        response_types: Vec::new(),
        jwks: client
            .jwks
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or(Value::Null),
        scope: client.scopes.clone(),
        registration_access_token: RegistrationToken(token),
        registration_client_uri: client_uri(core, &client.id),
        key_expires_at: agent.key_expires_at,
    }
}

pub fn client_uri(core: &Core, client_id: &str) -> String {
    format!(
        "{}{REGISTRATION_PATH}/{client_id}",
        core.config.issuer().trim_end_matches('/')
    )
}

fn refused(reason: BootstrapRefused) -> OAuthError {
    OAuthError::invalid_token(match reason {
        BootstrapRefused::Unknown => "the bootstrap token is unknown",
        BootstrapRefused::Revoked => "the bootstrap token was revoked",
        BootstrapRefused::Expired => "the bootstrap token expired: ask for a new one",
        BootstrapRefused::UsedUp => "the bootstrap token was already used: ask for a new one",
        BootstrapRefused::ServiceUserUnavailable => {
            "the bootstrap token's service user is disabled or deleted"
        }
    })
}

/// The bootstrap token's row, if `presented` is one of ours and matches;
/// what it can tell before the store takes a use of it.
async fn bootstrap_row(
    core: &Core,
    presented: &OpaqueToken,
) -> Result<crate::store::AccessTokenRecord, (OAuthError, Option<String>)> {
    let is_bootstrap = presented
        .parse()
        .is_ok_and(|p| p.kind == TokenKind::AgentBootstrap);
    if !is_bootstrap {
        return Err((
            OAuthError::invalid_token("registration needs an agent bootstrap token (tsr_ab_...)"),
            None,
        ));
    }
    let record = bearer::find(core, presented)
        .await?
        .ok_or_else(|| (refused(BootstrapRefused::Unknown), None))?;
    let now = clock::now();
    let id = Some(record.id.clone());
    if record.revoked_at.is_some() {
        return Err((refused(BootstrapRefused::Revoked), id));
    }
    if record.expires_at.is_none_or(|at| at <= now) {
        return Err((refused(BootstrapRefused::Expired), id));
    }
    if record.use_count >= record.max_uses.unwrap_or(0) {
        return Err((refused(BootstrapRefused::UsedUp), id));
    }
    Ok((*record).clone())
}

/// Audits a refused registration or configuration call, as far as
/// `Core::auth_failures` lets each source (a flood costs a few rows).
pub(super) async fn audit_refusal(
    core: &Core,
    error: &OAuthError,
    target: Option<String>,
    remote: Option<String>,
) {
    let Some(details) = core
        .auth_failures
        .failure_details(remote.as_deref(), &error.description)
    else {
        return;
    };
    let mut event = Event::new(
        Actor::anonymous(),
        "agent.registration_refused",
        Outcome::Failure,
    )
    .remote(remote)
    .details(details);
    if let Some(target) = target {
        event = event.target(target);
    }
    event.record_via(&core.writer).await;
}

/// RFC 7591 §3.1: registers an agent with a bootstrap token.
pub async fn register(
    core: &Core,
    presented: &OpaqueToken,
    body: &[u8],
    remote: Option<String>,
) -> Result<ClientInformation, OAuthError> {
    let bootstrap = match bootstrap_row(core, presented).await {
        Ok(row) => row,
        Err((error, id)) => {
            audit_refusal(core, &error, id, remote).await;
            return Err(error);
        }
    };
    let service_user = core
        .service_user_cache
        .get(&core.store, &bootstrap.owner_id)
        .await?
        .filter(|u| u.user.enabled)
        .ok_or_else(|| refused(BootstrapRefused::ServiceUserUnavailable))?;
    let requested = metadata::check(&metadata::parse(body)?, core.config.agents.allow_p256)?;
    let scopes = within(&requested, &service_user.user.scopes)?;

    let now = clock::now();
    let config = &core.config.agents;
    let client_id = format!("{CLIENT_ID_PREFIX}{}", random_base62(24));
    let mut client = Client::blank(client_id.clone(), now);
    client.name = requested.name.clone();
    client.token_endpoint_auth_method = crate::oauth::client::AuthMethod::PrivateKeyJwt;
    client.scopes = scopes;
    client.access_token_lifetime = Some(config.access_token_lifetime.as_secs());
    client.jwks = Some(requested.jwks.clone());
    client.require_pkce = false;
    let token = OpaqueToken::generate(TokenKind::RegistrationAccess);
    let agent = AgentRecord {
        client_id: client_id.clone(),
        service_user_id: service_user.user.id.clone(),
        bootstrap_id: Some(bootstrap.id.clone()),
        registered_ip: remote.clone(),
        key_expires_at: now.saturating_add(secs(config.key_lifetime)),
        previous_jwks: None,
        previous_key_expires_at: None,
        registration_digest: token.digest(&core.digest_key),
        previous_registration_digest: None,
        rotated_at: None,
        last_token_at: None,
        created_at: now,
    };
    let actor = Actor::service(service_user.user.id.clone());
    let registered = Event::new(actor.clone(), "agent.registered", Outcome::Success)
        .target(client_id.clone())
        .client(client_id.clone())
        .remote(remote.clone())
        .details(json!({
            "name": client.name,
            "service_user": agent.service_user_id,
            "bootstrap_id": bootstrap.id,
            "kid": metadata::key_id(&requested.jwks),
            "key_expires_at": agent.key_expires_at,
        }))
        .into_record(clock::now_ms());
    // The store adds the uses left, as its transaction leaves them.
    let used = Event::new(actor, "agent.bootstrap_used", Outcome::Success)
        .target(bootstrap.id.clone())
        .client(client_id.clone())
        .remote(remote.clone())
        .into_record(clock::now_ms());
    let rows = (client.to_record(), agent);
    let outcome = core
        .store
        .register_agent(bootstrap.id.clone(), now, rows.clone(), registered, used)
        .await?;
    core.token_cache.invalidate(&bootstrap.lookup);
    if let Err(reason) = outcome {
        let error = refused(reason);
        audit_refusal(core, &error, Some(bootstrap.id), remote).await;
        return Err(error);
    }
    Ok(information(core, &rows, token))
}

pub(super) fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The scopes an agent registers for: those it asked for, each one its
/// service user's, or all of the service user's.
pub(super) fn within(
    requested: &AgentMetadata,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let Some(scopes) = &requested.scopes else {
        return Ok(allowed.to_vec());
    };
    if let Some(beyond) = scopes.iter().find(|s| !allowed.contains(s)) {
        return Err(invalid(format!(
            "scope {} is beyond what the service user may have",
            named(beyond)
        )));
    }
    Ok(scopes.clone())
}
