//! The UserInfo endpoint's core (OIDC Core §5.3): the claims about the
//! user that the access token's scopes allow (§5.4: `profile`, `email`).

use serde_json::{Map, Value, json};

use super::token_status::introspect_access;
use super::{Core, OAuthError};
use crate::store::UserStore;

/// OIDC Core §5.3.2. The bearer token must be an active access token of
/// ours issued to a person with `openid`; errors are RFC 6750 §3.1 codes.
pub async fn claims(state: &Core, token: &str) -> Result<Value, OAuthError> {
    if token.starts_with("tsr_") {
        return Err(OAuthError::invalid_token(
            "userinfo needs an access token issued to a person",
        ));
    }
    let found = introspect_access(state, token).await?;
    if !found.active {
        return Err(OAuthError::invalid_token(
            "the access token is unknown, expired or revoked",
        ));
    }
    if found.identity_kind.as_deref() != Some("human") {
        return Err(OAuthError::invalid_token(
            "userinfo needs an access token issued to a person",
        ));
    }
    let scopes: Vec<&str> = found
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    if !scopes.contains(&"openid") {
        return Err(OAuthError::insufficient_scope(
            "openid",
            "the access token was not granted the openid scope",
        ));
    }
    let sub = found.sub.unwrap_or_default();
    let user = match state.store.user_by_id(sub.clone()).await? {
        Some(user) if !user.disabled => user,
        _ => {
            return Err(OAuthError::invalid_token(
                "the user is disabled or no longer exists",
            ));
        }
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.id));
    if scopes.contains(&"profile") {
        let name = user.display_name.clone().unwrap_or(user.username.clone());
        claims.insert("name".into(), json!(name));
        claims.insert("preferred_username".into(), json!(user.username));
        claims.insert("updated_at".into(), json!(user.updated_at));
    }
    if scopes.contains(&"email")
        && let Some(email) = &user.email
    {
        claims.insert("email".into(), json!(email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    Ok(Value::Object(claims))
}
