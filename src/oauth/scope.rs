//! Scope (RFC 6749 §3.3) and audience (RFC 8707 §2, RFC 8693 §2.1)
//! decisions shared by every grant.

use std::collections::BTreeSet;

use super::{ErrorCode, OAuthError};

/// All allowed scopes when none are asked for; else the request, which
/// must be a subset of `allowed`.
pub fn grant_scopes(
    allowed: &[String],
    requested: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else {
        return Ok(allowed.to_vec());
    };
    subset(allowed, requested.split(' ').filter(|s| !s.is_empty()))
}

/// The requested scopes, once each, each of which must be allowed.
fn subset<'a>(
    allowed: &[String],
    requested: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, OAuthError> {
    let mut granted: Vec<String> = Vec::new();
    for scope in requested {
        if !allowed.iter().any(|s| s == scope) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("the caller may not ask for the scope `{scope}`"),
            ));
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    Ok(granted)
}

/// The requested audiences, each of which must be allowed; `default` when
/// none are asked for.
pub fn grant_audience(
    allowed: &[String],
    default: String,
    requested: &[String],
) -> Result<Vec<String>, OAuthError> {
    if requested.is_empty() {
        return Ok(vec![default]);
    }
    if let Some(audience) = requested.iter().find(|a| !allowed.contains(a)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!("the caller may not ask for the audience `{audience}`"),
        ));
    }
    let unique: BTreeSet<&String> = requested.iter().collect();
    Ok(unique.into_iter().cloned().collect())
}

/// What a service user's scope parameter asks for on the JWT-bearer grant.
#[derive(Debug, PartialEq, Eq)]
pub struct ServiceUserRequest {
    pub scopes: Vec<String>,
    /// Audiences asked for through ZITADEL's reserved audience scopes.
    pub audiences: Vec<String>,
}

/// OIDC Core §3.1.2.1: the `openid` scope value. This grant issues no ID
/// token, but ZITADEL's SDKs ask for it, so any service user may.
const OPENID: &str = "openid";
/// Every scope ZITADEL reserves starts so.
const ZITADEL_RESERVED: &str = "urn:zitadel:iam:";
/// `urn:zitadel:iam:org:project:id:{id}:aud` asks for `{id}` in `aud`.
const ZITADEL_PROJECT: &str = "urn:zitadel:iam:org:project:id:";
const ZITADEL_AUDIENCE_SUFFIX: &str = ":aud";
/// The project id ZITADEL's SDKs use for ZITADEL's own API: here, Tessera's.
const ZITADEL_OWN_PROJECT: &str = "zitadel";

/// RFC 6749 §3.3 for a service user, with the scopes ZITADEL's SDKs send by
/// default (`openid urn:zitadel:iam:org:project:id:zitadel:aud`) understood
/// as in ZITADEL: `openid` is allowed to everyone,
/// `urn:zitadel:iam:org:project:id:{id}:aud` adds `{id}` to the audience if
/// the user may ask for it (`zitadel` meaning `issuer`), and every other
/// reserved ZITADEL scope is refused by name. No parameter grants every
/// allowed scope, as elsewhere.
pub fn service_user_request(
    allowed_scopes: &[String],
    allowed_audiences: &[String],
    issuer: &str,
    requested: Option<&str>,
) -> Result<ServiceUserRequest, OAuthError> {
    let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else {
        return Ok(ServiceUserRequest {
            scopes: allowed_scopes.to_vec(),
            audiences: Vec::new(),
        });
    };
    let mut plain = Vec::new();
    let mut audiences: Vec<String> = Vec::new();
    let mut unsupported = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        let project = scope
            .strip_prefix(ZITADEL_PROJECT)
            .and_then(|rest| rest.strip_suffix(ZITADEL_AUDIENCE_SUFFIX))
            .filter(|id| !id.is_empty() && !id.contains(':'));
        let audience = match project {
            Some(ZITADEL_OWN_PROJECT) => issuer,
            Some(id) if allowed_audiences.iter().any(|a| a == id) => id,
            Some(_) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("the caller may not ask for the audience of `{scope}`"),
                ));
            }
            None if scope.starts_with(ZITADEL_RESERVED) => {
                unsupported.push(format!("`{scope}`"));
                continue;
            }
            None => {
                plain.push(scope);
                continue;
            }
        };
        if !audiences.iter().any(|a| a == audience) {
            audiences.push(audience.to_owned());
        }
    }
    if !unsupported.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!(
                "these reserved ZITADEL scopes are not supported: {}",
                unsupported.join(" ")
            ),
        ));
    }
    let openid = plain.contains(&OPENID);
    let mut scopes = subset(allowed_scopes, plain.into_iter().filter(|s| *s != OPENID))?;
    if openid {
        scopes.insert(0, OPENID.to_owned());
    }
    Ok(ServiceUserRequest { scopes, audiences })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://id.example.com";

    fn ask(scope: &str) -> Result<ServiceUserRequest, OAuthError> {
        let allowed = ["read".to_owned(), "write".to_owned()];
        let audiences = ["170079991923474689".to_owned()];
        service_user_request(&allowed, &audiences, ISSUER, Some(scope))
    }

    #[test]
    fn zitadel_sdk_defaults_are_openid_and_the_issuer() {
        let asked = ask("openid urn:zitadel:iam:org:project:id:zitadel:aud").unwrap();
        assert_eq!(asked.scopes, ["openid"]);
        assert_eq!(asked.audiences, [ISSUER]);
    }

    #[test]
    fn a_project_audience_needs_the_users_permission() {
        let asked = ask("read urn:zitadel:iam:org:project:id:170079991923474689:aud").unwrap();
        assert_eq!(asked.scopes, ["read"]);
        assert_eq!(asked.audiences, ["170079991923474689"]);
        let refused = ask("urn:zitadel:iam:org:project:id:999:aud").unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn other_reserved_scopes_are_refused_by_name() {
        let refused =
            ask("openid urn:zitadel:iam:user:metadata urn:zitadel:iam:org:id:1").unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidScope);
        assert!(
            refused
                .description
                .contains("`urn:zitadel:iam:user:metadata`")
        );
        assert!(refused.description.contains("`urn:zitadel:iam:org:id:1`"));
        assert_eq!(ask("admin").unwrap_err().code, ErrorCode::InvalidScope);
    }
}
