//! Human passwords, hashed with argon2id (RFC 9106) at the configured
//! parameters, OWASP's by default (m = 19456 KiB, t = 2, p = 1). Stored as
//! PHC strings, which carry their own parameters: a hash made at other
//! parameters still verifies, and [`Verdict::Ok`] says it should be
//! replaced (rehash on login).
//!
//! Every function here costs one argon2id computation (tens of
//! milliseconds of one core): async callers use the `*_blocking`
//! wrappers, which run them on the hashing threads (`hashers.rs`).

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::hashers::Hashers;
use super::password_memory::PasswordMemory;

use crate::config::PasswordsConfig;
use crate::secret::Secret;

/// Longest password accepted, in characters. argon2 takes any length; the
/// bound keeps a request from buying seconds of hashing with megabytes.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// NIST SP 800-63B §5.1.1.2: at least 8 characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Why a password is refused before it is hashed (the message never
/// quotes it).
pub fn check_password(password: &Secret) -> Result<(), String> {
    let text = password.expose();
    let count = text.chars().count();
    if count < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must be at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if count > MAX_PASSWORD_CHARS {
        return Err(format!(
            "the password must be at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("the password must not contain control characters".to_owned());
    }
    Ok(())
}

/// At most this many argon2 working arrays are kept between hashes (19 MiB
/// each at the default parameters): enough for a small machine's every
/// core, and a bound on what stays resident on a large one.
const MAX_KEPT_MEMORY: usize = 4;

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right. `needs_rehash`: the stored hash was made at
    /// other parameters (or another algorithm or version) than the
    /// configured ones; store a fresh [`Passwords::hash`] of it.
    Ok { needs_rehash: bool },
    /// Wrong password, or a stored hash that cannot be read.
    Wrong,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2id parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The configured hasher. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A hash of a random password at the configured parameters, made on
    /// first use: what an unknown user's login is verified against.
    dummy: Arc<OnceLock<String>>,
    /// One thread per core runs the hashes: a flood of logins waits in
    /// their queue (a small future each) instead of holding `memory_kib`
    /// each and every blocking thread the database calls need too.
    hashers: Arc<Hashers>,
    /// argon2's working memory, kept between hashes: an array per hashing
    /// thread, up to `MAX_KEPT_MEMORY`.
    memory: Arc<PasswordMemory>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .field("p_cost", &self.params.p_cost())
            .finish()
    }
}

impl Passwords {
    pub fn new(config: &PasswordsConfig) -> Result<Self, PasswordError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Passwords {
            memory: Arc::new(PasswordMemory::new(
                params.block_count(),
                cores.min(MAX_KEPT_MEMORY),
            )),
            params,
            dummy: Arc::new(OnceLock::new()),
            hashers: Arc::new(Hashers::new(cores)),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh
    /// 128-bit salt (RFC 9106 §3.1 recommends 128 bits).
    pub fn hash(&self, password: &Secret) -> Result<String, PasswordError> {
        let failed = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt
            .as_salt()
            .decode_b64(&mut salt_bytes)
            .map_err(|e| failed(&e))?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.memory
            .hash_into(
                &self.argon2(),
                self.params.block_count(),
                password.expose().as_bytes(),
                salt_bytes,
                &mut out,
            )
            .map_err(|e| failed(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| failed(&e))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` hashes to the hash in `phc`, at the parameters,
    /// algorithm and version `phc` names. What the argon2 crate's
    /// `verify_password` does, in [`PasswordMemory`]; the comparison is
    /// `Output`'s constant-time one.
    fn matches(&self, phc: &PasswordHash<'_>, password: &Secret) -> bool {
        let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) =
            (Algorithm::try_from(phc.algorithm), Params::try_from(phc))
        else {
            return false;
        };
        let Ok(version) = phc
            .version
            .map_or(Ok(Version::default()), Version::try_from)
        else {
            return false;
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let blocks = params.block_count();
        let argon2 = Argon2::new(algorithm, version, params);
        let mut out = [0u8; Output::MAX_LENGTH];
        let out = &mut out[..expected.len()];
        let hashed = self.memory.hash_into(
            &argon2,
            blocks,
            password.expose().as_bytes(),
            salt_bytes,
            out,
        );
        hashed.is_ok() && Output::new(out).is_ok_and(|computed| computed == expected)
    }

    /// Checks `password` against a stored PHC string. The comparison is
    /// constant-time (the argon2 crate's); an unreadable stored hash is
    /// [`Verdict::Wrong`] after the same work as a real verification.
    pub fn verify(&self, stored_hash: &str, password: &Secret) -> Verdict {
        let Ok(parsed) = PasswordHash::new(stored_hash) else {
            tracing::warn!("a stored password hash is not a PHC string");
            self.dummy_verify(password);
            return Verdict::Wrong;
        };
        // The parameters come from the stored string: a hash made at old
        // parameters still verifies.
        if self.matches(&parsed, password) {
            Verdict::Ok {
                needs_rehash: !self.is_current(&parsed),
            }
        } else {
            Verdict::Wrong
        }
    }

    /// What [`verify`](Self::verify) costs, for a user who does not exist
    /// or has no password: the answer and its timing are the same as for a
    /// wrong password, so neither tells whether the user exists.
    pub fn dummy_verify(&self, password: &Secret) {
        match self.dummy.get() {
            Some(stored) => {
                if let Ok(parsed) = PasswordHash::new(stored) {
                    self.matches(&parsed, password);
                }
            }
            None => {
                // The first call makes the dummy hash: one argon2id
                // computation, the same cost as a verification.
                let random = Secret::new(crate::random::random_base62(32));
                if let Ok(hash) = self.hash(&random) {
                    let _ = self.dummy.set(hash);
                }
            }
        }
    }

    /// Whether a hash was made with argon2id v1.3 at exactly the
    /// configured parameters.
    fn is_current(&self, hash: &PasswordHash<'_>) -> bool {
        let Ok(params) = Params::try_from(hash) else {
            return false;
        };
        hash.algorithm == Algorithm::Argon2id.ident()
            && hash.version == Some(Version::V0x13.into())
            && params.m_cost() == self.params.m_cost()
            && params.t_cost() == self.params.t_cost()
            && params.p_cost() == self.params.p_cost()
            && hash.hash.map(|h| h.len()) == Some(Params::DEFAULT_OUTPUT_LEN)
    }

    /// [`hash`](Self::hash) on a hashing thread.
    pub async fn hash_blocking(&self, password: Secret) -> Result<String, PasswordError> {
        let this = self.clone();
        self.hashers
            .run(move || this.hash(&password))
            .await
            .unwrap_or_else(|| Err(PasswordError::Hash("the hash did not finish".to_owned())))
    }

    /// [`verify`](Self::verify) on a hashing thread (one that did not
    /// finish is [`Verdict::Wrong`]).
    pub async fn verify_blocking(&self, stored_hash: String, password: Secret) -> Verdict {
        let this = self.clone();
        self.hashers
            .run(move || this.verify(&stored_hash, &password))
            .await
            .unwrap_or(Verdict::Wrong)
    }

    /// [`dummy_verify`](Self::dummy_verify) on a hashing thread.
    pub async fn dummy_verify_blocking(&self, password: Secret) {
        let this = self.clone();
        let _ = self.hashers.run(move || this.dummy_verify(&password)).await;
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHasher;

    use super::*;

    /// Small parameters: these tests check behaviour, not cost.
    fn passwords(memory_kib: u32, iterations: u32) -> Passwords {
        Passwords::new(&PasswordsConfig {
            memory_kib,
            iterations,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn hash_verifies_and_wrong_password_does_not() {
        let p = passwords(1024, 1);
        let hash = p.hash(&Secret::new("correct horse")).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert_eq!(
            p.verify(&hash, &Secret::new("correct horse")),
            Verdict::Ok {
                needs_rehash: false
            }
        );
        assert_eq!(
            p.verify(&hash, &Secret::new("correct horsE")),
            Verdict::Wrong
        );
        // Salted: the same password hashes differently.
        assert_ne!(hash, p.hash(&Secret::new("correct horse")).unwrap());
    }

    #[test]
    fn changed_parameters_ask_for_a_rehash() {
        let old = passwords(1024, 1);
        let hash = old.hash(&Secret::new("correct horse")).unwrap();
        for new in [passwords(2048, 1), passwords(1024, 2)] {
            assert_eq!(
                new.verify(&hash, &Secret::new("correct horse")),
                Verdict::Ok { needs_rehash: true }
            );
            let rehashed = new.hash(&Secret::new("correct horse")).unwrap();
            assert_eq!(
                new.verify(&rehashed, &Secret::new("correct horse")),
                Verdict::Ok {
                    needs_rehash: false
                }
            );
        }
        // Another algorithm (argon2i) with the same parameters: rehash too.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, old.params.clone())
            .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert_eq!(
            old.verify(&argon2i, &Secret::new("correct horse")),
            Verdict::Ok { needs_rehash: true }
        );
    }

    #[test]
    fn kept_memory_gives_the_argon2_crates_own_hashes() {
        use argon2::password_hash::PasswordVerifier;
        let p = passwords(1024, 2);
        let ours = p.hash(&Secret::new("correct horse")).unwrap();
        assert_eq!(p.memory.kept(), 1, "the array goes back on the shelf");
        // Reused memory: a second hash and verification reach the same
        // answers as the crate's freshly allocated ones.
        let theirs = p
            .argon2()
            .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let secret = Secret::new("correct horse");
        for hash in [&ours, &theirs] {
            let parsed = PasswordHash::new(hash).unwrap();
            assert!(
                p.argon2()
                    .verify_password(b"correct horse", &parsed)
                    .is_ok()
            );
            assert!(
                p.argon2()
                    .verify_password(b"correct horsE", &parsed)
                    .is_err()
            );
            assert!(matches!(p.verify(hash, &secret), Verdict::Ok { .. }));
            assert_eq!(
                p.verify(hash, &Secret::new("correct horsE")),
                Verdict::Wrong
            );
        }
        assert_eq!(p.memory.kept(), 1, "one hash at a time needs one array");
        // A hash at other parameters verifies in memory of its own, which
        // is not kept.
        let bigger = passwords(2048, 1).hash(&secret).unwrap();
        assert!(matches!(p.verify(&bigger, &secret), Verdict::Ok { .. }));
        assert_eq!(p.memory.kept(), 1);
        // A truncated or altered hash output is wrong, not a panic.
        let short = &ours[..ours.len() - 8];
        assert_eq!(p.verify(short, &secret), Verdict::Wrong);
    }

    /// Many logins at once: at most one hash per core runs, the rest wait
    /// in the hashing threads' queue (without it, each would take a
    /// blocking thread and 19 MiB at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_run_one_per_core_at_most() {
        let p = passwords(4096, 1);
        let hash = p.hash(&Secret::new("correct horse")).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let verifications = (0..8 * cores).map(|_| {
            let p = p.clone();
            let hash = hash.clone();
            tokio::spawn(async move { p.verify_blocking(hash, Secret::new("correct horse")).await })
        });
        for verdict in futures_util::future::join_all(verifications).await {
            assert!(matches!(verdict.unwrap(), Verdict::Ok { .. }));
        }
        let most = p.memory.most_at_once();
        assert!(
            (1..=cores).contains(&most),
            "{most} hashes at once on {cores} cores"
        );
    }

    #[test]
    fn unreadable_hash_is_wrong_and_dummy_verify_completes() {
        let p = passwords(1024, 1);
        assert_eq!(
            p.verify("not a phc string", &Secret::new("whatever1")),
            Verdict::Wrong
        );
        p.dummy_verify(&Secret::new("whatever1"));
        assert!(p.dummy.get().is_some());
        p.dummy_verify(&Secret::new("whatever2"));
    }

    #[test]
    fn default_parameters_are_owasp() {
        let config = crate::config::Config::from_toml_layers(&[]).unwrap();
        let p = Passwords::new(&config.passwords).unwrap();
        let hash = p.hash(&Secret::new("correct horse")).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
    }

    #[test]
    fn password_rules() {
        assert!(check_password(&Secret::new("short")).is_err());
        assert!(check_password(&Secret::new("long enough")).is_ok());
        assert!(check_password(&Secret::new("nul\0inside")).is_err());
        assert!(check_password(&Secret::new("x".repeat(MAX_PASSWORD_CHARS + 1))).is_err());
        let message = check_password(&Secret::new("hunter2")).unwrap_err();
        assert!(!message.contains("hunter2"));
    }
}
