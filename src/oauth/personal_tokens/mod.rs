//! Personal access tokens (a user's, `tsr_pat_<env>_…`) and machine tokens
//! (a service user's, `tsr_mt_<env>_…`): opaque bearer tokens for
//! Tessera's API and for resource servers that introspect them (RFC 7662).
//!
//! - Only a keyed digest is stored; the value is shown once, by create and
//!   roll. Lists show the prefix and the last four characters.
//! - Every token expires, within `personal_tokens`' choices and caps;
//!   an administrator may allow machine tokens that never do.
//! - A user manages their own tokens; the owner of a service user manages
//!   its machine tokens; an administrator manages all of them.
//! - A token acts as itself in the audit (`pat` or `machine`), with its
//!   owner alongside; uses are counted and written once a minute
//!   ([`usage`]).

pub mod exchange;
pub(crate) mod manage;
mod policy;
pub mod usage;
mod view;

pub use manage::{create, disable, enable, list, revoke, roll, show, transfer};
pub use view::{CreatedToken, TokenOwner, TokenView};

use serde::Deserialize;
use utoipa::ToSchema;

/// What `POST /admin/v1/tokens` takes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// What the token is for: 1 to 200 characters.
    #[schema(max_length = 200)]
    pub name: String,
    /// The environment label, one of `personal_tokens.environments`
    /// (`prod`, `staging`, `dev` by default); it appears in the token.
    pub env: String,
    /// The lifetime: one of `personal_tokens.expiry_choices` (`1h`, `8h`,
    /// `1d`, `7d`, `14d`, `30d` by default), or `never` for a machine token
    /// where the administrator's policy allows it.
    pub expires: String,
    /// Space-separated scopes, a subset of what the owner may have. None:
    /// the token identifies its holder and reaches `whoami` only.
    #[serde(default)]
    pub scope: Option<String>,
    /// Make a machine token for this service user (its owner or an
    /// administrator may). Without it, the token is for the caller.
    #[serde(default)]
    pub service_user: Option<String>,
}

/// What `POST /admin/v1/tokens/{id}/roll` takes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollSpec {
    /// Seconds the old token keeps working (1 to 86400); none: it is
    /// revoked in the same transaction that creates the new one.
    #[serde(default, deserialize_with = "crate::oauth::client::whole_number")]
    #[schema(minimum = 1, maximum = 86400)]
    pub grace_seconds: Option<u64>,
}

/// What `POST /admin/v1/tokens/{id}/transfer` takes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    /// The username of the machine token's new responsible owner.
    pub owner: String,
}

/// Which tokens a listing shows.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    /// Revoked tokens too.
    pub include_revoked: bool,
    /// Only machine tokens nobody answers for.
    pub orphaned: bool,
    /// The tokens the caller owns, even for an administrator (the account
    /// page).
    pub own_only: bool,
    /// Only tokens for this environment.
    pub env: Option<String>,
}
