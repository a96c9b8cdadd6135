//! The token endpoint's core (RFC 6749 §3.2): parse the parameters, find
//! the grant, let it authenticate and issue. Each grant lives in its own
//! file under `grants/`.

use std::collections::HashMap;

use serde::Serialize;

use super::client_auth::PresentedCredentials;
use super::error::named;
use super::{ErrorCode, OAuthError, grants, syntax};
use crate::oauth::Core;
use crate::secret::Secret;

/// Parameters whose values are credentials: kept as [`Secret`], so a
/// request's `Debug` never shows them.
const SECRET_PARAMETERS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "assertion",
    "token",
    "refresh_token",
    "code",
    "code_verifier",
    "device_code",
    "subject_token",
    "actor_token",
    "password",
];

/// The form parameters, each in its grammar (`syntax`). Only `audience`
/// and `resource` may repeat (RFC 8693 §2.1, RFC 8707 §2); any other
/// repeated parameter is an error (RFC 6749 §3.2).
#[derive(Debug, Default)]
pub struct TokenRequest {
    params: HashMap<String, String>,
    secrets: HashMap<String, Secret>,
    pub audience: Vec<String>,
    pub resource: Vec<String>,
}

impl TokenRequest {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let mut request = TokenRequest::default();
        for (name, value) in pairs {
            syntax::check_parameter(&name, &value)?;
            match name.as_str() {
                "audience" => request.audience.push(value),
                "resource" => request.resource.push(value),
                _ => {
                    let repeated = if SECRET_PARAMETERS.contains(&name.as_str()) {
                        request
                            .secrets
                            .insert(name.clone(), Secret::new(value))
                            .is_some()
                    } else {
                        request.params.insert(name.clone(), value).is_some()
                    };
                    if repeated {
                        return Err(OAuthError::invalid_request(format!(
                            "the parameter `{}` is repeated",
                            named(&name)
                        )));
                    }
                }
            }
        }
        Ok(request)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .or_else(|| self.secrets.get(name).map(Secret::expose))
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::invalid_request(format!("the parameter `{name}` is required"))
        })
    }

    /// Splits the client-authentication parameters off the request.
    pub fn credentials(&self, basic: Option<Secret>) -> PresentedCredentials {
        PresentedCredentials {
            basic,
            client_id: self.get("client_id").map(str::to_owned),
            client_secret: self.secret("client_secret"),
            client_assertion_type: self.get("client_assertion_type").map(str::to_owned),
            client_assertion: self.secret("client_assertion"),
        }
    }

    fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets.get(name).filter(|s| !s.is_empty()).cloned()
    }

    /// RFC 8707 resources and RFC 8693 audiences, as one list.
    pub fn targets(&self) -> Vec<String> {
        self.audience
            .iter()
            .chain(&self.resource)
            .cloned()
            .collect()
    }
}

/// RFC 6749 §5.1.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8693 §2.2.1, on a token exchange's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    /// RFC 6749 §5.1: a rotated `tsr_rt_` token (authorization code and
    /// refresh grants, when `offline_access` was granted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// Seconds until `refresh_token` expires unused (GitHub's name for it;
    /// not in RFC 6749, which §5.1 lets a server extend): a CLI shows it
    /// as when its login ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<u64>,
    /// OIDC Core §3.1.3.3, when `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
}

/// What the caller's connection tells us.
pub struct RequestContext {
    pub basic: Option<Secret>,
    pub remote: Option<String>,
}

pub async fn exchange(
    state: &Core,
    request: TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let grant_type = request.require("grant_type")?;
    match grant_type {
        grants::client_credentials::GRANT_TYPE => {
            grants::client_credentials::grant(state, &request, context).await
        }
        grants::jwt_bearer::GRANT_TYPE => grants::jwt_bearer::grant(state, &request, context).await,
        grants::authorization_code::GRANT_TYPE => {
            grants::authorization_code::grant(state, &request, context).await
        }
        grants::refresh_token::GRANT_TYPE => {
            grants::refresh_token::grant(state, &request, context).await
        }
        grants::device_code::GRANT_TYPE => {
            grants::device_code::grant(state, &request, context).await
        }
        grants::token_exchange::GRANT_TYPE => {
            grants::token_exchange::grant(state, &request, context).await
        }
        other => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("the grant type `{}` is not supported", named(other)),
        )),
    }
}
