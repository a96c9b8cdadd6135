//! The protocol core. Nothing here knows about HTTP: handlers in `http/`
//! parse a request, call one function here, and render what it returns.

pub mod agents;
pub mod api_scopes;
pub mod assertion;
pub mod authorize;
pub mod bearer;
mod changes;
pub mod client;
pub mod client_auth;
pub mod client_cache;
pub mod client_keys;
pub mod device;
pub mod discovery;
pub mod error;
pub mod etag;
pub mod grants;
pub mod logout;
pub mod personal_tokens;
pub mod pkce;
pub mod registry;
pub mod scope;
pub mod service_user_cache;
pub mod service_users;
pub mod state;
pub mod syntax;
pub mod token;
pub mod token_cache;
pub mod token_status;
pub mod ttl_cache;
pub mod userinfo;

pub use error::{ErrorCode, OAuthError};
pub use state::Core;
