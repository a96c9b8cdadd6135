//! The kill switch: list agents, disable, enable and delete them. A
//! disabled or deleted agent's next token request is `invalid_client` and
//! its outstanding tokens introspect inactive, on every replica at once
//! (its client row changes, and PostgreSQL announces the change).

use serde_json::json;

use super::AgentView;
use super::bootstrap::{listed_owner, service_user_for};
use super::is_agent_id;
use crate::audit::{Event, Outcome};
use crate::clock;
use crate::oauth::bearer::Principal;
use crate::oauth::{Core, OAuthError, syntax};
use crate::store::{AgentChange, AgentStore, StoreError};

fn not_found() -> OAuthError {
    OAuthError::not_found("no such agent")
}

/// The agents of one service user, or of all for an administrator; those
/// whose key expired unrotated only with `include_expired`.
pub async fn list(
    core: &Core,
    caller: &Principal,
    service_user: Option<&str>,
    include_expired: bool,
) -> Result<Vec<AgentView>, OAuthError> {
    let owner = listed_owner(core, caller, service_user).await?;
    Ok(core
        .store
        .list_agents(owner, (!include_expired).then(clock::now))
        .await?
        .into_iter()
        .map(AgentView::new)
        .collect())
}

/// The agent `client_id`, if the caller may see (or, `write`, change) it.
async fn reachable(
    core: &Core,
    caller: &Principal,
    client_id: &str,
    write: bool,
) -> Result<AgentView, OAuthError> {
    if !is_agent_id(client_id) || !syntax::is_identifier(client_id) {
        return Err(not_found());
    }
    let rows = core
        .store
        .agent(client_id.to_owned())
        .await?
        .ok_or_else(not_found)?;
    service_user_for(core, caller, &rows.1.service_user_id, write)
        .await
        .map_err(|_| not_found())?;
    Ok(AgentView::new(rows))
}

pub async fn show(
    core: &Core,
    caller: &Principal,
    client_id: &str,
) -> Result<AgentView, OAuthError> {
    reachable(core, caller, client_id, false).await
}

/// Revokes the bootstrap token an agent registered with, before the agent
/// is disabled or deleted: a stopped agent whose container restarts (as a
/// Kubernetes sidecar does) must not register again with it. Agents that
/// registered with it before keep running.
async fn revoke_origin(
    core: &Core,
    caller: &Principal,
    agent: &AgentView,
    why: &'static str,
    remote: Option<String>,
) -> Result<(), OAuthError> {
    let Some(id) = &agent.bootstrap_id else {
        return Ok(());
    };
    let Some(token) = core.store.bootstrap(id.clone()).await? else {
        return Ok(());
    };
    if token.revoked_at.is_some() {
        return Ok(());
    }
    let event = Event::new(caller.actor(), "agent.bootstrap_revoked", Outcome::Success)
        .target(id.clone())
        .client(agent.client_id.clone())
        .remote(remote)
        .details(json!({ "service_user": token.owner_id, "because": why }))
        .into_record(clock::now_ms());
    match core
        .store
        .revoke_bootstrap(id.clone(), clock::now(), event)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(other) => return Err(other.into()),
    }
    core.token_cache.invalidate(&token.lookup);
    Ok(())
}

/// Turns the agent off (`enabled` false), revoking its bootstrap token of
/// origin, or on again.
pub async fn set_enabled(
    core: &Core,
    caller: &Principal,
    client_id: &str,
    enabled: bool,
    remote: Option<String>,
) -> Result<AgentView, OAuthError> {
    let agent = reachable(core, caller, client_id, true).await?;
    if enabled {
        super::bootstrap::may_empower_agents(caller)?;
    } else {
        revoke_origin(core, caller, &agent, "agent disabled", remote.clone()).await?;
    }
    let actor = caller.actor();
    let action = if enabled {
        "agent.enabled"
    } else {
        "agent.disabled"
    };
    let changed = core
        .store
        .change_agent(client_id.to_owned(), move |(mut client, agent)| {
            let event = Event::new(actor, action, Outcome::Success)
                .target(client.id.clone())
                .client(client.id.clone())
                .remote(remote)
                .details(json!({ "service_user": agent.service_user_id }))
                .into_record(clock::now_ms());
            client.enabled = enabled;
            client.updated_at = clock::now();
            let rows = (client, agent);
            Ok::<_, OAuthError>(AgentChange {
                value: rows.clone(),
                rows: Some(rows),
                event,
            })
        })
        .await;
    core.client_cache.invalidate(client_id);
    match changed {
        Ok(Ok(rows)) => Ok(AgentView::new(rows)),
        Ok(Err(error)) => Err(error),
        Err(StoreError::NotFound) => Err(not_found()),
        Err(other) => Err(other.into()),
    }
}

/// Deletes the agent and its client: its key, registration access token
/// and tokens stop at once, and its bootstrap token of origin is revoked.
pub async fn delete(
    core: &Core,
    caller: &Principal,
    client_id: &str,
    remote: Option<String>,
) -> Result<(), OAuthError> {
    let agent = reachable(core, caller, client_id, true).await?;
    revoke_origin(core, caller, &agent, "agent deleted", remote.clone()).await?;
    let actor = caller.actor();
    let deleted = core
        .store
        .change_agent(client_id.to_owned(), move |(client, agent)| {
            let event = Event::new(actor, "agent.deleted", Outcome::Success)
                .target(client.id.clone())
                .client(client.id.clone())
                .remote(remote)
                .details(json!({ "service_user": agent.service_user_id }))
                .into_record(clock::now_ms());
            Ok::<_, OAuthError>(AgentChange {
                rows: None,
                event,
                value: (),
            })
        })
        .await;
    core.client_cache.invalidate(client_id);
    match deleted {
        Ok(outcome) => outcome,
        Err(StoreError::NotFound) => Err(not_found()),
        Err(other) => Err(other.into()),
    }
}
