//! Tessera: an OpenID Connect / OAuth 2.0 provider for CLIs, CI runners and
//! services. `docs/architecture.md` is the map: HTTP (`http`) calls the
//! protocol core (`oauth`, `tokens`, `keys`), which calls the store.

pub mod accounts;
pub mod audit;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod config;
pub mod federation;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod random;
pub mod secret;
pub mod server;
pub mod store;
pub mod tokens;
