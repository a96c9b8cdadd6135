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
pub const USERINFO_PATH: &str = "/oauth/userinfo";
pub const END_SESSION_PATH: &str = "/oauth/end_session";

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
    /// RFC 8414 §2 (RECOMMENDED), OIDC Discovery §3: among them Tessera's
    /// own API scopes (`api_scopes`).
    pub scopes_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_types_supported: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signing_alg_values_supported: Option<Vec<&'static str>>,
    /// OIDC Discovery §3; also listed in the RFC 8414 document so that
    /// both name the same endpoints.
    pub userinfo_endpoint: String,
    /// OIDC RP-Initiated Logout §2.1.
    pub end_session_endpoint: String,
    /// RFC 8628 §4.
    pub device_authorization_endpoint: String,
    /// RFC 8414 §2, RFC 7591 §3: agents register here with a bootstrap
    /// token (there is no open registration).
    pub registration_endpoint: String,
    pub response_modes_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    /// RFC 9207 §3: `iss` is on every authorization response.
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_supported: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_values_supported: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_parameter_supported: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_uri_parameter_supported: Option<bool>,
}

/// OIDC Discovery 1.0 §3: every REQUIRED member, and the RECOMMENDED ones
/// Tessera serves. RS256 is listed first: §3 requires it.
pub fn openid_configuration(config: &Config) -> ProviderMetadata {
    ProviderMetadata {
        subject_types_supported: Some(vec!["public"]),
        id_token_signing_alg_values_supported: Some(vec!["RS256", "ES256"]),
        claims_supported: Some(vec![
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "amr",
            "sid",
            "azp",
            "name",
            "preferred_username",
            "updated_at",
            "email",
            "email_verified",
        ]),
        prompt_values_supported: Some(vec!["none", "login", "consent"]),
        request_parameter_supported: Some(false),
        request_uri_parameter_supported: Some(false),
        ..oauth_authorization_server(config)
    }
}

/// The scopes a client can ask for: OpenID Connect's (OIDC Core §5.4,
/// §11) and Tessera's own API scopes.
fn scopes_supported() -> Vec<&'static str> {
    let mut scopes = crate::oauth::authorize::OIDC_SCOPES.to_vec();
    scopes.extend(crate::oauth::api_scopes::ALL.iter().copied());
    scopes
}

/// RFC 8414 §2: the authorization code flow (`code` only, PKCE S256
/// only), the token endpoint's grants, and the same endpoints as the OpenID
/// document.
pub fn oauth_authorization_server(config: &Config) -> ProviderMetadata {
    ProviderMetadata {
        issuer: config.issuer().to_owned(),
        authorization_endpoint: config.endpoint(AUTHORIZATION_PATH),
        token_endpoint: config.endpoint(TOKEN_PATH),
        jwks_uri: config.endpoint(JWKS_PATH),
        response_types_supported: vec!["code"],
        grant_types_supported: GrantType::ALL.iter().map(|g| g.as_str()).collect(),
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            // Public clients of the authorization code flow (RFC 7591 §2).
            "none",
        ],
        token_endpoint_auth_signing_alg_values_supported: vec!["RS256", "ES256", "EdDSA"],
        introspection_endpoint: config.endpoint(INTROSPECTION_PATH),
        introspection_endpoint_auth_methods_supported: CALLER_AUTH_METHODS.to_vec(),
        revocation_endpoint: config.endpoint(REVOCATION_PATH),
        revocation_endpoint_auth_methods_supported: CALLER_AUTH_METHODS.to_vec(),
        scopes_supported: scopes_supported(),
        subject_types_supported: None,
        id_token_signing_alg_values_supported: None,
        userinfo_endpoint: config.endpoint(USERINFO_PATH),
        end_session_endpoint: config.endpoint(END_SESSION_PATH),
        device_authorization_endpoint: config
            .endpoint(crate::oauth::device::DEVICE_AUTHORIZATION_PATH),
        registration_endpoint: config
            .endpoint(crate::oauth::agents::registration::REGISTRATION_PATH),
        response_modes_supported: vec!["query"],
        code_challenge_methods_supported: vec!["S256"],
        authorization_response_iss_parameter_supported: true,
        claims_supported: None,
        prompt_values_supported: None,
        request_parameter_supported: None,
        request_uri_parameter_supported: None,
    }
}
