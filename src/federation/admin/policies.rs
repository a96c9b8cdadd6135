//! Trust policies (issue 9 item 2): which tokens of one trusted issuer may
//! act as which service user, with which scopes, for how long. Checked at
//! the edge: a policy must pin a repository or project by numeric id
//! unless saved `name_only` on purpose, and can never grant more than its
//! service user may have.

use crate::federation::presets::GITHUB_REFUSED_EVENTS;
use serde_json::json;

use super::{policy_from_record, policy_to_record};
use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::federation::conditions::CompiledConditions;
use crate::federation::model::{
    DEFAULT_LIFETIME, MAX_LIFETIME, MIN_LIFETIME, TrustPolicy, TrustPolicyPatch, TrustPolicySpec,
};
use crate::federation::presets::pins_an_id;
use crate::oauth::client::is_audience;
use crate::oauth::{ErrorCode, OAuthError, etag};
use crate::store::{CredentialStore, ServiceUserRecord, StoreError, TrustPolicyChange, TrustStore};

/// The longest `event_name` a policy may refuse, and how many.
const MAX_EVENT_LEN: usize = 100;
const MAX_EVENTS: usize = 32;
const MAX_CONDITIONS: usize = 64;

const NAME_RULE: &str = "name must be 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or \
    digit (the issued token's client_id is trust:<name>)";
const NAME_ONLY: &str = "no condition pins the repository or project by numeric id \
    (repository_id, repository_owner_id, project_id or namespace_id); names can be re-registered \
    by someone else. Add an exact id condition, or set name_only (--force-name-only)";

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
pub fn is_policy_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn not_found(name: &str) -> OAuthError {
    OAuthError::not_found(format!("no trust policy `{name}`"))
}

/// The checks that need no lookup, on the policy as it would be stored.
/// Every rule a policy must keep on its own, its regular expressions
/// compiled (which may take a while: never inside a transaction).
fn check_alone(p: &TrustPolicy) -> Result<(), OAuthError> {
    check_fields(p)?;
    CompiledConditions::compile(&p.conditions)
        .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    Ok(())
}

/// [`check_alone`] but for compiling the conditions.
fn check_fields(p: &TrustPolicy) -> Result<(), OAuthError> {
    let bad = |text: String| Err(OAuthError::invalid_request(text));
    if !is_policy_name(&p.name) {
        return bad(NAME_RULE.into());
    }
    if !is_audience(&p.audience) || p.audience.len() > 1024 {
        return bad("audience must be 1 to 1024 printable ASCII characters without spaces".into());
    }
    if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&p.lifetime) {
        return bad("lifetime must be between 60 and 3600 seconds".into());
    }
    if p.scopes.iter().any(|s| !is_scope_token(s)) {
        return bad("scope must be RFC 6749 section 3.3 scope tokens separated by spaces".into());
    }
    if p.refused_events.len() > MAX_EVENTS
        || p.refused_events
            .iter()
            .any(|e| e.is_empty() || e.len() > MAX_EVENT_LEN || !is_audience(e))
    {
        return bad(format!(
            "refused_events must be at most {MAX_EVENTS} event names of 1 to {MAX_EVENT_LEN} \
             printable ASCII characters without spaces"
        ));
    }
    if p.conditions.is_empty() || p.conditions.len() > MAX_CONDITIONS {
        return bad(format!(
            "a policy needs 1 to {MAX_CONDITIONS} conditions on the token's claims"
        ));
    }
    if !pins_an_id(&p.conditions) && !p.name_only {
        return bad(NAME_ONLY.into());
    }
    Ok(())
}

/// RFC 6749 §3.3: `1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// The checks against the service user the policy names (read by the
/// caller): every scope one it may ask for, the lifetime within its cap.
fn check_with(p: &TrustPolicy, user: &ServiceUserRecord) -> Result<(), OAuthError> {
    let allowed: Vec<&str> = user.scopes.split_whitespace().collect();
    if let Some(scope) = p.scopes.iter().find(|s| !allowed.contains(&s.as_str())) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!(
                "the service user `{}` may not ask for the scope `{scope}` (it may ask for: {})",
                user.id,
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(" ")
                }
            ),
        ));
    }
    if let Some(cap) = user.max_token_lifetime
        && p.lifetime as i64 > cap
    {
        return Err(OAuthError::invalid_request(format!(
            "lifetime {} s is longer than the service user `{}` allows ({cap} s)",
            p.lifetime, user.id
        )));
    }
    Ok(())
}

fn split_scope(scope: Option<String>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in scope.unwrap_or_default().split_whitespace() {
        if !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_owned());
        }
    }
    scopes
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in list {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Stored only when it is needed: a policy that pins an id is not one
/// "saved without a numeric id condition".
fn settle_name_only(p: &mut TrustPolicy) {
    p.name_only = p.name_only && !pins_an_id(&p.conditions);
}

async fn lookups<S: TrustStore + CredentialStore>(
    store: &S,
    issuer: &str,
    service_user: &str,
) -> Result<ServiceUserRecord, OAuthError> {
    if store.trusted_issuer(issuer.to_owned()).await?.is_none() {
        return Err(OAuthError::invalid_request(format!(
            "no trusted issuer `{issuer}`: add it first (tessera trust issuer add)"
        )));
    }
    let user = store
        .service_user(service_user.to_owned())
        .await?
        .ok_or_else(|| OAuthError::invalid_request(format!("no service user `{service_user}`")))?;
    if user.is_admin {
        return Err(OAuthError::invalid_request(
            "a trust policy cannot act as the administrator",
        ));
    }
    Ok(user)
}

fn concurrent_reference() -> OAuthError {
    OAuthError::new(
        ErrorCode::Conflict,
        "the issuer or service user the policy names was removed meanwhile",
    )
}

pub async fn create_policy<S: TrustStore + CredentialStore>(
    store: &S,
    spec: TrustPolicySpec,
    default_audience: &str,
    actor: Actor,
) -> Result<TrustPolicy, OAuthError> {
    let now = clock::now();
    let mut policy = TrustPolicy {
        name: spec.name,
        issuer: spec.issuer,
        audience: spec.audience.unwrap_or_else(|| default_audience.to_owned()),
        allow_multiple_audiences: spec.allow_multiple_audiences.unwrap_or(false),
        service_user: spec.service_user,
        scopes: split_scope(spec.scope),
        lifetime: spec.lifetime.unwrap_or(DEFAULT_LIFETIME),
        conditions: spec.conditions,
        // The "pwn request" guard is on unless a policy opts out with an
        // explicit list (`[]`): a token without `event_name` (GitLab, most
        // issuers) passes it anyway.
        refused_events: dedup(spec.refused_events.unwrap_or_else(|| {
            GITHUB_REFUSED_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect()
        })),
        name_only: spec.name_only.unwrap_or(false),
        created_at: now,
        updated_at: now,
    };
    check_alone(&policy)?;
    settle_name_only(&mut policy);
    let user = lookups(store, &policy.issuer, &policy.service_user).await?;
    check_with(&policy, &user)?;
    let event = Event::new(actor, "trust.policy_created", Outcome::Success)
        .target(policy.name.clone())
        .details(audit_details(&policy))
        .into_record(clock::now_ms());
    match store
        .create_trust_policy(policy_to_record(&policy), event)
        .await
    {
        Ok(()) => Ok(policy),
        Err(StoreError::Conflict) => Err(OAuthError::new(
            ErrorCode::Conflict,
            format!("a trust policy named `{}` exists", policy.name),
        )),
        Err(StoreError::NotFound) => Err(concurrent_reference()),
        Err(other) => Err(other.into()),
    }
}

fn audit_details(p: &TrustPolicy) -> serde_json::Value {
    json!({
        "issuer": p.issuer,
        "service_user": p.service_user,
        "scopes": p.scopes,
        "lifetime": p.lifetime,
        "conditions": p.conditions.len(),
        "name_only": p.name_only,
    })
}

pub async fn list_policies<S: TrustStore>(store: &S) -> Result<Vec<TrustPolicy>, OAuthError> {
    let records = store.list_trust_policies().await?;
    Ok(records
        .into_iter()
        .map(policy_from_record)
        .collect::<Result<_, _>>()?)
}

pub async fn get_policy<S: TrustStore>(store: &S, name: &str) -> Result<TrustPolicy, OAuthError> {
    let record = store
        .trust_policy(name.to_owned())
        .await?
        .ok_or_else(|| not_found(name))?;
    Ok(policy_from_record(record)?)
}

/// Applies the fields present in `patch` to `current`.
fn patched(mut p: TrustPolicy, patch: TrustPolicyPatch) -> TrustPolicy {
    if let Some(issuer) = patch.issuer {
        p.issuer = issuer;
    }
    if let Some(audience) = patch.audience {
        p.audience = audience;
    }
    if let Some(allow) = patch.allow_multiple_audiences {
        p.allow_multiple_audiences = allow;
    }
    if let Some(user) = patch.service_user {
        p.service_user = user;
    }
    if let Some(scope) = patch.scope {
        p.scopes = split_scope(Some(scope));
    }
    if let Some(lifetime) = patch.lifetime {
        p.lifetime = lifetime;
    }
    if let Some(conditions) = patch.conditions {
        p.conditions = conditions;
    }
    if let Some(events) = patch.refused_events {
        p.refused_events = dedup(events);
    }
    if let Some(name_only) = patch.name_only {
        p.name_only = name_only;
    }
    p
}

/// Changes the fields present (conditions replaced whole), in one
/// transaction that locks the policy; with `If-Match`, only if it has not
/// changed since it was read (412 otherwise).
pub async fn update_policy<S: TrustStore + CredentialStore>(
    store: &S,
    name: &str,
    patch: TrustPolicyPatch,
    actor: Actor,
    if_match: Option<String>,
) -> Result<TrustPolicy, OAuthError> {
    // The lookups need the policy's issuer and service user; they are read
    // first, and the transaction refuses if those changed meanwhile.
    let before = get_policy(store, name).await?;
    let preview = patched(before.clone(), patch.clone());
    check_alone(&preview)?;
    let user = lookups(store, &preview.issuer, &preview.service_user).await?;
    check_with(&preview, &user)?;
    let change = move |record| {
        let current = policy_from_record(record)?;
        etag::check(if_match.as_deref(), &etag::of(&current))?;
        let mut policy = patched(current.clone(), patch);
        if policy.issuer != preview.issuer || policy.service_user != preview.service_user {
            return Err(OAuthError::new(
                ErrorCode::Conflict,
                "the policy changed while it was being updated: read it again and retry",
            ));
        }
        // The first pass passed on the same fields; check what may differ.
        // The conditions are the preview's (compiled then) or the stored
        // ones (compiled when stored): none is compiled while the
        // transaction holds the row (and, on SQLite, the database).
        check_fields(&policy)?;
        check_with(&policy, &user)?;
        policy.updated_at = clock::now().max(current.updated_at);
        settle_name_only(&mut policy);
        let event = Event::new(actor, "trust.policy_updated", Outcome::Success)
            .target(policy.name.clone())
            .details(audit_details(&policy))
            .into_record(clock::now_ms());
        let change = TrustPolicyChange {
            policy: policy_to_record(&policy),
            event,
        };
        Ok((change, policy))
    };
    match store.change_trust_policy(name.to_owned(), change).await {
        Ok(result) => result,
        Err(StoreError::NotFound) => {
            // Gone, or a reference removed meanwhile.
            match store.trust_policy(name.to_owned()).await? {
                None => Err(not_found(name)),
                Some(_) => Err(concurrent_reference()),
            }
        }
        Err(other) => Err(other.into()),
    }
}

/// Deletes the policy; with `If-Match`, only the version the caller read.
pub async fn delete_policy<S: TrustStore>(
    store: &S,
    name: &str,
    actor: Actor,
    if_match: Option<String>,
) -> Result<(), OAuthError> {
    let event = Event::new(actor, "trust.policy_deleted", Outcome::Success)
        .target(name.to_owned())
        .into_record(clock::now_ms());
    let precondition = move |record| {
        let current = policy_from_record(record)?;
        etag::check(if_match.as_deref(), &etag::of(&current))
    };
    match store
        .delete_trust_policy(name.to_owned(), event, precondition)
        .await
    {
        Ok(result) => result,
        Err(StoreError::NotFound) => Err(not_found(name)),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::model::{Condition, MatchKind};

    fn condition(claim: &str, kind: MatchKind, value: &str) -> Condition {
        Condition {
            claim: claim.into(),
            kind,
            value: value.into(),
            ignore_case: false,
        }
    }

    fn policy() -> TrustPolicy {
        TrustPolicy {
            name: "deploy".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "https://tessera.example".into(),
            allow_multiple_audiences: false,
            service_user: "su_1".into(),
            scopes: vec!["deploy".into()],
            lifetime: 900,
            conditions: vec![condition("repository_id", MatchKind::Exact, "42")],
            refused_events: vec![],
            name_only: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "deploy-prod", "A.b_c-1", &"x".repeat(64)] {
            assert!(is_policy_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "a:b", &"x".repeat(65), "é"] {
            assert!(!is_policy_name(bad), "{bad}");
        }
    }

    #[test]
    fn rules_without_lookups() {
        assert!(check_alone(&policy()).is_ok());
        let name_only = TrustPolicy {
            conditions: vec![condition("repository", MatchKind::Exact, "o/r")],
            ..policy()
        };
        let refused = check_alone(&name_only).unwrap_err();
        assert!(refused.description.contains("re-registered"), "{refused}");
        assert!(NAME_ONLY.len() < 256, "the description cap");
        assert!(
            check_alone(&TrustPolicy {
                name_only: true,
                ..name_only
            })
            .is_ok()
        );
        for bad in [
            TrustPolicy {
                lifetime: 3601,
                ..policy()
            },
            TrustPolicy {
                lifetime: 59,
                ..policy()
            },
            TrustPolicy {
                audience: "a b".into(),
                ..policy()
            },
            TrustPolicy {
                conditions: vec![],
                name_only: true,
                ..policy()
            },
            TrustPolicy {
                conditions: vec![
                    condition("repository_id", MatchKind::Exact, "42"),
                    condition("ref", MatchKind::Regex, "("),
                ],
                ..policy()
            },
            TrustPolicy {
                refused_events: vec!["a b".into()],
                ..policy()
            },
            TrustPolicy {
                scopes: vec!["a\"b".into()],
                ..policy()
            },
        ] {
            assert!(check_alone(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn service_user_bounds() {
        let mut user = ServiceUserRecord {
            id: "su_1".into(),
            name: "ci".into(),
            description: String::new(),
            owner: String::new(),
            is_admin: false,
            created_at: 0,
            scopes: "deploy read".into(),
            audiences: String::new(),
            enabled: true,
            max_token_lifetime: None,
            owner_id: None,
        };
        assert!(check_with(&policy(), &user).is_ok());
        let wide = TrustPolicy {
            scopes: vec!["admin".into()],
            ..policy()
        };
        assert_eq!(
            check_with(&wide, &user).unwrap_err().code,
            ErrorCode::InvalidScope
        );
        user.max_token_lifetime = Some(600);
        assert!(check_with(&policy(), &user).is_err());
    }
}
