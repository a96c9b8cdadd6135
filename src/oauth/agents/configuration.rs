//! RFC 7592 §2: an agent's client configuration endpoint,
//! `/oauth/register/{client_id}`, with its registration access token:
//! `GET` reads the registration, `PUT` replaces the metadata (a new key
//! rotates it), `DELETE` removes it. Every call that succeeds replaces the
//! token (the answer carries the next one), and the token dies with the
//! key it came with.
//!
//! The token is compared before anything is locked or written: a stranger
//! costs one read. It is compared again inside the transaction that
//! replaces it, so one token works once even across replicas.
//!
//! An agent whose rotation answer was lost may repeat that rotation once
//! more with the token it used (the server already holds the new key), if
//! it proves it holds the new key's private half: a `Tessera-Key-Proof`
//! header with a JWT signed by it (`iss` = `sub` = the client id, `aud` =
//! the registration's URI, a single-use `jti`, at most five minutes). A
//! copy of the old token and of the request is not enough. The proof is
//! checked against the key the request sends, before the lock, so a
//! repeat whose first attempt commits while it waits is still taken.

use std::time::Duration;

use aws_lc_rs::hmac;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::is_agent_id;
use super::metadata::{self, AgentMetadata, invalid};
use super::registration::{
    ClientInformation, audit_refusal, client_uri, information, secs, within,
};
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::config::AgentsConfig;
use crate::oauth::assertion::{self, Expectations, ReplayKey};
use crate::oauth::{Core, ErrorCode, OAuthError, syntax};
use crate::store::{
    AgentChange, AgentRecord, AgentStore, AgentWithClient, ClientRecord, StoreError,
};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

/// The header of a repeated rotation's proof of possession.
pub const KEY_PROOF_HEADER: &str = "tessera-key-proof";
/// How long a key proof may be valid.
const KEY_PROOF_LIFETIME: Duration = Duration::from_secs(300);

const STALE: &str = "the registration access token is unknown, stale or expired";

/// What a configuration call does once its token checks out.
enum Operation {
    Read,
    /// The metadata as checked: an error in it is reported only to a
    /// caller whose token checked out.
    Update(Result<Box<AgentMetadata>, OAuthError>),
    Delete,
}

impl Operation {
    /// The key an update sends.
    fn rotating_to(&self) -> Option<&Value> {
        match self {
            Operation::Update(Ok(requested)) => Some(&requested.jwks),
            _ => None,
        }
    }
}

/// A configuration call: the token it presents, and for a repeated
/// rotation the proof that the caller holds the new key.
pub struct Call<'a> {
    pub client_id: &'a str,
    pub token: &'a OpaqueToken,
    pub key_proof: Option<&'a str>,
    pub remote: Option<String>,
}

/// RFC 7592 §2.1: reads the registration; the answer carries a new
/// registration access token.
pub async fn read(core: &Core, call: Call<'_>) -> Result<ClientInformation, OAuthError> {
    configure(core, call, Operation::Read)
        .await
        .map(|info| info.expect("a read answers"))
}

/// RFC 7592 §2.2: replaces the metadata, and with a new key rotates it:
/// the old key keeps working for `agents.key_overlap`, the new one lives
/// `agents.key_lifetime`.
pub async fn update(
    core: &Core,
    call: Call<'_>,
    body: &[u8],
) -> Result<ClientInformation, OAuthError> {
    let checked = metadata::parse(body).and_then(|requested| {
        // §2.2: the request names the client it updates.
        if requested.client_id.as_ref().and_then(Value::as_str) != Some(call.client_id) {
            return Err(invalid("client_id must be given and be this client's"));
        }
        metadata::check(&requested, core.config.agents.allow_p256).map(Box::new)
    });
    configure(core, call, Operation::Update(checked))
        .await
        .map(|info| info.expect("an update answers"))
}

/// RFC 7592 §2.3: deletes the registration; the agent's key and tokens
/// stop at once.
pub async fn delete(core: &Core, call: Call<'_>) -> Result<(), OAuthError> {
    configure(core, call, Operation::Delete).await.map(drop)
}

/// How a registration access token checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    /// The current token.
    Current,
    /// The token the last call used, repeating the rotation to the key
    /// that is current now, while the old key's overlap lasts.
    Repeat,
}

fn current_keys(client: &ClientRecord) -> Value {
    client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null)
}

/// The registration access token must be the current one (or, to repeat
/// the last rotation, the one before), its key not expired, and the agent
/// enabled (RFC 7592 §2: a client that may no longer manage itself is 403).
fn check_token(
    digest_key: &hmac::Key,
    presented: &OpaqueToken,
    (client, agent): (&ClientRecord, &AgentRecord),
    rotating_to: Option<&Value>,
    key_proven: bool,
    now: i64,
) -> Result<Presented, OAuthError> {
    let digest = presented.digest(digest_key);
    let is = |stored: &[u8]| digest.ct_eq(stored).unwrap_u8() == 1;
    let repeat = agent
        .previous_registration_digest
        .as_deref()
        .is_some_and(is)
        && agent.previous_key_expires_at.is_some_and(|at| at > now)
        && rotating_to.is_some_and(|key| metadata::same_key(&current_keys(client), key));
    let how = if is(&agent.registration_digest) {
        Presented::Current
    } else if repeat && key_proven {
        Presented::Repeat
    } else {
        // Without a proof, the token before is as stale as any other.
        return Err(OAuthError::invalid_token(STALE));
    };
    if agent.key_expires_at <= now {
        return Err(OAuthError::invalid_token(STALE));
    }
    if !client.enabled {
        return Err(OAuthError::invalid_token("the agent is disabled").with_status(403));
    }
    Ok(how)
}

/// A rotation's proof that the caller holds the private half of `key`,
/// the key it sends: a JWT signed with it, for this registration, used once.
async fn check_key_proof(
    core: &Core,
    client_id: &str,
    key: &Value,
    proof: &str,
) -> Result<(), OAuthError> {
    let refused =
        || OAuthError::invalid_token("the Tessera-Key-Proof is not a valid proof for the key sent");
    let keys: JwkSet = serde_json::from_value(key.clone()).map_err(|_| refused())?;
    let audiences = [client_uri(core, client_id)];
    let expect = Expectations {
        subject: client_id,
        audiences: &audiences,
        max_lifetime: KEY_PROOF_LIFETIME,
        max_age: None,
        replay_key: ReplayKey::Jti,
        error: ErrorCode::InvalidToken,
    };
    let claims = assertion::verify(proof, &keys, &expect).map_err(|_| refused())?;
    assertion::consume_once(&core.writer, proof, &claims, &expect).await
}

/// Checks the call without locking anything; returns whether the caller
/// proved it holds the key it sends, and the service user's current scopes.
async fn precheck(
    core: &Core,
    call: &Call<'_>,
    operation: &Operation,
) -> Result<(bool, Vec<String>), OAuthError> {
    let stale = || OAuthError::invalid_token(STALE);
    let registration = call
        .token
        .parse()
        .is_ok_and(|p| p.kind == TokenKind::RegistrationAccess);
    if !registration || !is_agent_id(call.client_id) || !syntax::is_identifier(call.client_id) {
        return Err(stale());
    }
    let rows = core
        .store
        .agent(call.client_id.to_owned())
        .await?
        .ok_or_else(stale)?;
    // The token first (taking a proof as offered): a stranger's proof
    // costs no signature check.
    let proof = call.key_proof.zip(operation.rotating_to());
    check_token(
        &core.digest_key,
        call.token,
        (&rows.0, &rows.1),
        operation.rotating_to(),
        proof.is_some(),
        clock::now(),
    )?;
    // A proof is checked whenever one comes with a key, not only when the
    // token is the one before: the first attempt of a repeated rotation
    // may commit between this check and the lock.
    if let Some((proof, key)) = proof {
        check_key_proof(core, call.client_id, key, proof).await?;
    }
    // Disabling the service user stops its agents managing themselves too.
    let user = core
        .service_user_cache
        .get(&core.store, &rows.1.service_user_id)
        .await?
        .filter(|u| u.user.enabled)
        .ok_or_else(|| {
            OAuthError::invalid_token("the agent's service user is disabled or deleted")
                .with_status(403)
        })?;
    Ok((proof.is_some(), user.user.scopes.clone()))
}

async fn configure(
    core: &Core,
    call: Call<'_>,
    operation: Operation,
) -> Result<Option<ClientInformation>, OAuthError> {
    let (key_proven, scopes) = match precheck(core, &call, &operation).await {
        Ok(checked) => checked,
        Err(error) => {
            if error.code == ErrorCode::InvalidToken {
                // Only an id that could be an agent's reaches the audit.
                let target = Some(call.client_id.to_owned())
                    .filter(|id| is_agent_id(id) && syntax::is_identifier(id));
                audit_refusal(core, &error, target, call.remote.clone()).await;
            }
            return Err(error);
        }
    };
    // Only a caller whose token checked out learns what is wrong with the
    // metadata.
    let operation = match operation {
        Operation::Update(Err(error)) => return Err(error),
        other => other,
    };
    let next = OpaqueToken::generate(TokenKind::RegistrationAccess);
    let change = Change {
        digest_key: core.digest_key.clone(),
        presented: call.token.clone(),
        key_proven,
        next_digest: next.digest(&core.digest_key),
        scopes,
        config: core.config.agents.clone(),
        remote: call.remote.clone(),
        now: clock::now(),
    };
    let outcome = core
        .store
        .change_agent(call.client_id.to_owned(), move |rows| {
            change.apply(rows, operation)
        })
        .await;
    let rows = match outcome {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => return Err(error),
        Err(StoreError::NotFound) => return Err(OAuthError::invalid_token(STALE)),
        Err(other) => return Err(other.into()),
    };
    core.client_cache.invalidate(call.client_id);
    Ok(rows.map(|rows| information(core, &rows, next)))
}

/// What the transaction needs to check the token again and write.
struct Change {
    digest_key: hmac::Key,
    presented: OpaqueToken,
    /// Whether the caller proved it holds the key it sends: only then may
    /// the token be the one before (a repeat).
    key_proven: bool,
    next_digest: Vec<u8>,
    /// The service user's current scopes: an update stays within them.
    scopes: Vec<String>,
    config: AgentsConfig,
    remote: Option<String>,
    now: i64,
}

impl Change {
    fn apply(
        self,
        (client, agent): AgentWithClient,
        operation: Operation,
    ) -> Result<AgentChange<Option<AgentWithClient>>, OAuthError> {
        let how = check_token(
            &self.digest_key,
            &self.presented,
            (&client, &agent),
            operation.rotating_to(),
            self.key_proven,
            self.now,
        )?;
        // The token used may repeat this call (its answer may be lost); a
        // repeat leaves the one before in that place.
        let previous = match how {
            Presented::Current => Some(agent.registration_digest.clone()),
            Presented::Repeat => agent.previous_registration_digest.clone(),
        };
        let agent = AgentRecord {
            registration_digest: self.next_digest.clone(),
            previous_registration_digest: previous,
            ..agent
        };
        let (id, actor) = (
            client.id.clone(),
            Actor::service(agent.service_user_id.clone()),
        );
        let event = |action: &'static str, details: Value| {
            Event::new(actor.clone(), action, Outcome::Success)
                .target(id.clone())
                .client(id.clone())
                .remote(self.remote.clone())
                .details(details)
                .into_record(clock::now_ms())
        };
        match operation {
            Operation::Delete => Ok(AgentChange {
                event: event("agent.deleted", json!({ "by": "agent" })),
                rows: None,
                value: None,
            }),
            Operation::Read => {
                let event = event("agent.registration_read", json!({}));
                let rows = (client, agent);
                Ok(AgentChange {
                    value: Some(rows.clone()),
                    rows: Some(rows),
                    event,
                })
            }
            Operation::Update(requested) => {
                let requested = *requested?;
                let scopes = within(&requested, &self.scopes)?;
                let current = current_keys(&client);
                let rotated = !metadata::same_key(&current, &requested.jwks);
                // Through the overlap both keys verify: a token's `kid`
                // must tell them apart.
                let same_kid = metadata::key_id(&current) == metadata::key_id(&requested.jwks);
                if rotated && same_kid {
                    return Err(invalid(
                        "the new key needs a kid of its own: the old key works on through the overlap",
                    ));
                }
                if !rotated && !same_kid {
                    return Err(invalid(
                        "a key keeps its kid: send the registered key as it is, or a new key",
                    ));
                }
                let action = if rotated {
                    "agent.key_rotated"
                } else {
                    "agent.updated"
                };
                let rows = updated(client, agent, requested, scopes, &self.config, self.now);
                let event = event(
                    action,
                    json!({
                        "kid": metadata::key_id(&current_keys(&rows.0)),
                        "key_expires_at": rows.1.key_expires_at,
                        "previous_key_expires_at": rows.1.previous_key_expires_at,
                        "repeated": how == Presented::Repeat,
                    }),
                );
                Ok(AgentChange {
                    value: Some(rows.clone()),
                    rows: Some(rows),
                    event,
                })
            }
        }
    }
}

/// The rows after an update: the new name and scopes, and when the key
/// changed, the rotation (the old key kept through the overlap, never
/// past its own expiry).
fn updated(
    mut client: ClientRecord,
    mut agent: AgentRecord,
    requested: AgentMetadata,
    scopes: Vec<String>,
    config: &AgentsConfig,
    now: i64,
) -> AgentWithClient {
    client.name = requested.name;
    client.scopes = scopes.join(" ");
    client.updated_at = now;
    if !metadata::same_key(&current_keys(&client), &requested.jwks) {
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
