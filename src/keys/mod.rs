//! Signing keys: generation, sealing at rest, loading, rotation, JWKS.

pub mod master;
pub mod material;
pub mod public;
mod rekey;
pub mod ring;
mod rotation;

pub use master::MasterKey;
pub use material::{Alg, KeyMaterial};
pub use rekey::{Rekeyed, rekey};
pub use ring::{KeyRing, KeySet, KeyStatus, LoadedKey};
pub use rotation::{KeyManager, Rotated};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(
        "signing key {kid} was sealed with master key {sealed_with}, but the configured master \
         key is {configured}: set TESSERA_MASTER_KEY or keys.master_key_file to the master key \
         this database was created with (during a re-key, the old one in \
         TESSERA_PREVIOUS_MASTER_KEY)"
    )]
    WrongMasterKey {
        kid: String,
        sealed_with: String,
        configured: String,
    },
    #[error("signing key {0} cannot be opened or parsed: the stored key is damaged")]
    Corrupt(String),
    #[error("key generation failed: {0}")]
    Crypto(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lower-case hex, for digests and fingerprints.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

impl KeysError {
    /// Errors no retry can fix: the process must stop and say why.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            KeysError::WrongMasterKey { .. } | KeysError::Corrupt(_)
        )
    }
}
