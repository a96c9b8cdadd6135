//! Managing clients: registration, updates, deletion and secret rotation.
//! Secrets are generated here (256 bits), returned once, and stored only as
//! a keyed digest.

use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::json;

use super::client::{AuthMethod, Client, ClientSpec};
use super::{ErrorCode, OAuthError, etag};
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::random::{new_id, random_base62};
use crate::store::{
    ClientChange, ClientRecord, ClientSecretRecord, ClientStore, NewSecret, StoreError,
};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

/// A new client and, for secret-based methods, its secret: shown once.
#[derive(Debug)]
pub struct Registered {
    pub client: Client,
    pub client_secret: Option<OpaqueToken>,
}

fn not_found(id: &str) -> OAuthError {
    OAuthError::not_found(format!("no client `{id}`"))
}

fn new_secret(
    digest_key: &hmac::Key,
    client_id: &str,
    now: i64,
) -> (OpaqueToken, ClientSecretRecord) {
    let secret = OpaqueToken::generate(TokenKind::ClientSecret);
    let record = ClientSecretRecord {
        id: new_id(),
        client_id: client_id.to_owned(),
        digest: secret.digest(digest_key),
        created_at: now,
        expires_at: None,
    };
    (secret, record)
}

pub async fn register<S: ClientStore>(
    store: &S,
    digest_key: &hmac::Key,
    spec: ClientSpec,
    max_lifetime: Duration,
    actor: Actor,
) -> Result<Registered, OAuthError> {
    if spec.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(OAuthError::invalid_request("name is required"));
    }
    let now = clock::now();
    let client = Client::blank(random_base62(24), now).apply(spec, max_lifetime)?;
    let (secret, secret_record) = if client.token_endpoint_auth_method.uses_secret() {
        let (secret, record) = new_secret(digest_key, &client.client_id, now);
        (Some(secret), Some(record))
    } else {
        (None, None)
    };
    let event = Event::new(actor, "client.created", Outcome::Success)
        .target(client.client_id.clone())
        .client(client.client_id.clone())
        .details(json!({ "name": client.name, "auth_method": client.token_endpoint_auth_method }))
        .into_record(clock::now_ms());
    store
        .create_client(client.to_record(), secret_record, event)
        .await?;
    Ok(Registered {
        client,
        client_secret: secret,
    })
}

pub async fn get<S: ClientStore>(store: &S, id: &str) -> Result<Client, OAuthError> {
    store
        .client(id.to_owned())
        .await?
        .map(Client::from)
        .ok_or_else(|| not_found(id))
}

pub async fn list<S: ClientStore>(store: &S) -> Result<Vec<Client>, OAuthError> {
    Ok(store
        .list_clients()
        .await?
        .into_iter()
        .map(Client::from)
        .collect())
}

/// Applies `spec` to an existing client, reading and writing it in one
/// transaction, if the client still has the entity tag `if_match` names
/// (RFC 9110 §13.1.1; no header, no precondition). Moving to a
/// secret-based method from one without a secret is refused: rotate the
/// secret instead.
pub async fn update<S: ClientStore>(
    store: &S,
    id: &str,
    spec: ClientSpec,
    max_lifetime: Duration,
    actor: Actor,
    if_match: Option<String>,
) -> Result<Client, OAuthError> {
    not_an_agent(id)?;
    let change = move |record| {
        let current = Client::from(record);
        etag::check(if_match.as_deref(), &etag::of(&current))?;
        let mut client = current.change(spec, max_lifetime)?;
        client.updated_at = clock::now();
        let event = Event::new(actor, "client.updated", Outcome::Success)
            .target(client.client_id.clone())
            .client(client.client_id.clone())
            .details(json!({ "enabled": client.enabled }))
            .into_record(clock::now_ms());
        let change = ClientChange {
            client: client.to_record(),
            new_secret: None,
            event,
        };
        Ok((change, client))
    };
    changed(store.change_client(id.to_owned(), change).await, id)
}

/// An agent's client keeps the agent's rules (its key expires and rotates,
/// its scopes follow its service user, disabling it revokes its bootstrap
/// token): it is changed through `/admin/v1/agents` and its own RFC 7592
/// registration, not as a client.
fn not_an_agent(id: &str) -> Result<(), OAuthError> {
    if crate::oauth::agents::is_agent_id(id) {
        return Err(OAuthError::new(
            ErrorCode::Conflict,
            "this client is an agent: manage it with /admin/v1/agents (tessera agent)",
        ));
    }
    Ok(())
}

/// A store change's outcome as the admin API reports it.
fn changed<T>(
    outcome: Result<Result<T, OAuthError>, StoreError>,
    id: &str,
) -> Result<T, OAuthError> {
    match outcome {
        Ok(result) => result,
        Err(StoreError::NotFound) => Err(not_found(id)),
        Err(other) => Err(other.into()),
    }
}

/// Deletes a client; with `If-Match`, only the version the caller read
/// (RFC 9110 §13.1.1: the precondition is evaluated before the method).
pub async fn delete<S: ClientStore>(
    store: &S,
    id: &str,
    actor: Actor,
    if_match: Option<String>,
) -> Result<(), OAuthError> {
    not_an_agent(id)?;
    let event = Event::new(actor, "client.deleted", Outcome::Success)
        .target(id.to_owned())
        .client(id.to_owned())
        .into_record(clock::now_ms());
    let precondition = move |current: ClientRecord| {
        etag::check(if_match.as_deref(), &etag::of(&Client::from(current)))
    };
    changed(
        store
            .delete_client(id.to_owned(), event, precondition)
            .await,
        id,
    )
}

/// A new secret; the old one keeps working for `grace`, then only the new
/// one does. The client is locked while its secrets change, so concurrent
/// rotations leave one current secret, not several.
pub async fn rotate_secret<S: ClientStore>(
    store: &S,
    digest_key: &hmac::Key,
    id: &str,
    grace: Duration,
    actor: Actor,
    if_match: Option<String>,
) -> Result<OpaqueToken, OAuthError> {
    not_an_agent(id)?;
    let now = clock::now();
    let (secret, record) = new_secret(digest_key, id, now);
    let event = Event::new(actor, "client.secret_rotated", Outcome::Success)
        .target(id.to_owned())
        .client(id.to_owned())
        .details(json!({ "grace_seconds": grace.as_secs() }))
        .into_record(clock::now_ms());
    let change = move |current: ClientRecord| {
        etag::check(
            if_match.as_deref(),
            &etag::of(&Client::from(current.clone())),
        )?;
        let method = AuthMethod::parse(&current.auth_method);
        if !method.is_some_and(AuthMethod::uses_secret) {
            return Err(OAuthError::new(
                ErrorCode::Conflict,
                "this client authenticates without a secret",
            ));
        }
        // The representation holds no secret, so the rotation moves
        // `updated_at` forward, at least by one second: each rotation gets
        // a new ETag, and a second `If-Match` with the old one fails.
        let mut client = current;
        client.updated_at = now.max(client.updated_at + 1);
        let change = ClientChange {
            client,
            new_secret: Some(NewSecret {
                secret: record,
                previous_until: now + grace.as_secs() as i64,
            }),
            event,
        };
        Ok((change, ()))
    };
    changed(store.change_client(id.to_owned(), change).await, id)?;
    Ok(secret)
}
