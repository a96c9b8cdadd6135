//! One file per grant type.

pub mod client_credentials;
pub mod jwt_bearer;
