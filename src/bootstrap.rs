//! First start: an administrator service user and its bearer token; and
//! later, a new token for that administrator when the old one expired or
//! leaked.
//!
//! The token is written to a file (mode 0600) and never logged. The file is
//! written under a name unique to this attempt before the database commit
//! and renamed into place after it, so there is never a stored token nobody
//! can read, nor a file holding a token the database does not know. When
//! several replicas start at once on an empty database, the instance row
//! lets exactly one commit; only that one renames its file into place, the
//! others remove theirs and serve.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::json;

use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::random::{new_id, random_base62};
use crate::store::{AccessTokenRecord, InstanceStore, ServiceUserRecord, StoreError};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

pub const ADMIN_USER_NAME: &str = "admin";
pub const ADMIN_SCOPE: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("this database is already initialised; refusing to create another administrator")]
    AlreadyInitialized,
    #[error("this database is not initialised yet: run `tessera init` first")]
    NotInitialized,
    #[error("cannot write the administrator token to {path}: {reason}")]
    Io { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub admin_user_id: String,
    pub token_file: PathBuf,
}

/// Creates the administrator if the database has never been initialised.
/// Its token works for `lifetime`.
pub async fn initialize<S: InstanceStore>(
    store: &S,
    digest_key: &hmac::Key,
    token_file: &Path,
    lifetime: Duration,
) -> Result<Bootstrapped, BootstrapError> {
    if store.instance().await?.is_some() {
        return Err(BootstrapError::AlreadyInitialized);
    }
    let now = clock::now();
    let admin = ServiceUserRecord {
        id: new_id(),
        name: ADMIN_USER_NAME.to_owned(),
        description: "Administrator created when the database was initialised".to_owned(),
        owner: String::new(),
        is_admin: true,
        created_at: now,
        scopes: String::new(),
        audiences: String::new(),
        enabled: true,
        max_token_lifetime: None,
        owner_id: None,
    };
    let (token, record) = admin_token(digest_key, &admin.id, now, lifetime);
    let event = Event::new(Actor::system(), "instance.initialized", Outcome::Success)
        .target(admin.id.clone())
        .details(json!({ "admin_user": ADMIN_USER_NAME, "token_id": record.id }))
        .into_record(clock::now_ms());

    let pending = PendingFile::write(token_file, &token)?;
    let admin_user_id = admin.id.clone();
    match store.initialize(admin, record, event).await {
        Ok(()) => pending.put_in_place(admin_user_id),
        // Another replica (or `init`) won: its token is the one.
        Err(StoreError::Conflict) => Err(BootstrapError::AlreadyInitialized),
        Err(other) => Err(other.into()),
    }
}

/// Issues a new token for the administrator created at initialisation and
/// revokes its previous bootstrap tokens, in one transaction; the new token
/// replaces the content of `token_file`.
pub async fn rotate_admin_token<S: InstanceStore>(
    store: &S,
    digest_key: &hmac::Key,
    token_file: &Path,
    lifetime: Duration,
) -> Result<Bootstrapped, BootstrapError> {
    let instance = store
        .instance()
        .await?
        .ok_or(BootstrapError::NotInitialized)?;
    let now = clock::now();
    let (token, record) = admin_token(digest_key, &instance.admin_user_id, now, lifetime);
    let event = Event::new(Actor::system(), "admin_token.rotated", Outcome::Success)
        .target(instance.admin_user_id.clone())
        .details(json!({ "token_id": record.id }))
        .into_record(clock::now_ms());
    let pending = PendingFile::write(token_file, &token)?;
    store.replace_admin_token(record, now, event).await?;
    pending.put_in_place(instance.admin_user_id)
}

fn admin_token(
    digest_key: &hmac::Key,
    admin_user_id: &str,
    now: i64,
    lifetime: Duration,
) -> (OpaqueToken, AccessTokenRecord) {
    let token = OpaqueToken::generate(TokenKind::Bootstrap);
    let parsed = token.parse().expect("a generated token parses");
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    let record = AccessTokenRecord {
        id: new_id(),
        kind: TokenKind::Bootstrap.as_str().to_owned(),
        lookup: parsed.lookup,
        digest: token.digest(digest_key),
        owner_id: admin_user_id.to_owned(),
        owner_kind: "service".to_owned(),
        name: "bootstrap".to_owned(),
        scopes: ADMIN_SCOPE.to_owned(),
        created_at: now,
        expires_at: Some(now.saturating_add(lifetime)),
        last_used_at: None,
        disabled_at: None,
        revoked_at: None,
        env: String::new(),
        responsible_id: None,
        lifetime_secs: Some(lifetime),
        last_used_ip: None,
        use_count: 0,
        replaced_by: None,
        last_four: String::new(),
        max_uses: None,
        expiry_audited_at: None,
    };
    (token, record)
}

/// The token written beside its final path under a name no other process
/// or attempt uses; removed unless put in place.
struct PendingFile {
    pending: PathBuf,
    target: PathBuf,
    placed: bool,
}

impl PendingFile {
    fn write(target: &Path, token: &OpaqueToken) -> Result<PendingFile, BootstrapError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io_error = |e: std::io::Error| BootstrapError::Io {
            path: target.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut name = target.file_name().unwrap_or_default().to_owned();
        name.push(format!(
            ".pending-{}-{}",
            std::process::id(),
            random_base62(12)
        ));
        let file = PendingFile {
            pending: target.with_file_name(name),
            target: target.to_owned(),
            placed: false,
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file.pending)
            .map_err(io_error)?;
        out.write_all(format!("{}\n", token.expose()).as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(io_error)?;
        Ok(file)
    }

    fn put_in_place(mut self, admin_user_id: String) -> Result<Bootstrapped, BootstrapError> {
        std::fs::rename(&self.pending, &self.target).map_err(|e| BootstrapError::Io {
            path: self.target.display().to_string(),
            reason: e.to_string(),
        })?;
        self.placed = true;
        Ok(Bootstrapped {
            admin_user_id,
            token_file: self.target.clone(),
        })
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.pending);
        }
    }
}
