//! How a personal or machine token is shown: never its value, except once
//! in [`CreatedToken`].

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::TokenListing;
use crate::tokens::opaque::OpaqueToken;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    /// `pat` (a user's) or `machine` (a service user's).
    pub kind: &'static str,
    pub name: String,
    pub env: String,
    /// Space-separated; empty: the token identifies its holder only.
    pub scope: String,
    /// The token's prefix and last four characters (`tsr_pat_dev_…x1Yz`).
    pub hint: String,
    pub owner: TokenOwner,
    /// A machine token's responsible person (a username); `null` when none.
    pub responsible: Option<String>,
    /// A machine token whose responsible person is missing, disabled or
    /// deleted.
    pub orphaned: bool,
    /// `active`, `disabled`, `expired` or `revoked`.
    pub status: &'static str,
    pub created_at: i64,
    /// `null`: never expires (machine tokens, where policy allows).
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub use_count: i64,
    pub disabled_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The token a roll replaced this one with.
    pub replaced_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenOwner {
    pub id: String,
    /// `human` or `service`.
    pub kind: String,
    /// The username or service user name; `null` once deleted.
    pub name: Option<String>,
}

/// The answer to create and roll: the token's view and, this once, its
/// value.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The token. It is not stored and cannot be shown again.
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub token: OpaqueToken,
}

fn expose<S: serde::Serializer>(token: &OpaqueToken, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token.expose())
}

impl TokenView {
    pub fn new(listing: &TokenListing, now: i64) -> Self {
        let token = &listing.token;
        let status = if token.revoked_at.is_some() {
            "revoked"
        } else if token.expires_at.is_some_and(|exp| exp <= now) {
            "expired"
        } else if token.disabled_at.is_some() {
            "disabled"
        } else {
            "active"
        };
        let kind = if token.kind == "mt" { "machine" } else { "pat" };
        TokenView {
            id: token.id.clone(),
            kind,
            name: token.name.clone(),
            env: token.env.clone(),
            scope: token.scopes.clone(),
            hint: format!("tsr_{}_{}_…{}", token.kind, token.env, token.last_four),
            owner: TokenOwner {
                id: token.owner_id.clone(),
                kind: token.owner_kind.clone(),
                name: listing.owner_name.clone(),
            },
            responsible: listing.responsible.as_ref().map(|r| r.username.clone()),
            orphaned: listing.is_orphaned(),
            status,
            created_at: token.created_at,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            last_used_ip: token.last_used_ip.clone(),
            use_count: token.use_count,
            disabled_at: token.disabled_at,
            revoked_at: token.revoked_at,
            replaced_by: token.replaced_by.clone(),
        }
    }
}
