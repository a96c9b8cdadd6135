//! First start: an administrator service user and its bearer token.
//!
//! The token is written to a file (mode 0600) and never logged. The file is
//! written before the database commit and renamed into place after it, so
//! there is never a stored token nobody can read, nor a file holding a token
//! the database does not know.

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use serde_json::json;

use crate::audit::{Actor, Event, Outcome};
use crate::clock;
use crate::keys::master::write_secret_file;
use crate::random::new_id;
use crate::store::{AccessTokenRecord, InstanceStore, ServiceUserRecord, StoreError};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

pub const ADMIN_USER_NAME: &str = "admin";
pub const ADMIN_SCOPE: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("this database is already initialised; refusing to create another administrator")]
    AlreadyInitialized,
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
pub async fn initialize<S: InstanceStore>(
    store: &S,
    digest_key: &hmac::Key,
    token_file: &Path,
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
    };
    let token = OpaqueToken::generate(TokenKind::Bootstrap);
    let parsed = token.parse().expect("a generated token parses");
    let record = AccessTokenRecord {
        id: new_id(),
        kind: TokenKind::Bootstrap.as_str().to_owned(),
        lookup: parsed.lookup,
        digest: token.digest(digest_key),
        owner_id: admin.id.clone(),
        owner_kind: "service".to_owned(),
        name: "bootstrap".to_owned(),
        scopes: ADMIN_SCOPE.to_owned(),
        created_at: now,
        expires_at: None,
        last_used_at: None,
        disabled_at: None,
        revoked_at: None,
    };
    let event = Event::new(Actor::system(), "instance.initialized", Outcome::Success)
        .target(admin.id.clone())
        .details(json!({ "admin_user": ADMIN_USER_NAME, "token_id": record.id }))
        .into_record(clock::now_ms());

    let io_error = |e: std::io::Error| BootstrapError::Io {
        path: token_file.display().to_string(),
        reason: e.to_string(),
    };
    let pending = token_file.with_extension("pending");
    write_secret_file(&pending, format!("{}\n", token.expose()).as_bytes()).map_err(io_error)?;
    let admin_user_id = admin.id.clone();
    match store.initialize(admin, record, event).await {
        Ok(()) => {
            std::fs::rename(&pending, token_file).map_err(io_error)?;
            Ok(Bootstrapped {
                admin_user_id,
                token_file: token_file.to_owned(),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            match e {
                StoreError::Conflict => Err(BootstrapError::AlreadyInitialized),
                other => Err(other.into()),
            }
        }
    }
}
