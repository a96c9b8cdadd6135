//! Trusted issuers and trust policies as an administrator manages them:
//! validation at the edge (before any lookup or write), then the store
//! (`store::TrustStore`), each write audited in its own transaction. No
//! HTTP here: `http/admin_trust.rs` calls these functions, and the CLI
//! calls that API. [`load`] is what the exchange reads.

mod issuers;
mod policies;

pub use issuers::{create_issuer, delete_issuer, get_issuer, list_issuers};
pub use policies::{create_policy, delete_policy, get_policy, list_policies, update_policy};

use crate::store::{Store, StoreError, TrustPolicyRecord, TrustStore, TrustedIssuerRecord};

use super::model::{Condition, TrustPolicy, TrustedIssuer};

/// The issuer and its policies (by name) as the exchange needs them, or
/// `None` when `issuer` is not trusted. Called on every trust-cache miss.
pub async fn load(
    store: &Store,
    issuer: &str,
) -> Result<Option<(TrustedIssuer, Vec<TrustPolicy>)>, StoreError> {
    let Some((issuer, policies)) = store.trust_for_issuer(issuer.to_owned()).await? else {
        return Ok(None);
    };
    let issuer = issuer_from_record(issuer)?;
    let policies = policies
        .into_iter()
        .map(policy_from_record)
        .collect::<Result<_, _>>()?;
    Ok(Some((issuer, policies)))
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// A stored row that does not read back is a fault of ours (or of a hand
/// edit), never something a request can cause.
fn corrupt(what: &str, name: &str, e: serde_json::Error) -> StoreError {
    StoreError::Other(format!("stored {what} of `{name}` does not parse: {e}"))
}

pub(crate) fn issuer_from_record(r: TrustedIssuerRecord) -> Result<TrustedIssuer, StoreError> {
    let jwks = match &r.jwks {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| corrupt("jwks", &r.issuer, e))?),
        None => None,
    };
    Ok(TrustedIssuer {
        algorithms: words(&r.algorithms),
        max_token_age: u64::try_from(r.max_token_age).unwrap_or(0),
        jwks,
        created_at: r.created_at,
        issuer: r.issuer,
    })
}

pub(crate) fn policy_from_record(r: TrustPolicyRecord) -> Result<TrustPolicy, StoreError> {
    let conditions: Vec<Condition> =
        serde_json::from_str(&r.conditions).map_err(|e| corrupt("conditions", &r.name, e))?;
    Ok(TrustPolicy {
        scopes: words(&r.scopes),
        refused_events: words(&r.refused_events),
        lifetime: u64::try_from(r.lifetime).unwrap_or(0),
        conditions,
        name: r.name,
        issuer: r.issuer,
        audience: r.audience,
        allow_multiple_audiences: r.allow_multiple_audiences,
        service_user: r.service_user,
        name_only: r.name_only,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

fn policy_to_record(p: &TrustPolicy) -> TrustPolicyRecord {
    TrustPolicyRecord {
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        audience: p.audience.clone(),
        allow_multiple_audiences: p.allow_multiple_audiences,
        service_user: p.service_user.clone(),
        scopes: p.scopes.join(" "),
        lifetime: i64::try_from(p.lifetime).unwrap_or(i64::MAX),
        // Serialising plain strings and enums cannot fail.
        conditions: serde_json::to_string(&p.conditions).unwrap_or_else(|_| "[]".into()),
        refused_events: p.refused_events.join(" "),
        name_only: p.name_only,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}
