//! Minting and checking tokens: JWTs signed by Tessera's keys, and the
//! opaque `tsr_…` bearer tokens whose digests alone are stored.

pub mod access;
pub mod id_token;
pub mod jwt;
pub mod opaque;
