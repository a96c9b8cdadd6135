//! Agents: workloads that run for a long time outside CI and hold no
//! long-lived secret (issue 13).
//!
//! 1. An administrator, or the owner of a service user, creates a bootstrap
//!    token (`tsr_ab_[<env>_]…`, [`bootstrap`]): hours to live, one use by
//!    default, stored as a digest like every Tessera token.
//! 2. The workload makes an Ed25519 key in memory and registers its public
//!    half with the bootstrap token as RFC 7591 §3's initial access token
//!    ([`registration`]). It becomes a client of its own (`ag_…`) acting
//!    for the service user: its tokens carry `sub` = the service user and
//!    `client_id` = the agent.
//! 3. It takes 15-minute tokens by `client_credentials` with
//!    `private_key_jwt` ([`grant`]), and before its key expires sends the
//!    next one through RFC 7592's configuration endpoint with its
//!    registration access token, which is replaced on every use.
//! 4. Disabling the agent or its service user ends its next token request
//!    and its outstanding tokens on every replica ([`manage`]).

pub mod bootstrap;
pub mod configuration;
pub mod grant;
pub mod manage;
mod metadata;
pub mod registration;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use serde::Serialize;
use utoipa::ToSchema;

use super::OAuthError;
use super::bearer::Principal;
use super::client::Client;
use super::client_cache::CachedClient;
use super::personal_tokens::manage::{Reach, is_human, reach};
use crate::clock;
use crate::keys::public::without_weak_keys;
use crate::store::{AgentRecord, ClientRecord, ServiceUserRecord};

/// Every agent's `client_id` starts with this; no other client's can (an
/// administrator's clients get base62 ids).
pub const CLIENT_ID_PREFIX: &str = "ag_";

pub fn is_agent_id(id: &str) -> bool {
    id.starts_with(CLIENT_ID_PREFIX)
}

/// An agent as the token endpoint reads it: its client bound to its
/// service user, with the keys that are valid now (the current one until
/// it expires, the rotated-out one through its overlap). The cache entry
/// lives no longer than the first of those expiries, so an expired key is
/// refused on time.
pub(crate) fn cached(record: ClientRecord, agent: AgentRecord) -> (CachedClient, Option<Instant>) {
    let now = clock::now();
    let parse = |text: &str| serde_json::from_str::<JwkSet>(text).ok();
    let mut keys = Vec::new();
    let mut expiries = Vec::new();
    let sets = [
        (record.jwks.as_deref(), Some(agent.key_expires_at)),
        (
            agent.previous_jwks.as_deref(),
            agent.previous_key_expires_at,
        ),
    ];
    for (set, expires) in sets {
        if let (Some(set), Some(expires)) = (set, expires)
            && expires > now
            && let Some(parsed) = parse(set)
        {
            keys.extend(parsed.keys);
            expiries.push(expires);
        }
    }
    // A key that lives past what `Instant` can hold needs no early end.
    let until = expiries.into_iter().min().and_then(|at| {
        let left = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
        Instant::now().checked_add(Duration::from_secs(left))
    });
    let mut client = Client::from(record);
    client.agent_of = Some(agent.service_user_id);
    let cached = CachedClient {
        client,
        secrets: Vec::new(),
        jwks: Some(Arc::new(without_weak_keys(JwkSet { keys }))),
    };
    (cached, until)
}

/// Whether `caller` may manage the agents and bootstrap tokens of
/// `service_user`: an administrator (`admin`, or `admin:read` to read),
/// or with `tokens:self` the person who owns it.
pub(crate) fn may_manage(
    caller: &Principal,
    service_user: &ServiceUserRecord,
    write: bool,
) -> Result<bool, OAuthError> {
    Ok(reach(caller, write)? == Reach::All
        || (is_human(caller) && service_user.owner_id.as_deref() == Some(caller.id.as_str())))
}

/// An agent as `tessera agent list` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentView {
    pub client_id: String,
    /// `active`, `disabled`, or `expired` (its key expired unrotated: the
    /// agent cannot come back; a restarted one registers anew).
    pub state: &'static str,
    /// The `client_name` it registered with (a pod name, say).
    pub name: String,
    pub service_user: String,
    pub enabled: bool,
    /// Space-separated scopes it registered for.
    pub scope: String,
    /// When its current key (and registration access token) expires.
    pub key_expires_at: i64,
    /// Until when the key a rotation replaced still works.
    pub previous_key_expires_at: Option<i64>,
    pub last_token_at: Option<i64>,
    /// The bootstrap token it registered with.
    pub bootstrap_id: Option<String>,
    pub registered_ip: Option<String>,
    pub rotated_at: Option<i64>,
    pub created_at: i64,
}

impl AgentView {
    pub fn new((client, agent): (ClientRecord, AgentRecord)) -> Self {
        let now = clock::now();
        let state = if agent.key_expires_at <= now {
            "expired"
        } else if !client.enabled {
            "disabled"
        } else {
            "active"
        };
        AgentView {
            state,
            client_id: client.id,
            name: client.name,
            service_user: agent.service_user_id,
            enabled: client.enabled,
            scope: client.scopes,
            key_expires_at: agent.key_expires_at,
            previous_key_expires_at: agent.previous_key_expires_at.filter(|at| *at > now),
            last_token_at: agent.last_token_at,
            bootstrap_id: agent.bootstrap_id,
            registered_ip: agent.registered_ip,
            rotated_at: agent.rotated_at,
            created_at: agent.created_at,
        }
    }
}
