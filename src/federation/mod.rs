//! CI federation (issue 9): a CI job presents the OIDC token its platform
//! signed for it (GitHub Actions, GitLab CI, any OIDC issuer) and, if an
//! administrator's trust policy matches its claims, gets a short-lived
//! access token for a service user (RFC 8693 token exchange, or the RFC
//! 7523 JWT-bearer grant). No stored secret on the CI side.
//!
//! - [`model`]: trusted issuers, trust policies, conditions.
//! - [`admin`]: managing them (validation, store, audit); [`admin::load`]
//!   is what the exchange reads.
//! - [`issuers`]: which issuer URLs may be trusted and fetched.
//! - [`issuer_keys`]: their keys, from discovery, cached.
//! - [`verify`]: the checks on an incoming token before any policy.
//! - [`conditions`]: conditions on claims, compiled and evaluated.
//! - [`policy`]: one trust policy, compiled and evaluated against a
//!   token's claims (audience, refused events, conditions).
//! - [`presets`]: the CI platforms' issuers, and the conditions
//!   `--github-repo` and `--gitlab-project` expand into.
//! - [`trust_cache`]: each issuer's trust, as the exchange reads it.
//! - [`exchange`]: the exchange itself, and the dry run `trust test` shows.

pub mod admin;
pub mod conditions;
pub mod exchange;
pub mod issuer_keys;
pub mod issuers;
pub mod model;
pub mod policy;
pub mod presets;
pub mod trust_cache;
pub mod verify;
