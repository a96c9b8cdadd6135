//! What a new token may be: its environment, lifetime and scopes.

use std::time::Duration;

use crate::config::PersonalTokensConfig;
use crate::oauth::api_scopes;
use crate::oauth::bearer::Principal;
use crate::oauth::error::named;
use crate::oauth::{ErrorCode, OAuthError, syntax};

/// The word that asks for a token that never expires.
pub const NEVER: &str = "never";

/// `env` must be one of the configured labels.
pub fn check_env(config: &PersonalTokensConfig, env: &str) -> Result<(), OAuthError> {
    if config.environments.iter().any(|e| e == env) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(format!(
            "env must be one of: {}",
            config.environments.join(", ")
        )))
    }
}

/// The lifetime `expires` names, within the caps: one of the configured
/// choices, at most `max_lifetime` and the environment's own maximum.
/// `None`: a machine token that never expires, where policy allows it.
pub fn lifetime(
    config: &PersonalTokensConfig,
    expires: &str,
    env: &str,
    machine: bool,
) -> Result<Option<Duration>, OAuthError> {
    if expires == NEVER {
        return if machine && config.allow_non_expiring_machine_tokens {
            Ok(None)
        } else if machine {
            Err(OAuthError::invalid_request(
                "tokens must expire: the administrator's policy \
                 (personal_tokens.allow_non_expiring_machine_tokens) does not allow `never`",
            ))
        } else {
            Err(OAuthError::invalid_request(
                "personal access tokens must expire; choose a lifetime",
            ))
        };
    }
    let choices = || config.expiry_choices.join(", ");
    let chosen = config.choice(expires).ok_or_else(|| {
        OAuthError::invalid_request(format!(
            "expires must be one of: {}{}",
            choices(),
            if machine && config.allow_non_expiring_machine_tokens {
                ", never"
            } else {
                ""
            }
        ))
    })?;
    let max = config.max_for(env);
    if chosen > max {
        return Err(OAuthError::invalid_request(format!(
            "expires {} is longer than the {} allowed for `{}` tokens",
            named(expires),
            humantime::format_duration(max),
            env
        )));
    }
    Ok(Some(chosen))
}

/// Who a new token is for, as far as its scopes go.
pub enum OwnerRights<'a> {
    Human {
        is_admin: bool,
    },
    Service {
        is_admin: bool,
        scopes: &'a [String],
    },
}

/// The scopes a new token gets: each one something the owner may have
/// (Tessera's API scopes by `api_scopes::allowed_for_user`; a service
/// user's own scopes besides), and no API scope the caller's own token
/// lacks unless the caller is an administrator with `admin` (a token
/// cannot mint a stronger one). `None` or blank: no scopes.
pub fn scopes(
    requested: Option<&str>,
    owner: &OwnerRights<'_>,
    caller: &Principal,
) -> Result<String, OAuthError> {
    let Some(requested) = requested.filter(|s| !s.trim().is_empty()) else {
        return Ok(String::new());
    };
    syntax::check_parameter("scope", requested)?;
    let caller_admin = caller.is_admin && caller.has_scope(api_scopes::ADMIN);
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split_whitespace() {
        let allowed = match owner {
            OwnerRights::Human { is_admin } => {
                api_scopes::is_api_scope(scope) && api_scopes::allowed_for_user(*is_admin, scope)
            }
            OwnerRights::Service { is_admin, scopes } => {
                if api_scopes::is_api_scope(scope) {
                    api_scopes::allowed_for_user(*is_admin, scope)
                } else {
                    scopes.iter().any(|s| s == scope)
                }
            }
        };
        if !allowed {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("the token's owner may not have the scope {}", named(scope)),
            ));
        }
        // A token acting for its owner passes on none but its own scopes;
        // a person (or the bootstrap administrator) none of the API
        // scopes their token lacks, unless it carries `admin`.
        let beyond_caller = if caller.token_kind.is_some() {
            !caller.has_scope(scope)
        } else {
            api_scopes::is_api_scope(scope) && !caller_admin && !caller.has_scope(scope)
        };
        if beyond_caller {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "your own token does not carry {}: a token cannot make a stronger one \
                     (for the admin scopes, log in with `tessera login --admin`)",
                    named(scope)
                ),
            ));
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted.join(" "))
}

/// `lifetime` within the owner's own cap (a service user's
/// `max_token_lifetime`) and, when the caller is itself a personal or
/// machine token, within that token's expiry: a token cannot make one
/// that outlives it.
pub fn within_caps(
    lifetime: Option<Duration>,
    owner_cap: Option<Duration>,
    caller: &Principal,
    now: i64,
) -> Result<Option<Duration>, OAuthError> {
    if let Some(cap) = owner_cap
        && lifetime.is_none_or(|l| l > cap)
    {
        // The service user's own setting refuses it: a conflict with its
        // state, not a malformed request.
        return Err(OAuthError::new(
            ErrorCode::Conflict,
            format!(
                "the service user's tokens live at most {} (its max_token_lifetime)",
                humantime::format_duration(cap)
            ),
        ));
    }
    if caller.token_kind.is_some()
        && let Some(exp) = caller.expires_at
        && lifetime.is_none_or(|l| now.saturating_add(l.as_secs() as i64) > exp)
    {
        return Err(OAuthError::invalid_request(
            "a token cannot make one that outlives it: choose a shorter lifetime",
        ));
    }
    Ok(lifetime)
}

/// The lifetime a roll gives the new token: the old one's duration,
/// under today's policy (a cap lowered since is applied; `never` only
/// while it is allowed).
pub fn rolled_lifetime(
    config: &PersonalTokensConfig,
    old_secs: Option<i64>,
    env: &str,
    machine: bool,
) -> Result<Option<Duration>, OAuthError> {
    match old_secs {
        None if machine && config.allow_non_expiring_machine_tokens => Ok(None),
        None => Err(OAuthError::new(
            ErrorCode::Conflict,
            "the token never expires, which the policy no longer allows: create a new one",
        )),
        Some(secs) => {
            let secs = u64::try_from(secs).unwrap_or(0);
            Ok(Some(Duration::from_secs(secs).min(config.max_for(env))))
        }
    }
}

/// The grace a roll gives the old token: 1 s to 24 h.
pub fn grace(seconds: u64) -> Result<Duration, OAuthError> {
    let grace = Duration::from_secs(seconds);
    if grace >= Duration::from_secs(1) && grace <= MAX_GRACE {
        Ok(grace)
    } else {
        Err(OAuthError::invalid_request(
            "grace_seconds must be from 1 to 86400 (24 hours)",
        ))
    }
}

const MAX_GRACE: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PersonalTokensConfig {
        let mut c = crate::config::Config::load(None, &Default::default())
            .unwrap()
            .personal_tokens;
        c.env_max_lifetime.insert("prod".into(), "7d".into());
        c
    }

    #[test]
    fn lifetimes_are_choices_within_the_caps() {
        let c = config();
        assert_eq!(
            lifetime(&c, "7d", "dev", false).unwrap(),
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(
            lifetime(&c, "30d", "dev", false).unwrap(),
            Some(Duration::from_secs(30 * 86400))
        );
        // Not a choice, even if a duration.
        assert!(lifetime(&c, "2d", "dev", false).is_err());
        assert!(lifetime(&c, "", "dev", false).is_err());
        // prod is capped at 7 days.
        assert!(lifetime(&c, "14d", "prod", false).is_err());
        assert!(lifetime(&c, "7d", "prod", true).is_ok());
        // never: refused for people always, for machines unless allowed.
        assert!(lifetime(&c, NEVER, "dev", false).is_err());
        assert!(lifetime(&c, NEVER, "dev", true).is_err());
        let mut allowed = c.clone();
        allowed.allow_non_expiring_machine_tokens = true;
        assert_eq!(lifetime(&allowed, NEVER, "dev", true).unwrap(), None);
        assert!(lifetime(&allowed, NEVER, "dev", false).is_err());
    }

    #[test]
    fn grace_is_bounded() {
        assert_eq!(grace(900).unwrap(), Duration::from_secs(900));
        for bad in [0, 86401] {
            assert!(grace(bad).is_err(), "{bad}");
        }
    }
}
