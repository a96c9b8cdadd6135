//! Authorization server metadata: OpenID Connect Discovery 1.0 §3 and
//! RFC 8414 §2. Both documents list only what is implemented, and the same
//! endpoints: the OpenID document is the RFC 8414 one plus the members only
//! OpenID Connect defines. The lists grow as grants and endpoints land.

use serde::Serialize;

use crate::config::Config;
use crate::oauth::client::GrantType;

pub const AUTHORIZATION_PATH: &str = "/oauth/authorize";
pub const JWKS_PATH: &str = "/oauth/jwks";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const INTROSPECTION_PATH: &str = "/oauth/introspect";
pub const REVOCATION_PATH: &str = "/oauth/revoke";

/// How callers of introspection and revocation authenticate: as a client,
/// or with an administrator's bearer token.
const CALLER_AUTH_METHODS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "bearer",
];

#[derive(Debug, Clone, Serialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// REQUIRED by both documents; empty while no response type is served.
    pub response_types_supported: Vec<&'static str>,
    /// RFC 8414 §2: when omitted it would mean `authorization_code` and
    /// `implicit`, so it is always present.
    pub grant_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_types_supported: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signing_alg_values_supported: Option<Vec<&'static str>>,
}

/// OIDC Discovery 1.0 §3: the REQUIRED members that can be stated
/// truthfully today. `response_types_supported` stays empty until the
/// authorization code flow lands (§3 then requires `code`); RS256 is listed
/// first: §3 requires it.
pub fn openid_configuration(config: &Config) -> ProviderMetadata {
    ProviderMetadata {
        subject_types_supported: Some(vec!["public"]),
        id_token_signing_alg_values_supported: Some(vec!["RS256", "ES256"]),
        ..oauth_authorization_server(config)
    }
}

/// RFC 8414 §2. `authorization_endpoint` is optional while no grant uses
/// it, but the endpoint exists (OIDC Discovery §3 requires it): until the
/// code flow lands it answers every request with
/// `unsupported_response_type`, consistent with the empty
/// `response_types_supported`, and both documents list it.
pub fn oauth_authorization_server(config: &Config) -> ProviderMetadata {
    ProviderMetadata {
        issuer: config.issuer().to_owned(),
        authorization_endpoint: config.endpoint(AUTHORIZATION_PATH),
        token_endpoint: config.endpoint(TOKEN_PATH),
        jwks_uri: config.endpoint(JWKS_PATH),
        response_types_supported: vec![],
        grant_types_supported: GrantType::ALL.iter().map(|g| g.as_str()).collect(),
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        token_endpoint_auth_signing_alg_values_supported: vec!["RS256", "ES256", "EdDSA"],
        introspection_endpoint: config.endpoint(INTROSPECTION_PATH),
        introspection_endpoint_auth_methods_supported: CALLER_AUTH_METHODS.to_vec(),
        revocation_endpoint: config.endpoint(REVOCATION_PATH),
        revocation_endpoint_auth_methods_supported: CALLER_AUTH_METHODS.to_vec(),
        subject_types_supported: None,
        id_token_signing_alg_values_supported: None,
    }
}
