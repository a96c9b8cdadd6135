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

use aws_lc_rs::hmac;
use serde::Serialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::metadata::{self, AUTH_METHOD, AgentMetadata, invalid};
use super::{CLIENT_ID_PREFIX, is_agent_id};
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::oauth::client::{Client, GrantType};
use crate::oauth::error::named;
use crate::oauth::{Core, OAuthError, bearer, syntax};
use crate::random::random_base62;
use crate::store::{
    AgentChange, AgentRecord, AgentStore, AgentWithClient, BootstrapRefused, StoreError,
};
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

fn information(core: &Core, rows: &AgentWithClient, token: OpaqueToken) -> ClientInformation {
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
            OAuthError::invalid_token("registration needs an agent bootstrap token (tsr_ab_…)"),
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
async fn audit_refusal(
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
            "kid": key_id(&requested.jwks),
            "key_expires_at": agent.key_expires_at,
        }))
        .into_record(clock::now_ms());
    let used = Event::new(actor, "agent.bootstrap_used", Outcome::Success)
        .target(bootstrap.id.clone())
        .client(client_id.clone())
        .remote(remote.clone())
        .details(json!({ "uses_left": bootstrap.max_uses.unwrap_or(0) - bootstrap.use_count - 1 }))
        .into_record(clock::now_ms());
    let rows = (client.to_record(), agent);
    let outcome = core
        .store
        .register_agent(
            bootstrap.id.clone(),
            now,
            rows.clone(),
            vec![registered, used],
        )
        .await?;
    core.token_cache.invalidate(&bootstrap.lookup);
    if let Err(reason) = outcome {
        let error = refused(reason);
        audit_refusal(core, &error, Some(bootstrap.id), remote).await;
        return Err(error);
    }
    Ok(information(core, &rows, token))
}

fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn key_id(jwks: &Value) -> Option<&str> {
    jwks.get("keys")?.get(0)?.get("kid")?.as_str()
}

/// The scopes an agent registers for: those it asked for, each one its
/// service user's, or all of the service user's.
fn within(requested: &AgentMetadata, allowed: &[String]) -> Result<Vec<String>, OAuthError> {
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

/// What a configuration call does once its token checks out.
enum Operation {
    Read,
    Update(Box<AgentMetadata>),
    Delete,
}

const STALE: &str = "the registration access token is unknown, stale or expired";

/// RFC 7592 §2.1: reads the registration; the answer carries a new
/// registration access token.
pub async fn read(
    core: &Core,
    client_id: &str,
    presented: &OpaqueToken,
    remote: Option<String>,
) -> Result<ClientInformation, OAuthError> {
    configure(core, client_id, presented, Operation::Read, remote)
        .await
        .map(|info| info.expect("a read answers"))
}

/// RFC 7592 §2.2: replaces the metadata, and with a new key rotates it:
/// the old key keeps working for `agents.key_overlap`, the new one lives
/// `agents.key_lifetime`.
pub async fn update(
    core: &Core,
    client_id: &str,
    presented: &OpaqueToken,
    body: &[u8],
    remote: Option<String>,
) -> Result<ClientInformation, OAuthError> {
    let requested = metadata::parse(body)?;
    // §2.2: the request names the client it updates.
    if requested.client_id.as_ref().and_then(Value::as_str) != Some(client_id) {
        return Err(invalid("client_id must be given and be this client's"));
    }
    let checked = metadata::check(&requested, core.config.agents.allow_p256)?;
    let operation = Operation::Update(Box::new(checked));
    configure(core, client_id, presented, operation, remote)
        .await
        .map(|info| info.expect("an update answers"))
}

/// RFC 7592 §2.3: deletes the registration; the agent's key and tokens
/// stop at once.
pub async fn delete(
    core: &Core,
    client_id: &str,
    presented: &OpaqueToken,
    remote: Option<String>,
) -> Result<(), OAuthError> {
    configure(core, client_id, presented, Operation::Delete, remote)
        .await
        .map(drop)
}

/// Checks the registration access token against the agent's row, in the
/// transaction that replaces it, so two calls with one token cannot both
/// succeed.
async fn configure(
    core: &Core,
    client_id: &str,
    presented: &OpaqueToken,
    operation: Operation,
    remote: Option<String>,
) -> Result<Option<ClientInformation>, OAuthError> {
    let registration = presented
        .parse()
        .is_ok_and(|p| p.kind == TokenKind::RegistrationAccess);
    if !registration || !is_agent_id(client_id) || !syntax::is_identifier(client_id) {
        let error = OAuthError::invalid_token(STALE);
        audit_refusal(core, &error, None, remote).await;
        return Err(error);
    }
    let service_user_scopes = match &operation {
        Operation::Update(_) => Some(agent_service_user_scopes(core, client_id).await?),
        _ => None,
    };
    let digest_key = core.digest_key.clone();
    let presented_token = presented.clone();
    let next = OpaqueToken::generate(TokenKind::RegistrationAccess);
    let next_digest = next.digest(&core.digest_key);
    let config = core.config.agents.clone();
    let remote_for_event = remote.clone();
    let now = clock::now();
    let outcome = core
        .store
        .change_agent(client_id.to_owned(), move |(client, agent)| {
            let rotating_to = match &operation {
                Operation::Update(requested) => Some(&requested.jwks),
                _ => None,
            };
            let how = check_token(
                &digest_key,
                &presented_token,
                (&client, &agent),
                rotating_to,
                now,
            )?;
            // The token just used may repeat this call (its answer may be
            // lost); a repeat leaves the one before in that place.
            let previous = match how {
                Presented::Current => Some(agent.registration_digest.clone()),
                Presented::Repeat => agent.previous_registration_digest.clone(),
            };
            let agent = AgentRecord {
                registration_digest: next_digest,
                previous_registration_digest: previous,
                ..agent
            };
            let actor = Actor::service(agent.service_user_id.clone());
            let id = client.id.clone();
            let event = |action: &'static str, details: Value| {
                Event::new(actor.clone(), action, Outcome::Success)
                    .target(id.clone())
                    .client(id.clone())
                    .remote(remote_for_event.clone())
                    .details(details)
                    .into_record(clock::now_ms())
            };
            match operation {
                Operation::Delete => Ok::<_, OAuthError>(AgentChange {
                    rows: None,
                    event: event("agent.deleted", json!({ "by": "agent" })),
                    value: None,
                }),
                Operation::Read => {
                    let rows = (client, agent);
                    Ok(AgentChange {
                        event: event("agent.registration_read", json!({})),
                        value: Some(rows.clone()),
                        rows: Some(rows),
                    })
                }
                Operation::Update(requested) => {
                    let scopes = within(&requested, &service_user_scopes.unwrap_or_default())?;
                    let rows = updated(client, agent, *requested, scopes, &config, now);
                    let rotated = rows.1.rotated_at == Some(now);
                    let action = if rotated { "agent.key_rotated" } else { "agent.updated" };
                    let details = json!({
                        "kid": rows.0.jwks.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok())
                            .as_ref().and_then(key_id).map(str::to_owned),
                        "key_expires_at": rows.1.key_expires_at,
                        "previous_key_expires_at": rows.1.previous_key_expires_at,
                    });
                    Ok(AgentChange {
                        event: event(action, details),
                        value: Some(rows.clone()),
                        rows: Some(rows),
                    })
                }
            }
        })
        .await;
    core.client_cache.invalidate(client_id);
    let rows = match outcome {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => {
            if error.code == crate::oauth::ErrorCode::InvalidToken {
                audit_refusal(core, &error, Some(client_id.to_owned()), remote).await;
            }
            return Err(error);
        }
        Err(StoreError::NotFound) => {
            let error = OAuthError::invalid_token(STALE);
            audit_refusal(core, &error, Some(client_id.to_owned()), remote).await;
            return Err(error);
        }
        Err(other) => return Err(other.into()),
    };
    Ok(rows.map(|rows| information(core, &rows, next)))
}

/// The current scopes of the agent's service user (an update may not
/// register beyond them).
async fn agent_service_user_scopes(
    core: &Core,
    client_id: &str,
) -> Result<Vec<String>, OAuthError> {
    let Some((_, agent)) = core.store.agent(client_id.to_owned()).await? else {
        return Err(OAuthError::invalid_token(STALE));
    };
    Ok(core
        .service_user_cache
        .get(&core.store, &agent.service_user_id)
        .await?
        .map(|u| u.user.scopes.clone())
        .unwrap_or_default())
}

/// How a configuration call's registration access token checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    /// The current token.
    Current,
    /// The token the last call used, for that call again: a rotation to
    /// the key that is current now, while the old key's overlap lasts.
    Repeat,
}

/// The registration access token must be the current one (or, to repeat
/// the last rotation, the one before), its key not expired, and the agent
/// enabled. `rotating_to`: the key an update sends.
fn check_token(
    digest_key: &hmac::Key,
    presented: &OpaqueToken,
    (client, agent): (&crate::store::ClientRecord, &AgentRecord),
    rotating_to: Option<&Value>,
    now: i64,
) -> Result<Presented, OAuthError> {
    let digest = presented.digest(digest_key);
    let is = |stored: &[u8]| digest.ct_eq(stored).unwrap_u8() == 1;
    let current_key: Value = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    let repeat = agent.previous_registration_digest.as_deref().is_some_and(is)
        && agent.previous_key_expires_at.is_some_and(|at| at > now)
        && rotating_to.is_some_and(|key| metadata::same_key(&current_key, key));
    let presented = if is(&agent.registration_digest) {
        Presented::Current
    } else if repeat {
        Presented::Repeat
    } else {
        return Err(OAuthError::invalid_token(STALE));
    };
    if agent.key_expires_at <= now {
        return Err(OAuthError::invalid_token(STALE));
    }
    if !client.enabled {
        return Err(OAuthError::invalid_token("the agent is disabled"));
    }
    Ok(presented)
}

/// The rows after an update: the new name and scopes, and when the key
/// changed, the rotation (the old key kept through the overlap, never
/// past its own expiry).
fn updated(
    mut client: crate::store::ClientRecord,
    agent: AgentRecord,
    requested: AgentMetadata,
    scopes: Vec<String>,
    config: &crate::config::AgentsConfig,
    now: i64,
) -> AgentWithClient {
    let current: Value = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    client.name = requested.name;
    client.scopes = scopes.join(" ");
    client.updated_at = now;
    let mut agent = agent;
    if !metadata::same_key(&current, &requested.jwks) {
        agent.previous_key_expires_at = Some(
            now.saturating_add(secs(config.key_overlap))
                .min(agent.key_expires_at),
        );
        agent.previous_jwks = client.jwks.take();
        agent.key_expires_at = now.saturating_add(secs(config.key_lifetime));
        agent.rotated_at = Some(now);
        client.jwks = Some(requested.jwks.to_string());
    }
    (client, agent)
}
