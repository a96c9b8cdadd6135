//! The OAuth client side of `tessera login`, on the `oauth2` crate: the
//! server's endpoints from its discovery document, and the token answers
//! with the one field Tessera adds (`refresh_token_expires_in`).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, ClientId, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet,
    ExtraTokenFields, RequestTokenError, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::store::Login;
use crate::secret::Secret;

/// What Tessera adds to a token answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoginFields {
    /// Seconds until the refresh token expires unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<u64>,
}

impl ExtraTokenFields for LoginFields {}

pub type Tokens = StandardTokenResponse<LoginFields, BasicTokenType>;

/// A public client of the token endpoint, with the other endpoints
/// (authorization, device authorization, revocation) as the type says.
pub type Client<Auth = EndpointSet, Device = EndpointSet, Revocation = EndpointNotSet> =
    oauth2::Client<
        BasicErrorResponse,
        Tokens,
        BasicTokenIntrospectionResponse,
        StandardRevocableToken,
        BasicRevocationErrorResponse,
        Auth,
        Device,
        EndpointNotSet,
        Revocation,
        EndpointSet,
    >;

/// The parts of the discovery document (RFC 8414 §2) a login needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub device_authorization_endpoint: Url,
    pub revocation_endpoint: Option<Url>,
}

/// An HTTP client that never follows a redirect (the `oauth2` crate's
/// advice: a redirect could carry a code or token elsewhere).
pub fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// Reads `url`'s discovery document. The URL and every endpoint must be
/// https, or http on loopback (`insecure` lifts that, as for the admin
/// commands), and the document must name `url` as its issuer.
pub async fn discover(
    http: &reqwest::Client,
    url: &Url,
    insecure: bool,
) -> anyhow::Result<Endpoints> {
    crate::cli::client::refuse_cleartext(url, insecure)?;
    let document = url
        .join(".well-known/openid-configuration")
        .context("bad server URL")?;
    let response = http
        .get(document.clone())
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach Tessera at {url}: {}", root_cause(&e)))?;
    if !response.status().is_success() {
        bail!("{document} answered HTTP {}", response.status());
    }
    let endpoints: Endpoints = response.json().await.with_context(|| {
        format!("{document} is not a discovery document with a device endpoint")
    })?;
    // RFC 8414 §3.3: the document is the issuer's own, or it is not used.
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if !same(&endpoints.issuer, url.as_str()) {
        bail!(
            "{url} names its issuer {}: log in with --url {}",
            printable(&endpoints.issuer),
            printable(&endpoints.issuer)
        );
    }
    for endpoint in [
        &endpoints.authorization_endpoint,
        &endpoints.token_endpoint,
        &endpoints.device_authorization_endpoint,
    ]
    .into_iter()
    .chain(&endpoints.revocation_endpoint)
    {
        crate::cli::client::refuse_cleartext(endpoint, insecure)?;
    }
    Ok(endpoints)
}

/// The client for refreshing: the token endpoint only.
pub fn token_client(
    client_id: &str,
    token_endpoint: &Url,
) -> Client<EndpointNotSet, EndpointNotSet> {
    oauth2::Client::new(ClientId::new(client_id.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::from_url(token_endpoint.clone()))
}

/// The client for signing in, by the browser or the device flow.
pub fn client(client_id: &str, endpoints: &Endpoints) -> Client {
    token_client(client_id, &endpoints.token_endpoint)
        .set_auth_uri(AuthUrl::from_url(endpoints.authorization_endpoint.clone()))
        .set_device_authorization_url(DeviceAuthorizationUrl::from_url(
            endpoints.device_authorization_endpoint.clone(),
        ))
}

/// The record a token answer makes, for the server at `url`.
pub fn login_from(
    url: &Url,
    client_id: &str,
    token_endpoint: &Url,
    revocation_endpoint: Option<&Url>,
    tokens: &Tokens,
) -> anyhow::Result<Login> {
    let now = crate::clock::now();
    let refresh_token = tokens.refresh_token().ok_or_else(|| {
        anyhow!("the server gave no refresh token: the client needs the refresh_token grant and the offline_access scope")
    })?;
    let scope = tokens
        .scopes()
        .map(|scopes| {
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let lifetime = tokens.expires_in().unwrap_or(Duration::from_secs(60));
    Ok(Login {
        url: url.clone(),
        client_id: client_id.to_owned(),
        token_endpoint: token_endpoint.clone(),
        revocation_endpoint: revocation_endpoint.cloned(),
        scope,
        refresh_token: Secret::new(refresh_token.secret().clone()),
        access_token: Secret::new(tokens.access_token().secret().clone()),
        access_expires_at: now + lifetime.as_secs() as i64,
        session_ends_at: tokens
            .extra_fields()
            .refresh_token_expires_in
            .map(|seconds| now + seconds as i64),
    })
}

/// Revokes `login`'s refresh token (RFC 7009 §2.1: a public client names
/// itself with `client_id`); Tessera ends the access tokens of its family
/// with it. Sent by hand: the `oauth2` crate revokes over https only, and
/// a local server is plain http on loopback.
pub async fn revoke(http: &reqwest::Client, login: &Login) -> anyhow::Result<()> {
    let Some(endpoint) = &login.revocation_endpoint else {
        bail!("the server names no revocation endpoint");
    };
    let response = http
        .post(endpoint.clone())
        .form(&[
            ("token", login.refresh_token.expose()),
            ("token_type_hint", "refresh_token"),
            ("client_id", login.client_id.as_str()),
        ])
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach the server to revoke: {}", root_cause(&e)))?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match ErrorBody::parse(&body) {
        Some(error) if error.description.is_some() => bail!("the revocation failed: {error}"),
        _ => bail!("the revocation failed: HTTP {status}"),
    }
}

/// One line for a failed token request: the server's own
/// `error_description` and `error` where it gave them.
pub fn describe<T: oauth2::ErrorResponse + std::fmt::Display + 'static>(
    error: &RequestTokenError<oauth2::HttpClientError<reqwest::Error>, T>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(response) => printable(&response.to_string()),
        RequestTokenError::Request(e) => format!("cannot reach the server: {}", root_cause(e)),
        RequestTokenError::Parse(e, _) => format!("the server's answer is not OAuth JSON: {e}"),
        RequestTokenError::Other(e) => e.clone(),
    }
}

/// Whether a failed token request says the grant itself is dead
/// (`invalid_grant`, RFC 6749 §5.2), rather than the way to it.
pub fn grant_is_dead(
    error: &RequestTokenError<oauth2::HttpClientError<reqwest::Error>, BasicErrorResponse>,
) -> bool {
    matches!(error, RequestTokenError::ServerResponse(response)
        if *response.error() == oauth2::basic::BasicErrorResponseType::InvalidGrant)
}

use crate::cli::client::{ErrorBody, printable, root_cause};
