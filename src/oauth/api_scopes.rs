//! The scopes of Tessera's own API (the admin API under `/admin/v1`). An
//! access token carrying any of them has Tessera's issuer URL in `aud`
//! (RFC 9068 §3: a resource server accepts only tokens meant for it).
//!
//! - `admin`: all of the admin API; granted to administrators only.
//! - `admin:read`: every GET of the admin API; administrators only.
//! - `audit:read`: `GET /admin/v1/audit`; administrators only.
//! - `tokens:self`: a person's or service user's own tokens (PATs); anyone.
//!
//! A token with none of them reaches `GET /admin/v1/whoami` and nothing
//! else (RFC 6750 §3.1 `insufficient_scope`).

pub const ADMIN: &str = "admin";
pub const ADMIN_READ: &str = "admin:read";
pub const AUDIT_READ: &str = "audit:read";
pub const TOKENS_SELF: &str = "tokens:self";

/// Every API scope, as discovery lists them.
pub const ALL: [&str; 4] = [ADMIN, ADMIN_READ, AUDIT_READ, TOKENS_SELF];

/// Whether `scope` may be granted to a user: the admin scopes need an
/// administrator, `tokens:self` anyone. Scopes that are not API scopes are
/// not this function's to decide and are allowed.
pub fn allowed_for_user(is_admin: bool, scope: &str) -> bool {
    match scope {
        ADMIN | ADMIN_READ | AUDIT_READ => is_admin,
        _ => true,
    }
}

/// Whether `scope` is one of Tessera's API scopes.
/// Whether giving `scopes` needs a fresher sign-in than one at
/// `auth_time`: an administrator handing out Tessera's admin API scopes
/// signs in again past `sessions.reauthenticate_after`, as GitHub's "sudo
/// mode" does, on the device page and the authorization endpoint alike.
pub fn needs_recent_login(
    core: &super::Core,
    scopes: &[String],
    is_admin: bool,
    auth_time: i64,
) -> bool {
    let powerful = scopes
        .iter()
        .any(|s| [ADMIN, ADMIN_READ, AUDIT_READ].contains(&s.as_str()));
    let recent = core.config.sessions.reauthenticate_after.as_secs() as i64;
    is_admin && powerful && crate::clock::now().saturating_sub(auth_time) > recent
}

pub fn is_api_scope(scope: &str) -> bool {
    ALL.contains(&scope)
}

/// The one operation any valid token reaches.
pub const WHOAMI_PATH: &str = "/admin/v1/whoami";
/// The operation `audit:read` reaches.
pub const AUDIT_PATH: &str = "/admin/v1/audit";
/// Personal and machine tokens: `tokens:self` reaches these, for the
/// caller's own tokens (the operations check whose a token is).
pub const TOKENS_PATH: &str = "/admin/v1/tokens";

/// Agents and their bootstrap tokens: `tokens:self` reaches these too, for
/// the agents of the service users the caller owns.
pub const AGENTS_PATH: &str = "/admin/v1/agents";

/// Whether `path` (a route template) is one of the token or agent
/// operations.
pub fn is_tokens_path(path: &str) -> bool {
    path == TOKENS_PATH
        || path.starts_with("/admin/v1/tokens/")
        || path == AGENTS_PATH
        || path.starts_with("/admin/v1/agents/")
}

/// Whether a token whose holder `is_admin` and that carries `scopes` may
/// make an admin API request to `path` (`read`: GET or HEAD):
///
/// - `whoami`: any valid token;
/// - the token operations: `tokens:self` (for one's own tokens) too;
/// - otherwise only an administrator's token, with `admin` for anything,
///   `admin:read` for any read, `audit:read` for reading the audit log.
pub fn permits(is_admin: bool, scopes: &[String], read: bool, path: &str) -> bool {
    if path == WHOAMI_PATH {
        return true;
    }
    let has = |wanted: &str| scopes.iter().any(|s| s == wanted);
    if is_tokens_path(path) && has(TOKENS_SELF) {
        return true;
    }
    is_admin
        && (has(ADMIN)
            || (read && has(ADMIN_READ))
            || (read && path == AUDIT_PATH && has(AUDIT_READ)))
}

/// The scope a refused request needs at least, for the challenge's
/// `scope` attribute (RFC 6750 §3): the narrowest one that would do.
pub fn needed_scope(read: bool, path: &str) -> &'static str {
    if is_tokens_path(path) {
        return TOKENS_SELF;
    }
    match (read, path == AUDIT_PATH) {
        (true, true) => AUDIT_READ,
        (true, false) => ADMIN_READ,
        (false, _) => ADMIN,
    }
}

/// What a refused request needed, for the `insufficient_scope`
/// description (RFC 6750 §3.1).
pub fn needed(read: bool, path: &str) -> &'static str {
    if is_tokens_path(path) {
        return "this request needs a token with the tokens:self scope (or an administrator's \
                admin scope)";
    }
    match (read, path == AUDIT_PATH) {
        (true, true) => {
            "this request needs an administrator's token with the admin, admin:read or audit:read scope"
        }
        (true, false) => {
            "this request needs an administrator's token with the admin or admin:read scope"
        }
        (false, _) => "this request needs an administrator's token with the admin scope",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &str) -> Vec<String> {
        list.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn admin_api_rules() {
        let clients = "/admin/v1/clients";
        // admin: everything, for an administrator only.
        for (read, path) in [(true, clients), (false, clients), (true, AUDIT_PATH)] {
            assert!(permits(true, &scopes("admin"), read, path));
            assert!(!permits(false, &scopes("admin"), read, path));
        }
        // admin:read: every read, no write.
        assert!(permits(true, &scopes("admin:read"), true, clients));
        assert!(permits(true, &scopes("admin:read"), true, AUDIT_PATH));
        assert!(!permits(true, &scopes("admin:read"), false, clients));
        assert!(!permits(false, &scopes("admin:read"), true, clients));
        // audit:read: the audit log only, and only to read it.
        assert!(permits(true, &scopes("audit:read"), true, AUDIT_PATH));
        assert!(!permits(true, &scopes("audit:read"), true, clients));
        assert!(!permits(true, &scopes("audit:read"), false, AUDIT_PATH));
        assert!(!permits(false, &scopes("audit:read"), true, AUDIT_PATH));
        // No API scope, or tokens:self: whoami only.
        for list in ["", "tokens:self", "openid profile"] {
            assert!(permits(false, &scopes(list), true, WHOAMI_PATH));
            assert!(!permits(true, &scopes(list), true, clients), "{list}");
            assert!(!permits(true, &scopes(list), true, AUDIT_PATH), "{list}");
        }
        // A scope is matched whole, not as a prefix.
        assert!(!permits(
            true,
            &scopes("administrator admin:readonly"),
            true,
            clients
        ));
        assert!(needed(false, clients).contains("admin scope"));
        // tokens:self: the token operations, for anyone.
        for path in [TOKENS_PATH, "/admin/v1/tokens/{id}/roll"] {
            assert!(permits(false, &scopes("tokens:self"), false, path));
            assert!(permits(false, &scopes("tokens:self"), true, path));
            assert!(!permits(false, &scopes("openid"), true, path));
            assert!(permits(true, &scopes("admin"), false, path));
            assert_eq!(needed_scope(false, path), TOKENS_SELF);
        }
        assert!(!permits(
            false,
            &scopes("tokens:self"),
            true,
            "/admin/v1/tokensx"
        ));
        assert!(needed(true, AUDIT_PATH).contains("audit:read"));
    }

    #[test]
    fn admin_scopes_need_an_administrator() {
        for scope in [ADMIN, ADMIN_READ, AUDIT_READ] {
            assert!(allowed_for_user(true, scope));
            assert!(!allowed_for_user(false, scope), "{scope}");
        }
        assert!(allowed_for_user(false, TOKENS_SELF));
        assert!(allowed_for_user(true, TOKENS_SELF));
        assert!(allowed_for_user(false, "openid"));
        assert!(is_api_scope("audit:read") && !is_api_scope("openid"));
    }
}
