//! The master key: it seals private signing keys at rest (AES-256-GCM) and
//! keys the digests of opaque tokens (HMAC-SHA256).
//!
//! It has two 32-byte roots, one per use. A key made by hand
//! (`openssl rand -base64 32`) is one root used for both. Re-keying
//! (`tessera keys rekey`) replaces only the sealing root: the digest root is
//! carried into the new key, written as 64 bytes (sealing root, then digest
//! root), because the digests of every secret already issued (client
//! secrets, tokens) depend on it and cannot be recomputed without the
//! secrets themselves.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::random::random_bytes;

pub const MASTER_KEY_ENV: &str = "TESSERA_MASTER_KEY";
/// The master key being replaced, during a re-key: keys sealed under it
/// still open.
pub const PREVIOUS_MASTER_KEY_ENV: &str = "TESSERA_PREVIOUS_MASTER_KEY";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{0} must be 32 or 64 bytes encoded as base64")]
    Malformed(String),
    #[error(
        "{MASTER_KEY_ENV} and {PREVIOUS_MASTER_KEY_ENV} key token digests differently, so every \
         issued secret would stop working: make the new key with `tessera keys new-master-key`"
    )]
    DigestMismatch,
    #[error("cannot read or create the master key file {path}: {reason}")]
    Io { path: String, reason: String },
}

#[derive(Clone)]
pub struct MasterKey {
    /// The sealing root.
    bytes: Zeroizing<[u8; 32]>,
    /// The digest root: the sealing root itself unless the key was re-keyed.
    digest_root: Zeroizing<[u8; 32]>,
    id: String,
    /// The key being replaced, during a re-key.
    previous: Option<Box<MasterKey>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the sealed key could not be opened")]
pub struct OpenError;

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::from_roots(bytes, bytes)
    }

    fn from_roots(sealing: [u8; 32], digest_root: [u8; 32]) -> Self {
        // The id names the sealing root only: it is what a sealed key needs.
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"tessera master key id\0");
        ctx.update(&sealing);
        let id = super::hex(&ctx.finish().as_ref()[..8]);
        MasterKey {
            bytes: Zeroizing::new(sealing),
            digest_root: Zeroizing::new(digest_root),
            id,
            previous: None,
        }
    }

    /// A new master key for a re-key: a fresh sealing root, the same
    /// token digests.
    pub fn successor(&self) -> Self {
        Self::from_roots(random_bytes::<32>(), *self.digest_root)
    }

    /// Adds the key being replaced, so that keys it sealed still open. Both
    /// must key token digests alike, or every issued secret would fail.
    pub fn with_previous(mut self, previous: MasterKey) -> Result<Self, MasterKeyError> {
        if previous.digest_root != self.digest_root {
            return Err(MasterKeyError::DigestMismatch);
        }
        self.previous = Some(Box::new(MasterKey {
            previous: None,
            ..previous
        }));
        Ok(self)
    }

    /// The key, this one or the previous, whose id is `id`.
    pub fn for_id(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(self)
            .chain(self.previous.as_deref())
            .find(|key| key.id == id)
    }

    pub fn generate() -> Self {
        Self::from_bytes(random_bytes::<32>())
    }

    pub fn from_base64(text: &str, source: &str) -> Result<Self, MasterKeyError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| MasterKeyError::Malformed(source.into()))?,
        );
        let malformed = || MasterKeyError::Malformed(source.into());
        match decoded.len() {
            32 => Ok(Self::from_bytes(
                decoded[..].try_into().map_err(|_| malformed())?,
            )),
            64 => Ok(Self::from_roots(
                decoded[..32].try_into().map_err(|_| malformed())?,
                decoded[32..].try_into().map_err(|_| malformed())?,
            )),
            _ => Err(malformed()),
        }
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        if self.bytes == self.digest_root {
            return Zeroizing::new(STANDARD.encode(*self.bytes));
        }
        let mut both = Zeroizing::new([0u8; 64]);
        both[..32].copy_from_slice(self.bytes.as_slice());
        both[32..].copy_from_slice(self.digest_root.as_slice());
        Zeroizing::new(STANDARD.encode(*both))
    }

    /// `TESSERA_MASTER_KEY` when set; otherwise the file, created with mode
    /// 0600 when it does not exist yet (the embedded default's first start).
    pub fn load(env_value: Option<&str>, file: &Path) -> Result<Self, MasterKeyError> {
        if let Some(value) = env_value {
            return Self::from_base64(value, MASTER_KEY_ENV);
        }
        let io_error = |reason: std::io::Error| MasterKeyError::Io {
            path: file.display().to_string(),
            reason: reason.to_string(),
        };
        match std::fs::read_to_string(file) {
            Ok(text) => Self::from_base64(&text, &file.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                match write_secret_file(file, key.to_base64().as_bytes()) {
                    Ok(()) => {
                        tracing::info!(path = %file.display(), "created a new master key");
                        Ok(key)
                    }
                    // Another process sharing the folder created it first:
                    // use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(file).map_err(io_error)?;
                        Self::from_base64(&text, &file.display().to_string())
                    }
                    Err(e) => Err(io_error(e)),
                }
            }
            Err(e) => Err(io_error(e)),
        }
    }

    /// A short public fingerprint, recorded beside every sealed key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// AES-256-GCM with a random nonce; `context` (the key id) is bound as
    /// associated data so a sealed key cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let key = self.aead_key();
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(context),
            &mut in_out,
        )
        .expect("AES-GCM sealing of a small buffer cannot fail");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&in_out);
        sealed
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plain_len = self
            .aead_key()
            .open_in_place(nonce, Aad::from(context), &mut in_out)
            .map_err(|_| OpenError)?
            .len();
        in_out.truncate(plain_len);
        Ok(in_out)
    }

    /// The key for token digests, derived so that it differs from the
    /// sealing key, and unchanged by a re-key.
    pub fn token_digest_key(&self) -> hmac::Key {
        let root = hmac::Key::new(hmac::HMAC_SHA256, self.digest_root.as_slice());
        let derived = hmac::sign(&root, b"tessera token digest v1");
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }

    fn aead_key(&self) -> LessSafeKey {
        let root = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_slice());
        let derived = hmac::sign(&root, b"tessera key sealing v1");
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, derived.as_ref()).expect("32-byte AES-256 key"),
        )
    }
}

/// Writes a secret to a new file at `path` with mode 0600, creating its
/// folder. The secret goes to a temporary file first (a name unique to
/// this call), which is then linked to `path`: a crash never leaves half a
/// secret, and an existing file is never replaced (`AlreadyExists`), so a
/// key that something else wrote first is not lost.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let unique = format!(
        "tmp-{}-{}",
        std::process::id(),
        crate::random::random_base62(12)
    );
    let tmp = path.with_extension(unique);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_never_replaced() {
        let dir = tempfile_dir();
        let path = dir.join("secret");
        write_secret_file(&path, b"first").unwrap();
        let again = write_secret_file(&path, b"second").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tessera-test-{}", crate::random::random_base62(10)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sealed_key_opens_only_with_same_key_and_context() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"private", b"kid-1");
        assert_eq!(key.open(&sealed, b"kid-1").unwrap().as_slice(), b"private");
        assert!(key.open(&sealed, b"kid-2").is_err());
        assert!(MasterKey::generate().open(&sealed, b"kid-1").is_err());
    }

    #[test]
    fn a_successor_seals_anew_but_keys_digests_alike() {
        let old = MasterKey::generate();
        let new = MasterKey::from_base64(&old.successor().to_base64(), "test").unwrap();
        assert_ne!(new.id(), old.id());
        let sealed = old.seal(b"private", b"kid-1");
        assert!(new.open(&sealed, b"kid-1").is_err());
        let tag = |key: &MasterKey| {
            hmac::sign(&key.token_digest_key(), b"tsr_pat_x")
                .as_ref()
                .to_vec()
        };
        assert_eq!(tag(&new), tag(&old));

        let both = new.with_previous(old.clone()).unwrap();
        let opener = both.for_id(old.id()).unwrap();
        assert_eq!(
            opener.open(&sealed, b"kid-1").unwrap().as_slice(),
            b"private"
        );
        assert!(both.for_id(both.id()).is_some());
        assert!(both.for_id("unknown").is_none());
    }

    #[test]
    fn a_previous_key_with_other_digests_is_refused() {
        let unrelated = MasterKey::generate();
        assert!(matches!(
            MasterKey::generate().with_previous(unrelated),
            Err(MasterKeyError::DigestMismatch)
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = MasterKey::generate();
        let text = format!("{key:?}");
        assert!(!text.contains(key.to_base64().as_str()));
    }
}
