//! Bootstrap tokens (`tsr_ab_[<env>_]…`): what an operator hands a
//! workload so that it can register itself once (RFC 7591 §3's initial
//! access token). They live hours (2 h by default, at most
//! `agents.bootstrap_max_lifetime`), allow one registration unless made
//! with `uses`, are shown once and stored as a digest. Only an
//! administrator or the service user's owner makes one.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::may_manage;
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::oauth::bearer::Principal;
use crate::oauth::error::named;
use crate::oauth::personal_tokens::manage::new_token;
use crate::oauth::{Core, ErrorCode, OAuthError, syntax};
use crate::store::{
    AccessTokenRecord, AgentStore, BOOTSTRAP_KIND, CredentialStore, ServiceUserRecord, StoreError,
};
use crate::tokens::opaque::{OpaqueToken, TokenKind, is_env_label};

/// What `POST /admin/v1/agents/bootstrap-tokens` takes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSpec {
    /// The service user the agents will act for.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    pub service_user: String,
    /// How long the token lives, `2h` by default, at most
    /// `agents.bootstrap_max_lifetime` (`24h`).
    #[serde(default)]
    #[schema(max_length = 32, pattern = "^[0-9]+ ?(s|m|h|d)$")]
    pub expires: Option<String>,
    /// How many agents may register with it (default 1).
    #[serde(default, deserialize_with = "crate::oauth::client::whole_number")]
    #[schema(minimum = 1, maximum = 100)]
    pub uses: Option<u32>,
    /// An environment label for the token's prefix (`prod`), one of
    /// `personal_tokens.environments`.
    #[serde(default)]
    pub env: Option<String>,
}

/// A bootstrap token as lists show it (never its value).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BootstrapView {
    pub id: String,
    pub service_user: String,
    pub env: Option<String>,
    /// `tsr_ab_[<env>_]` and the token's first characters.
    pub prefix: String,
    /// `active`, `used_up`, `expired` or `revoked`.
    pub state: &'static str,
    pub expires_at: i64,
    /// Registrations allowed.
    pub uses: i64,
    /// Registrations made.
    pub used: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl BootstrapView {
    pub fn new(record: &AccessTokenRecord, now: i64) -> Self {
        let uses = record.max_uses.unwrap_or(0);
        let expires_at = record.expires_at.unwrap_or(0);
        let state = if record.revoked_at.is_some() {
            "revoked"
        } else if record.use_count >= uses {
            "used_up"
        } else if expires_at <= now {
            "expired"
        } else {
            "active"
        };
        let env = Some(record.env.clone()).filter(|e| !e.is_empty());
        let label = env.as_deref().map(|e| format!("{e}_")).unwrap_or_default();
        BootstrapView {
            id: record.id.clone(),
            service_user: record.owner_id.clone(),
            prefix: format!("tsr_ab_{label}{}", record.lookup),
            env,
            state,
            expires_at,
            uses,
            used: record.use_count,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
        }
    }
}

/// A new bootstrap token: `token` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedBootstrap {
    pub id: String,
    #[schema(value_type = String)]
    pub token: TokenValue,
    pub expires_at: i64,
    pub uses: i64,
    pub service_user: String,
    pub env: Option<String>,
}

/// The value, serialised for its one showing; `Debug` hides it.
pub struct TokenValue(pub OpaqueToken);

impl Serialize for TokenValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

impl std::fmt::Debug for TokenValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The service user `id`, if the caller may manage its agents; a service
/// user the caller may not see is as absent as one that does not exist.
pub(crate) async fn service_user_for(
    core: &Core,
    caller: &Principal,
    id: &str,
    write: bool,
) -> Result<ServiceUserRecord, OAuthError> {
    let missing = || OAuthError::not_found(format!("no service user {}", named(id)));
    if !syntax::is_identifier(id) {
        return Err(missing());
    }
    let user = core
        .store
        .service_user(id.to_owned())
        .await?
        .ok_or_else(missing)?;
    if !may_manage(caller, &user, write)? {
        return Err(missing());
    }
    Ok(user)
}

fn lifetime(core: &Core, expires: Option<&str>) -> Result<i64, OAuthError> {
    let config = &core.config.agents;
    let chosen = match expires {
        None => config.bootstrap_default_lifetime,
        Some(text) => humantime::parse_duration(text.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "expires {} is not a lifetime such as 2h",
                    named(text)
                ))
            })?,
    };
    if chosen > config.bootstrap_max_lifetime {
        return Err(OAuthError::invalid_request(format!(
            "a bootstrap token lives at most {} (agents.bootstrap_max_lifetime)",
            humantime::format_duration(config.bootstrap_max_lifetime)
        )));
    }
    Ok(i64::try_from(chosen.as_secs()).unwrap_or(i64::MAX))
}

/// Agents get the service user's scopes, which a personal or machine
/// token never carries, and live on: a bootstrap token made, or an agent
/// enabled again, with such a token would be stronger and longer-lived than
/// the token itself (a leaked one could bring back an agent that was
/// stopped). A person signed in (`tessera login`) or an administrator's
/// `admin` token may (`admin`, not `admin:read`).
pub(super) fn may_empower_agents(caller: &Principal) -> Result<(), OAuthError> {
    let admin = caller.is_admin && caller.has_scope(crate::oauth::api_scopes::ADMIN);
    if caller.token_kind.is_some() && !admin {
        return Err(OAuthError::insufficient_scope(
            crate::oauth::api_scopes::ADMIN,
            "a personal or machine token cannot create bootstrap tokens or enable agents: \
             sign in with `tessera login` to do it for a service user you own",
        ));
    }
    Ok(())
}

pub async fn create(
    core: &Core,
    caller: &Principal,
    spec: BootstrapSpec,
    remote: Option<String>,
) -> Result<CreatedBootstrap, OAuthError> {
    let user = service_user_for(core, caller, &spec.service_user, true).await?;
    may_empower_agents(caller)?;
    if !user.enabled {
        return Err(OAuthError::new(
            ErrorCode::Conflict,
            "the service user is disabled: enable it first",
        ));
    }
    let lifetime = lifetime(core, spec.expires.as_deref())?;
    // Nor does a bootstrap token outlive the token that made it.
    if let (Some(_), Some(ends)) = (caller.token_kind, caller.expires_at)
        && clock::now().saturating_add(lifetime) > ends
    {
        return Err(OAuthError::invalid_request(
            "the bootstrap token would outlive the token you made it with: choose a shorter --expires",
        ));
    }
    let max_uses = core.config.agents.bootstrap_max_uses;
    let uses = spec.uses.unwrap_or(1);
    if !(1..=max_uses).contains(&uses) {
        return Err(OAuthError::invalid_request(format!(
            "uses must be 1 to {max_uses} (agents.bootstrap_max_uses)"
        )));
    }
    let env = spec.env.filter(|e| !e.is_empty());
    if let Some(env) = &env
        && (!is_env_label(env) || !core.config.personal_tokens.environments.contains(env))
    {
        return Err(OAuthError::invalid_request(format!(
            "env must be one of personal_tokens.environments: {}",
            core.config.personal_tokens.environments.join(", ")
        )));
    }
    let now = clock::now();
    let (token, record) = new_token(
        core,
        TokenKind::AgentBootstrap,
        env.as_deref().unwrap_or(""),
        now,
        Some(lifetime),
    );
    let record = AccessTokenRecord {
        owner_id: user.id.clone(),
        owner_kind: "service".to_owned(),
        name: "agent bootstrap".to_owned(),
        max_uses: Some(i64::from(uses)),
        ..record
    };
    let event = Event::new(caller.actor(), "agent.bootstrap_created", Outcome::Success)
        .target(record.id.clone())
        .remote(remote)
        .details(json!({
            "service_user": user.id,
            "env": env,
            "uses": uses,
            "expires_at": record.expires_at,
        }))
        .into_record(clock::now_ms());
    let limit = core.config.agents.max_live_bootstrap_tokens;
    core.store
        .create_bootstrap(record.clone(), limit, event)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OAuthError::not_found("the service user was deleted"),
            StoreError::LimitReached(limit) => OAuthError::new(
                ErrorCode::Conflict,
                format!(
                    "the service user already holds {limit} usable bootstrap tokens \
                     (agents.max_live_bootstrap_tokens): revoke one first"
                ),
            ),
            other => other.into(),
        })?;
    Ok(CreatedBootstrap {
        id: record.id,
        token: TokenValue(token),
        expires_at: record.expires_at.unwrap_or(now),
        uses: i64::from(uses),
        service_user: user.id,
        env,
    })
}

/// The bootstrap tokens of one service user, or of all for an
/// administrator.
pub async fn list(
    core: &Core,
    caller: &Principal,
    service_user: Option<&str>,
    include_revoked: bool,
) -> Result<Vec<BootstrapView>, OAuthError> {
    let owner = listed_owner(core, caller, service_user).await?;
    let now = clock::now();
    Ok(core
        .store
        .list_bootstraps(owner, include_revoked)
        .await?
        .iter()
        .map(|record| BootstrapView::new(record, now))
        .collect())
}

/// Whose agents or bootstrap tokens a listing covers: the service user
/// named (if the caller may read its agents), or, for an administrator
/// naming none, everyone's (`None`).
pub(crate) async fn listed_owner(
    core: &Core,
    caller: &Principal,
    service_user: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    match service_user {
        Some(id) => Ok(Some(service_user_for(core, caller, id, false).await?.id)),
        None if reach_all(caller)? => Ok(None),
        None => Err(OAuthError::invalid_request(
            "name the service user (--service-user): only an administrator lists all",
        )),
    }
}

fn reach_all(caller: &Principal) -> Result<bool, OAuthError> {
    use crate::oauth::personal_tokens::manage::{Reach, reach};
    Ok(reach(caller, false)? == Reach::All)
}

/// Revokes a bootstrap token at once: no agent registers with it again.
pub async fn revoke(
    core: &Core,
    caller: &Principal,
    id: &str,
    remote: Option<String>,
) -> Result<(), OAuthError> {
    let not_found = || OAuthError::not_found("no such bootstrap token");
    if !syntax::is_identifier(id) {
        return Err(not_found());
    }
    let record = core
        .store
        .bootstrap(id.to_owned())
        .await?
        .filter(|r| r.kind == BOOTSTRAP_KIND)
        .ok_or_else(not_found)?;
    service_user_for(core, caller, &record.owner_id, true)
        .await
        .map_err(|_| not_found())?;
    if record.revoked_at.is_some() {
        return Ok(());
    }
    let event = Event::new(caller.actor(), "agent.bootstrap_revoked", Outcome::Success)
        .target(record.id.clone())
        .remote(remote)
        .details(json!({ "service_user": record.owner_id }))
        .into_record(clock::now_ms());
    match core
        .store
        .revoke_bootstrap(record.id.clone(), clock::now(), event)
        .await
    {
        // Revoked meanwhile: the same outcome.
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(other) => return Err(other.into()),
    }
    core.token_cache.invalidate(&record.lookup);
    Ok(())
}

/// Bootstrap tokens recorded as expired per sweep, at most.
const EXPIRIES_PER_SWEEP: i64 = 500;

/// Audits the bootstrap tokens that expired since the last sweep
/// (`agent.bootstrap_expired`, with how many uses were left): run with the
/// usage flush, once a minute by default.
pub async fn record_expiries(core: &Core) {
    let now = clock::now();
    let recorded = core
        .store
        .record_bootstrap_expiries(now, EXPIRIES_PER_SWEEP, move |token| {
            Event::new(Actor::system(), "agent.bootstrap_expired", Outcome::Success)
                .target(token.id.clone())
                .details(json!({
                    "service_user": token.owner_id,
                    "expires_at": token.expires_at,
                    "uses_left": (token.max_uses.unwrap_or(0) - token.use_count).max(0),
                }))
                .into_record(clock::now_ms())
        })
        .await;
    if let Err(e) = recorded {
        tracing::debug!(error = %e, "bootstrap token expiries not recorded yet");
    }
    purge_expired_agents(core).await;
}

/// Deletes agents whose key expired unrotated more than
/// `agents.keep_expired_agents` ago (`agent.purged`): they can never work
/// again, and every restart of a container leaves one behind.
async fn purge_expired_agents(core: &Core) {
    let keep = super::registration::secs(core.config.agents.keep_expired_agents);
    let expired_by = clock::now().saturating_sub(keep);
    let purged = core
        .store
        .purge_expired_agents(expired_by, EXPIRIES_PER_SWEEP, |client, agent| {
            Event::new(Actor::system(), "agent.purged", Outcome::Success)
                .target(client.id.clone())
                .client(client.id.clone())
                .details(json!({
                    "service_user": agent.service_user_id,
                    "key_expired_at": agent.key_expires_at,
                }))
                .into_record(clock::now_ms())
        })
        .await;
    // What a cache still holds of them is refused anyway: their keys expired.
    if let Err(e) = purged {
        tracing::debug!(error = %e, "expired agents not purged yet");
    }
}
