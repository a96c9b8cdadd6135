//! Client authentication at the token endpoint (RFC 6749 §2.3, OIDC Core
//! §9): `client_secret_basic`, `client_secret_post`, `private_key_jwt`
//! (RFC 7523 §2.2) and, for public clients, `none`. Each client is pinned
//! to the one method it registered.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::assertion::{self, AssertionError, Expectations, ReplayKey};
use super::client::{AuthMethod, Client};
use super::{ErrorCode, OAuthError};
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::Core;
use crate::secret::Secret;
use crate::tokens::opaque::OpaqueToken;

/// RFC 7523 §2.2.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// An assertion may live at most this long (OIDC Core §9 leaves it to us).
const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// What the request presented, before anything is checked. Credentials
/// are [`Secret`]s, so `Debug` shows only that they were there.
#[derive(Debug, Default)]
pub struct PresentedCredentials {
    /// The `Authorization` header's Basic credentials, still encoded.
    pub basic: Option<Secret>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<Secret>,
}

impl PresentedCredentials {
    fn uses_assertion(&self) -> bool {
        self.client_assertion.is_some() || self.client_assertion_type.is_some()
    }

    /// How many authentication methods the request uses (RFC 6749 §2.3:
    /// at most one).
    pub fn methods_presented(&self) -> usize {
        [
            self.basic.is_some(),
            self.client_secret.is_some(),
            self.uses_assertion(),
        ]
        .into_iter()
        .filter(|used| *used)
        .count()
    }
}

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded before they are
/// joined with `:` and base64-encoded.
pub fn decode_basic(header: &str) -> Option<(String, Secret)> {
    let decoded = STANDARD.decode(header.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((unescape(id)?, Secret::new(unescape(secret)?)))
}

fn invalid_client(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, description)
}

/// Authenticates the client, audits a failure (as far as
/// `Core::auth_failures` lets each source), and returns the client.
pub async fn authenticate(
    state: &Core,
    presented: &PresentedCredentials,
    remote: Option<String>,
) -> Result<Client, OAuthError> {
    match check(state, presented).await {
        Ok(client) => Ok(client),
        Err((error, client_id)) => {
            // Sampled per source like failed bearer authentication, so a
            // flood of random client ids costs a few rows a minute, not one
            // a request, and cannot fill the audit queue.
            let details = (error.code == ErrorCode::InvalidClient)
                .then(|| {
                    state
                        .auth_failures
                        .failure_details(remote.as_deref(), &error.description)
                })
                .flatten();
            if let Some(details) = details {
                let mut event = Event::new(
                    Actor {
                        id: client_id.clone(),
                        kind: ActorKind::Service,
                        owner: None,
                    },
                    "client.auth_failed",
                    Outcome::Failure,
                )
                .remote(remote)
                .details(details);
                if let Some(id) = client_id {
                    event = event.client(id);
                }
                event.record_via(&state.writer).await;
            }
            Err(error)
        }
    }
}

type Failure = (OAuthError, Option<String>);

async fn check(state: &Core, presented: &PresentedCredentials) -> Result<Client, Failure> {
    if presented.methods_presented() > 1 {
        return Err((
            OAuthError::invalid_request(
                "the request uses more than one client authentication method",
            ),
            presented.client_id.clone(),
        ));
    }
    let (client_id, secret, method) = if let Some(basic) = &presented.basic {
        let (id, secret) = decode_basic(basic.expose())
            .ok_or_else(|| (invalid_client("the Basic credentials are malformed"), None))?;
        if presented
            .client_id
            .as_ref()
            .is_some_and(|body_id| body_id != &id)
        {
            return Err((
                OAuthError::invalid_request("client_id differs from the Basic credentials"),
                Some(id),
            ));
        }
        (id, Some(secret), AuthMethod::ClientSecretBasic)
    } else if let Some(secret) = &presented.client_secret {
        let id = presented.client_id.clone().ok_or_else(|| {
            (
                OAuthError::invalid_request("client_secret without client_id"),
                None,
            )
        })?;
        (id, Some(secret.clone()), AuthMethod::ClientSecretPost)
    } else if presented.uses_assertion() {
        return private_key_jwt(state, presented).await;
    } else {
        let id = presented
            .client_id
            .clone()
            .ok_or_else(|| (invalid_client("client authentication is required"), None))?;
        (id, None, AuthMethod::None)
    };

    let failed = |description| Err((invalid_client(description), Some(client_id.clone())));
    let Some(cached) = state
        .client_cache
        .get(&state.store, &client_id)
        .await
        .map_err(|e| (e.into(), Some(client_id.clone())))?
    else {
        return failed("client authentication failed");
    };
    let client = cached.client.clone();
    if client.token_endpoint_auth_method != method {
        return failed("client authentication failed");
    }
    if let Some(secret) = secret {
        let presented = OpaqueToken::from_presented(secret.expose());
        // Compare with every valid secret (the current one and any still
        // in its grace period), each in constant time.
        let now = clock::now();
        let matched = cached
            .secrets
            .iter()
            .filter(|(_, expires)| expires.is_none_or(|at| at > now))
            .fold(false, |found, (d, _)| {
                presented.matches(&state.digest_key, d) | found
            });
        if !matched {
            return failed("client authentication failed");
        }
    }
    if !client.enabled {
        return failed("the client is disabled");
    }
    Ok(client)
}

/// RFC 7523 §2.2 and §3, OIDC Core §9: `iss` = `sub` = client id, `aud`
/// the issuer or the token endpoint and nothing else, `exp` at most five
/// minutes ahead, a single-use `jti`, signed by a registered key chosen by
/// `kid`.
async fn private_key_jwt(
    state: &Core,
    presented: &PresentedCredentials,
) -> Result<Client, Failure> {
    let hinted = presented.client_id.clone();
    if presented.client_assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION) {
        return Err((
            OAuthError::invalid_request("client_assertion_type must be jwt-bearer"),
            hinted,
        ));
    }
    let token = presented
        .client_assertion
        .as_ref()
        .map(Secret::expose)
        .ok_or_else(|| {
            (
                OAuthError::invalid_request("client_assertion is missing"),
                hinted.clone(),
            )
        })?;
    // The client is named by the unverified `sub` (or client_id); nothing
    // is trusted until the signature checks out with that client's key.
    let named = assertion::unverified_subject(token);
    let client_id = match (named, hinted) {
        (Some(sub), Some(hint)) if sub != hint => {
            return Err((
                invalid_client("the assertion's subject is not the client_id"),
                Some(hint),
            ));
        }
        (Some(sub), _) => sub,
        (None, _) => {
            return Err((
                invalid_client("the assertion is not a well-formed signed JWT"),
                None,
            ));
        }
    };
    let failed = |description| (invalid_client(description), Some(client_id.clone()));
    let cached = state
        .client_cache
        .get(&state.store, &client_id)
        .await
        .map_err(|e| (e.into(), Some(client_id.clone())))?
        .ok_or_else(|| failed("client authentication failed"))?;
    let client = &cached.client;
    if client.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
        return Err(failed("client authentication failed"));
    }
    let audiences = assertion::audiences(&state.config);
    let expect = Expectations {
        subject: &client.client_id,
        audiences: &audiences,
        max_lifetime: MAX_ASSERTION_LIFETIME,
        max_age: None,
        replay_key: ReplayKey::Jti,
        error: ErrorCode::InvalidClient,
    };
    let with_id = |e: OAuthError| (e, Some(client_id.clone()));
    // An unknown `kid` refetches a `jwks_uri` once (ClientKeys rate-limits
    // the refetch) before the assertion is refused.
    let mut verified = None;
    for refresh in [false, true] {
        let keys = state
            .client_keys
            .get(client, cached.jwks.as_ref(), refresh)
            .await
            .map_err(with_id)?
            .ok_or_else(|| failed("the client has no registered keys"))?;
        match assertion::verify(token, &keys, &expect) {
            Ok(claims) => {
                verified = Some(claims);
                break;
            }
            Err(AssertionError::UnknownKey) => continue,
            Err(AssertionError::Invalid(e)) => return Err(with_id(e)),
        }
    }
    let claims = verified.ok_or_else(|| failed("no registered key matches the assertion's kid"))?;
    if !client.enabled {
        return Err(failed("the client is disabled"));
    }
    assertion::consume_once(&state.writer, token, &claims, &expect)
        .await
        .map_err(with_id)?;
    Ok(client.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_urlencoded() {
        let header = STANDARD.encode("my%3Aclient:p%40ss+word%2B");
        assert_eq!(
            decode_basic(&header),
            Some(("my:client".into(), "p@ss word+".into()))
        );
        assert_eq!(decode_basic("!!!"), None);
    }
}
