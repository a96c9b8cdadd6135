//! What the protocol core works with: the store, keys, caches, the batch
//! writer and the configuration. `server.rs` builds one and hands it to the
//! router; nothing here knows about HTTP or the server that wires it.

use std::sync::atomic::AtomicBool;

use aws_lc_rs::hmac;

use crate::accounts::passwords::Passwords;
use crate::accounts::users::UserCache;
use crate::audit::SourceThrottle;
use crate::config::Config;
use crate::federation::issuer_keys::IssuerKeys;
use crate::federation::trust_cache::TrustCache;
use crate::keys::KeyManager;
use crate::metrics::Metrics;
use crate::oauth::client_cache::ClientCache;
use crate::oauth::client_keys::ClientKeys;
use crate::oauth::service_user_cache::ServiceUserCache;
use crate::store::{BatchWriter, Store};

pub struct Core {
    pub config: Config,
    pub store: Store,
    pub keys: KeyManager<Store>,
    pub digest_key: hmac::Key,
    pub metrics: Metrics,
    pub client_keys: ClientKeys,
    pub client_cache: ClientCache,
    pub service_user_cache: ServiceUserCache,
    /// Trusted CI issuers and their policies, and those issuers' keys.
    pub trust: TrustCache,
    pub issuer_keys: IssuerKeys,
    /// The token endpoints' audit events and single-use `jti`s, batched.
    pub writer: BatchWriter,
    /// Which failed bearer authentications are audited, per source.
    pub auth_failures: SourceThrottle,
    /// Set once migrations, keys and bootstrap are done. Until then the
    /// server is not ready, even if the database answers and keys loaded:
    /// the administrator token file may not be written yet.
    pub prepared: AtomicBool,
    /// argon2id at the configured parameters, for human passwords.
    pub passwords: Passwords,
    /// Users as token checks read them (at most one second old).
    pub user_cache: UserCache,
    /// Opaque tokens by lookup prefix (at most a second old).
    pub token_cache: crate::oauth::token_cache::TokenCache,
    /// Uses of personal and machine tokens not written yet.
    pub token_uses: crate::oauth::personal_tokens::usage::UsageCounter,
    /// When this replica last wrote each agent's last token time.
    pub agent_token_times: crate::oauth::agents::grant::LastTokenTimes,
}
