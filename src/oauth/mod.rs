//! The protocol core. Nothing here knows about HTTP: handlers in `http/`
//! parse a request, call one function here, and render what it returns.

pub mod bearer;
pub mod discovery;
pub mod error;

pub use error::{ErrorCode, OAuthError};
