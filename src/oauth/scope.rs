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
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
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
